//! Traced request rates and cold starts: the shipped `gentd26` scenario regenerated from the
//! trace's CSV files byte for byte, its series and cold-start shape checked against the CSV
//! read independently, and bad traces refused with the field path.

use berth_core::cold_start::{cold_starts_yaml, import_cold_starts};
use berth_core::openb::CsvFile;
use berth_core::trace::{GENERATED_MARKER, TraceColumns, import_rate_series, replace_generated, trace_yaml};
use berth_core::{Error, Scenario};

const QPS: &str = include_str!("../../data/gentd26/qps.csv");
const LOADS_FILE: &str = "data/gentd26/basemodel_update_latency_anon.csv";
const LOADS: &str = include_str!("../../data/gentd26/basemodel_update_latency_anon.csv");
const SHIPPED: &str = include_str!("../../scenarios/gentd26.yaml");
/// `berth scenario trace`'s defaults, which wrote `scenarios/gentd26.yaml`.
const COLUMNS: TraceColumns<'static> =
    TraceColumns { time: "timestamp_anon", value: "value", filter: Some(("request_type", "API Requests")) };
const SOURCE: &str = "data/gentd26/qps.csv, lines with request_type = API Requests";

fn path_of(result: Result<Scenario, Error>) -> (String, String) {
    match result {
        Err(Error::Invalid { path, reason }) => (path, reason),
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn the_shipped_scenario_is_what_the_command_writes_from_the_csv() {
    let series =
        import_rate_series(CsvFile { name: "data/gentd26/qps.csv", text: QPS }, COLUMNS, 300.0).unwrap();
    let loads = import_cold_starts(CsvFile { name: LOADS_FILE, text: LOADS }, "value", 21).unwrap();
    let mut section = trace_yaml("gentd26", SOURCE, &series);
    section.push_str(&cold_starts_yaml(&format!("{LOADS_FILE}, column value"), &loads));
    assert_eq!(replace_generated(SHIPPED, &section), SHIPPED, "run `berth scenario trace` to regenerate it");
    // The gateway's lines and time span, counted without the importer.
    let times: Vec<f64> = QPS
        .lines()
        .filter(|l| l.ends_with(",API Requests"))
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(series.samples, times.len());
    assert_eq!(times.len(), 1_114);
    let span =
        times.iter().copied().fold(f64::MIN, f64::max) - times.iter().copied().fold(f64::MAX, f64::min);
    assert_eq!(series.values.len(), (span / 300.0).floor() as usize + 1);
}

#[test]
fn the_shipped_cold_starts_keep_the_load_latencies_spread_around_a_mean_of_one() {
    // The latencies, read without the importer.
    let values: Vec<f64> =
        LOADS.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
    assert_eq!(values.len(), 7_531);
    let (low, high) = values.iter().fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let shape = Scenario::from_yaml(SHIPPED).unwrap().cold_starts.expect("gentd26 has a cold-start shape");
    let q = shape.quantiles();
    assert_eq!(q.len(), 21);
    let ratio = q[20] / q[0];
    assert!((ratio / (high / low) - 1.0).abs() < 1e-3, "longest over shortest: {ratio} vs {}", high / low);
    let mean = (0..1000).map(|k| shape.multiplier((k as f64 + 0.5) / 1000.0)).sum::<f64>() / 1000.0;
    assert!((mean - 1.0).abs() < 1e-3, "mean multiplier {mean}");
}

#[test]
fn every_group_of_the_shipped_scenario_follows_the_trace_up_to_its_peak() {
    let s = Scenario::from_yaml(SHIPPED).unwrap();
    assert_eq!((s.nodes.len(), s.replica_count(), s.user_groups.len()), (8, 6, 4));
    for g in &s.user_groups {
        let trace = g.rate.trace.as_ref().expect("traced");
        assert_eq!(trace.iter().copied().fold(0.0, f64::max), 1.0);
        let day: Vec<f64> = (0..288).map(|t| g.rate.mean_at(t as f64 * 300.0)).collect();
        let (low, high) = day.iter().fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        assert!(high <= g.rate.base_rps + 1e-9 && high > 0.9 * g.rate.base_rps, "{}: {high}", g.name);
        assert!(low < 0.1 * high, "{}: the trace's night is quiet, got {low} of {high}", g.name);
    }
}

#[test]
fn bad_traces_and_mixed_rates_are_refused_with_the_field() {
    let cases = [
        ("trace: gentd26, peak_rps: 9.6", "trace: nope, peak_rps: 9.6", "user_groups[0].rate.trace"),
        ("trace: gentd26, peak_rps: 9.6", "trace: gentd26", "user_groups[0].rate.peak_rps"),
        (
            "trace: gentd26, peak_rps: 9.6",
            "trace: gentd26, peak_rps: 9.6, base_rps: 3",
            "user_groups[0].rate.base_rps",
        ),
        (
            "trace: gentd26, peak_rps: 9.6",
            "trace: gentd26, peak_rps: 9.6, amplitude: 0.5",
            "user_groups[0].rate.amplitude",
        ),
        ("trace: gentd26, peak_rps: 9.6", "peak_rps: 9.6", "user_groups[0].rate.peak_rps"),
        ("trace: gentd26, peak_rps: 9.6, ", "", "user_groups[0].rate.base_rps"),
        (
            "trace: gentd26, peak_rps: 9.6",
            "trace: gentd26, peak_rps: 9.6, fit: loop",
            "user_groups[0].rate.fit",
        ),
        ("step_s: 300", "step_s: 0", "traces.gentd26.step_s"),
        ("values: [0.09, 0.135,", "values: [0.09, -0.135,", "traces.gentd26.values[1]"),
    ];
    for (from, to, want) in cases {
        assert!(SHIPPED.contains(from), "{from}");
        let (path, reason) = path_of(Scenario::from_yaml(&SHIPPED.replacen(from, to, 1)));
        assert_eq!(path, want, "{to}: {reason}");
    }
    let marker = SHIPPED.find(GENERATED_MARKER).unwrap();
    let one = format!("{}traces:\n  gentd26:\n    step_s: 60\n    values: [1]\n", &SHIPPED[..marker]);
    assert_eq!(path_of(Scenario::from_yaml(&one)).0, "traces.gentd26.values");
    let zero = format!("{}traces:\n  gentd26:\n    step_s: 60\n    values: [0, 0]\n", &SHIPPED[..marker]);
    assert_eq!(path_of(Scenario::from_yaml(&zero)).0, "traces.gentd26.values");
}

#[test]
fn a_trace_past_the_limit_is_refused() {
    let marker = SHIPPED.find(GENERATED_MARKER).unwrap();
    let values = vec!["1"; 100_001].join(",");
    let text = format!("{}traces:\n  gentd26:\n    step_s: 60\n    values: [{values}]\n", &SHIPPED[..marker]);
    let (path, reason) = path_of(Scenario::from_yaml(&text));
    assert_eq!(path, "traces.gentd26.values");
    assert!(reason.contains("at most 100000"), "{reason}");
    // The section itself, not the header's mention of it.
    let shipped_shape = SHIPPED.find("\ncold_starts:").unwrap() + 1;
    let quantiles: Vec<String> = (0..1_002).map(|k| k.to_string()).collect();
    let text = format!("{}cold_starts:\n  quantiles: [{}]\n", &SHIPPED[..shipped_shape], quantiles.join(","));
    let (path, reason) = path_of(Scenario::from_yaml(&text));
    assert_eq!(path, "cold_starts.quantiles");
    assert!(reason.contains("at most 1001"), "{reason}");
}
