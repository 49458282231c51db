//! The oracle against brute force, and the ordering oracle <= greedy <= spread.

mod common;

use berth_core::sharing::{self, GpuSharing};
use berth_core::{NodeUsage, Placement, Resources, Scenario};
use berth_env::Error;
use berth_env::cost::{CostModel, ReplicaView};
use berth_env::evaluate::{Contender, DayStart, compare};
use berth_env::oracle::Oracle;
use berth_env::shipped::shipped;

/// Lowest tick cost over every feasible placement, by enumerating all N^R of them; a
/// replica on a NotReady node serves nothing.
fn brute_force(scenario: &Scenario, rates: &[f64], ready: &[bool]) -> f64 {
    let model = CostModel::new(scenario);
    let services = scenario.replica_services();
    let (n, r) = (scenario.nodes.len(), services.len());
    let mut best = f64::INFINITY;
    for code in 0..n.pow(r as u32) {
        let nodes: Vec<usize> = (0..r).map(|i| code / n.pow(i as u32) % n).collect();
        if !Placement::new(nodes.clone()).is_feasible(scenario) {
            continue;
        }
        let views: Vec<ReplicaView> = (0..r)
            .map(|i| ReplicaView {
                service: services[i],
                zone: scenario.nodes[nodes[i]].zone,
                service_time_ms: scenario.service_time_ms(services[i], nodes[i]).unwrap(),
                up: ready[nodes[i]],
            })
            .collect();
        best = best.min(model.score(&views, rates).cost);
    }
    best
}

/// Lowest tick cost over every feasible placement of replicas on (node, slot) pairs, where
/// shared GPUs offer each of their slots (not only the one a move would take): slots held
/// once and accepted, a time-sliced GPU's tenants within its memory, each tenant slowed by
/// the tenants it really has.
fn brute_force_seated(scenario: &Scenario, rates: &[f64], ready: &[bool]) -> f64 {
    let model = CostModel::new(scenario);
    let services = scenario.replica_services();
    let options: Vec<Vec<(usize, Option<usize>)>> = services
        .iter()
        .map(|&s| {
            let req = &scenario.services[s].requests;
            (0..scenario.nodes.len())
                .filter(|&n| scenario.service_time_ms(s, n).is_some())
                .flat_map(|n| {
                    match scenario.nodes[n].gpu.as_ref().filter(|g| g.sharing.is_shared() && req.gpus > 0) {
                        Some(g) => {
                            (0..g.count as usize * g.sharing.slots_per_gpu()).map(|i| (n, Some(i))).collect()
                        }
                        None => vec![(n, None)],
                    }
                })
                .collect()
        })
        .collect();
    let total: usize = options.iter().map(Vec::len).product();
    let mut best = f64::INFINITY;
    'codes: for code in 0..total {
        let mut rest = code;
        let seats: Vec<(usize, Option<usize>)> = options
            .iter()
            .map(|o| {
                let pick = o[rest % o.len()];
                rest /= o.len();
                pick
            })
            .collect();
        let mut usage = vec![NodeUsage::default(); scenario.nodes.len()];
        for (r, &(n, seat)) in seats.iter().enumerate() {
            let (node, req) = (&scenario.nodes[n], &scenario.services[services[r]].requests);
            let cpu_memory_fit = usage[n].fits(&node.allocatable, None, &Resources { gpus: 0, ..*req });
            match (seat, node.gpu.as_ref()) {
                (Some(i), Some(gpu)) => {
                    let accepted = match &gpu.sharing {
                        GpuSharing::Mig(layout) => {
                            let p = layout.instances()[i % layout.instances().len()].profile;
                            req.accepts.takes_instance(p)
                                && p.memory_mib(gpu.memory_mib) >= req.gpu_memory_mib
                        }
                        _ => {
                            let k = gpu.sharing.slots_per_gpu();
                            let g = i / k;
                            let used: u64 = usage[n].slots.iter().skip(g * k).take(k).sum();
                            req.accepts.time_sliced && used + req.gpu_memory_mib <= gpu.memory_mib
                        }
                    };
                    let free = usage[n].slots.get(i).is_none_or(|&m| m == 0);
                    if !(cpu_memory_fit && accepted && free) {
                        continue 'codes;
                    }
                    usage[n].take_slot(gpu, req, i);
                }
                _ => {
                    if !usage[n].fits(&node.allocatable, node.gpu.as_ref(), req) {
                        continue 'codes;
                    }
                    usage[n].add(req);
                }
            }
        }
        let views: Vec<ReplicaView> = (0..seats.len())
            .map(|r| {
                let (n, seat) = seats[r];
                let base = scenario.service_time_ms(services[r], n).unwrap();
                let slowdown = match (seat, &scenario.nodes[n].gpu) {
                    (Some(i), Some(gpu)) => sharing::slowdown(&gpu.sharing, &usage[n].slots, i),
                    _ => 1.0,
                };
                ReplicaView {
                    service: services[r],
                    zone: scenario.nodes[n].zone,
                    service_time_ms: base * slowdown,
                    up: ready[n],
                }
            })
            .collect();
        best = best.min(model.score(&views, rates).cost);
    }
    best
}

/// The oracle against brute force on 60 random small scenarios (from `first_seed`), at three
/// traffic levels, with all nodes Ready and, when nodes can fail, with the first or the last
/// one down.
fn check_against_brute_force(first_seed: u64, failures: bool, sharing: bool) {
    let shape = common::Shape { nodes: 4, services: 2, max_replicas: 2, failures, sharing };
    let mut compared = 0;
    for seed in first_seed..first_seed + 60 {
        let Some(scenario) = common::random_scenario(seed, &shape) else { continue };
        let mut oracle = Oracle::new(scenario.clone()).unwrap();
        let n = scenario.nodes.len();
        let downs = if failures { vec![None, Some(0), Some(n - 1)] } else { vec![None] };
        for down in downs {
            let ready: Vec<bool> = (0..n).map(|i| Some(i) != down).collect();
            for scale in [0.5, 1.0, 3.0] {
                let rates: Vec<f64> = scenario.user_groups.iter().map(|g| g.rate.base_rps * scale).collect();
                let expected = if sharing {
                    brute_force_seated(&scenario, &rates, &ready)
                } else {
                    brute_force(&scenario, &rates, &ready)
                };
                let got = oracle.best(&rates, &ready).map_or(f64::INFINITY, |m| m.cost);
                assert!(
                    (got - expected).abs() < 1e-9 || got == expected,
                    "scenario {seed}, node {down:?} down, x{scale}: oracle {got}, brute force {expected}"
                );
            }
        }
        compared += 1;
    }
    assert!(compared >= 20, "{compared}");
}

#[test]
fn oracle_matches_brute_force_on_random_tiny_instances() {
    check_against_brute_force(500, false, false);
}

/// On MIG instances the oracle may choose any instance, not only the smallest; on
/// time-sliced GPUs it searches tenants jointly, as their costs depend on each other.
#[test]
fn oracle_matches_brute_force_on_shared_gpus() {
    check_against_brute_force(3000, false, true);
    check_against_brute_force(3100, true, true);
}

/// With failures possible the oracle may leave replicas on NotReady nodes, but only where
/// they fit: it must not switch replicas off while every node is Ready (a policy cannot).
#[test]
fn oracle_matches_brute_force_when_nodes_fail() {
    check_against_brute_force(900, true, false);
}

#[test]
fn oracle_is_at_most_greedy_and_greedy_at_most_spread_on_gpu_small() {
    let scenario = shipped("gpu-small").unwrap();
    for seed in [1, 2, 3] {
        let contenders = ["spread", "greedy", "oracle"].map(|n| Contender::named(n).unwrap()).into();
        let (rows, note) =
            compare(scenario.clone(), contenders, 2, seed, DayStart::Fresh, &mut || {}).unwrap();
        assert!(note.is_none());
        let cost = |p: &str| -rows.iter().find(|r| r.policy == p).unwrap().reward;
        assert!(cost("oracle") <= cost("greedy"), "seed {seed}: {rows:?}");
        assert!(cost("greedy") <= cost("spread"), "seed {seed}: {rows:?}");
        assert_eq!(rows.iter().find(|r| r.policy == "oracle").unwrap().gap_to_oracle, Some(0.0));
    }
}

#[test]
fn oracle_refuses_scenarios_too_large_to_search() {
    for name in ["gpu-medium", "gpu-large"] {
        match Oracle::new(shipped(name).unwrap()) {
            Err(Error::OracleRefused(why)) => assert!(why.contains("limit"), "{why}"),
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
    }
}
