//! `berth scenario openb`: regenerates `scenarios/openb.yaml` from the production trace's
//! CSV files, and checks that the document it wrote loads.

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_core::Scenario;
use berth_core::openb::{CsvFile, import_openb};
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
    /// Where to write the scenario.
    #[arg(long, default_value = "scenarios/openb.yaml")]
    out: PathBuf,
}

/// Reads the CSV files, writes the scenario and prints what it holds.
pub fn openb(args: OpenbArgs) -> Result<()> {
    let read =
        |path: &PathBuf| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
    let (nodes_text, pods_text) = (read(&args.nodes)?, read(&args.pods)?);
    let (nodes_name, pods_name) = (args.nodes.display().to_string(), args.pods.display().to_string());
    let import = import_openb(
        CsvFile { name: &nodes_name, text: &nodes_text },
        CsvFile { name: &pods_name, text: &pods_text },
        args.window,
    )?;
    let scenario = Scenario::from_yaml(&import.yaml).context("the generated scenario does not load")?;
    std::fs::write(&args.out, &import.yaml).with_context(|| format!("writing {}", args.out.display()))?;
    let gpus: Vec<String> = import.gpus.iter().map(|(model, count)| format!("{model} {count}")).collect();
    println!(
        "{}: {} nodes ({} GPUs: {}), {} replicas, {} of {} pods as background",
        args.out.display(),
        scenario.nodes.len(),
        import.gpus.values().sum::<u64>(),
        gpus.join(", "),
        scenario.replica_count(),
        import.background,
        import.pods
    );
    Ok(())
}
