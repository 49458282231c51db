//! `berth record`: the metrics recorder. It samples a live cluster at an interval into a
//! trace file (CSV, written with polars) that the `replay` backend turns into episodes, so
//! agents train on what the cluster did.
//!
//! Each sample is the time of day, which nodes are Ready, and `scale`: the cluster's load
//! over the scenario's traffic model at that time, fitted by least squares to the replicas'
//! utilisation observed in `metrics.k8s.io` (CPU used over CPU requested, less a 5% idle
//! floor) against the utilisation the model predicts for the same placement. The time of
//! day is the emulator's clock where `berth emulate` publishes one, else UTC.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_core::Scenario;
use berth_env::live;
use berth_env::replay::{ReplayBackend, Sample};
use berth_env::shipped;
use clap::Args;
use polars::prelude::{Column, CsvWriter, DataFrame, SerWriter};

use crate::service::cluster::observe::observe;

/// `berth record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Scenario the cluster runs (a shipped name or a YAML file).
    #[arg(long)]
    scenario: String,
    /// Kubeconfig of the cluster (default: what kube infers).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the placed services' Deployments.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Seconds between samples (metrics-server refreshes every 15).
    #[arg(long, default_value_t = 15.0)]
    interval_s: f64,
    /// Samples to take.
    #[arg(long)]
    samples: u32,
    /// The trace file to write (CSV).
    #[arg(long)]
    out: PathBuf,
}

/// Writes samples as the trace file: `t_s`, `scale`, and `ready:<node>` (1 or 0) per node.
pub fn write_trace(path: &Path, scenario: &Scenario, samples: &[Sample]) -> Result<()> {
    let mut columns = vec![
        Column::new("t_s".into(), samples.iter().map(|s| s.t_s).collect::<Vec<_>>()),
        Column::new("scale".into(), samples.iter().map(|s| s.scale).collect::<Vec<_>>()),
    ];
    for (n, node) in scenario.nodes.iter().enumerate() {
        let ready: Vec<u32> = samples.iter().map(|s| u32::from(s.node_ready[n])).collect();
        columns.push(Column::new(format!("ready:{}", node.name).into(), ready));
    }
    let mut frame = DataFrame::new_infer_height(columns).expect("columns of equal length");
    let mut file =
        std::fs::File::create(path).with_context(|| format!("--out: cannot create `{}`", path.display()))?;
    CsvWriter::new(&mut file)
        .finish(&mut frame)
        .with_context(|| format!("--out: cannot write `{}`", path.display()))?;
    Ok(())
}

/// Reads a trace file into the replay backend for `scenario`; errors name the line and column.
pub fn read_trace(path: &Path, scenario: &Scenario) -> Result<ReplayBackend> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (Some(t_col), Some(scale_col)) = (column("t_s"), column("scale")) else {
        bail!("`{}`: the header must have `t_s` and `scale` columns", path.display());
    };
    let ready_cols: Vec<usize> = scenario
        .nodes
        .iter()
        .map(|n| {
            column(&format!("ready:{}", n.name))
                .with_context(|| format!("`{}`: no column `ready:{}`", path.display(), n.name))
        })
        .collect::<Result<_>>()?;
    let mut samples = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        let number = |col: usize| -> Result<f64> {
            let cell = cells.get(col).copied().unwrap_or("");
            cell.trim().parse().with_context(|| {
                format!("`{}` line {}: `{}` is `{cell}`, not a number", path.display(), i + 2, header[col])
            })
        };
        let node_ready = ready_cols.iter().map(|&c| number(c).map(|v| v != 0.0)).collect::<Result<_>>()?;
        samples.push(Sample { t_s: number(t_col)?, scale: number(scale_col)?, node_ready });
    }
    ReplayBackend::new(scenario, samples).with_context(|| format!("`{}`", path.display()))
}

/// Samples the cluster `--samples` times, `--interval-s` apart, and writes the trace file.
pub fn run(args: RecordArgs) -> Result<()> {
    if !(args.interval_s.is_finite() && args.interval_s >= 0.0) {
        bail!("--interval-s: must be a number of seconds >= 0, got {}", args.interval_s);
    }
    if args.samples == 0 {
        bail!("--samples: must be at least 1");
    }
    let scenario =
        shipped::load(&args.scenario).with_context(|| format!("--scenario `{}`", args.scenario))?;
    let bar = indicatif::ProgressBar::new(u64::from(args.samples));
    bar.set_message("recording");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let samples = runtime.block_on(async {
        let client = live::connect(args.kubeconfig.as_deref()).await?;
        let mut samples = Vec::new();
        for i in 0..args.samples {
            if i > 0 {
                tokio::time::sleep(Duration::from_secs_f64(args.interval_s)).await;
            }
            samples.push(observe(&client, &scenario, &args.namespace).await?.sample);
            bar.inc(1);
        }
        Ok::<_, anyhow::Error>(samples)
    })?;
    bar.finish_and_clear();
    write_trace(&args.out, &scenario, &samples)?;
    eprintln!("record: {} samples of `{}` written to {}", samples.len(), scenario.name, args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_reads_back_as_written_and_bad_files_name_the_problem() {
        let scenario = shipped::load("gpu-small").unwrap();
        let mut ready = vec![true; scenario.nodes.len()];
        ready[2] = false;
        let samples = vec![
            Sample { t_s: 3600.0, scale: 1.25, node_ready: vec![true; scenario.nodes.len()] },
            Sample { t_s: 7200.0, scale: 0.5, node_ready: ready },
        ];
        let dir = std::env::temp_dir().join(format!("berth-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trace.csv");
        write_trace(&path, &scenario, &samples).unwrap();
        assert_eq!(read_trace(&path, &scenario).unwrap().samples(), samples.as_slice());
        std::fs::write(&path, "t_s,scale\n1,2\n").unwrap();
        assert!(
            format!("{:#}", read_trace(&path, &scenario).unwrap_err()).contains("no column `ready:h100-a-1`")
        );
        let header = std::iter::once("t_s,scale".to_string())
            .chain(scenario.nodes.iter().map(|n| format!("ready:{}", n.name)))
            .collect::<Vec<_>>()
            .join(",");
        std::fs::write(&path, format!("{header}\n10,lots,1,1,1,1,1,1,1,1\n")).unwrap();
        let error = format!("{:#}", read_trace(&path, &scenario).unwrap_err());
        assert!(error.contains("line 2") && error.contains("`scale` is `lots`"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
