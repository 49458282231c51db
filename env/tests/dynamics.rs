//! The gym's dynamics: cold starts, node failures and recovery, seeding, truncation and the
//! vector env's auto-reset.

use std::sync::Arc;

use berth_core::Scenario;
use berth_env::cost::{CostModel, ReplicaView};
use berth_env::{CartPole, Env, Move, PlacementEnv, VecEnv};

/// Two CPU nodes in one zone, one service with two replicas, cold start of half a tick.
fn two_node_scenario(extra: &str) -> Arc<Scenario> {
    Arc::new(Scenario::from_yaml(&two_node_yaml(extra)).unwrap())
}

fn two_node_yaml(extra: &str) -> String {
    format!(
        r#"
name: two-nodes
tick_s: 100
episode_ticks: 6
slo_ms: 100
timeout_ms: 1000
routing: uniform
reward: {{violation: 1.0, move: 0.5}}
zones: [a]
rtt_ms: [[1.0]]
nodes:
  - {{name: n1, zone: a, cpu_millicores: 4000, memory_mib: 8192}}
  - {{name: n2, zone: a, cpu_millicores: 4000, memory_mib: 8192}}
  - {{name: n3, zone: a, cpu_millicores: 4000, memory_mib: 8192}}
services:
  - {{name: s, replicas: 2, requests: {{cpu_millicores: 1000, memory_mib: 1024}}, service_time_ms: {{cpu: 10}}, cold_start_s: 50}}
user_groups:
  - {{name: u, zone: a, rate: {{base_rps: 60}}, chain: [s]}}
{extra}"#
    )
}

fn views(up: [bool; 2]) -> Vec<ReplicaView> {
    up.iter().map(|&up| ReplicaView { service: 0, zone: 0, service_time_ms: 10.0, up }).collect()
}

#[test]
fn a_moved_replica_is_unavailable_for_its_cold_start_and_the_other_takes_its_share() {
    let scenario = two_node_scenario("");
    let model = CostModel::new(&scenario);
    let both = model.score(&views([true, true]), &[60.0]);
    let alone = model.score(&views([true, false]), &[60.0]);
    let mut env = PlacementEnv::new(scenario.clone()).unwrap();
    env.reset(0);
    let free = (0..3).find(|n| !env.placement().contains(n)).unwrap();
    let step = env.step(env.encode(Move { replica: 1, node: free })).unwrap();
    // Cold start 50 s of a 100 s tick: half the tick with one replica, half with two.
    let expected = 0.5 * both.cost + 0.5 * alone.cost;
    assert!((step.info.metrics.cost - expected).abs() < 1e-9, "{:?} vs {expected}", step.info.metrics);
    assert!((step.reward - -(expected + 0.5)).abs() < 1e-9, "the move costs 0.5");
    assert_eq!((step.info.moves, step.info.unavailable_replicas), (1, 1));
    // Replica 1's observation row (after 3 nodes x 6 fields): zone a, class cpu, no longer
    // cold-starting at the end of the tick (ready at 50 s of 100), its node Ready.
    let replica_1 = 3 * 6 + 4;
    assert_eq!(&step.obs[replica_1..replica_1 + 4], &[1.0, 1.0, 0.0, 0.0]);
    // The next tick both serve again.
    let step = env.step(0).unwrap();
    assert!((step.info.metrics.cost - both.cost).abs() < 1e-9);
    assert_eq!(step.info.unavailable_replicas, 0);
}

#[test]
fn a_replica_still_cold_starting_when_the_tick_ends_is_flagged_until_it_is_ready() {
    let yaml = two_node_yaml("").replace("cold_start_s: 50", "cold_start_s: 150");
    let mut env = PlacementEnv::new(Arc::new(Scenario::from_yaml(&yaml).unwrap())).unwrap();
    env.reset(0);
    let free = (0..3).find(|n| !env.placement().contains(n)).unwrap();
    let cold_flag = 3 * 6 + 4 + 2; // replica 1's row, `cold-starting`
    let step = env.step(env.encode(Move { replica: 1, node: free })).unwrap();
    assert_eq!(step.obs[cold_flag], 1.0, "ready at 150 s, the tick ends at 100 s");
    let step = env.step(0).unwrap();
    assert_eq!(step.obs[cold_flag], 0.0, "ready within the second tick");
}

/// Whether replica 1, moved at the start of `seed`'s first tick, is still cold at its end.
fn cold_after_one_move(env: &mut PlacementEnv, seed: u64) -> bool {
    env.reset(seed);
    let free = (0..3).find(|n| !env.placement().contains(n)).unwrap();
    env.step(env.encode(Move { replica: 1, node: free })).unwrap();
    env.cold_starting().nth(1).unwrap()
}

#[test]
fn cold_starts_follow_the_scenarios_shape_and_are_the_same_for_the_same_seed() {
    // A 100 s mean; quantiles 0 and 4 scale to 0 and 2: uniform in [0, 200] s, so a replica
    // moved at 0 s is still cold when the tick ends at 100 s on about half the days.
    let yaml = two_node_yaml("cold_starts: {source: test, quantiles: [0, 4]}")
        .replace("cold_start_s: 50", "cold_start_s: 100");
    let mut env = PlacementEnv::new(Arc::new(Scenario::from_yaml(&yaml).unwrap())).unwrap();
    let cold: Vec<bool> = (0..400).map(|seed| cold_after_one_move(&mut env, seed)).collect();
    let share = cold.iter().filter(|&&c| c).count();
    assert!((150..=250).contains(&share), "{share} of 400 days still cold, expected about 200");
    let again: Vec<bool> = (0..400).map(|seed| cold_after_one_move(&mut env, seed)).collect();
    assert_eq!(cold, again, "a seed gives the same cold starts every time it is played");
    // Without the shape every cold start takes exactly 100 s: ready as the tick ends.
    let fixed = two_node_yaml("").replace("cold_start_s: 50", "cold_start_s: 100");
    let mut env = PlacementEnv::new(Arc::new(Scenario::from_yaml(&fixed).unwrap())).unwrap();
    assert!((0..50).all(|seed| !cold_after_one_move(&mut env, seed)));
}

#[test]
fn a_failed_node_stops_its_replicas_and_is_masked_until_it_recovers() {
    let scenario = two_node_scenario(
        "failures:\n  evacuate: false\n  events:\n    - {at_s: 150, node: n1, kind: fail}\n    - {at_s: 320, node: n1, kind: recover}\n",
    );
    let model = CostModel::new(&scenario);
    let alone = model.score(&views([true, false]), &[60.0]);
    let both = model.score(&views([true, true]), &[60.0]);
    let mut env = PlacementEnv::new(scenario.clone()).unwrap();
    env.reset(0);
    let on_n1 = env.placement().iter().position(|&n| n == 0).expect("spread uses n1");
    let other = 1 - on_n1;
    let onto_n1 = env.encode(Move { replica: other, node: 0 });
    env.step(0).unwrap(); // tick 1: [0, 100)
    assert!(env.action_mask()[onto_n1], "n1 has room while it is Ready");
    let step = env.step(0).unwrap(); // tick 2: [100, 200): n1 fails at 150
    assert_eq!((step.info.nodes_not_ready, step.info.unavailable_replicas), (1, 1));
    assert!((step.info.metrics.cost - alone.cost).abs() < 1e-9);
    assert!(!env.action_mask()[onto_n1], "no moves onto a NotReady node");
    let ready_field = 4; // node 0's `ready` observation
    assert_eq!(env.observation()[ready_field], 0.0);
    let down_flag = |r: usize| env.observation()[3 * 6 + 4 * r + 3];
    assert_eq!((down_flag(on_n1), down_flag(other)), (1.0, 0.0), "the replica on n1 is down");
    env.step(0).unwrap(); // tick 3: [200, 300)
    // tick 4: [300, 400): n1 back at 320, its replica cold-starts 50 s: ready at 370.
    let step = env.step(0).unwrap();
    assert_eq!(step.info.nodes_not_ready, 0);
    let expected = 0.7 * alone.cost + 0.3 * both.cost;
    assert!((step.info.metrics.cost - expected).abs() < 1e-9, "{:?} vs {expected}", step.info.metrics);
    assert_eq!(env.observation()[ready_field], 1.0);
    assert_eq!(env.observation()[3 * 6 + 4 * on_n1 + 3], 0.0);
}

#[test]
fn replicas_on_a_failed_node_must_be_moved_first() {
    let scenario = two_node_scenario(
        "failures:\n  events:\n    - {at_s: 150, node: n1, kind: fail}\n    - {at_s: 320, node: n1, kind: recover}\n",
    );
    let mut env = PlacementEnv::new(scenario).unwrap();
    env.reset(0);
    let on_n1 = env.placement().iter().position(|&n| n == 0).expect("spread uses n1");
    let other = 1 - on_n1;
    let free = (0..3).find(|n| !env.placement().contains(n)).unwrap();
    env.step(0).unwrap();
    assert!(env.action_mask()[0] && env.action_mask()[env.encode(Move { replica: other, node: free })]);
    env.step(0).unwrap(); // n1 fails at 150
    let allowed: Vec<usize> = (0..env.action_count()).filter(|&a| env.action_mask()[a]).collect();
    let evacuations: Vec<usize> = (1..3).map(|node| env.encode(Move { replica: on_n1, node })).collect();
    assert_eq!(allowed, evacuations, "only moves of the replica on n1, to either Ready node");
    let obs = env.observation().to_vec();
    match env.step(0) {
        Err(berth_env::Error::MaskedAction { reason, .. }) => {
            assert!(reason.contains("NotReady node `n1`"), "{reason}")
        }
        other => panic!("expected MaskedAction, got {other:?}"),
    }
    assert_eq!((env.tick(), env.observation()), (2, obs.as_slice()), "a refused keep changes nothing");
    let step = env.step(allowed[0]).unwrap();
    assert_eq!(step.info.moves, 1);
    assert!(env.action_mask()[0], "nothing left to evacuate: keeping is allowed again");
    assert!(!env.action_mask()[env.encode(Move { replica: other, node: 0 })], "n1 is still down");
}

#[test]
fn seeds_fix_the_traffic_and_differ_from_each_other() {
    let scenario = berth_env::shipped::shipped("gpu-small").unwrap();
    let mut a = PlacementEnv::new(scenario.clone()).unwrap();
    let mut b = PlacementEnv::new(scenario).unwrap();
    a.reset(5);
    b.reset(5);
    assert_eq!(a.trace(), b.trace());
    b.reset(6);
    assert_ne!(a.trace().rates_rps, b.trace().rates_rps);
}

#[test]
fn episodes_are_truncated_at_the_scenario_length_and_never_terminated() {
    let scenario = two_node_scenario("");
    let mut env = PlacementEnv::new(scenario).unwrap();
    env.reset(1);
    for t in 1..=6 {
        let s = env.step(0).unwrap();
        assert!(!s.terminated);
        assert_eq!(s.truncated, t == 6);
    }
    assert!(matches!(env.step(0), Err(berth_env::Error::EpisodeOver)));
}

#[test]
fn vector_env_auto_resets_each_copy_with_its_own_seed() {
    let envs = vec![CartPole::new(), CartPole::new(), CartPole::new()];
    let mut venv = VecEnv::new(envs, 42).unwrap();
    let first: Vec<f32> = venv.observations().to_vec();
    assert_ne!(first[0..4], first[4..8], "copies are seeded differently");
    let mut episodes = 0;
    for _ in 0..200 {
        venv.step(&[1, 1, 1]).unwrap();
        for i in 0..3 {
            if venv.terminated()[i] {
                episodes += 1;
                let last = venv.final_observation(i);
                assert!(
                    last[0].abs() > 2.4 || last[2].abs() > 0.2094,
                    "final obs is the terminal one: {last:?}"
                );
                let now = &venv.observations()[i * 4..(i + 1) * 4];
                assert!(now.iter().all(|x| x.abs() <= 0.05), "reset obs: {now:?}");
            }
        }
    }
    assert!(episodes >= 6, "{episodes}");
    assert!(venv.step(&[0, 0]).is_err(), "one action per copy");
}
