//! The scenario document of a discovery: what was read from the cluster, and the figures a
//! cluster does not hold (traffic, service times, round trips, failures) filled from
//! documented defaults, each listed so the user knows what to check.

use std::fmt::Write;

use berth_core::GpuSharing;

use super::Findings;
use super::nodes::FoundNodes;
use super::services::FoundService;

/// Scenario-wide figures: gpu-small's (`scenarios/gpu-small.yaml` gives their sources).
const TICK_S: u32 = 300;
const EPISODE_TICKS: u32 = 288;
const SLO_MS: f64 = 500.0;
const TIMEOUT_MS: f64 = 3000.0;
const VIOLATION: f64 = 2.0;
const MOVE: f64 = 0.02;
const RTT_SAME_ZONE_MS: f64 = 0.3;
const RTT_CROSS_ZONE_MS: f64 = 20.0;
const MTBF_HOURS: f64 = 240.0;
const MTTR_MINUTES: f64 = 60.0;
/// Each zone's user group: requests per second, daily swing, per-tick noise.
const BASE_RPS: f64 = 5.0;
const AMPLITUDE: f64 = 0.6;
const NOISE: f64 = 0.05;

/// The services a request passes through in this order when their names are berth's.
const CHAIN_ORDER: [&str; 3] = ["router", "infinity-embed", "rerank"];

/// What a cluster does not say about a service.
struct ServiceFigures {
    /// Milliseconds a request takes: on a CPU, or on an L4 for a GPU service.
    ms: f64,
    cold_start_s: f64,
    gpu_memory_mib: u64,
    source: &'static str,
}

/// Orders services as a request passes them: berth's own first, in [`CHAIN_ORDER`], then the
/// rest by name. The user groups' chain follows this order.
pub(super) fn sort_as_chain(services: &mut [FoundService]) {
    services.sort_by(|a, b| {
        let key =
            |s: &FoundService| CHAIN_ORDER.iter().position(|k| *k == s.name).unwrap_or(CHAIN_ORDER.len());
        (key(a), &a.name).cmp(&(key(b), &b.name))
    });
}

fn service_figures(name: &str, gpu: bool) -> ServiceFigures {
    let gpu_small = "berth's figures for it (scenarios/gpu-small.yaml)";
    match name {
        "router" => ServiceFigures { ms: 1.5, cold_start_s: 5.0, gpu_memory_mib: 0, source: gpu_small },
        "infinity-embed" => {
            ServiceFigures { ms: 30.0, cold_start_s: 45.0, gpu_memory_mib: 8192, source: gpu_small }
        }
        "rerank" => ServiceFigures { ms: 60.0, cold_start_s: 20.0, gpu_memory_mib: 0, source: gpu_small },
        _ if gpu => ServiceFigures {
            ms: 30.0,
            cold_start_s: 45.0,
            gpu_memory_mib: 8192,
            source: "defaults for a GPU service (infinity-embed's)",
        },
        _ => ServiceFigures {
            ms: 10.0,
            cold_start_s: 10.0,
            gpu_memory_mib: 0,
            source: "defaults for a CPU service",
        },
    }
}

/// A YAML string: JSON's quoting is valid YAML and never reads as a number or a boolean.
fn q(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The services' `service_time_ms`: a CPU service's time on `cpu`; a GPU service's L4 time
/// divided by each GPU class's speed.
fn service_times(service: &FoundService, figures: &ServiceFigures, nodes: &FoundNodes) -> Vec<(String, f64)> {
    if service.requests.gpus == 0 {
        return vec![(berth_core::CPU_CLASS.into(), figures.ms)];
    }
    nodes.speeds.iter().map(|(class, speed)| (class.clone(), round2(figures.ms / speed))).collect()
}

/// The document, and every default it took recorded in `findings`.
pub(super) fn document(
    name: &str,
    namespace: &str,
    nodes: &FoundNodes,
    services: &[FoundService],
    findings: &mut Findings,
) -> String {
    let mut zones: Vec<&str> = nodes.nodes.iter().map(|n| n.zone.as_str()).collect();
    zones.dedup();
    let chain: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();

    findings.fill(format!(
        "tick {TICK_S} s, a day of {EPISODE_TICKS} ticks, SLO {SLO_MS} ms, timeout {TIMEOUT_MS} ms, reward \
         violation {VIOLATION} and move {MOVE} (gpu-small's)"
    ));
    findings.fill(format!(
        "round trips {RTT_SAME_ZONE_MS} ms within a zone, {RTT_CROSS_ZONE_MS} ms between zones"
    ));
    findings.fill(format!("failures: one per node every {MTBF_HOURS} h, {MTTR_MINUTES} min to repair"));
    findings.fill(format!(
        "traffic: one user group per zone, {BASE_RPS} requests/s ±{:.0}% over a day, through {}; set yours, or \
         follow a recorded series (`berth scenario trace`)",
        AMPLITUDE * 100.0,
        chain.join(" → ")
    ));

    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "name: {}", q(name));
    let _ = writeln!(
        w,
        "description: {}",
        q(&format!(
            "Discovered from the cluster: {} nodes, services of namespace {namespace}.",
            nodes.nodes.len()
        ))
    );
    let _ = writeln!(w, "seed: 1\ntick_s: {TICK_S}\nepisode_ticks: {EPISODE_TICKS}");
    let _ = writeln!(w, "slo_ms: {SLO_MS}\ntimeout_ms: {TIMEOUT_MS}\nrouting: topology_aware");
    let _ = writeln!(w, "reward:\n  violation: {VIOLATION}\n  move: {MOVE}");
    let quoted: Vec<String> = zones.iter().map(|z| q(z)).collect();
    let _ = writeln!(w, "zones: [{}]\nrtt_ms:", quoted.join(", "));
    for a in 0..zones.len() {
        let row: Vec<String> = (0..zones.len())
            .map(|b| format!("{:?}", if a == b { RTT_SAME_ZONE_MS } else { RTT_CROSS_ZONE_MS }))
            .collect();
        let _ = writeln!(w, "  - [{}]", row.join(", "));
    }
    let _ = writeln!(w, "nodes:");
    for n in &nodes.nodes {
        let gpu = n.gpu.as_ref().map_or(String::new(), |g| {
            let shared = match &g.sharing {
                GpuSharing::Whole => String::new(),
                GpuSharing::Mig(layout) => {
                    let names: Vec<&str> = layout.instances().iter().map(|i| i.profile.name()).collect();
                    format!(", mig: [{}]", names.join(", "))
                }
                GpuSharing::TimeSliced { replicas, .. } => {
                    format!(", time_slicing: {{replicas: {replicas}}}")
                }
            };
            format!(
                ", gpu: {{count: {}, model: {}, memory_mib: {}{shared}}}",
                g.count,
                q(&g.class),
                g.memory_mib
            )
        });
        let _ = writeln!(
            w,
            "  - {{name: {}, zone: {}, cpu_millicores: {}, memory_mib: {}{gpu}}}",
            q(&n.name),
            q(&n.zone),
            n.cpu_millicores,
            n.memory_mib
        );
    }
    let _ = writeln!(w, "services:");
    for s in services {
        let figures = service_figures(&s.name, s.requests.gpus > 0);
        let times = service_times(s, &figures, nodes);
        let times_text: Vec<String> = times.iter().map(|(c, ms)| format!("{}: {ms:?}", q(c))).collect();
        let gpu_memory = if s.requests.gpus > 0 {
            format!(", GPU memory {} MiB", figures.gpu_memory_mib)
        } else {
            String::new()
        };
        let on: Vec<String> = times.iter().map(|(c, ms)| format!("{ms} ms on {c}")).collect();
        findings.fill(format!(
            "service `{}`: service time {}, cold start {} s{gpu_memory}: {}",
            s.name,
            on.join(", "),
            figures.cold_start_s,
            figures.source
        ));
        let gpus = if s.requests.gpus > 0 {
            let accepts = &s.requests.accepts;
            let mut taken = Vec::new();
            if let Some(profile) = accepts.mig {
                taken.push(format!("mig: {}", profile.name()));
            }
            if accepts.time_sliced {
                taken.push("time_sliced: true".into());
            }
            let accepts =
                if taken.is_empty() { String::new() } else { format!(", accepts: {{{}}}", taken.join(", ")) };
            format!(", gpus: {}, gpu_memory_mib: {}{accepts}", s.requests.gpus, figures.gpu_memory_mib)
        } else {
            String::new()
        };
        let _ = writeln!(w, "  - name: {}\n    replicas: {}", q(&s.name), s.replicas);
        let _ = writeln!(
            w,
            "    requests: {{cpu_millicores: {}, memory_mib: {}{gpus}}}",
            s.requests.cpu_millicores, s.requests.memory_mib
        );
        let _ = writeln!(w, "    service_time_ms: {{{}}}", times_text.join(", "));
        let _ = writeln!(w, "    cold_start_s: {:?}", figures.cold_start_s);
    }
    let _ = writeln!(w, "user_groups:");
    let chain_text: Vec<String> = chain.iter().map(|s| q(s)).collect();
    for zone in &zones {
        let _ = writeln!(w, "  - name: {}\n    zone: {}", q(&format!("users-{zone}")), q(zone));
        let _ = writeln!(w, "    rate: {{base_rps: {BASE_RPS:?}, amplitude: {AMPLITUDE}, noise: {NOISE}}}");
        let _ = writeln!(w, "    chain: [{}]", chain_text.join(", "));
    }
    let _ = writeln!(w, "failures:\n  mtbf_hours: {MTBF_HOURS:?}\n  mttr_minutes: {MTTR_MINUTES:?}");
    out
}
