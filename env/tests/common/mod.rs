//! Random scenarios for property tests: small clusters with random zones, CPUs, memory and
//! GPUs, random services and user groups, written as YAML so the loader is exercised too.

#![allow(dead_code)]

use std::fmt::Write;
use std::sync::Arc;

use berth_core::{Rng, Scenario};

/// Sizes of a random scenario.
pub struct Shape {
    pub nodes: usize,
    pub services: usize,
    pub max_replicas: usize,
    pub failures: bool,
    /// GPUs may be MIG-partitioned or time-sliced, and GPU services accept slots.
    pub sharing: bool,
}

/// MIG layouts of one 80 GB GPU that random scenarios draw from.
const MIG_LAYOUTS: [&str; 4] = [
    "[1g.10gb, 1g.10gb, 1g.10gb]",
    "[3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb]",
    "[2g.20gb, 1g.20gb]",
    "[7g.80gb]",
];

/// A random valid scenario of roughly `shape`, or `None` when the draw is not placeable.
pub fn random_scenario(seed: u64, shape: &Shape) -> Option<Arc<Scenario>> {
    let mut rng = Rng::new(seed);
    let zones = 1 + rng.below(3);
    let routing = ["uniform", "topology_aware", "least_latency"][rng.below(3)];
    let mut y = String::new();
    writeln!(y, "name: random-{seed}\ntick_s: 300\nepisode_ticks: 24\nslo_ms: 200\ntimeout_ms: 2000")
        .unwrap();
    writeln!(y, "routing: {routing}\nreward: {{violation: 1.0, move: 0.05}}").unwrap();
    writeln!(y, "zones: [{}]", (0..zones).map(|z| format!("z{z}")).collect::<Vec<_>>().join(", ")).unwrap();
    writeln!(y, "rtt_ms:").unwrap();
    for a in 0..zones {
        let row: Vec<String> = (0..zones)
            .map(|b| if a == b { "0.5".into() } else { format!("{}", 10 + 10 * (a + b)) })
            .collect();
        writeln!(y, "  - [{}]", row.join(", ")).unwrap();
    }
    writeln!(y, "nodes:").unwrap();
    for n in 0..shape.nodes {
        let kind = rng.below(3);
        let count = if kind == 0 { 0 } else { 1 + rng.below(2) };
        let shared = match (shape.sharing, kind) {
            (false, _) | (_, 0) => String::new(),
            (true, 1) if rng.below(2) == 1 => format!(", time_slicing: {{replicas: {}}}", 2 + rng.below(3)),
            (true, 2) => match rng.below(3) {
                1 => format!(", mig: {}", MIG_LAYOUTS[rng.below(MIG_LAYOUTS.len())]),
                2 => format!(", time_slicing: {{replicas: {}}}", 2 + rng.below(3)),
                _ => String::new(),
            },
            _ => String::new(),
        };
        let gpu = match kind {
            0 => String::new(),
            1 => format!(", gpu: {{count: {count}, model: l4, memory_mib: 24576{shared}}}"),
            _ => format!(", gpu: {{count: {count}, model: h100, memory_mib: 81920{shared}}}"),
        };
        writeln!(
            y,
            "  - {{name: n{n}, zone: z{}, cpu_millicores: {}, memory_mib: {}{gpu}}}",
            rng.below(zones),
            4000 * (1 + rng.below(4)),
            8192 * (1 + rng.below(4))
        )
        .unwrap();
    }
    writeln!(y, "services:").unwrap();
    for s in 0..shape.services {
        let replicas = 1 + rng.below(shape.max_replicas);
        if rng.below(2) == 0 {
            let (cpu, gpu_memory) = (1000 * (1 + rng.below(3)), [8192, 16384, 40960][rng.below(3)]);
            let accepts = match (shape.sharing, if shape.sharing { rng.below(4) } else { 0 }) {
                (true, 1) => ", accepts: {mig: 1g.10gb}",
                (true, 2) => ", accepts: {mig: 2g.20gb, time_sliced: true}",
                (true, 3) => ", accepts: {time_sliced: true}",
                _ => "",
            };
            writeln!(
                y,
                "  - {{name: s{s}, replicas: {replicas}, requests: {{cpu_millicores: {cpu}, memory_mib: 4096, gpus: 1, gpu_memory_mib: {gpu_memory}{accepts}}}, service_time_ms: {{h100: 8, l4: 25}}, cold_start_s: 40}}",
            )
            .unwrap();
        } else {
            writeln!(
                y,
                "  - {{name: s{s}, replicas: {replicas}, requests: {{cpu_millicores: {}, memory_mib: 2048}}, service_time_ms: {{cpu: {}}}, cold_start_s: 400}}",
                1000 * (1 + rng.below(4)),
                5 + rng.below(40)
            )
            .unwrap();
        }
    }
    writeln!(y, "user_groups:").unwrap();
    for g in 0..1 + rng.below(3) {
        let chain: Vec<String> =
            (0..shape.services).filter(|_| rng.below(3) != 0).map(|s| format!("s{s}")).collect();
        let chain = if chain.is_empty() { "s0".to_string() } else { chain.join(", ") };
        writeln!(
            y,
            "  - {{name: g{g}, zone: z{}, rate: {{base_rps: {}, amplitude: 0.5, noise: 0.1}}, chain: [{chain}]}}",
            rng.below(zones),
            5 + rng.below(40)
        )
        .unwrap();
    }
    if shape.failures {
        writeln!(y, "failures: {{mtbf_hours: 4, mttr_minutes: 40}}").unwrap();
    }
    Scenario::from_yaml(&y).ok().map(Arc::new)
}

/// Walks `ticks` random allowed moves on each random scenario of `shape` drawn from `seeds`
/// that is placeable, calling `check(seed, env)` before every move; returns the states checked.
pub fn random_walks(
    seeds: std::ops::Range<u64>,
    shape: &Shape,
    ticks: usize,
    mut check: impl FnMut(u64, &berth_env::PlacementEnv),
) -> usize {
    use berth_env::Env;
    let mut checked = 0;
    for seed in seeds {
        let Some(scenario) = random_scenario(seed, shape) else { continue };
        let Ok(mut env) = berth_env::PlacementEnv::new(scenario) else { continue };
        let mut rng = Rng::new(seed);
        env.reset(seed);
        for _ in 0..ticks {
            check(seed, &env);
            checked += 1;
            let allowed: Vec<usize> =
                (0..env.action_mask().len()).filter(|&a| env.action_mask()[a]).collect();
            env.step(allowed[rng.below(allowed.len())]).unwrap();
        }
    }
    checked
}
