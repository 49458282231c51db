//! What moves are worth ([`berth_env::gains`]): the per-class shortcut scores every node as a
//! routing of its own would, the features stay within their units, and the estimates say
//! what the cost model says of the replicas they describe.

mod common;

use std::sync::Arc;

use berth_core::Scenario;
use berth_env::baselines::{GreedyPolicy, Policy};
use berth_env::entity::{self, EntityObs, GLOBAL_GAIN_FEATURES, NODE_GAIN_FEATURES, REPLICA_GAIN_FEATURES};
use berth_env::gains::{Gains, MOVE_FEATURES, gains, move_features};
use berth_env::{Env, Move, PlacementEnv};

const TINY: &str = include_str!("../../scenarios/tiny.yaml");

/// `after / now − 1`, clamped, as the gains write it.
fn change(now: f64, after: f64) -> f32 {
    if now > 0.0 { ((after / now) - 1.0).clamp(-1.0, 1.0) as f32 } else { 0.0 }
}

#[test]
fn one_routing_per_class_scores_every_node_as_its_own_routing_would() {
    let shape = common::Shape { nodes: 8, services: 3, max_replicas: 3, failures: true, sharing: false };
    let mut g = Gains::default();
    let mut moves = 0;
    common::random_walks(0..30, &shape, 12, |seed, env| {
        gains(env, &mut g);
        let now = env.steady_cost(None).cost;
        let nodes = env.node_count();
        let mask = env.action_mask();
        let every_node: Vec<u32> = (0..nodes as u32).collect();
        for (r, &s) in env.replica_service().iter().enumerate() {
            assert_eq!(g.removal[r], change(now, env.steady_cost_without(r).cost), "seed {seed}");
            let mut features = Vec::new();
            move_features(env, r, &every_node, &mut features);
            let mut best = f64::INFINITY;
            for n in 0..nodes {
                let row = &features[n * MOVE_FEATURES.len()..(n + 1) * MOVE_FEATURES.len()];
                if !mask[1 + r * nodes + n] {
                    assert_eq!(row, [0.0, 0.0, 1.0], "seed {seed}: replica {r} to node {n}");
                    continue;
                }
                let added = change(now, env.steady_cost_with_added(s, n).cost);
                assert_eq!(g.addition[s * nodes + n], added, "seed {seed}: service {s} on node {n}");
                let after = env.steady_cost(Some(Move { replica: r, node: n })).cost;
                assert_eq!(row[..2], [1.0, change(now, after)], "seed {seed}: replica {r} to node {n}");
                best = best.min(after);
                moves += 1;
            }
            let expected = if best.is_finite() { change(now, best) } else { 1.0 };
            assert_eq!(g.best_move[r], expected, "seed {seed}: replica {r}");
        }
    });
    assert!(moves > 500, "only {moves} moves checked");
}

/// A teacher reads `greedy`'s action off the gains: it is `greedy`'s, tie for tie, on random
/// clusters with failed nodes (replicas to evacuate, where keeping is not allowed).
#[test]
fn the_gains_carry_greedys_action() {
    let shape = common::Shape { nodes: 8, services: 3, max_replicas: 4, failures: true, sharing: true };
    let mut g = Gains::default();
    let (mut moved, mut evacuated) = (0, 0);
    let checked = common::random_walks(0..40, &shape, 16, |seed, env| {
        gains(env, &mut g);
        let greedy = GreedyPolicy.act(env);
        assert_eq!(g.greedy, greedy, "seed {seed} tick {}", env.tick());
        moved += usize::from(greedy != 0);
        evacuated += usize::from(!env.action_mask()[0]);
        let mut obs = EntityObs { gains: true, ..EntityObs::default() };
        entity::observe(env, &mut obs);
        assert_eq!(obs.greedy, Some(greedy), "seed {seed}");
    });
    assert!(
        checked > 300 && moved > 30 && evacuated > 5,
        "{checked} states, {moved} moves, {evacuated} evacuations"
    );
}

#[test]
fn gain_features_stay_within_their_units_and_widen_the_rows_by_their_count() {
    let shape = common::Shape { nodes: 7, services: 3, max_replicas: 3, failures: true, sharing: true };
    let (mut plain, mut with) = (EntityObs::default(), EntityObs { gains: true, ..EntityObs::default() });
    let checked = common::random_walks(0..30, &shape, 12, |seed, env| {
        let services = env.scenario().services.len();
        entity::observe(env, &mut plain);
        entity::observe(env, &mut with);
        assert_eq!(with.node_width(), plain.node_width() + NODE_GAIN_FEATURES.len() * services);
        assert_eq!(with.replica_width(), plain.replica_width() + REPLICA_GAIN_FEATURES.len());
        assert_eq!(with.global_width(), plain.global_width() + GLOBAL_GAIN_FEATURES.len());
        assert_eq!(with.global.len(), with.global_width());
        // The rows without gains are the rows with them, less their last columns.
        for (block, a, b, wa, wb) in [
            ("nodes", &plain.nodes, &with.nodes, plain.node_width(), with.node_width()),
            ("replicas", &plain.replicas, &with.replicas, plain.replica_width(), with.replica_width()),
            ("global", &plain.global, &with.global, plain.global_width(), with.global_width()),
        ] {
            for (row_a, row_b) in a.chunks(wa).zip(b.chunks(wb)) {
                assert_eq!(row_a, &row_b[..wa], "seed {seed}: {block}");
                assert!(
                    row_b[wa..].iter().all(|v| (-1.0..=1.0).contains(v)),
                    "seed {seed}: {block} {row_b:?}"
                );
            }
        }
    });
    assert!(checked > 100, "only {checked} states checked");
}

#[test]
fn a_sole_replica_is_worth_everything_and_the_best_move_saves_a_move_when_greedy_moves() {
    // One replica serving all the traffic: taking it away fails every request.
    let sole = TINY.replace("replicas: 2", "replicas: 1");
    let env = PlacementEnv::new(Arc::new(Scenario::from_yaml(&sole).unwrap())).unwrap();
    let mut g = Gains::default();
    gains(&env, &mut g);
    assert_eq!(g.removal, vec![1.0]);

    // gpu-medium's day, kept as placed: the best move saves more than a move costs, in
    // moves' costs, exactly when `greedy` moves; and then the replica `greedy` moves is one
    // whose best move does.
    let scenario = berth_env::shipped::shipped("gpu-medium").unwrap();
    let mut env = PlacementEnv::new(scenario).unwrap();
    env.reset(5);
    let (mut moved, mut kept) = (0, 0);
    for tick in 0..env.scenario().episode_ticks {
        let action = berth_env::baselines::GreedyPolicy.act(&env);
        gains(&env, &mut g);
        match env.decode(action) {
            Some(mv) => {
                assert!(g.best_in_moves() < -0.25, "tick {tick}: {g:?}");
                assert!(g.best_move_in_moves[mv.replica] < -0.25, "tick {tick}: {g:?}");
                moved += 1;
            }
            None => {
                assert!(g.best_in_moves() >= -0.25, "tick {tick}: {g:?}");
                kept += 1;
            }
        }
        // Keep the placement, but let greedy's moves happen now and then so both are seen.
        env.step(if tick % 3 == 0 { action } else { 0 }).unwrap();
    }
    assert!(moved > 10 && kept > 10, "greedy moved {moved} and kept {kept} times");
}
