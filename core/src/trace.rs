//! Request-rate traces: a time series read from a CSV file (a timestamp and a value per line),
//! resampled to a regular step, that a user group's rate follows instead of the synthetic
//! diurnal curve (`traces:` in a scenario; docs/scenarios.md).
//!
//! Resampling: the samples are sorted by time and averaged in buckets of `step_s` seconds from
//! the first sample; a bucket without samples takes the straight line between its neighbours,
//! so a gap in the recording neither drops traffic to zero nor shifts what follows.

use std::fmt::Write as _;

use crate::csv::{CsvFile, ImportError, column_index, number, table};
use crate::limits::MAX_TRACE_SAMPLES;

/// Which columns of the CSV file hold the series, and which lines belong to it.
#[derive(Debug, Clone, Copy)]
pub struct TraceColumns<'a> {
    /// Seconds (any origin): the sample's time.
    pub time: &'a str,
    /// The rate, in any unit: only its shape is kept.
    pub value: &'a str,
    /// Keep only the lines whose column (first) has this value (second).
    pub filter: Option<(&'a str, &'a str)>,
}

/// A series resampled to a regular step.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSeries {
    /// Seconds between samples.
    pub step_s: f64,
    /// Mean value in each step, from the first sample's time.
    pub values: Vec<f64>,
    /// Lines of the file that went into it.
    pub samples: usize,
}

/// Reads the series from `file` and resamples it to `step_s`.
pub fn import_rate_series(
    file: CsvFile<'_>,
    columns: TraceColumns<'_>,
    step_s: f64,
) -> Result<RateSeries, ImportError> {
    if !(step_s.is_finite() && step_s > 0.0) {
        return Err(ImportError::at(
            "--step",
            0,
            0,
            format!("must be a positive number of seconds, got {step_s}"),
        ));
    }
    let (header, rows) = table(file, None)?;
    let index = |name: &str| column_index(file.name, &header, name);
    let (time, value) = (index(columns.time)?, index(columns.value)?);
    let filter = match columns.filter {
        Some((column, wanted)) => Some((index(column)?, wanted)),
        None => None,
    };
    let mut samples = Vec::new();
    for (line, cells) in &rows {
        if filter.is_some_and(|(k, wanted)| cells[k].1.trim() != wanted) {
            continue;
        }
        samples.push((
            number(file.name, *line, cells[time], columns.time, false)?,
            number(file.name, *line, cells[value], columns.value, true)?,
        ));
    }
    if samples.len() < 2 {
        let which = columns.filter.map(|(c, v)| format!(" with {c} = `{v}`")).unwrap_or_default();
        return Err(ImportError::at(
            file.name,
            1,
            1,
            format!("{} lines{which}; a series needs at least 2", samples.len()),
        ));
    }
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (first, last) = (samples[0].0, samples[samples.len() - 1].0);
    let buckets = ((last - first) / step_s).floor() + 1.0;
    if buckets > MAX_TRACE_SAMPLES as f64 {
        return Err(ImportError::at(
            "--step",
            0,
            0,
            format!(
                "{step_s} s steps over the {:.0} s the series spans make {buckets} samples, more than {MAX_TRACE_SAMPLES}",
                last - first
            ),
        ));
    }
    let mut sums = vec![(0.0, 0u32); buckets as usize];
    for (t, v) in &samples {
        let k = (((t - first) / step_s) as usize).min(sums.len() - 1);
        sums[k].0 += v;
        sums[k].1 += 1;
    }
    Ok(RateSeries { step_s, values: fill_gaps(&sums), samples: samples.len() })
}

/// Bucket means, with empty buckets on the line between their nearest filled neighbours
/// (the first and last buckets always hold a sample).
fn fill_gaps(sums: &[(f64, u32)]) -> Vec<f64> {
    let filled: Vec<usize> = (0..sums.len()).filter(|&k| sums[k].1 > 0).collect();
    let mean = |k: usize| sums[k].0 / f64::from(sums[k].1);
    let mut values = vec![0.0; sums.len()];
    for pair in filled.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        for (k, v) in values.iter_mut().enumerate().take(b).skip(a) {
            let w = (k - a) as f64 / (b - a) as f64;
            *v = mean(a) * (1.0 - w) + mean(b) * w;
        }
    }
    if let Some(&last) = filled.last() {
        values[last] = mean(last);
    }
    values
}

/// The series as a scenario's `traces:` entry `name`, with where it came from.
pub fn trace_yaml(name: &str, source: &str, series: &RateSeries) -> String {
    let mut out =
        format!("traces:\n  {name}:\n    source: {source:?}\n    step_s: {}\n    values: ", series.step_s);
    push_number_list(&mut out, &series.values, "      ");
    out
}

/// Appends `values` as a YAML flow list (`[a, b, ...]` and a newline) rounded to 4
/// significant digits, 12 to a line, continuation lines indented by `indent`.
pub(crate) fn push_number_list(out: &mut String, values: &[f64], indent: &str) {
    out.push('[');
    for (k, v) in values.iter().enumerate() {
        if k > 0 {
            if k % 12 == 0 {
                let _ = write!(out, ",\n{indent}");
            } else {
                out.push_str(", ");
            }
        }
        let _ = write!(out, "{}", round_to(*v, 4));
    }
    out.push_str("]\n");
}

/// The line above the `traces:` section that `berth scenario trace` writes.
pub const GENERATED_MARKER: &str = "# ---- written by `berth scenario trace`; edit above this line only ----";

/// `scenario` with everything after [`GENERATED_MARKER`] (or, without one, after its end)
/// replaced by the marker and `section`.
pub fn replace_generated(scenario: &str, section: &str) -> String {
    let kept = match scenario.find(GENERATED_MARKER) {
        Some(at) => &scenario[..at],
        None => scenario,
    };
    let kept = kept.trim_end_matches('\n');
    format!("{kept}\n\n{GENERATED_MARKER}\n{section}")
}

/// `x` with `digits` significant digits: the trace's shape, without float noise in the file.
fn round_to(x: f64, digits: i32) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: TraceColumns<'static> =
        TraceColumns { time: "t", value: "v", filter: Some(("kind", "api")) };

    fn import(text: &str, step_s: f64) -> Result<RateSeries, ImportError> {
        import_rate_series(CsvFile { name: "q.csv", text }, COLUMNS, step_s)
    }

    #[test]
    fn averages_each_step_interpolates_gaps_and_keeps_only_the_filtered_lines() {
        let text = "t,v,kind\n100,2,api\n130,4,api\n110,99,gen\n200,9,api\n400,6,api\n";
        let series = import(text, 100.0).unwrap();
        // [100,200): 2 and 4; [200,300): 9; [300,400): none, on the line to [400,500): 6.
        assert_eq!(series.values, vec![3.0, 9.0, 7.5, 6.0]);
        assert_eq!(series.samples, 4);
    }

    #[test]
    fn sorts_samples_that_arrive_out_of_order() {
        let series = import("t,v,kind\n200,5,api\n0,1,api\n", 100.0).unwrap();
        assert_eq!(series.values, vec![1.0, 3.0, 5.0]);
    }

    #[test]
    fn a_bad_cell_names_the_file_line_and_column() {
        let err = import("t,v,kind\n0,1,api\n60,-3,api\n", 60.0).unwrap_err();
        assert_eq!((err.file.as_str(), err.line, err.column), ("q.csv", 3, 4));
        assert!(err.reason.contains("at least 0"), "{err}");
        let err = import("t,v,kind\n0,1,api\nsoon,2,api\n", 60.0).unwrap_err();
        assert_eq!((err.line, err.column), (3, 1));
        let err = import("t,v,kind\n0,1\n", 60.0).unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn refuses_a_missing_column_too_few_lines_and_too_many_samples() {
        let err = import("time,v,kind\n0,1,api\n", 60.0).unwrap_err();
        assert!(err.reason.contains("no column `t`"), "{err}");
        let err = import("t,v,kind\n0,1,api\n9,1,gen\n", 60.0).unwrap_err();
        assert!(err.reason.contains("1 lines with kind = `api`"), "{err}");
        let err = import("t,v,kind\n0,1,api\n1e12,1,api\n", 1.0).unwrap_err();
        assert_eq!(err.file, "--step");
        assert!(import("t,v,kind\n0,1,api\n1,1,api\n", 0.0).is_err());
    }

    #[test]
    fn replaces_only_what_follows_the_marker() {
        let once = replace_generated("name: a\n", "traces: 1\n");
        assert_eq!(once, format!("name: a\n\n{GENERATED_MARKER}\ntraces: 1\n"));
        assert_eq!(
            replace_generated(&once, "traces: 2\n"),
            format!("name: a\n\n{GENERATED_MARKER}\ntraces: 2\n")
        );
    }

    #[test]
    fn writes_a_traces_entry_that_rounds_to_four_digits() {
        let series = RateSeries { step_s: 60.0, values: vec![1.23456, 0.0, 1234.56], samples: 3 };
        let yaml = trace_yaml("x", "q.csv", &series);
        assert_eq!(
            yaml,
            "traces:\n  x:\n    source: \"q.csv\"\n    step_s: 60\n    values: [1.235, 0, 1235]\n"
        );
    }
}
