//! The report of an experiment: `runs.csv` (every run and condition; reproduces exactly),
//! `timings.csv` (wall times; does not), and `summary.md` (means and 95% intervals).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use polars::prelude::{Column, CsvWriter, DataFrame, SerWriter};

use super::Error;
use super::run_state::{ConditionResult, Kind, RunRecord, io};
use super::spec::Experiment;

/// Two-sided 97.5% quantiles of Student's t for 1..=30 degrees of freedom.
const T_975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/// Mean and the half-width of its 95% t-interval (0 for a single value).
pub fn mean_ci(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = T_975.get(n - 2).copied().unwrap_or(1.96);
    (mean, t * (var / n as f64).sqrt())
}

/// One evaluated (run, condition), with its gap to the oracle on the same episodes.
pub struct Line<'a> {
    /// The run.
    pub record: &'a RunRecord,
    /// The condition's result.
    pub result: &'a ConditionResult,
    /// `(cost - oracle cost) / oracle cost`, when the oracle ran.
    pub gap: Option<f64>,
}

/// Every (run, condition) in report order: scenario, condition, policy, seed.
pub fn lines<'a>(exp: &Experiment, records: &'a [RunRecord]) -> Vec<Line<'a>> {
    let oracle_cost: BTreeMap<(&str, &str, u64), f64> = records
        .iter()
        .filter(|r| r.kind == Kind::Oracle)
        .flat_map(|r| {
            r.results
                .iter()
                .map(move |c| ((r.scenario.as_str(), c.condition.as_str(), r.seed), -c.row.reward))
        })
        .collect();
    let mut out = Vec::new();
    for scenario in &exp.scenarios {
        for condition in &scenario.conditions {
            for record in records.iter().filter(|r| r.scenario == scenario.name) {
                for result in record.results.iter().filter(|c| c.condition == condition.name) {
                    let oracle =
                        oracle_cost.get(&(record.scenario.as_str(), result.condition.as_str(), record.seed));
                    let gap = oracle.filter(|c| **c > 0.0).map(|c| (-result.row.reward - c) / c);
                    out.push(Line { record, result, gap });
                }
            }
        }
    }
    out
}

fn write_frame(path: &Path, columns: Vec<Column>) -> Result<(), Error> {
    let mut frame = DataFrame::new_infer_height(columns).expect("columns of equal length");
    let mut file = std::fs::File::create(path).map_err(|e| io(path, e))?;
    CsvWriter::new(&mut file)
        .finish(&mut frame)
        .map_err(|e| Error::Io { path: path.display().to_string(), reason: e.to_string() })
}

fn text_column(name: &str, values: Vec<String>) -> Column {
    Column::new(name.into(), values)
}

/// `runs.csv`: one row per run and condition, only figures that reproduce from the seeds.
pub fn write_runs_csv(path: &Path, exp: &Experiment, lines: &[Line]) -> Result<(), Error> {
    let get = |f: fn(&Line) -> f64| lines.iter().map(f).collect::<Vec<f64>>();
    write_frame(
        path,
        vec![
            text_column("scenario", lines.iter().map(|l| l.record.scenario.clone()).collect()),
            text_column("condition", lines.iter().map(|l| l.result.condition.clone()).collect()),
            text_column("policy", lines.iter().map(|l| l.record.policy.clone()).collect()),
            text_column("kind", lines.iter().map(|l| l.record.kind.name().to_string()).collect()),
            Column::new("seed".into(), lines.iter().map(|l| l.record.seed).collect::<Vec<u64>>()),
            Column::new("train_steps".into(), lines.iter().map(|l| l.record.train_steps).collect::<Vec<_>>()),
            Column::new("eval_episodes".into(), vec![exp.episodes as u64; lines.len()]),
            Column::new("mean_latency_ms".into(), get(|l| l.result.row.mean_latency_ms)),
            Column::new("p95_latency_ms".into(), get(|l| l.result.row.p95_latency_ms)),
            Column::new("slo_miss".into(), get(|l| l.result.row.slo_miss)),
            Column::new("moves".into(), get(|l| l.result.row.moves)),
            Column::new("reward".into(), get(|l| l.result.row.reward)),
            Column::new("gap_to_oracle".into(), lines.iter().map(|l| l.gap).collect::<Vec<_>>()),
            Column::new("gpus_used".into(), lines.iter().map(|l| l.result.row.gpus_used).collect::<Vec<_>>()),
        ],
    )
}

/// `timings.csv`: wall times and training speed of every run (vary from run to run).
pub fn write_timings_csv(path: &Path, records: &[RunRecord]) -> Result<(), Error> {
    let get = |f: fn(&RunRecord) -> f64| records.iter().map(f).collect::<Vec<f64>>();
    write_frame(
        path,
        vec![
            text_column("scenario", records.iter().map(|r| r.scenario.clone()).collect()),
            text_column("policy", records.iter().map(|r| r.policy.clone()).collect()),
            Column::new("seed".into(), records.iter().map(|r| r.seed).collect::<Vec<u64>>()),
            Column::new("train_wall_s".into(), get(|r| r.timing.train_wall_s)),
            Column::new("train_sps".into(), get(|r| r.timing.train_sps)),
            Column::new("eval_wall_s".into(), get(|r| r.timing.eval_wall_s)),
        ],
    )
}

/// Env steps per second measured for one scenario.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EnvSpeed {
    /// Scenario as named in the file.
    pub scenario: String,
    /// Its nodes.
    pub nodes: usize,
    /// Its replicas.
    pub replicas: usize,
    /// Single-thread env steps per second.
    pub steps_per_sec: f64,
}

/// `env_sps.csv`.
pub fn write_env_csv(path: &Path, speeds: &[EnvSpeed]) -> Result<(), Error> {
    write_frame(
        path,
        vec![
            text_column("scenario", speeds.iter().map(|s| s.scenario.clone()).collect()),
            Column::new("nodes".into(), speeds.iter().map(|s| s.nodes as u64).collect::<Vec<_>>()),
            Column::new("replicas".into(), speeds.iter().map(|s| s.replicas as u64).collect::<Vec<_>>()),
            Column::new(
                "env_steps_per_sec".into(),
                speeds.iter().map(|s| s.steps_per_sec).collect::<Vec<_>>(),
            ),
        ],
    )
}

/// The figures of one policy under one condition over all seeds.
pub struct Group<'a> {
    /// Scenario as named in the file.
    pub scenario: &'a str,
    /// Condition.
    pub condition: &'a str,
    /// Row label.
    pub policy: &'a str,
    /// Its lines, one per seed.
    pub lines: Vec<&'a Line<'a>>,
}

impl Group<'_> {
    /// Mean and 95% half-width of a figure over seeds.
    pub fn stat(&self, f: impl Fn(&Line) -> Option<f64>) -> Option<(f64, f64)> {
        let values: Vec<f64> = self.lines.iter().filter_map(|l| f(l)).collect();
        (!values.is_empty()).then(|| mean_ci(&values))
    }
}

/// Lines grouped by (scenario, condition, policy), in report order.
pub fn groups<'a>(lines: &'a [Line<'a>]) -> Vec<Group<'a>> {
    let mut out: Vec<Group> = Vec::new();
    for line in lines {
        let key =
            (line.record.scenario.as_str(), line.result.condition.as_str(), line.record.policy.as_str());
        match out.iter_mut().find(|g| (g.scenario, g.condition, g.policy) == key) {
            Some(g) => g.lines.push(line),
            None => out.push(Group { scenario: key.0, condition: key.1, policy: key.2, lines: vec![line] }),
        }
    }
    out
}

fn cell(stat: Option<(f64, f64)>, scale: f64, digits: usize) -> String {
    match stat {
        None => "–".into(),
        Some((m, h)) => format!("{:.digits$} ± {:.digits$}", m * scale, h * scale),
    }
}

/// `summary.md`: one table per scenario and condition.
pub fn summary_markdown(
    exp: &Experiment,
    groups: &[Group],
    records: &[RunRecord],
    speeds: &[EnvSpeed],
    plots: &[String],
) -> String {
    let mut md = String::new();
    let seeds: Vec<String> = exp.seeds.iter().map(u64::to_string).collect();
    let _ = writeln!(md, "# Experiment `{}`\n\n{}\n", exp.name, exp.description.trim());
    let _ = writeln!(
        md,
        "Seeds {}; {} evaluation episode(s) per seed and condition, held apart from training \
         (episode seeds from {}). Each cell is the mean over seeds ± the half-width of its 95% \
         t-interval. Gap to the oracle: (cost − oracle cost) / oracle cost on the same episodes \
         (the oracle ignores move costs: a lower bound). Training time and SPS were measured on \
         the machine that ran it and vary from run to run (`timings.csv`); every other figure \
         reproduces from the seeds (`runs.csv`).\n\nRegenerate: `berth experiment run experiments/{}.toml --fresh`\n",
        seeds.join(", "),
        exp.episodes,
        exp.eval_seed,
        exp.name
    );
    for scenario in &exp.scenarios {
        for condition in &scenario.conditions {
            let s = &scenario.scenario;
            let _ = writeln!(
                md,
                "## {} ({} nodes, {} replicas), {}\n",
                scenario.name,
                s.nodes.len(),
                s.replica_count(),
                if condition.name == "base" {
                    "as trained".to_string()
                } else {
                    format!("condition `{}`", condition.name)
                }
            );
            md.push_str("| policy | mean latency (ms) | p95 latency (ms) | SLO miss (%) | moves / episode | GPUs used | gap to oracle (%) | train time (s) | train SPS |\n");
            md.push_str("|---|---|---|---|---|---|---|---|---|\n");
            for g in groups.iter().filter(|g| g.scenario == scenario.name && g.condition == condition.name) {
                let timing: Vec<&RunRecord> = records
                    .iter()
                    .filter(|r| r.scenario == scenario.name && r.policy == g.policy && r.kind == Kind::Agent)
                    .collect();
                let (train_s, sps) = if timing.is_empty() {
                    ("–".to_string(), "–".to_string())
                } else {
                    let wall: Vec<f64> = timing.iter().map(|r| r.timing.train_wall_s).collect();
                    let sps: Vec<f64> = timing.iter().map(|r| r.timing.train_sps).collect();
                    (cell(Some(mean_ci(&wall)), 1.0, 1), format!("{:.0}", mean_ci(&sps).0))
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    g.policy,
                    cell(g.stat(|l| Some(l.result.row.mean_latency_ms)), 1.0, 1),
                    cell(g.stat(|l| Some(l.result.row.p95_latency_ms)), 1.0, 1),
                    cell(g.stat(|l| Some(l.result.row.slo_miss)), 100.0, 2),
                    cell(g.stat(|l| Some(l.result.row.moves)), 1.0, 1),
                    cell(g.stat(|l| l.result.row.gpus_used), 1.0, 2),
                    cell(g.stat(|l| l.gap), 100.0, 1),
                    train_s,
                    sps,
                );
            }
            md.push('\n');
        }
        // One line per policy whose search refused the scenario (every seed's run says the same).
        let mut told = Vec::new();
        for r in records.iter().filter(|r| r.scenario == scenario.name && r.refused.is_some()) {
            if !told.contains(&r.policy) {
                let why = r.refused.as_deref().unwrap_or_default();
                let _ = writeln!(md, "No {} on {}: {why}\n", r.policy, scenario.name);
                told.push(r.policy.clone());
            }
        }
    }
    if !speeds.is_empty() {
        md.push_str("## Environment speed (single thread, this machine)\n\n| scenario | nodes | replicas | env steps/s |\n|---|---|---|---|\n");
        for s in speeds {
            let _ =
                writeln!(md, "| {} | {} | {} | {:.0} |", s.scenario, s.nodes, s.replicas, s.steps_per_sec);
        }
        md.push('\n');
    }
    if !plots.is_empty() {
        md.push_str("## Plots\n\n");
        for p in plots {
            let _ = writeln!(md, "![{p}]({p})");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_t_interval() {
        let (m, h) = mean_ci(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!((m - 3.0).abs() < 1e-12);
        // sd = sqrt(2.5), t(4) = 2.776: 2.776 * sqrt(2.5 / 5)
        assert!((h - 2.776 * 0.5f64.sqrt()).abs() < 1e-9, "{h}");
        assert_eq!(mean_ci(&[7.0]), (7.0, 0.0));
        assert!(mean_ci(&[]).0.is_nan());
    }
}
