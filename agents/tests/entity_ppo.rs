//! PPO on the entity network: a model trained on `tiny` loads and acts on a copy with a node
//! more and one with a node removed, is refused on a scenario with a service it never saw
//! (named in the error), and round-trips through its file acting the same.

mod common;

use berth_agents::{ActMode, AgentKind, Flow, SavedModel, Target, TrainRequest, load_agent, train};
use berth_env::shipped::shipped;
use berth_env::{Env, PlacementEnv};
use common::{TINY, acts_on, tiny_with_a_node_less, tiny_with_a_node_more};

/// A PPO training request on `target` for `steps` steps from `seed`.
fn ppo_request(target: Target, steps: u64, seed: u64, hyperparameters: serde_json::Value) -> TrainRequest {
    TrainRequest {
        agent: AgentKind::Ppo,
        target,
        steps: Some(steps),
        seed,
        hyperparameters,
        device: Default::default(),
    }
}

fn trained_on_tiny() -> SavedModel {
    let hyperparameters =
        serde_json::json!({"network": "entity", "num_envs": 2, "num_steps": 128, "hidden": 16});
    let request = ppo_request(Target::Placement(shipped("tiny").unwrap()), 1_024, 5, hyperparameters);
    let trained = train(&request, &mut |_| Flow::Continue).unwrap();
    assert!(!trained.log.rows().is_empty());
    SavedModel::from_bytes(&trained.model.to_bytes()).unwrap()
}

#[test]
fn a_model_trained_on_tiny_acts_with_a_node_more_and_a_node_less() {
    let model = trained_on_tiny();
    assert_eq!(model.header.services, vec!["infinity-embed"]);
    acts_on(&model, TINY);
    acts_on(&model, &tiny_with_a_node_more());
    acts_on(&model, &tiny_with_a_node_less());
}

#[test]
fn a_model_reading_the_spreading_rows_acts_on_other_shapes_and_loads_as_trained() {
    let hyperparameters = serde_json::json!({"network": "entity", "num_envs": 2, "num_steps": 128, "hidden": 16,
                                             "gain_features": true, "spread_features": true});
    let request = ppo_request(Target::Placement(shipped("tiny").unwrap()), 512, 6, hyperparameters);
    let mut trained = train(&request, &mut |_| Flow::Continue).unwrap();
    let model = SavedModel::from_bytes(&trained.model.to_bytes()).unwrap();
    // Wider rows, so more weights than a model without them: the header's flag builds them.
    let mut plain = model.clone();
    plain.header.config["spread_features"] = serde_json::json!(false);
    let env = PlacementEnv::new(shipped("tiny").unwrap()).unwrap();
    let err = load_agent(&plain, &env).err().expect("refused").to_string();
    assert!(err.contains("weights"), "{err}");
    let mut loaded = load_agent(&model, &env).unwrap();
    let mut env = env;
    env.reset(3);
    for _ in 0..48 {
        let a = trained.agent.act_in(&env, ActMode::Greedy);
        assert_eq!(a, loaded.act_in(&env, ActMode::Greedy));
        env.step(a).unwrap();
    }
    acts_on(&model, &tiny_with_a_node_more());
    acts_on(&model, &tiny_with_a_node_less());
}

#[test]
fn a_service_the_model_never_saw_is_refused_by_name() {
    let model = trained_on_tiny();
    let env = PlacementEnv::new(shipped("gpu-small").unwrap()).unwrap();
    let err = load_agent(&model, &env).err().expect("refused").to_string();
    assert!(err.contains("never seen") && err.contains("router") && err.contains("rerank"), "{err}");
}

#[test]
fn the_saved_model_acts_as_the_trained_one() {
    let hyperparameters =
        serde_json::json!({"network": "entity", "num_envs": 2, "num_steps": 64, "hidden": 16});
    let request = ppo_request(Target::Placement(shipped("gpu-small").unwrap()), 512, 8, hyperparameters);
    let mut trained = train(&request, &mut |_| Flow::Continue).unwrap();
    let model = SavedModel::from_bytes(&trained.model.to_bytes()).unwrap();
    let mut env = PlacementEnv::new(shipped("gpu-small").unwrap()).unwrap();
    let mut loaded = load_agent(&model, &env).unwrap();
    env.reset(4);
    for _ in 0..60 {
        let a = trained.agent.act_in(&env, ActMode::Greedy);
        assert_eq!(a, loaded.act_in(&env, ActMode::Greedy));
        env.step(a).unwrap();
    }
}

#[test]
fn the_entity_network_needs_a_placement_scenario() {
    let hyperparameters = serde_json::json!({"network": "entity"});
    let request = ppo_request(Target::CartPole, 100, 1, hyperparameters);
    let err = train(&request, &mut |_| Flow::Continue).err().expect("refused").to_string();
    assert!(err.contains("network") && err.contains("CartPole"), "{err}");
}

#[test]
fn training_across_shapes_needs_the_entity_network_and_runs_with_it() {
    let request = |hyperparameters| {
        ppo_request(Target::Placement(shipped("gpu-medium").unwrap()), 600, 2, hyperparameters)
    };
    let flat = train(&request(serde_json::json!({"vary_shapes": true})), &mut |_| Flow::Continue);
    let err = flat.err().expect("refused").to_string();
    assert!(err.contains("vary_shapes") && err.contains("entity"), "{err}");
    // Episodes of 288 ticks on 2 copies: each copy starts a second, varied, cluster.
    let hp = serde_json::json!({"network": "entity", "vary_shapes": true, "num_envs": 2, "num_steps": 300, "hidden": 16});
    let trained = train(&request(hp), &mut |_| Flow::Continue).unwrap();
    assert!(trained.log.rows().iter().any(|r| r.episodic_return.is_some()), "episodes finished");
    // Replaying where it trailed greedy: only across shapes, and a share.
    for (hp, reason) in [
        (serde_json::json!({"network": "entity", "oversample_trailing": 0.3}), "vary_shapes"),
        (serde_json::json!({"network": "entity", "vary_shapes": true, "oversample_trailing": 1.5}), "[0, 1]"),
    ] {
        let err = train(&request(hp), &mut |_| Flow::Continue).err().expect("refused").to_string();
        assert!(err.contains("oversample_trailing") && err.contains(reason), "{err}");
    }
    let hp = serde_json::json!({"network": "entity", "vary_shapes": true, "oversample_trailing": 0.5,
                                "num_envs": 2, "num_steps": 300, "hidden": 16});
    let trained = train(&request(hp), &mut |_| Flow::Continue).unwrap();
    assert!(trained.log.rows().iter().any(|r| r.episodic_return.is_some()), "episodes finished");
}

#[test]
fn a_model_on_candidate_nodes_and_gains_moves_only_to_them_and_loads_as_trained() {
    let request = |hyperparameters| {
        ppo_request(Target::Placement(shipped("gpu-medium").unwrap()), 512, 9, hyperparameters)
    };
    for name in ["candidate_nodes", "keep_against_mean", "gain_features", "spread_features", "outage_drills"]
    {
        let value = match name {
            "candidate_nodes" => serde_json::json!(2),
            "outage_drills" => serde_json::json!(0.5),
            _ => serde_json::json!(true),
        };
        let err = train(&request(serde_json::json!({ name: value })), &mut |_| Flow::Continue)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains(name) && err.contains("entity"), "{err}");
    }
    let hp = serde_json::json!({"network": "entity", "candidate_nodes": 2, "num_envs": 2, "num_steps": 64,
                                "hidden": 16, "teacher_coef": 0.0, "keep_against_mean": true,
                                "gain_features": true});
    let mut trained = train(&request(hp), &mut |_| Flow::Continue).unwrap();
    let model = SavedModel::from_bytes(&trained.model.to_bytes()).unwrap();
    let mut env = PlacementEnv::new(shipped("gpu-medium").unwrap()).unwrap();
    let mut loaded = load_agent(&model, &env).unwrap();
    let mut rows = berth_env::entity::EntityObs::default();
    env.reset(4);
    let mut moves = 0;
    for _ in 0..150 {
        let a = trained.agent.act_in(&env, ActMode::Greedy);
        assert_eq!(a, loaded.act_in(&env, ActMode::Greedy));
        // Sampled, the barely trained policy moves often: each move is checked.
        let a = loaded.act_in(&env, ActMode::Explore);
        assert!(env.action_mask()[a], "masked action {a}");
        if a != 0 {
            berth_env::entity::observe_candidates(&env, 2, &mut rows);
            let node = ((a - 1) % env.node_count()) as u32;
            assert!(rows.node_ids.contains(&node), "node {node} is no candidate: {:?}", rows.node_ids);
            moves += 1;
        }
        env.step(a).unwrap();
    }
    assert!(moves > 0, "the policy never moved, so nothing was checked");
}

#[test]
fn kickstarting_from_lookahead_needs_the_entity_network_and_teaches_with_it() {
    let request = |hyperparameters| {
        ppo_request(Target::Placement(shipped("gpu-medium").unwrap()), 512, 3, hyperparameters)
    };
    let flat = train(&request(serde_json::json!({"teacher": "lookahead"})), &mut |_| Flow::Continue);
    let err = flat.err().expect("refused").to_string();
    assert!(err.contains("teacher") && err.contains("entity"), "{err}");
    let unknown = train(&request(serde_json::json!({"network": "entity", "teacher": "oracle"})), &mut |_| {
        Flow::Continue
    });
    let err = unknown.err().expect("refused").to_string();
    assert!(err.contains("teacher") && err.contains("lookahead"), "{err}");
    let hp = serde_json::json!({"network": "entity", "teacher": "lookahead", "teacher_fraction": 1.0,
                                "num_envs": 2, "num_steps": 128, "hidden": 16, "candidate_nodes": 8,
                                "gain_features": true});
    let taught = train(&request(hp.clone()), &mut |_| Flow::Continue).unwrap();
    // Every update had the lookahead's actions to learn from, and the log says how often they were taken.
    let rows = taught.log.rows();
    assert!(!rows.is_empty() && rows.iter().all(|r| r.teacher_agreement.is_some()), "{rows:?}");
    // From the same seed, `greedy` teaches other actions: the runs part.
    let mut hp = hp;
    hp["teacher"] = serde_json::json!("greedy");
    let greedy = train(&request(hp), &mut |_| Flow::Continue).unwrap();
    // The teacher's term moves the weights, so what the updates measure after their first step.
    let learnt = |rows: &[berth_agents::run_log::LogRow]| -> Vec<(Option<f64>, Option<f64>)> {
        rows.iter().map(|r| (r.approx_kl, r.entropy)).collect()
    };
    assert_ne!(learnt(greedy.log.rows()), learnt(rows), "the lookahead taught what greedy did");
}

#[test]
fn kickstarting_from_the_planner_needs_a_cluster_it_plans_for_and_teaches_with_it() {
    let request = |scenario, hyperparameters| {
        ppo_request(Target::Placement(shipped(scenario).unwrap()), 512, 3, hyperparameters)
    };
    let hp = serde_json::json!({"network": "entity", "teacher": "planner", "teacher_fraction": 1.0,
                                "num_envs": 2, "num_steps": 128, "hidden": 16});
    let large = train(&request("gpu-large", hp.clone()), &mut |_| Flow::Continue);
    let err = large.err().expect("refused").to_string();
    assert!(err.contains("teacher") && err.contains("placement classes"), "{err}");
    let taught = train(&request("gpu-small", hp.clone()), &mut |_| Flow::Continue).unwrap();
    let rows = taught.log.rows();
    assert!(!rows.is_empty() && rows.iter().all(|r| r.teacher_agreement.is_some()), "{rows:?}");
    let mut hp = hp;
    hp["teacher"] = serde_json::json!("greedy");
    let greedy = train(&request("gpu-small", hp.clone()), &mut |_| Flow::Continue).unwrap();
    let learnt = |rows: &[berth_agents::run_log::LogRow]| -> Vec<(Option<f64>, Option<f64>)> {
        rows.iter().map(|r| (r.approx_kl, r.entropy)).collect()
    };
    assert_ne!(learnt(greedy.log.rows()), learnt(rows), "the planner taught what greedy did");

    // Across shapes each copy's first episode already runs on a cluster of its own, and its
    // planner is built for that one (a planner of the base cluster once indexed past the
    // varied cluster's nodes and panicked).
    hp["teacher"] = serde_json::json!("planner");
    hp["vary_shapes"] = serde_json::json!(true);
    let varied = train(&request("gpu-small", hp), &mut |_| Flow::Continue).unwrap();
    assert!(varied.log.rows().iter().all(|r| r.teacher_agreement.is_some()), "{:?}", varied.log.rows());
}
