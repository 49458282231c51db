//! The `Agent` trait: what every learner offers once trained, whatever its algorithm.
//!
//! Training differs by algorithm (off-policy steps, on-policy rollouts), so each algorithm
//! trains in its own file; what they share is acting under a mask and turning into bytes.

use std::fmt;

use berth_env::PlacementEnv;
use berth_env::baselines::Policy;
use berth_env::gym::Env;
pub use berth_env::gym::random_allowed;
use serde::{Deserialize, Serialize};

/// The learning algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// Tabular Q-learning over a discretised observation.
    Qlearning,
    /// Double DQN with a replay buffer and a target network.
    Dqn,
    /// PPO with a masked categorical policy over vectorised rollouts.
    Ppo,
}

impl AgentKind {
    /// The name used on the command line, in files and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Qlearning => "qlearning",
            Self::Dqn => "dqn",
            Self::Ppo => "ppo",
        }
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to pick an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActMode {
    /// The best allowed action: for evaluation and deployment.
    Greedy,
    /// The agent's exploring behaviour: for training.
    Explore,
}

/// A trained (or training) agent.
pub trait Agent: Send {
    /// Which algorithm it is.
    fn kind(&self) -> AgentKind;
    /// An allowed action for this observation; `mask[a]` says whether `a` is allowed.
    fn act(&mut self, obs: &[f32], mask: &[bool], mode: ActMode) -> usize;
    /// The learned parameters as bytes (see [`crate::model_file`] for the whole model).
    fn weights(&self) -> Vec<u8>;
    /// An allowed action in `env`'s current state: what the flat observation and mask give,
    /// unless the agent reads the env itself (the entity network does).
    fn act_in(&mut self, env: &PlacementEnv, mode: ActMode) -> usize {
        self.act(env.observation(), env.action_mask(), mode)
    }
}

/// An agent acting greedily in the placement env, as a [`Policy`] beside the baselines.
pub struct AgentPolicy {
    agent: Box<dyn Agent>,
    name: String,
}

impl AgentPolicy {
    /// Wraps an agent; its rows are named after its algorithm.
    pub fn new(agent: Box<dyn Agent>) -> Self {
        let name = agent.kind().name().to_string();
        Self { agent, name }
    }

    /// Wraps an agent whose rows are named `name` (two models of one algorithm side by side).
    pub fn named(agent: Box<dyn Agent>, name: String) -> Self {
        Self { agent, name }
    }
}

impl Policy for AgentPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn act(&mut self, env: &PlacementEnv) -> usize {
        self.agent.act_in(env, ActMode::Greedy)
    }
}

/// The index of the largest value among allowed actions (first on ties); 0 if none allowed.
pub fn masked_argmax(values: &[f32], mask: &[bool]) -> usize {
    let mut best: Option<(usize, f32)> = None;
    for (a, (&v, &ok)) in values.iter().zip(mask).enumerate() {
        if ok && best.is_none_or(|(_, b)| v > b) {
            best = Some((a, v));
        }
    }
    best.map_or(0, |(a, _)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_argmax_skips_masked_actions() {
        assert_eq!(masked_argmax(&[5.0, 1.0, 3.0], &[false, true, true]), 2);
        assert_eq!(masked_argmax(&[-1.0, -1.0], &[true, true]), 0);
    }

    #[test]
    fn random_allowed_never_picks_a_masked_action() {
        let mut rng = berth_core::Rng::new(4);
        let mask = [false, true, false, true, false];
        for _ in 0..500 {
            assert!(mask[random_allowed(&mask, &mut rng)]);
        }
    }
}
