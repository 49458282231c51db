//! Smoke runs: every agent trains a little on every small scenario, and what it saves loads
//! back into an agent that acts the same.

use berth_agents::{ActMode, AgentKind, Flow, SavedModel, Target, TrainRequest, load_agent, train};
use berth_env::shipped::shipped;
use berth_env::{Env, PlacementEnv};

#[test]
fn every_agent_trains_on_every_small_scenario_and_round_trips() {
    // Small buffers and an early start, so DQN takes gradient steps within the smoke budget.
    let small_dqn =
        serde_json::json!({"learning_starts": 200, "batch_size": 32, "buffer_size": 1000, "hidden": 16});
    let small_ppo = serde_json::json!({"num_envs": 2, "num_steps": 250, "hidden": 16});
    for agent in [AgentKind::Qlearning, AgentKind::Dqn, AgentKind::Ppo] {
        for name in ["tiny", "gpu-small"] {
            let scenario = shipped(name).unwrap();
            let request = TrainRequest {
                agent,
                target: Target::Placement(scenario.clone()),
                steps: Some(2_000),
                seed: 3,
                hyperparameters: match agent {
                    AgentKind::Dqn => small_dqn.clone(),
                    AgentKind::Ppo => small_ppo.clone(),
                    AgentKind::Qlearning => serde_json::Value::Null,
                },
                device: Default::default(),
            };
            let mut trained = train(&request, &mut |_| Flow::Continue).unwrap();
            assert!(!trained.log.rows().is_empty(), "{agent} on {name} logged nothing");
            let model = SavedModel::from_bytes(&trained.model.to_bytes()).unwrap();
            let mut env = PlacementEnv::new(scenario).unwrap();
            let mut loaded = load_agent(&model, &env).unwrap();
            env.reset(9);
            for _ in 0..50 {
                let (obs, mask) = (env.observation().to_vec(), env.action_mask().to_vec());
                let a = trained.agent.act(&obs, &mask, ActMode::Greedy);
                assert_eq!(a, loaded.act(&obs, &mask, ActMode::Greedy), "{agent} on {name}");
                assert!(mask[a], "{agent} chose a masked action");
                env.step(a).unwrap();
            }
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_model() {
    let request = TrainRequest {
        agent: AgentKind::Qlearning,
        target: Target::Placement(shipped("tiny").unwrap()),
        steps: Some(5_000),
        seed: 11,
        hyperparameters: serde_json::Value::Null,
        device: Default::default(),
    };
    let a = train(&request, &mut |_| Flow::Continue).unwrap().model;
    let b = train(&request, &mut |_| Flow::Continue).unwrap().model;
    assert_eq!(a, b);
}

#[test]
fn qlearning_reaches_the_oracle_on_tiny() {
    use berth_agents::AgentPolicy;
    use berth_env::evaluate::{Contender, DayStart, compare};
    let scenario = shipped("tiny").unwrap();
    let request = TrainRequest {
        agent: AgentKind::Qlearning,
        target: Target::Placement(scenario.clone()),
        steps: None,
        seed: 1,
        hyperparameters: serde_json::Value::Null,
        device: Default::default(),
    };
    let trained = train(&request, &mut |_| Flow::Continue).unwrap();
    let contenders = vec![Contender::Oracle, Contender::Policy(Box::new(AgentPolicy::new(trained.agent)))];
    let (rows, _) = compare(scenario, contenders, 3, 100, DayStart::Fresh, &mut || {}).unwrap();
    let gap = rows[1].gap_to_oracle.unwrap();
    assert!(gap < 0.02, "Q-learning is {:.1}% above the oracle on tiny", gap * 100.0);
}

#[test]
fn every_agent_stops_soon_after_it_is_asked_to() {
    let small =
        serde_json::json!({"learning_starts": 100, "batch_size": 16, "buffer_size": 500, "hidden": 8});
    for agent in [AgentKind::Qlearning, AgentKind::Dqn, AgentKind::Ppo] {
        let request = TrainRequest {
            agent,
            target: Target::Placement(shipped("tiny").unwrap()),
            steps: Some(10_000_000),
            seed: 1,
            hyperparameters: match agent {
                AgentKind::Dqn => small.clone(),
                AgentKind::Ppo => serde_json::json!({"num_envs": 2, "num_steps": 64, "hidden": 8}),
                AgentKind::Qlearning => serde_json::Value::Null,
            },
            device: Default::default(),
        };
        let mut reports = 0;
        let stopped = train(&request, &mut |p| {
            reports += 1;
            if p.step >= 3_000 { Flow::Stop } else { Flow::Continue }
        });
        match stopped {
            Err(berth_agents::Error::Cancelled { step }) => {
                assert!((3_000..10_000).contains(&step), "{agent} stopped at step {step}")
            }
            Err(e) => panic!("{agent}: {e}"),
            Ok(_) => panic!("{agent} trained to the end"),
        }
        assert!(reports >= 2, "{agent}");
    }
}
