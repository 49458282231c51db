//! DQN on the entity network: its candidate moves are allowed, best first and hold
//! `greedy`'s move; batching states changes no Q-value; a model trained on `tiny` acts with a
//! node more and a node less and round-trips through its file; the entity-only settings are
//! refused on the flat network, by name.

mod common;

use std::sync::Arc;

use berth_agents::entity_dqn::{EntityQNet, QState, observe_moves};
use berth_agents::entity_net::EntityShape;
use berth_agents::nets::{Devices, values};
use berth_agents::{
    ActMode, AgentKind, Flow, SavedModel, Target, TrainRequest, fits_any_cluster, load_agent, train,
};
use berth_core::{Rng, Scenario};
use berth_env::baselines::{GreedyPolicy, Policy};
use berth_env::entity::EntityObs;
use berth_env::shipped::shipped;
use berth_env::{Env, PlacementEnv};
use common::{TINY, acts_on, tiny_with_a_node_less, tiny_with_a_node_more};

/// Calls `check` on every state of a few days' random walks on `scenario` (a move a tick in
/// three, from the allowed ones), failures and evacuations included.
fn random_walk(
    scenario: Arc<Scenario>,
    seeds: std::ops::Range<u64>,
    ticks: usize,
    mut check: impl FnMut(&PlacementEnv),
) {
    let mut env = PlacementEnv::new(scenario).unwrap();
    for seed in seeds {
        let mut rng = Rng::new(seed);
        env.reset(seed);
        for _ in 0..ticks {
            check(&env);
            let allowed: Vec<usize> = (0..env.action_count()).filter(|&a| env.action_mask()[a]).collect();
            let action = if rng.below(3) == 0 || !env.action_mask()[0] {
                allowed[rng.below(allowed.len())]
            } else {
                0
            };
            env.step(action).unwrap();
        }
    }
}

#[test]
fn candidates_are_allowed_best_first_per_replica_and_hold_greedys_move() {
    let (mut states, mut greedy_moves, mut evacuations) = (0, 0, 0);
    for (name, rows) in [("gpu-medium", None), ("gpu-medium", Some(2)), ("gpu-mig", None)] {
        let mut state =
            QState { obs: EntityObs { gains: true, ..EntityObs::default() }, ..QState::default() };
        random_walk(shipped(name).unwrap(), 1..4, 120, |env| {
            observe_moves(env, rows, 2, &mut state);
            states += 1;
            let mask = env.action_mask();
            assert_eq!(state.keep, mask[0]);
            evacuations += usize::from(!mask[0]);
            for r in 0..env.placement().len() {
                let own: Vec<_> = state.moves.iter().filter(|c| c.replica == r).collect();
                assert!(own.len() <= 2, "{name}: replica {r} has {} candidates", own.len());
                for pair in own.windows(2) {
                    assert!(
                        pair[0].features[1] < pair[1].features[1],
                        "{name}: not best first, distinct: {own:?}"
                    );
                }
                for c in &own {
                    assert!(mask[c.action], "{name}: candidate {c:?} is masked");
                    assert_eq!(state.obs.node_ids[c.row] as usize, (c.action - 1) % env.node_count());
                }
            }
            // Every node read: `greedy`'s move is one of the candidates.
            let greedy = GreedyPolicy.act(env);
            if rows.is_none() && greedy != 0 {
                greedy_moves += 1;
                assert!(state.entry_of(greedy).is_some(), "{name}: greedy's move {greedy} is no candidate");
            }
        });
    }
    assert!(
        states > 1000 && greedy_moves > 20 && evacuations > 0,
        "{states} states, {greedy_moves} greedy moves, {evacuations} evacuations"
    );
}

#[test]
fn batching_states_changes_no_q_value() {
    let scenario = shipped("gpu-medium").unwrap();
    let net = EntityQNet::new(
        EntityShape { services: scenario.services.len(), hidden: 16, gains: true, spread: false },
        &Devices::cpu().plain,
    );
    let mut states = Vec::new();
    random_walk(scenario, 7..8, 40, |env| {
        if env.tick() % 10 == 3 {
            let mut s =
                QState { obs: EntityObs { gains: true, ..EntityObs::default() }, ..QState::default() };
            observe_moves(env, None, 3, &mut s);
            states.push(s);
        }
    });
    let device = Devices::cpu().plain;
    let refs: Vec<&QState> = states.iter().collect();
    let together = values(net.q_values(&refs, &device));
    let alone: Vec<f32> = states.iter().flat_map(|s| values(net.q_values(&[s], &device))).collect();
    assert_eq!(together.len(), states.iter().map(QState::entries).sum::<usize>());
    assert!(states.iter().all(|s| !s.moves.is_empty()), "every state has moves to score");
    for (i, (a, b)) in together.iter().zip(&alone).enumerate() {
        assert!((a - b).abs() < 1e-5, "entry {i}: {a} batched, {b} alone");
    }
    // The moves of one state differ from each other: each entry reads its own move.
    let first = values(net.q_values(&[&states[0]], &device));
    assert!(first[1..].windows(2).any(|w| w[0] != w[1]), "{first:?}");
}

fn request(target: Target, steps: u64, hyperparameters: serde_json::Value) -> TrainRequest {
    TrainRequest {
        agent: AgentKind::Dqn,
        target,
        steps: Some(steps),
        seed: 5,
        hyperparameters,
        device: Default::default(),
    }
}

#[test]
fn a_model_trained_on_tiny_acts_with_a_node_more_and_a_node_less_and_as_trained() {
    let hp = serde_json::json!({"network": "entity", "gain_features": true, "hidden": 16, "learning_starts": 200,
        "batch_size": 32, "buffer_size": 2000, "train_frequency": 4, "target_network_frequency": 200,
        "validation_episodes": 1, "validation_every": 600});
    let mut trained =
        train(&request(Target::Placement(shipped("tiny").unwrap()), 1_500, hp), &mut |_| Flow::Continue)
            .unwrap();
    assert!(trained.log.rows().iter().any(|r| r.td_loss.is_some()), "it learnt");
    assert!(trained.log.rows().iter().any(|r| r.validation_return.is_some()), "it validated");
    let model = SavedModel::from_bytes(&trained.model.to_bytes()).unwrap();
    assert!(fits_any_cluster(&model));
    assert_eq!(model.header.services, vec!["infinity-embed"]);
    acts_on(&model, TINY);
    acts_on(&model, &tiny_with_a_node_more());
    acts_on(&model, &tiny_with_a_node_less());
    let mut env = PlacementEnv::new(shipped("tiny").unwrap()).unwrap();
    let mut loaded = load_agent(&model, &env).unwrap();
    env.reset(9);
    for _ in 0..96 {
        let a = trained.agent.act_in(&env, ActMode::Greedy);
        assert_eq!(a, loaded.act_in(&env, ActMode::Greedy));
        env.step(a).unwrap();
    }
    let other = PlacementEnv::new(shipped("gpu-small").unwrap()).unwrap();
    let err = load_agent(&model, &other).err().expect("refused").to_string();
    assert!(err.contains("never seen") && err.contains("rerank"), "{err}");
}

#[test]
fn the_entity_settings_are_refused_on_the_flat_network_and_cartpole_by_name() {
    let medium = || Target::Placement(shipped("gpu-medium").unwrap());
    for (hp, field) in [
        (serde_json::json!({"vary_shapes": true}), "vary_shapes"),
        (serde_json::json!({"candidate_nodes": 4}), "candidate_nodes"),
        (serde_json::json!({"gain_features": true}), "gain_features"),
        (serde_json::json!({"network": "entity", "tau": 0.5}), "tau"),
        (serde_json::json!({"network": "entity", "candidate_moves": 0}), "candidate_moves"),
        (serde_json::json!({"network": "entity", "candidate_moves": 100000}), "candidate_moves"),
        (serde_json::json!({"network": "entity", "oversample_trailing": 0.3}), "vary_shapes"),
    ] {
        let err =
            train(&request(medium(), 100, hp), &mut |_| Flow::Continue).err().expect("refused").to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
    let err = train(&request(Target::CartPole, 100, serde_json::json!({"network": "entity"})), &mut |_| {
        Flow::Continue
    })
    .err()
    .expect("refused")
    .to_string();
    assert!(err.contains("network") && err.contains("CartPole"), "{err}");
}

/// Across shapes the training cluster and the validation cluster differ in size, and the
/// run moves between them: validations come back with the score, and episodes go on.
#[test]
fn training_across_shapes_validates_on_the_scenario_and_goes_on_on_the_variation() {
    let hp = serde_json::json!({"network": "entity", "vary_shapes": true, "oversample_trailing": 0.3,
        "candidate_nodes": 4, "hidden": 16, "learning_starts": 100, "batch_size": 16, "buffer_size": 1000,
        "train_frequency": 8, "target_network_frequency": 100, "validation_episodes": 1, "validation_every": 300,
        // Moves rather than keeping, so the moves' entries are exercised.
        "explore_keep": 0.0, "explore_teacher": 0.0, "keep_margin": 0.0});
    let trained =
        train(&request(Target::Placement(shipped("gpu-medium").unwrap()), 900, hp), &mut |_| Flow::Continue)
            .unwrap();
    let rows = trained.log.rows();
    assert!(rows.iter().filter(|r| r.validation_return.is_some()).count() >= 2, "validated twice");
    assert!(
        rows.iter().any(|r| r.episodic_return.is_some()),
        "an episode ended: the next is a new variation"
    );
}
