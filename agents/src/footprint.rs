//! How much memory a training run will take, estimated before it starts from the scenario's
//! shape and the hyperparameters alone, so that a service can refuse a task that would not
//! fit its budget instead of dying while it allocates.
//!
//! The figures are upper estimates of the large buffers (envs, the replay buffer or the
//! rollout, the networks with their optimiser state, one batch's activations), not a
//! measurement; allocator overhead and the evaluation afterwards come on top.

use berth_env::PlacementEnv;
use serde_json::Value;

use crate::agent::AgentKind;
use crate::entity_dqn::EntityDqnAgent;
use crate::entity_ppo::EntityPpoAgent;
use crate::error::Result;
use crate::nets::{NetworkShape, PolicyNetwork};
use crate::ppo::PpoConfig;
use crate::qlearning::QLearningConfig;
use crate::train::{Target, config, default_steps, dqn_config};
use berth_env::entity::{group_width, node_width, replica_width};

/// Q-table states counted in the estimate: tables stop growing long before this on the
/// scenarios Q-learning suits (`tiny`: a few thousand).
const QTABLE_STATES: u64 = 100_000;

/// Copies of a network's parameters kept while training: the weights, their gradients and
/// Adam's two moments (DQN's target network adds one more).
const TRAINING_COPIES: u64 = 4;

/// One part of the estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// What it is, for messages.
    pub what: &'static str,
    /// The hyperparameter that sizes it most (`scenario` when the scenario does).
    pub field: &'static str,
    /// Bytes.
    pub bytes: u64,
}

/// A run's estimated memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    /// The parts, largest first.
    pub parts: Vec<Part>,
}

impl Footprint {
    /// All parts together, bytes.
    pub fn total_bytes(&self) -> u64 {
        self.parts.iter().fold(0, |sum, p| sum.saturating_add(p.bytes))
    }

    /// The largest part.
    pub fn largest(&self) -> &Part {
        &self.parts[0]
    }
}

/// Estimates the memory of training `agent` on `target` with `overrides` (already checked
/// by [`crate::train::check_hyperparameters`]) for `steps` (`None`: the default budget).
pub fn estimate(
    agent: AgentKind,
    target: &Target,
    steps: Option<u64>,
    overrides: &Value,
) -> Result<Footprint> {
    let Some(scenario) = target.scenario() else {
        // CartPole: a few kilobytes of env, the networks and buffers of its small configs.
        return Ok(Footprint {
            parts: vec![Part { what: "CartPole run", field: "scenario", bytes: 64 << 20 }],
        });
    };
    let sizes = PlacementEnv::sizes(scenario);
    let (obs, actions) = (sizes.observation_len as u64, sizes.action_count as u64);
    let env = PlacementEnv::footprint_bytes(scenario);
    let times = |a: u64, b: u64| a.saturating_mul(b);
    let mut parts = match agent {
        AgentKind::Qlearning => {
            let _: QLearningConfig = config(overrides)?;
            let steps = steps.unwrap_or_else(|| default_steps(agent, target));
            let states = steps.min(QTABLE_STATES);
            vec![
                Part { what: "env", field: "scenario", bytes: env },
                Part { what: "Q-table", field: "scenario", bytes: times(states, times(actions, 4) + 64) },
            ]
        }
        AgentKind::Dqn => {
            let dqn = dqn_config(target, overrides)?;
            // Parameters, bytes of one transition, bytes of one batch row's activations.
            let (params, transition, activations) = if dqn.network == PolicyNetwork::Entity {
                let floats = entity_state_floats(scenario, dqn.gain_features, dqn.spread_features);
                let (replicas, hidden) = (scenario.replica_count() as u64, dqn.hidden as u64);
                let nodes = scenario.nodes.len() as u64;
                let candidates = times(replicas, dqn.candidate_moves as u64);
                (
                    EntityDqnAgent::parameters(scenario.services.len(), &dqn) as u64,
                    // One state (the next is the following transition's), its candidate
                    // moves, and the scalars.
                    4 * floats + 40 * candidates + 96,
                    // Four passes (online and target on the next states, target on the
                    // states, online with its backward pass), every row through the layers.
                    4 * 4 * (4 * hidden * (nodes + replicas + candidates) + floats),
                )
            } else {
                let shape = NetworkShape {
                    inputs: obs as usize,
                    hidden: dqn.hidden,
                    outputs: actions as usize,
                    seed: 0,
                };
                (
                    shape.parameters(dqn.dueling),
                    // Two observations and two masks, and the scalars.
                    8 * obs + 2 * actions + 24,
                    // Online and target forward passes, and the backward pass.
                    3 * 4 * (obs + 2 * dqn.hidden as u64 + actions),
                )
            };
            vec![
                // The training env and the validation env.
                Part { what: "envs", field: "scenario", bytes: times(env, 2) },
                Part {
                    what: "replay buffer",
                    field: "buffer_size",
                    bytes: times(dqn.buffer_size as u64, transition),
                },
                Part { what: "networks", field: "hidden", bytes: times(params, 4 * (TRAINING_COPIES + 1)) },
                Part { what: "batch", field: "batch_size", bytes: times(dqn.batch_size as u64, activations) },
            ]
        }
        AgentKind::Ppo => {
            let ppo: PpoConfig = config(overrides)?;
            let hidden = ppo.hidden as u64;
            // Parameters; bytes of one rollout row; bytes of one minibatch row's activations.
            let (params, row, activations) = if ppo.network == PolicyNetwork::Entity {
                let services = scenario.services.len();
                let (nodes, replicas) = (scenario.nodes.len() as u64, scenario.replica_count() as u64);
                // A state's rows and relations, the two heads' masks for the action and the
                // teacher's, and the row's scalars.
                let floats = entity_state_floats(scenario, ppo.gain_features, ppo.spread_features)
                    + 2 * (nodes + replicas);
                let params = EntityPpoAgent::parameters(services, &ppo) as u64;
                // Embeddings of every node and replica through the layers, forward and backward.
                (
                    params,
                    4 * floats + 2 * (replicas + 1 + nodes) + 48,
                    3 * 4 * (4 * hidden * (nodes + replicas) + floats),
                )
            } else {
                let actor = NetworkShape {
                    inputs: obs as usize,
                    hidden: ppo.hidden,
                    outputs: actions as usize,
                    seed: 0,
                };
                let critic = NetworkShape { outputs: 1, ..actor };
                let params = actor.parameters(false) + critic.parameters(false);
                // An observation, the mask as logits, and the row's scalars.
                (params, 4 * obs + 4 * actions + 48, 3 * 4 * (obs + 2 * hidden + 2 * actions))
            };
            let rows = (ppo.num_envs * ppo.num_steps) as u64;
            let minibatch = rows.div_ceil(ppo.num_minibatches as u64);
            // The copies and the starting env; a `lookahead` or `planner` teacher keeps a
            // scratch copy per copy.
            let per_copy = if ppo.teacher.simulates() { 2 } else { 1 };
            let envs = times(ppo.num_envs as u64, per_copy) + 1;
            vec![
                Part { what: "envs", field: "num_envs", bytes: times(env, envs) },
                Part { what: "rollout", field: "num_steps", bytes: times(rows, row) },
                Part { what: "networks", field: "hidden", bytes: times(params, 4 * TRAINING_COPIES) },
                Part { what: "minibatch", field: "num_minibatches", bytes: times(minibatch, activations) },
            ]
        }
    };
    parts.sort_by_key(|p| std::cmp::Reverse(p.bytes));
    Ok(Footprint { parts })
}

/// Floats of one entity observation of `scenario` with a row for every node: its rows, its
/// relations and its global features.
fn entity_state_floats(scenario: &berth_core::Scenario, gains: bool, spread: bool) -> u64 {
    let services = scenario.services.len();
    let (nodes, replicas) = (scenario.nodes.len() as u64, scenario.replica_count() as u64);
    let groups = scenario.user_groups.len() as u64;
    nodes * node_width(services, gains, spread) as u64
        + replicas * replica_width(services, gains, spread) as u64
        + groups * group_width(services) as u64
        + 2 * nodes
        + replicas
        + 2 * groups
        + 8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(name: &str) -> Target {
        Target::Placement(berth_env::shipped::shipped(name).unwrap())
    }

    #[test]
    fn the_replay_buffer_sizes_dqn_on_a_large_cluster() {
        let large = estimate(AgentKind::Dqn, &placement("gpu-large"), None, &Value::Null).unwrap();
        assert_eq!(large.largest().field, "buffer_size");
        // 10,000 transitions of two 200,001-action masks alone are 4 GB.
        assert!(large.total_bytes() > 4_000_000_000, "{large:?}");
        let small = estimate(AgentKind::Dqn, &placement("gpu-small"), None, &Value::Null).unwrap();
        assert!(small.total_bytes() < 200 << 20, "{small:?}");
        let smaller = serde_json::json!({"buffer_size": 1000});
        let less = estimate(AgentKind::Dqn, &placement("gpu-large"), None, &smaller).unwrap();
        assert!(less.total_bytes() < large.total_bytes() / 5, "{less:?}");
    }

    #[test]
    fn dqn_on_the_entity_network_keeps_one_state_a_transition_and_no_mask() {
        let entity = serde_json::json!({"network": "entity"});
        let flat = estimate(AgentKind::Dqn, &placement("gpu-large"), None, &Value::Null).unwrap();
        let rows = estimate(AgentKind::Dqn, &placement("gpu-large"), None, &entity).unwrap();
        // No 200,001-action masks, and one state a transition: under half the flat network's
        // estimate (about 1.8 GB to 5.4), though a state has a row for each of 1,000 nodes.
        assert!(rows.total_bytes() < flat.total_bytes() / 2, "{rows:?} against {flat:?}");
        let half = serde_json::json!({"network": "entity", "buffer_size": 5000});
        let less = estimate(AgentKind::Dqn, &placement("gpu-large"), None, &half).unwrap();
        assert!(less.total_bytes() < rows.total_bytes(), "{less:?}");
    }

    #[test]
    fn a_lookahead_teacher_adds_a_scratch_env_per_copy() {
        let entity = serde_json::json!({"network": "entity", "num_envs": 8});
        let taught = serde_json::json!({"network": "entity", "num_envs": 8, "teacher": "lookahead"});
        let envs = |hp: &Value| {
            let run = estimate(AgentKind::Ppo, &placement("openb"), None, hp).unwrap();
            run.parts.iter().find(|p| p.what == "envs").unwrap().bytes
        };
        // 9 envs, then 17.
        assert_eq!(envs(&entity) / 9 * 17, envs(&taught));
    }

    #[test]
    fn ppo_grows_with_its_rollout() {
        let base = estimate(AgentKind::Ppo, &placement("gpu-medium"), None, &Value::Null).unwrap();
        let wide = serde_json::json!({"num_envs": 64, "num_steps": 2048});
        let big = estimate(AgentKind::Ppo, &placement("gpu-medium"), None, &wide).unwrap();
        assert!(big.total_bytes() > 50 * base.total_bytes(), "{base:?} {big:?}");
        // The rollout and its minibatches, both sized by the rollout's rows.
        assert!(["num_steps", "num_minibatches"].contains(&big.largest().field), "{big:?}");
    }
}
