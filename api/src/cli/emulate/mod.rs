//! `berth emulate`: the nodes of a scenario on a real API server, played by a kubelet
//! emulator of our own. With the control plane of `scripts/kube-apiserver.sh` (API server,
//! controller-manager, scheduler), Deployments make real ReplicaSets and pods, the real
//! scheduler binds them honouring `nodeSelector` and `nvidia.com/gpu`, and this emulator is
//! only the kubelet: node status and leases, pods Running and Ready after the service's
//! cold start, and PodMetrics/NodeMetrics from the simulator's load model. Annotations on a
//! Node steer it: `berth.io/emulate-down=true` fails the node, `berth.io/emulate-stuck=true`
//! keeps its new pods from ever becoming Ready. `--add-node` adds a node while it runs.

mod kubelet;
mod load;
mod node;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_env::live::{self, LiveError, workload};
use berth_env::{scheduler, shipped};
use clap::Args;
use k8s_openapi::api::core::v1::{Namespace, Node as KubeNode};
use kube::api::{Api, ListParams, Patch, PatchParams};

use node::set_down;

/// `berth emulate`.
#[derive(Debug, Args)]
pub struct EmulateArgs {
    /// Scenario whose nodes to play: a shipped name or a YAML file.
    #[arg(long, required_unless_present_any = ["fail", "recover", "add_node"])]
    scenario: Option<String>,
    /// Kubeconfig of the cluster (default: `KUBECONFIG`, `~/.kube/config`, or in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the placed services' Deployments.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Simulated seconds per wall-clock second: cold starts take this much less time, and
    /// the traffic's time of day moves this much faster (unless --clock-speed says otherwise).
    #[arg(long, default_value_t = 60.0)]
    speed: f64,
    /// How fast the time of day runs, simulated seconds per wall-clock second (default:
    /// --speed). 0 holds the clock at --start-hour: the traffic, and so deploy plans, stay put.
    #[arg(long)]
    clock_speed: Option<f64>,
    /// Simulated time of day when the emulator starts, in hours.
    #[arg(long, default_value_t = 12.0)]
    start_hour: f64,
    /// Also create the scenario's Deployments, one per replica, where kube-scheduler's
    /// default scoring would put them.
    #[arg(long)]
    workloads: bool,
    /// Seconds between node heartbeats (status and lease), as a kubelet's 10 s.
    #[arg(long, default_value_t = 10.0)]
    heartbeat_s: f64,
    /// Seconds between PodMetrics/NodeMetrics, as metrics-server's 15 s.
    #[arg(long, default_value_t = 15.0)]
    metrics_interval_s: f64,
    /// Fail this node (the running emulator reports it NotReady and its pods not Ready), then exit.
    #[arg(long, value_name = "NODE", conflicts_with_all = ["scenario", "recover"])]
    fail: Option<String>,
    /// Bring this failed node back, then exit.
    #[arg(long, value_name = "NODE", conflicts_with = "scenario")]
    recover: Option<String>,
    /// Add a node of this name, a copy of the node --like names (its labels and resources), as
    /// a node joining the cluster; the running emulator keeps it Ready. Then exit.
    #[arg(long, value_name = "NODE", requires = "like", conflicts_with_all = ["scenario", "fail", "recover"])]
    add_node: Option<String>,
    /// The node --add-node copies.
    #[arg(long, value_name = "NODE", requires = "add_node")]
    like: Option<String>,
    /// The zone of the node --add-node adds (default: that of --like).
    #[arg(long, requires = "add_node")]
    zone: Option<String>,
}

fn check(args: &EmulateArgs) -> Result<()> {
    for (name, value) in [
        ("--speed", args.speed),
        ("--heartbeat-s", args.heartbeat_s),
        ("--metrics-interval-s", args.metrics_interval_s),
    ] {
        if !(value.is_finite() && value > 0.0) {
            bail!("{name}: must be a positive number, got {value}");
        }
    }
    if let Some(clock) = args.clock_speed
        && !(clock.is_finite() && clock >= 0.0)
    {
        bail!("--clock-speed: must be 0 or a positive number, got {clock}");
    }
    if !(0.0..24.0).contains(&args.start_hour) {
        bail!("--start-hour: must be in [0, 24), got {}", args.start_hour);
    }
    Ok(())
}

/// Runs the emulator until Ctrl-C, or fails/recovers one node.
pub fn run(args: EmulateArgs) -> Result<()> {
    check(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let client = live::connect(args.kubeconfig.as_deref()).await?;
        if let Some(name) = args.fail.as_deref().or(args.recover.as_deref()) {
            let down = args.fail.is_some();
            set_down(&client, name, down).await?;
            eprintln!("emulate: node `{name}` {}", if down { "failed" } else { "recovering" });
            return Ok(());
        }
        if let (Some(name), Some(like)) = (&args.add_node, &args.like) {
            node::add(&client, name, like, args.zone.as_deref()).await?;
            eprintln!("emulate: node `{name}` added, a copy of `{like}`");
            return Ok(());
        }
        emulate(&client, &args).await
    })
}

async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<()> {
    let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    Api::<Namespace>::all(client.clone())
        .patch(name, &PatchParams::apply(node::MANAGER), &Patch::Apply(namespace))
        .await
        .map_err(|e| LiveError::kube(format!("create namespace `{name}`"), e))?;
    Ok(())
}

async fn emulate(client: &kube::Client, args: &EmulateArgs) -> Result<()> {
    let name = args.scenario.as_deref().expect("clap requires --scenario here");
    let scenario = shipped::load(name).with_context(|| format!("--scenario `{name}`"))?;
    node::register(client, &scenario).await?;
    if args.workloads {
        ensure_namespace(client, &args.namespace).await?;
        let placement = scheduler::spread_placement(&scenario)?;
        workload::apply(
            client,
            &args.namespace,
            &workload::deployments(&scenario, &placement.nodes, &args.namespace),
        )
        .await?;
    }
    eprintln!(
        "emulate: {} nodes of `{}` registered{}; Ctrl-C stops",
        scenario.nodes.len(),
        scenario.name,
        if args.workloads {
            format!(", {} Deployments in `{}`", scenario.replica_count(), args.namespace)
        } else {
            String::new()
        }
    );
    let mut kubelets = kubelet::Kubelets::new(args.speed);
    let started = Instant::now();
    let heartbeat = Duration::from_secs_f64(args.heartbeat_s);
    let metrics_every = Duration::from_secs_f64(args.metrics_interval_s);
    let (mut beat_at, mut metrics_at): (Option<Instant>, Option<Instant>) = (None, None);
    let mut was_down = HashSet::new();
    let emulated = ListParams::default().labels(&format!("{}=true", node::EMULATED));
    loop {
        let pass = async {
            let listed = Api::<KubeNode>::all(client.clone())
                .list(&emulated)
                .await
                .map_err(|e| LiveError::kube("list nodes", e))?;
            let names: HashSet<String> =
                listed.items.iter().filter_map(|n| n.metadata.name.clone()).collect();
            let with = |key: &str| -> HashSet<String> {
                listed
                    .items
                    .iter()
                    .filter(|n| node::flagged(n, key))
                    .filter_map(|n| n.metadata.name.clone())
                    .collect()
            };
            let (down, stuck) = (with(node::DOWN), with(node::STUCK));
            if beat_at.is_none_or(|t| t.elapsed() >= heartbeat) || down != was_down {
                for n in scenario.nodes.iter().filter(|n| names.contains(&n.name)) {
                    node::heartbeat(client, n, down.contains(&n.name)).await?;
                }
                // Nodes added since it started (--add-node) beat too.
                for added in listed
                    .items
                    .iter()
                    .map(live::live_node)
                    .filter(|n| scenario.node_index(&n.name).is_none())
                {
                    node::heartbeat(client, &node::played(&added)?, down.contains(&added.name)).await?;
                }
                beat_at = Some(Instant::now());
                was_down = down.clone();
            }
            kubelets.sync(client, &scenario, &names, &down, &stuck).await?;
            if metrics_at.is_none_or(|t| t.elapsed() >= metrics_every) {
                let clock = args.clock_speed.unwrap_or(args.speed);
                let t_s = args.start_hour * 3600.0 + started.elapsed().as_secs_f64() * clock;
                match load::publish(client, &scenario, &args.namespace, t_s).await {
                    // Until the workloads exist there is nothing to measure.
                    Ok(()) | Err(LiveError::Mismatch { .. }) => metrics_at = Some(Instant::now()),
                    Err(e) => return Err(e),
                }
            }
            Ok::<(), LiveError>(())
        };
        match pass.await {
            Ok(()) => {}
            Err(e) if e.is_forbidden() => return Err(e.into()),
            // A kubelet keeps going through API server hiccups; so does the emulator.
            Err(e) => eprintln!("emulate: {e}"),
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    eprintln!("emulate: stopped");
    Ok(())
}
