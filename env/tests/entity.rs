//! The entity observation: rows whose width depends only on the services, features within
//! their units on any cluster and state, and values that follow the state they describe.

mod common;

use std::sync::Arc;

use berth_core::{Rng, Scenario};
use berth_env::entity::{self, EntityObs, GLOBAL_FEATURES, NODE_FEATURES, pair_features};
use berth_env::{Env, Move, PlacementEnv};

const TINY: &str = include_str!("../../scenarios/tiny.yaml");

fn observed(env: &PlacementEnv) -> EntityObs {
    let mut obs = EntityObs::default();
    entity::observe(env, &mut obs);
    obs
}

#[test]
fn rows_have_the_same_width_on_a_cluster_with_a_node_more_or_less() {
    let more = TINY.replace(
        "services:",
        "  - {name: l4-c, zone: zone-b, cpu_millicores: 16000, memory_mib: 65536, gpu: {count: 1, model: l4, memory_mib: 24576}}\nservices:",
    );
    let fewer = TINY.replacen("  - name: l4-a\n", "  - name: l4-gone\n", 1).replace(
        "  - name: l4-gone\n    zone: zone-a\n    cpu_millicores: 16000\n    memory_mib: 65536\n    gpu: {count: 1, model: l4, memory_mib: 24576}      # L4 24 GB (FIGURES.md, GPUs)\n",
        "",
    );
    let mut widths = Vec::new();
    for (yaml, nodes) in [(TINY.to_string(), 3), (more, 4), (fewer, 2)] {
        let env = PlacementEnv::new(Arc::new(Scenario::from_yaml(&yaml).unwrap())).unwrap();
        let obs = observed(&env);
        assert_eq!(obs.nodes.len(), nodes * obs.node_width());
        assert_eq!(obs.replicas.len(), 2 * obs.replica_width());
        assert_eq!(obs.global.len(), GLOBAL_FEATURES.len());
        widths.push((obs.node_width(), obs.replica_width(), obs.group_width()));
    }
    assert!(widths.windows(2).all(|w| w[0] == w[1]), "{widths:?}");
}

#[test]
fn every_feature_stays_within_its_unit_on_random_clusters() {
    let shape = common::Shape { nodes: 7, services: 3, max_replicas: 3, failures: true, sharing: true };
    let mut checked = 0;
    for seed in 0..40 {
        let Some(scenario) = common::random_scenario(seed, &shape) else { continue };
        let Ok(mut env) = PlacementEnv::new(scenario) else { continue };
        let mut rng = Rng::new(seed);
        env.reset(seed);
        let mut obs = EntityObs::default();
        for _ in 0..24 {
            entity::observe(&env, &mut obs);
            for (block, values) in [
                ("nodes", &obs.nodes),
                ("replicas", &obs.replicas),
                ("groups", &obs.groups),
                ("global", &obs.global),
            ] {
                assert!(values.iter().all(|v| (0.0..=1.0).contains(v)), "seed {seed}: {block} {values:?}");
            }
            let (r, n) = (rng.below(env.placement().len()), rng.below(env.node_count()));
            let pair = pair_features(&env, r, n);
            assert!(
                pair[..3].iter().all(|v| (0.0..=1.0).contains(v)) && (-1.0..=1.0).contains(&pair[3]),
                "{pair:?}"
            );
            assert_eq!(pair[0] == 1.0, env.action_mask()[env.encode(Move { replica: r, node: n })]);
            let open: Vec<usize> = (0..env.action_count()).filter(|&a| env.action_mask()[a]).collect();
            env.step(open[rng.below(open.len())]).unwrap();
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} random scenarios were placeable");
}

#[test]
fn features_follow_the_state() {
    let mut env = PlacementEnv::new(berth_env::shipped::shipped("tiny").unwrap()).unwrap();
    env.reset(1);
    let obs = observed(&env);
    let width = obs.node_width();
    let col = |name: &str| NODE_FEATURES.iter().position(|f| *f == name).unwrap();
    let free = (0..3).find(|n| !env.placement().contains(n)).unwrap();
    let node = |obs: &EntityObs, n: usize, name: &str| obs.nodes[n * width + col(name)];
    assert_eq!(node(&obs, free, "gpus_taken"), 0.0);
    assert_eq!(node(&obs, free, "gpu_free"), 1.0);
    assert_eq!(obs.nodes[free * width + NODE_FEATURES.len()], 1.0, "a replica fits on the free node");
    let used = env.placement()[0];
    assert_eq!(node(&obs, used, "gpus_taken"), 1.0);
    let zone_demand: f32 = (0..3).map(|n| node(&obs, n, "zone_demand")).sum::<f32>();
    assert!(zone_demand > 1.0, "three nodes in two zones share the demand: {zone_demand}");
    assert_eq!(obs.replica_node, env.placement().iter().map(|&n| n as u32).collect::<Vec<_>>());

    // Move replica 0 to the free node: the node rows swap, and its time is the new node's
    // (its 45 s cold start is over by the end of the 15-minute tick).
    let action = env.encode(Move { replica: 0, node: free });
    env.step(action).unwrap();
    let after = observed(&env);
    assert_eq!(node(&after, free, "gpus_taken"), 1.0);
    assert_eq!(node(&after, used, "gpus_taken"), 0.0);
    let features = after.replica_width() - entity::REPLICA_FEATURES.len();
    let scenario = env.scenario();
    let time = (scenario.service_time_ms(0, free).unwrap() / scenario.slo_ms) as f32;
    assert_eq!(after.replicas[features..features + 4], [0.0, 0.0, after.replicas[features + 2], time]);
    assert_eq!(after.replica_node[0] as usize, free);
}

#[test]
fn spreading_features_count_each_services_replicas_per_node_and_widen_the_rows_by_their_count() {
    use entity::{NODE_SPREAD_FEATURES, REPLICA_SPREAD_FEATURES};
    let shape = common::Shape { nodes: 7, services: 3, max_replicas: 3, failures: true, sharing: true };
    let (mut plain, mut with) = (EntityObs::default(), EntityObs { spread: true, ..EntityObs::default() });
    let checked = common::random_walks(0..30, &shape, 12, |seed, env| {
        let scenario = env.scenario();
        let services = scenario.services.len();
        entity::observe(env, &mut plain);
        entity::observe(env, &mut with);
        let (wp, wn) = (plain.node_width(), with.node_width());
        assert_eq!(wn, wp + NODE_SPREAD_FEATURES.len() * services);
        assert_eq!(with.replica_width(), plain.replica_width() + REPLICA_SPREAD_FEATURES.len());
        for (n, (row_p, row)) in plain.nodes.chunks(wp).zip(with.nodes.chunks(wn)).enumerate() {
            assert_eq!(row_p, &row[..wp], "seed {seed}: node {n}'s other features");
            for (s, &share) in row[wp..].iter().enumerate() {
                let here = (0..env.placement().len())
                    .filter(|&r| env.placement()[r] == n && env.replica_service()[r] == s)
                    .count();
                let want = here as f32 / scenario.services[s].replicas as f32;
                assert!(
                    (share - want).abs() < 1e-6,
                    "seed {seed}: service {s} on node {n}: {share} against {want}"
                );
            }
        }
        let (rp, rw) = (plain.replica_width(), with.replica_width());
        for (r, (row_p, row)) in plain.replicas.chunks(rp).zip(with.replicas.chunks(rw)).enumerate() {
            assert_eq!(row_p, &row[..rp], "seed {seed}: replica {r}'s other features");
            let (n, s) = (env.placement()[r], env.replica_service()[r]);
            assert_eq!(
                row[rp],
                with.nodes[n * wn + wp + s],
                "seed {seed}: replica {r} reads its node's share"
            );
            assert!(row[rp] > 0.0, "seed {seed}: a replica counts itself");
        }
    });
    assert!(checked > 100, "only {checked} states checked");
}

/// The candidate rows of `per_service` and the full observation of the same state.
fn both_views(env: &PlacementEnv, per_service: usize) -> (EntityObs, EntityObs) {
    let mut rows = EntityObs::default();
    entity::observe_candidates(env, per_service, &mut rows);
    (rows, observed(env))
}

#[test]
fn candidate_rows_are_the_full_rows_of_the_nodes_replicas_run_on_and_the_best_targets() {
    let mut env = PlacementEnv::new(berth_env::shipped::shipped("gpu-large").unwrap()).unwrap();
    env.reset(3);
    let mut rng = Rng::new(3);
    for tick in 0..40 {
        let (rows, full) = both_views(&env, 4);
        let w = rows.node_width();
        assert!(rows.node_ids.windows(2).all(|p| p[0] < p[1]), "ascending and distinct");
        let hosting: std::collections::BTreeSet<usize> = env.placement().iter().copied().collect();
        let services = env.scenario().services.len();
        assert!(
            rows.node_ids.len() <= hosting.len() + 4 * services,
            "tick {tick}: {} rows",
            rows.node_ids.len()
        );
        assert!(rows.node_ids.len() > hosting.len(), "some candidate besides the replicas' nodes");
        for (row, &n) in rows.node_ids.iter().enumerate() {
            let n = n as usize;
            assert_eq!(rows.nodes[row * w..(row + 1) * w], full.nodes[n * w..(n + 1) * w], "node {n}");
            assert_eq!(rows.node_zone[row], full.node_zone[n]);
            // A candidate no replica runs on is a ready node some service fits on now.
            if !hosting.contains(&n) {
                let fits = (0..services).any(|s| env.cluster_view().fits(s, n));
                assert!(env.node_ready()[n] && fits, "node {n}");
            }
        }
        // Replica rows are unchanged; their edges point at their nodes' rows.
        assert_eq!(rows.replicas, full.replicas);
        assert_eq!((rows.groups.clone(), rows.global.clone()), (full.groups, full.global));
        for (r, &row) in rows.replica_node.iter().enumerate() {
            assert_eq!(rows.node_ids[row as usize] as usize, env.placement()[r]);
        }
        let open: Vec<usize> = (0..env.action_count()).filter(|&a| env.action_mask()[a]).collect();
        let keep = open[0] == 0 && rng.below(4) > 0;
        env.step(if keep { 0 } else { open[rng.below(open.len())] }).unwrap();
    }
    // As many candidates as nodes: every node is a row, as without candidates.
    let (rows, full) = both_views(&env, env.node_count());
    assert_eq!(rows, full);
}

#[test]
fn candidate_rows_always_leave_an_action_open() {
    let shape = common::Shape { nodes: 7, services: 3, max_replicas: 3, failures: true, sharing: true };
    let mut narrowed = 0;
    let mut rows = EntityObs::default();
    common::random_walks(0..40, &shape, 24, |seed, env| {
        entity::observe_candidates(env, 1, &mut rows);
        narrowed += usize::from(rows.node_ids.len() < env.node_count());
        let (mask, nodes) = (env.action_mask(), env.node_count());
        let open = mask[0]
            || (0..env.placement().len())
                .any(|r| rows.node_ids.iter().any(|&n| mask[1 + r * nodes + n as usize]));
        assert!(open, "seed {seed}: nothing open among the rows {:?}", rows.node_ids);
    });
    assert!(narrowed > 100, "the candidates left out some node only {narrowed} times");
}
