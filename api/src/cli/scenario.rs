//! `berth scenario openb` and `berth scenario trace`: regenerate shipped scenarios from the
//! production traces' CSV files (`trace` also the cold starts' shape), and check that the
//! document written loads.

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_core::Scenario;
use berth_core::cold_start::{cold_starts_yaml, import_cold_starts, interpolate};
use berth_core::openb::{CsvFile, OpenbOptions, import_openb};
use berth_core::trace::{TraceColumns, import_rate_series, replace_generated, trace_yaml};
use clap::Args;

/// `berth scenario openb`.
#[derive(Debug, Args)]
pub struct OpenbArgs {
    /// The trace's node list.
    #[arg(long, default_value = "data/openb/openb_node_list_all_node.csv")]
    nodes: PathBuf,
    /// The trace's pod list.
    #[arg(long, default_value = "data/openb/openb_pod_list_default.csv")]
    pods: PathBuf,
    /// Share of the pods that run at any moment, in (0, 1).
    #[arg(long, default_value_t = 0.8)]
    window: f64,
    /// Time-slice every GPU into this many shares, so the trace's fractional pods are tenants
    /// of their GPUs and embedding replicas may share them (the `openb-shared` scenario).
    #[arg(long)]
    time_slicing: Option<u32>,
    /// Where to write the scenario [default: scenarios/openb.yaml, or
    /// scenarios/openb-shared.yaml with --time-slicing].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `berth scenario trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The CSV file, with a header line.
    #[arg(long, default_value = "data/gentd26/qps.csv")]
    csv: PathBuf,
    /// The column of the samples' times, in seconds.
    #[arg(long, default_value = "timestamp_anon")]
    time_column: String,
    /// The column of the request rates (any unit: only the shape is kept).
    #[arg(long, default_value = "value")]
    value_column: String,
    /// Keep only the lines where COLUMN=VALUE; `--where none` keeps every line.
    #[arg(long = "where", default_value = "request_type=API Requests")]
    filter: String,
    /// Seconds per sample after resampling (bucket means; empty buckets interpolated).
    #[arg(long, default_value_t = 300.0)]
    step: f64,
    /// The trace's name in `traces:`, which user groups name in `rate.trace`.
    #[arg(long, default_value = "gentd26")]
    name: String,
    /// The scenario to write it into: its generated section is replaced, the rest kept.
    #[arg(long, default_value = "scenarios/gentd26.yaml")]
    into: PathBuf,
    /// A CSV file of model-load latencies whose shape the scenario's cold starts take
    /// (`cold_starts:`); `none` writes no cold-start shape.
    #[arg(long, default_value = "data/gentd26/basemodel_update_latency_anon.csv")]
    cold_starts: String,
    /// The column of the latencies (any unit: only the shape is kept).
    #[arg(long, default_value = "value")]
    cold_start_column: String,
    /// How many quantiles, at evenly spaced probabilities, describe the shape.
    #[arg(long, default_value_t = 21)]
    quantiles: usize,
}

/// Resamples the CSV file's series, writes it into the scenario and checks that it loads.
pub fn trace(args: TraceArgs) -> Result<()> {
    let filter = match args.filter.as_str() {
        "none" => None,
        f => Some(
            f.split_once('=').with_context(|| format!("--where must be COLUMN=VALUE or none, got `{f}`"))?,
        ),
    };
    if args.name.is_empty() || !args.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        anyhow::bail!("--name must be letters, digits, `-` or `_`, got `{}`", args.name);
    }
    let text = read(&args.csv)?;
    let csv_name = args.csv.display().to_string();
    let columns = TraceColumns { time: &args.time_column, value: &args.value_column, filter };
    let series = import_rate_series(CsvFile { name: &csv_name, text: &text }, columns, args.step)?;
    let source = match filter {
        Some((column, value)) => format!("{csv_name}, lines with {column} = {value}"),
        None => csv_name.clone(),
    };
    let mut section = trace_yaml(&args.name, &source, &series);
    let cold = match args.cold_starts.as_str() {
        "none" => None,
        path => {
            let text = read(&PathBuf::from(path))?;
            let shape = import_cold_starts(
                CsvFile { name: path, text: &text },
                &args.cold_start_column,
                args.quantiles,
            )?;
            section
                .push_str(&cold_starts_yaml(&format!("{path}, column {}", args.cold_start_column), &shape));
            Some((path, shape))
        }
    };
    let document = replace_generated(&read(&args.into)?, &section);
    let scenario = Scenario::from_yaml(&document)
        .with_context(|| format!("{} with the trace does not load", args.into.display()))?;
    std::fs::write(&args.into, &document).with_context(|| format!("writing {}", args.into.display()))?;
    let users = scenario.user_groups.iter().filter(|g| g.rate.trace.is_some()).count();
    println!(
        "{}: trace `{}` of {} samples ({} s apart) from {} lines of {csv_name}; {users} of {} user groups follow a trace",
        args.into.display(),
        args.name,
        series.values.len(),
        args.step,
        series.samples,
        scenario.user_groups.len(),
    );
    if let Some((path, shape)) = cold {
        let q = &shape.quantiles;
        println!(
            "cold starts: {} quantiles of {} latencies in {path}, mean 1: median {:.2}, from {:.2} to {:.2} times each service's cold_start_s",
            q.len(),
            shape.samples,
            interpolate(q, 0.5),
            q[0],
            q[q.len() - 1],
        );
    }
    Ok(())
}

fn read(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Reads the CSV files, writes the scenario and prints what it holds.
pub fn openb(args: OpenbArgs) -> Result<()> {
    let (nodes_text, pods_text) = (read(&args.nodes)?, read(&args.pods)?);
    let (nodes_name, pods_name) = (args.nodes.display().to_string(), args.pods.display().to_string());
    let options = OpenbOptions { window: args.window, time_slicing: args.time_slicing };
    let import = import_openb(
        CsvFile { name: &nodes_name, text: &nodes_text },
        CsvFile { name: &pods_name, text: &pods_text },
        options,
    )?;
    let out = args.out.unwrap_or_else(|| match args.time_slicing {
        Some(_) => "scenarios/openb-shared.yaml".into(),
        None => "scenarios/openb.yaml".into(),
    });
    let scenario = Scenario::from_yaml(&import.yaml).context("the generated scenario does not load")?;
    std::fs::write(&out, &import.yaml).with_context(|| format!("writing {}", out.display()))?;
    let gpus: Vec<String> = import.gpus.iter().map(|(model, count)| format!("{model} {count}")).collect();
    println!(
        "{}: {} nodes ({} GPUs: {}), {} replicas, {} of {} pods as background",
        out.display(),
        scenario.nodes.len(),
        import.gpus.values().sum::<u64>(),
        gpus.join(", "),
        scenario.replica_count(),
        import.background,
        import.pods
    );
    Ok(())
}
