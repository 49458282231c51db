//! `berth scenario discover`: writes the scenario of the cluster berth is pointed at, and
//! tells on stderr every figure it filled from defaults and every node or Deployment it left
//! out. On any error nothing is written.

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_env::live::{self, discover};
use clap::Args;

/// `berth scenario discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Kubeconfig of the cluster (default: what kube infers).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the placed services' Deployments.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Only the nodes matching this label selector (`pool=gpu`, `!spot`).
    #[arg(long)]
    selector: Option<String>,
    /// The scenario's name.
    #[arg(long, default_value = "discovered")]
    name: String,
    /// Where to write the scenario.
    #[arg(long)]
    out: PathBuf,
}

/// Reads the cluster, writes the scenario, and lists what to check.
pub fn discover(args: DiscoverArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let objects = runtime.block_on(async {
        let client = live::connect(args.kubeconfig.as_deref()).await?;
        discover::read_cluster(&client, &args.namespace, args.selector.as_deref()).await
    })?;
    let found = discover::discover(&objects, &args.name, &args.namespace)?;
    std::fs::write(&args.out, &found.document).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("filled from defaults; check these in {}:", args.out.display());
    for filled in &found.findings.filled {
        eprintln!("  - {filled}");
    }
    if !found.findings.notes.is_empty() {
        eprintln!("left out or read in part:");
        for note in &found.findings.notes {
            eprintln!("  - {note}");
        }
    }
    let scenario = &found.scenario;
    let gpus: u32 = scenario.nodes.iter().filter_map(|n| n.gpu.as_ref()).map(|g| g.count).sum();
    println!(
        "{}: {} nodes in {} zones ({gpus} GPUs), {} services with {} replicas",
        args.out.display(),
        scenario.nodes.len(),
        scenario.zones.len(),
        scenario.services.len(),
        scenario.replica_count()
    );
    Ok(())
}
