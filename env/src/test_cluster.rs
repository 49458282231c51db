//! Hand-built clusters for the baselines' worked cases: nodes and services given as short
//! lists, placed where the test says.

use std::fmt::Write;
use std::sync::Arc;

use berth_core::{Rng, Scenario};

use crate::{PlacementEnv, StartState, scheduler};

/// A node: name, zone (`a` or `b`), millicores, GPUs (model `g`, 40 GiB each).
pub struct N(pub &'static str, pub &'static str, pub u64, pub u32);

/// A service: name, replicas, millicores per replica, GPUs per replica.
pub struct S(pub &'static str, pub u32, pub u64, pub u32);

/// The scenario of these nodes and services: 64 GiB a node, 1 GiB a replica, one user group
/// in zone `a` calling every service, no failures.
pub fn scenario(nodes: &[N], services: &[S]) -> Arc<Scenario> {
    let mut y = String::from(
        "name: hand\ntick_s: 300\nepisode_ticks: 4\nslo_ms: 500\ntimeout_ms: 3000\nrouting: uniform\n\
         reward: {violation: 2.0, move: 0.02}\nzones: [a, b]\nrtt_ms: [[0.3, 20.0], [20.0, 0.3]]\nnodes:\n",
    );
    for N(name, zone, cpu, gpus) in nodes {
        write!(y, "  - {{name: {name}, zone: {zone}, cpu_millicores: {cpu}, memory_mib: 65536").unwrap();
        if *gpus > 0 {
            write!(y, ", gpu: {{count: {gpus}, model: g, memory_mib: 40960}}").unwrap();
        }
        y.push_str("}\n");
    }
    y.push_str("services:\n");
    for S(name, replicas, cpu, gpus) in services {
        let (gpu_req, time) = if *gpus > 0 {
            (format!(", gpus: {gpus}, gpu_memory_mib: 8192"), "{g: 10.0}")
        } else {
            (String::new(), "{cpu: 10.0}")
        };
        writeln!(
            y,
            "  - {{name: {name}, replicas: {replicas}, requests: {{cpu_millicores: {cpu}, memory_mib: 1024{gpu_req}}}, \
             service_time_ms: {time}, cold_start_s: 10}}"
        )
        .unwrap();
    }
    let chain: Vec<&str> = services.iter().map(|s| s.0).collect();
    writeln!(
        y,
        "user_groups:\n  - {{name: u, zone: a, rate: {{base_rps: 1}}, chain: [{}]}}",
        chain.join(", ")
    )
    .unwrap();
    Arc::new(Scenario::from_yaml(&y).unwrap())
}

/// An env of `scenario` reset with its replicas on `placement`.
pub fn placed(scenario: Arc<Scenario>, placement: &[usize]) -> PlacementEnv {
    let mut env = PlacementEnv::new(scenario).unwrap();
    env.reset_placed(1, placement).unwrap();
    env
}

/// `env`'s scenario from a random placement at a random tick per seed of `seeds`, every node
/// Ready, each handed to `check` with its seed.
pub fn random_states(
    env: &mut PlacementEnv,
    seeds: std::ops::Range<u64>,
    mut check: impl FnMut(&PlacementEnv, u64),
) {
    let scenario = env.scenario().clone();
    let fallback = scheduler::spread_placement(&scenario).unwrap();
    for seed in seeds {
        let mut rng = Rng::new(seed);
        let placement = scheduler::random_placement(&scenario, &mut rng, &fallback).nodes;
        let tick = rng.below(scenario.episode_ticks as usize) as u32;
        let node_ready = vec![true; scenario.nodes.len()];
        let start = StartState { placement, node_ready, tick, held: Vec::new() };
        env.reset_at(seed, &start).unwrap();
        check(env, seed);
    }
}

/// Shipped scenario `name` with the node holding most replicas at the start scripted to fail
/// at noon: replicas must be evacuated, and many at once.
pub fn busiest_node_fails_at_noon(name: &str) -> Arc<Scenario> {
    let mut scenario = (*crate::shipped::load(name).unwrap()).clone();
    let start = PlacementEnv::new(Arc::new(scenario.clone())).unwrap().placement().to_vec();
    let node = (0..scenario.nodes.len()).max_by_key(|&n| start.iter().filter(|&&m| m == n).count()).unwrap();
    let kind = berth_core::NodeEventKind::Fail;
    scenario.failures.events.push(berth_core::NodeEvent { at_s: 43_200.0, node, kind });
    Arc::new(scenario)
}
