//! The deep agents solve CartPole-v1 (a mean return of at least 475 over 100 greedy episodes)
//! with the settings `berth train --scenario cartpole` uses: the check against published
//! results that keeps a change to either algorithm honest.

use berth_agents::train::cartpole_score;
use berth_agents::{AgentKind, Flow, Target, TrainRequest, train};

/// The mean return over 100 greedy episodes of `agent` trained on CartPole for `steps`
/// (`None`: its default budget).
fn trained_score(agent: AgentKind, steps: Option<u64>, seed: u64) -> f64 {
    let request = TrainRequest {
        agent,
        target: Target::CartPole,
        steps,
        seed,
        hyperparameters: serde_json::Value::Null,
        device: Default::default(),
    };
    let mut trained = train(&request, &mut |_| Flow::Continue).unwrap();
    cartpole_score(trained.agent.as_mut(), 100, 10_000).unwrap()
}

#[test]
fn dqn_solves_cartpole_with_its_default_budget() {
    let score = trained_score(AgentKind::Dqn, None, 1);
    assert!(score >= 475.0, "DQN seed 1: {score}");
}

#[test]
fn ppo_solves_cartpole_in_50k_steps() {
    let score = trained_score(AgentKind::Ppo, Some(50_000), 1);
    assert!(score >= 475.0, "PPO seed 1: {score}");
}
