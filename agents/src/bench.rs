//! What `berth bench agents` measures of the size-agnostic network on a scenario: how long
//! it takes to build and how large it is, the env's steps per second alone, and PPO's
//! training steps per second with it (acting, learning and the env together).

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::Scenario;
use berth_env::PlacementEnv;
use serde::Serialize;

use crate::entity_net::EntityNet;
use crate::error::Result;
use crate::nets::{Devices, PolicyNetwork, seeded};
use crate::ppo::PpoConfig;
use crate::progress::Flow;
use crate::run_log::RunLog;

/// One scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct AgentBench {
    /// Scenario name.
    pub scenario: String,
    /// Nodes and replicas.
    pub nodes: usize,
    /// Replicas.
    pub replicas: usize,
    /// Weights and biases of the network.
    pub parameters: usize,
    /// Bytes of those parameters (f32).
    pub parameter_bytes: usize,
    /// Milliseconds to build the network and draw its weights.
    pub build_ms: f64,
    /// Env steps per second, single thread, no policy.
    pub env_steps_per_sec: f64,
    /// PPO training steps per second (env steps, with acting and learning).
    pub train_steps_per_sec: f64,
    /// Training steps measured.
    pub train_steps: u64,
}

/// Measures the entity network on `scenario`: `steps` of PPO training (whole rollouts of the
/// size PPO's hyperparameter `overrides` give) and `env_seconds` of the env alone.
pub fn entity(
    scenario: Arc<Scenario>,
    overrides: &serde_json::Value,
    steps: u64,
    env_seconds: f64,
) -> Result<AgentBench> {
    let config = PpoConfig { network: PolicyNetwork::Entity, ..crate::train::config(overrides)? };
    config.validate()?;
    let devices = Devices::cpu();
    let shape = crate::entity_ppo::shape(scenario.services.len(), &config);
    let started = Instant::now();
    let net = seeded(&devices, 1, || EntityNet::new(shape, &devices.train));
    let build_ms = started.elapsed().as_secs_f64() * 1000.0;
    let parameters = net.parameters();
    let env_steps_per_sec = berth_env::bench::single(scenario.clone(), Duration::from_secs_f64(env_seconds))?;
    let env = PlacementEnv::new(scenario.clone())?;
    let started = Instant::now();
    let mut log = RunLog::new();
    crate::entity_ppo::train(&env, &config, steps, 1, &devices, &mut log, &mut |_| Flow::Continue)?;
    let rollout = config.batch_size() as u64;
    let trained = steps.div_ceil(rollout).max(1) * rollout;
    Ok(AgentBench {
        scenario: scenario.name.clone(),
        nodes: scenario.nodes.len(),
        replicas: scenario.replica_count(),
        parameters,
        parameter_bytes: 4 * parameters,
        build_ms,
        env_steps_per_sec,
        train_steps_per_sec: trained as f64 / started.elapsed().as_secs_f64(),
        train_steps: trained,
    })
}
