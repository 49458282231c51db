//! Cold starts of varying length: a shape measured in production (the quantiles of model-load
//! latencies) that multiplies each service's `cold_start_s`, instead of the same figure for
//! every start (`cold_starts:` in a scenario; docs/scenarios.md).
//!
//! The shape is stored as quantiles at evenly spaced probabilities (0, 1/(k-1), …, 1) and
//! read as the piecewise-linear inverse of the distribution function. It is normalised to a
//! mean of 1, so a service's `cold_start_s` stays its mean cold start (the figure the
//! scenarios cite) and only the spread around it comes from the measurement.

use std::sync::Arc;

use crate::csv::{CsvFile, ImportError, column_index, number, table};
use crate::error::{Error, Result};
use crate::spec::ColdStartSpec;

/// A validated shape: quantiles, non-decreasing, mean 1.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdStartShape {
    quantiles: Arc<[f64]>,
}

impl ColdStartShape {
    /// The multiplier at probability `u` in [0, 1]: the shape's quantile, interpolated.
    pub fn multiplier(&self, u: f64) -> f64 {
        interpolate(&self.quantiles, u)
    }

    /// The quantiles, mean 1.
    pub fn quantiles(&self) -> &[f64] {
        &self.quantiles
    }
}

/// The value at `p` in [0, 1] of the straight lines through `points` (at least 2), spread
/// evenly over [0, 1]: a quantile from sorted samples, or from quantiles.
pub fn interpolate(points: &[f64], p: f64) -> f64 {
    let at = p.clamp(0.0, 1.0) * (points.len() - 1) as f64;
    let k = (at.floor() as usize).min(points.len() - 2);
    let w = at - k as f64;
    points[k] * (1.0 - w) + points[k + 1] * w
}

/// `q` divided by the mean of the piecewise-linear inverse distribution function through it;
/// `None` where that mean is 0.
fn scaled_to_mean_one(q: &[f64]) -> Option<Vec<f64>> {
    let mean = q.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum::<f64>() / (q.len() - 1) as f64;
    (mean > 0.0).then(|| q.iter().map(|v| v / mean).collect())
}

/// Checks `cold_starts:`: at least 2 quantiles, each finite and at least 0, non-decreasing,
/// not all 0; scaled to a mean of 1.
pub(crate) fn validate_cold_starts(spec: &ColdStartSpec) -> Result<ColdStartShape> {
    let q = &spec.quantiles;
    if q.len() < 2 {
        return Err(Error::invalid("cold_starts.quantiles", "at least 2 quantiles are needed"));
    }
    for (k, v) in q.iter().enumerate() {
        let path = format!("cold_starts.quantiles[{k}]");
        crate::scenario::finite_at_least(&path, *v, 0.0, false)?;
        if k > 0 && *v < q[k - 1] {
            return Err(Error::invalid(
                path,
                format!("quantiles must not decrease, got {v} after {}", q[k - 1]),
            ));
        }
    }
    let quantiles = scaled_to_mean_one(q).ok_or_else(|| {
        Error::invalid("cold_starts.quantiles", "all quantiles are 0; the shape needs a mean")
    })?;
    Ok(ColdStartShape { quantiles: quantiles.into() })
}

/// Quantiles of a column of durations, read from a CSV file, scaled to a mean of 1.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdStartQuantiles {
    /// At probabilities 0, 1/(k-1), …, 1.
    pub quantiles: Vec<f64>,
    /// Lines of the file that went into them.
    pub samples: usize,
}

/// Reads `column` (durations in any unit: only the shape is kept) from `file` and takes
/// `points` quantiles of it.
pub fn import_cold_starts(
    file: CsvFile<'_>,
    column: &str,
    points: usize,
) -> Result<ColdStartQuantiles, ImportError> {
    if !(2..=crate::limits::MAX_COLD_START_QUANTILES).contains(&points) {
        return Err(ImportError::at(
            "--quantiles",
            0,
            0,
            format!("must be from 2 to {}, got {points}", crate::limits::MAX_COLD_START_QUANTILES),
        ));
    }
    let (header, rows) = table(file, None)?;
    let index = column_index(file.name, &header, column)?;
    let mut values = rows
        .iter()
        .map(|(line, cells)| number(file.name, *line, cells[index], column, true))
        .collect::<Result<Vec<f64>, _>>()?;
    if values.len() < 2 {
        return Err(ImportError::at(
            file.name,
            1,
            1,
            format!("{} lines; the shape needs at least 2", values.len()),
        ));
    }
    values.sort_by(f64::total_cmp);
    let raw: Vec<f64> = (0..points).map(|k| interpolate(&values, k as f64 / (points - 1) as f64)).collect();
    let quantiles = scaled_to_mean_one(&raw).ok_or_else(|| {
        ImportError::at(file.name, 1, 1, format!("every `{column}` is 0; the shape needs a mean"))
    })?;
    Ok(ColdStartQuantiles { quantiles, samples: values.len() })
}

/// The quantiles as a scenario's `cold_starts:` section, with where they came from.
pub fn cold_starts_yaml(source: &str, shape: &ColdStartQuantiles) -> String {
    let mut out = format!("cold_starts:\n  source: {source:?}\n  quantiles: ");
    crate::trace::push_number_list(&mut out, &shape.quantiles, "    ");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(quantiles: &[f64]) -> Result<ColdStartShape> {
        validate_cold_starts(&ColdStartSpec { _source: String::new(), quantiles: quantiles.to_vec() })
    }

    #[test]
    fn interpolates_the_quantiles_scaled_to_a_mean_of_one() {
        // Quantiles 0, 2, 4 at probabilities 0, 0.5, 1: mean (1 + 3) / 2 = 2, so 0, 1, 2.
        let s = shape(&[0.0, 2.0, 4.0]).unwrap();
        assert_eq!(s.quantiles(), &[0.0, 1.0, 2.0]);
        assert_eq!(s.multiplier(0.25), 0.5);
        assert_eq!(s.multiplier(1.0), 2.0);
        assert_eq!(s.multiplier(0.0), 0.0);
        // The mean over evenly spread probabilities is 1.
        let mean = (0..10_000).map(|k| s.multiplier((k as f64 + 0.5) / 10_000.0)).sum::<f64>() / 10_000.0;
        assert!((mean - 1.0).abs() < 1e-9, "{mean}");
    }

    #[test]
    fn refuses_too_few_decreasing_negative_or_all_zero_quantiles() {
        let reason = |q: &[f64]| shape(q).unwrap_err().to_string();
        assert!(reason(&[1.0]).contains("cold_starts.quantiles"), "{}", reason(&[1.0]));
        assert!(reason(&[1.0, 0.5]).contains("cold_starts.quantiles[1]"), "{}", reason(&[1.0, 0.5]));
        assert!(reason(&[-1.0, 0.5]).contains("cold_starts.quantiles[0]"));
        assert!(reason(&[0.0, 0.0]).contains("mean"));
    }

    fn import(text: &str, points: usize) -> Result<ColdStartQuantiles, ImportError> {
        import_cold_starts(CsvFile { name: "load.csv", text }, "ms", points)
    }

    #[test]
    fn takes_quantiles_of_the_column_in_any_order() {
        let q = import("t,ms\n1,30\n2,10\n3,20\n", 3).unwrap();
        // Sorted 10, 20, 30; quantiles 10, 20, 30 have mean 20.
        assert_eq!(q.quantiles, vec![0.5, 1.0, 1.5]);
        assert_eq!(q.samples, 3);
        assert_eq!(
            cold_starts_yaml("load.csv", &q),
            "cold_starts:\n  source: \"load.csv\"\n  quantiles: [0.5, 1, 1.5]\n"
        );
        assert!(shape(&q.quantiles).is_ok());
    }

    #[test]
    fn a_bad_file_names_the_file_line_and_column() {
        let err = import("t,ms\n1,30\n2,soon\n", 3).unwrap_err();
        assert_eq!((err.file.as_str(), err.line, err.column), ("load.csv", 3, 3));
        let err = import("t,latency\n1,30\n", 3).unwrap_err();
        assert!(err.reason.contains("no column `ms`"), "{err}");
        assert!(import("t,ms\n1,30\n", 3).unwrap_err().reason.contains("1 lines"));
        assert!(import("t,ms\n1,0\n2,0\n", 3).unwrap_err().reason.contains("is 0"));
        assert_eq!(import("t,ms\n1,1\n2,2\n", 1).unwrap_err().file, "--quantiles");
    }
}
