//! One entry point for every algorithm: what `berth train` (and later the service's task
//! runner) calls, and the loader that turns a saved model back into an acting agent.

use std::sync::Arc;

use berth_core::Scenario;
use berth_env::PlacementEnv;
use berth_env::gym::Env;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::{Agent, AgentKind};
use crate::error::{Error, Result};
use crate::model_file::{ModelHeader, SavedModel};
use crate::qlearning::{self, QLearningAgent, QLearningConfig};
use crate::run_log::RunLog;

/// Where a run stands, for progress bars and the API's progress fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Environment steps done.
    pub step: u64,
    /// Steps the run will take.
    pub total: u64,
    /// Return of the last finished episode.
    pub recent_return: Option<f64>,
    /// Steps per second so far.
    pub sps: f64,
}

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The algorithm.
    pub agent: AgentKind,
    /// The scenario to train on.
    pub scenario: Arc<Scenario>,
    /// Environment steps; `None` for the algorithm's default budget on this scenario.
    pub steps: Option<u64>,
    /// Seed of the run: the same seed gives the same run.
    pub seed: u64,
    /// Hyperparameters to override (a JSON object of the algorithm's config fields).
    pub hyperparameters: serde_json::Value,
}

/// A finished run.
pub struct Trained {
    /// The model to save.
    pub model: SavedModel,
    /// The agent, ready to act.
    pub agent: Box<dyn Agent>,
    /// One row per update.
    pub log: RunLog,
}

/// The default training budget of an algorithm on a scenario, in environment steps.
pub fn default_steps(agent: AgentKind, scenario: &Scenario) -> u64 {
    let per_episode = scenario.episode_ticks as u64;
    match agent {
        AgentKind::Qlearning => (per_episode * 2000).clamp(50_000, 1_000_000),
    }
}

/// Reads an algorithm's config from the overrides; errors name the field.
fn config<C: DeserializeOwned + Default + Serialize>(overrides: &serde_json::Value) -> Result<C> {
    if overrides.is_null() || overrides.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(C::default());
    }
    serde_path_to_error::deserialize(overrides)
        .map_err(|e| Error::Config { name: e.path().to_string(), reason: e.into_inner().to_string() })
}

/// Trains an agent; `progress` is called as the run goes.
pub fn train(request: &TrainRequest, progress: &mut dyn FnMut(Progress)) -> Result<Trained> {
    let scenario = &request.scenario;
    let steps = request.steps.unwrap_or_else(|| default_steps(request.agent, scenario));
    if steps == 0 {
        return Err(Error::Config { name: "steps".into(), reason: "must be at least 1".into() });
    }
    let mut env = PlacementEnv::new(scenario.clone())?;
    let mut log = RunLog::new();
    let (agent, config_json): (Box<dyn Agent>, serde_json::Value) = match request.agent {
        AgentKind::Qlearning => {
            let config: QLearningConfig = config(&request.hyperparameters)?;
            let agent = qlearning::train(&mut env, &config, steps, request.seed, &mut log, progress)?;
            (Box::new(agent), serde_json::to_value(&config).expect("configs serialise"))
        }
    };
    let model = SavedModel {
        header: ModelHeader {
            agent: request.agent,
            observation_len: env.observation_space().len(),
            action_count: env.action_count(),
            scenario: scenario.name.clone(),
            trained_steps: steps,
            seed: request.seed,
            config: config_json,
        },
        weights: agent.weights(),
    };
    Ok(Trained { model, agent, log })
}

/// The acting agent of a saved model, checked against the env it will act in.
pub fn load_agent(model: &SavedModel, env: &PlacementEnv) -> Result<Box<dyn Agent>> {
    model.check_fits(&env.scenario().name, env.observation_space().len(), env.action_count())?;
    match model.header.agent {
        AgentKind::Qlearning => {
            Ok(Box::new(QLearningAgent::from_weights(&model.weights, model.header.seed)?))
        }
    }
}
