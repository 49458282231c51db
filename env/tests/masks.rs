//! Property test: over random scenarios and random allowed actions, the mask allows exactly
//! the moves that keep the placement feasible on Ready nodes (only those of replicas stranded
//! on NotReady nodes while there are any that can move), so no action ever leads to an
//! infeasible placement.

mod common;

use berth_core::{Placement, Rng};
use berth_env::{Env, Error, Move, PlacementEnv};

/// Whether moving `mv` gives a feasible placement onto a Ready node, checked from scratch.
fn feasible_by_brute_force(env: &PlacementEnv, mv: Move) -> bool {
    let mut nodes = env.placement().to_vec();
    if nodes[mv.replica] == mv.node || !env.node_ready()[mv.node] {
        return false;
    }
    nodes[mv.replica] = mv.node;
    Placement::new(nodes).is_feasible(env.scenario())
}

/// Envs of the placeable random scenarios drawn from seeds `first..first + count` (with node
/// failures), each reset with its index `seed`, beside an action generator seeded alike.
fn random_envs(first: u64, count: u64) -> impl Iterator<Item = (u64, PlacementEnv, Rng)> {
    let shape = common::Shape { nodes: 5, services: 3, max_replicas: 3, failures: true, sharing: false };
    (0..count).filter_map(move |seed| {
        let mut env = PlacementEnv::new(common::random_scenario(first + seed, &shape)?).ok()?;
        env.reset(seed);
        Some((seed, env, Rng::new(seed)))
    })
}

#[test]
fn masks_never_allow_an_infeasible_placement() {
    let (mut scenarios, mut evacuations) = (0, 0);
    for (seed, mut env, mut rng) in random_envs(1000, 80) {
        scenarios += 1;
        loop {
            let mask = env.action_mask().to_vec();
            let moves = || (1..mask.len()).map(|a| env.decode(a).unwrap());
            // Replicas on NotReady nodes that can go somewhere must go first.
            let stranded: Vec<usize> = moves()
                .filter(|mv| {
                    !env.node_ready()[env.placement()[mv.replica]] && feasible_by_brute_force(&env, *mv)
                })
                .map(|mv| mv.replica)
                .collect();
            assert_eq!(mask[0], stranded.is_empty(), "scenario {seed}, tick {}: keep", env.tick());
            evacuations += usize::from(!stranded.is_empty());
            for (a, mv) in moves().enumerate().map(|(i, mv)| (i + 1, mv)) {
                let expected = feasible_by_brute_force(&env, mv)
                    && (stranded.is_empty() || stranded.contains(&mv.replica));
                assert_eq!(mask[a], expected, "scenario {seed}, tick {}, {mv:?}", env.tick());
            }
            Placement::new(env.placement().to_vec()).check(env.scenario()).expect("placement stays feasible");
            // Mostly moves, so the placement wanders.
            let allowed: Vec<usize> = (0..mask.len()).filter(|&a| mask[a]).collect();
            let action = allowed[rng.below(allowed.len())];
            if env.step(action).unwrap().truncated {
                break;
            }
        }
    }
    assert!(scenarios >= 20, "only {scenarios} scenarios were placeable");
    assert!(evacuations > 0, "no replica was ever stranded: the evacuation rule went untested");
}

#[test]
fn a_masked_action_is_rejected_with_the_reason() {
    let scenario = berth_env::shipped::shipped("tiny").unwrap();
    let mut env = PlacementEnv::new(scenario).unwrap();
    env.reset(0);
    // Moving a replica onto the node it is on is never allowed.
    let here = env.placement()[0];
    let action = env.encode(Move { replica: 0, node: here });
    let obs = env.observation().to_vec();
    match env.step(action) {
        Err(Error::MaskedAction { reason, .. }) => assert!(reason.contains("already on"), "{reason}"),
        other => panic!("expected MaskedAction, got {other:?}"),
    }
    assert_eq!(env.tick(), 0, "a refused action does not advance time");
    assert_eq!(env.observation(), obs.as_slice());
    let actions = env.action_count();
    assert!(matches!(env.step(actions), Err(Error::ActionOutOfRange { .. })));
}

#[test]
fn the_teacher_is_greedy_and_only_ever_allowed() {
    use berth_env::baselines::{GreedyPolicy, Policy};
    let (mut taught, mut refused) = (0, 0);
    for (seed, mut env, mut rng) in random_envs(3000, 40) {
        for _ in 0..300 {
            let greedy = GreedyPolicy.act(&env);
            match env.teacher_action() {
                Some(a) => {
                    assert_eq!(a, greedy);
                    assert!(env.action_mask()[a]);
                    taught += 1;
                }
                None => {
                    assert!(!env.action_mask()[greedy]);
                    refused += 1;
                }
            }
            // Wander, so the teacher is asked in placements greedy itself would not reach.
            let step = env.step(berth_env::gym::random_allowed(env.action_mask(), &mut rng)).unwrap();
            if step.terminated || step.truncated {
                env.reset(seed + 1000);
            }
        }
    }
    assert!(taught > 1000, "taught {taught}, refused {refused}");
    assert_eq!(berth_env::CartPole::new().teacher_action(), None);
}
