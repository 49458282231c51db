//! One entry point for every algorithm: what `berth train` (and later the service's task
//! runner) calls, and the loader that turns a saved model back into an acting agent.

use std::sync::Arc;

use berth_core::Scenario;
use berth_env::gym::Env;
use berth_env::replay::ReplayBackend;
use berth_env::{CartPole, PlacementEnv};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::{Agent, AgentKind};
use crate::dqn::{self, DqnAgent, DqnConfig};
use crate::entity_dqn::{self, EntityDqnAgent};
use crate::entity_ppo::{self, EntityPpoAgent};
use crate::error::{Error, Result};
use crate::model_file::{ModelHeader, SavedModel};
use crate::nets::{DeviceKind, Devices, NetworkShape, PolicyNetwork};
use crate::ppo::{self, PpoAgent, PpoConfig};
use crate::progress::{Flow, Progress};
use crate::qlearning::{self, QLearningAgent, QLearningConfig};
use crate::run_log::RunLog;

/// The env a run trains on.
#[derive(Debug, Clone)]
pub enum Target {
    /// The placement gym on a scenario.
    Placement(Arc<Scenario>),
    /// The placement gym on a scenario, its episodes replayed from a live cluster's recording.
    Replay(Arc<Scenario>, ReplayBackend),
    /// CartPole-v1, to check an algorithm against published results.
    CartPole,
}

impl Target {
    /// The name saved with the model.
    pub fn name(&self) -> &str {
        match self {
            Self::Placement(s) | Self::Replay(s, _) => &s.name,
            Self::CartPole => "cartpole",
        }
    }

    /// The scenario of a placement target.
    pub fn scenario(&self) -> Option<&Arc<Scenario>> {
        match self {
            Self::Placement(s) | Self::Replay(s, _) => Some(s),
            Self::CartPole => None,
        }
    }

    /// Steps of one full episode.
    fn episode_len(&self) -> u64 {
        match self {
            Self::Placement(s) | Self::Replay(s, _) => s.episode_ticks as u64,
            Self::CartPole => berth_env::cartpole::MAX_STEPS as u64,
        }
    }
}

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The algorithm.
    pub agent: AgentKind,
    /// What to train on.
    pub target: Target,
    /// Environment steps; `None` for the algorithm's default budget on this scenario.
    pub steps: Option<u64>,
    /// Seed of the run: the same seed gives the same run.
    pub seed: u64,
    /// Hyperparameters to override (a JSON object of the algorithm's config fields).
    pub hyperparameters: serde_json::Value,
    /// Where the networks train (Q-learning ignores it).
    pub device: DeviceKind,
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

/// The default training budget of an algorithm on a target, in environment steps.
pub fn default_steps(agent: AgentKind, target: &Target) -> u64 {
    let per_episode = target.episode_len();
    match agent {
        AgentKind::Qlearning => (per_episode * 12_000).clamp(100_000, 2_000_000),
        // On CartPole DQN's last policy can unlearn: 400 episodes solved it on 16 seeds of 16,
        // 700 on 7 of 8. A placement needs more to tell a keep from a move (measured on
        // gpu-small: 700 episodes left it 17-27% over the oracle, 2,000 9-13%), and 3,000 on
        // gpu-medium, where one seed in three was still behind `greedy` after 2,000.
        AgentKind::Dqn if matches!(target, Target::CartPole) => (per_episode * 400).clamp(100_000, 1_000_000),
        AgentKind::Dqn => (per_episode * 3000).clamp(100_000, 1_000_000),
        AgentKind::Ppo => (per_episode * 3000).clamp(200_000, 1_000_000),
    }
}

/// Reads an algorithm's config from the overrides; errors name the field.
pub(crate) fn config<C: DeserializeOwned + Default + Serialize>(overrides: &serde_json::Value) -> Result<C> {
    config_over(C::default(), overrides)
}

/// Reads the overrides over `base`: fields they do not name keep `base`'s values.
pub(crate) fn config_over<C: DeserializeOwned + Serialize>(
    base: C,
    overrides: &serde_json::Value,
) -> Result<C> {
    let overrides = match overrides {
        serde_json::Value::Null => return Ok(base),
        serde_json::Value::Object(o) if o.is_empty() => return Ok(base),
        serde_json::Value::Object(o) => o,
        _ => {
            return Err(Error::Config { name: ".".into(), reason: "hyperparameters must be a table".into() });
        }
    };
    let mut merged = match serde_json::to_value(base).expect("configs serialise") {
        serde_json::Value::Object(fields) => fields,
        _ => unreachable!("configs are structs"),
    };
    merged.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    serde_path_to_error::deserialize(serde_json::Value::Object(merged))
        .map_err(|e| Error::Config { name: e.path().to_string(), reason: e.into_inner().to_string() })
}

/// DQN's config on `target`: its defaults there, with `overrides` over them.
pub(crate) fn dqn_config(target: &Target, overrides: &serde_json::Value) -> Result<DqnConfig> {
    let base = match target {
        Target::CartPole => DqnConfig::cartpole(),
        _ => DqnConfig::default(),
    };
    config_over(base, overrides)
}

/// Checks overrides of an agent's hyperparameters before a run is queued: known fields,
/// right types, values in range. Errors name the field.
pub fn check_hyperparameters(agent: AgentKind, overrides: &serde_json::Value) -> Result<()> {
    match agent {
        AgentKind::Qlearning => config::<QLearningConfig>(overrides)?.validate(),
        AgentKind::Dqn => config::<DqnConfig>(overrides)?.validate(),
        AgentKind::Ppo => config::<PpoConfig>(overrides)?.validate(),
    }
}

/// Trains an agent; `progress` is called as the run goes, and may stop it.
pub fn train(request: &TrainRequest, progress: &mut dyn FnMut(Progress) -> Flow) -> Result<Trained> {
    if let Some(config) = entity_ppo_config(request)? {
        let env = entity_env(request)?;
        return train_entity(&env, to_json(&config), request, |steps, devices, log| {
            let agent = entity_ppo::train(&env, &config, steps, request.seed, devices, log, progress)?;
            Ok((agent.services().to_vec(), agent))
        });
    }
    if let Some(config) = entity_dqn_config(request)? {
        let env = entity_env(request)?;
        return train_entity(&env, to_json(&config), request, |steps, devices, log| {
            let agent = entity_dqn::train(&env, &config, steps, request.seed, devices, log, progress)?;
            Ok((agent.services().to_vec(), agent))
        });
    }
    match &request.target {
        Target::Placement(scenario) => train_on(&mut PlacementEnv::new(scenario.clone())?, request, progress),
        Target::Replay(scenario, replay) => {
            let mut env = PlacementEnv::with_backend(scenario.clone(), Box::new(replay.clone()))?;
            train_on(&mut env, request, progress)
        }
        Target::CartPole => train_on(&mut CartPole::new(), request, progress),
    }
}

/// The placement env an entity network trains on; CartPole is refused.
fn entity_env(request: &TrainRequest) -> Result<PlacementEnv> {
    match &request.target {
        Target::Placement(scenario) => Ok(PlacementEnv::new(scenario.clone())?),
        Target::Replay(scenario, replay) => {
            Ok(PlacementEnv::with_backend(scenario.clone(), Box::new(replay.clone()))?)
        }
        Target::CartPole => {
            let reason = "the entity network acts on placement scenarios, not CartPole".into();
            Err(Error::Config { name: "network".into(), reason })
        }
    }
}

fn train_on<E: Env + Clone>(
    env: &mut E,
    request: &TrainRequest,
    progress: &mut dyn FnMut(Progress) -> Flow,
) -> Result<Trained> {
    let steps = budget(request)?;
    let mut log = RunLog::new();
    let (agent, config_json): (Box<dyn Agent>, serde_json::Value) = match request.agent {
        AgentKind::Qlearning => {
            let config: QLearningConfig = config(&request.hyperparameters)?;
            let agent = qlearning::train(env, &config, steps, request.seed, &mut log, progress)?;
            (Box::new(agent), to_json(&config))
        }
        AgentKind::Dqn => {
            let config = dqn_config(&request.target, &request.hyperparameters)?;
            let devices = Devices::select(request.device)?;
            let agent = dqn::train(env, &config, steps, request.seed, &devices, &mut log, progress)?;
            (Box::new(agent), to_json(&config))
        }
        AgentKind::Ppo => {
            let config: PpoConfig = config(&request.hyperparameters)?;
            let devices = Devices::select(request.device)?;
            let agent = ppo::train(env, &config, steps, request.seed, &devices, &mut log, progress)?;
            (Box::new(agent), to_json(&config))
        }
    };
    let model = saved_model(request, env, steps, config_json, Vec::new(), agent.weights());
    Ok(Trained { model, agent, log })
}

/// The run's steps: the request's, or the algorithm's default budget; at least 1.
fn budget(request: &TrainRequest) -> Result<u64> {
    let steps = request.steps.unwrap_or_else(|| default_steps(request.agent, &request.target));
    if steps == 0 {
        return Err(Error::Config { name: "steps".into(), reason: "must be at least 1".into() });
    }
    Ok(steps)
}

/// The model file of a finished run on `env`.
fn saved_model<E: Env>(
    request: &TrainRequest,
    env: &E,
    steps: u64,
    config: serde_json::Value,
    services: Vec<String>,
    weights: Vec<u8>,
) -> SavedModel {
    SavedModel {
        header: ModelHeader {
            agent: request.agent,
            observation_len: env.observation_space().len(),
            action_count: env.action_count(),
            scenario: request.target.name().to_string(),
            trained_steps: steps,
            seed: request.seed,
            config,
            services,
        },
        weights,
    }
}

/// A config as JSON, as its model file keeps it.
fn to_json(config: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(config).expect("configs serialise")
}

/// The PPO config of a request for the entity network, if it is one.
fn entity_ppo_config(request: &TrainRequest) -> Result<Option<PpoConfig>> {
    if request.agent != AgentKind::Ppo {
        return Ok(None);
    }
    let config: PpoConfig = config(&request.hyperparameters)?;
    Ok((config.network == PolicyNetwork::Entity).then_some(config))
}

/// The DQN config of a request for the entity network, if it is one.
fn entity_dqn_config(request: &TrainRequest) -> Result<Option<DqnConfig>> {
    if request.agent != AgentKind::Dqn {
        return Ok(None);
    }
    let config = dqn_config(&request.target, &request.hyperparameters)?;
    Ok((config.network == PolicyNetwork::Entity).then_some(config))
}

/// Training on the entity network with `run` (given the budget, the devices and the log):
/// its model records the services it knows, not the sizes.
fn train_entity<A: Agent + 'static>(
    env: &PlacementEnv,
    config: serde_json::Value,
    request: &TrainRequest,
    run: impl FnOnce(u64, &Devices, &mut RunLog) -> Result<(Vec<String>, A)>,
) -> Result<Trained> {
    let steps = budget(request)?;
    let mut log = RunLog::new();
    let devices = Devices::select(request.device)?;
    let (services, agent) = run(steps, &devices, &mut log)?;
    let model = saved_model(request, env, steps, config, services, agent.weights());
    Ok(Trained { model, agent: Box::new(agent), log })
}

/// Mean return of `agent` acting greedily over `episodes` CartPole episodes.
pub fn cartpole_score(agent: &mut dyn Agent, episodes: u64, seed: u64) -> Result<f64> {
    let mut env = CartPole::new();
    let mut total = 0.0;
    for e in 0..episodes {
        let mut obs = env.reset(seed + e).obs.to_vec();
        loop {
            let action = agent.act(&obs, env.action_mask(), crate::ActMode::Greedy);
            let s = env.step(action)?;
            total += s.reward;
            if s.terminated || s.truncated {
                break;
            }
            obs = s.obs.to_vec();
        }
    }
    Ok(total / episodes as f64)
}

/// The sizes a saved network was built with.
fn network_shape(header: &ModelHeader, hidden: usize) -> NetworkShape {
    NetworkShape { inputs: header.observation_len, hidden, outputs: header.action_count, seed: header.seed }
}

/// The DQN config a model was saved with. Fields added since keep older models acting as
/// they were trained: no `dueling` field means a plain network, no `keep_margin` the plain
/// argmax.
fn saved_dqn_config(saved: &serde_json::Value) -> Result<DqnConfig> {
    let mut dqn = config::<DqnConfig>(saved)?;
    dqn.dueling &= saved.get("dueling").is_some();
    if saved.get("keep_margin").is_none() {
        dqn.keep_margin = 0.0;
    }
    Ok(dqn)
}

/// Whether the model acts on any cluster of the services it knows (the entity network), not
/// only on the node and replica counts it was trained on.
pub fn fits_any_cluster(model: &SavedModel) -> bool {
    entity_config(model).is_some() || entity_dqn_model_config(model).is_some()
}

/// The DQN config of a model on the entity network; `None` for any other model.
fn entity_dqn_model_config(model: &SavedModel) -> Option<DqnConfig> {
    if model.header.agent != AgentKind::Dqn {
        return None;
    }
    saved_dqn_config(&model.header.config).ok().filter(|c| c.network == PolicyNetwork::Entity)
}

/// The PPO config of a model on the entity network; `None` for any other model.
fn entity_config(model: &SavedModel) -> Option<PpoConfig> {
    if model.header.agent != AgentKind::Ppo {
        return None;
    }
    config::<PpoConfig>(&model.header.config).ok().filter(|c| c.network == PolicyNetwork::Entity)
}

/// Builds an agent from weights whose tensors may not match the network the header
/// describes: burn panics on such a record, and the model is refused instead of the process.
fn rebuilt(network: &str, build: &dyn Fn() -> Result<Box<dyn Agent>>) -> Result<Box<dyn Agent>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(build))
        .unwrap_or_else(|_| Err(Error::BadModel(format!("the weights do not match {network}"))))
}

/// The acting agent of a saved model, checked against the env it will act in. The header
/// is checked before any network is built: its config must pass the algorithm's checks (a
/// `hidden` of a billion would be allocated), and the weights must be large enough to fill
/// a network of the sizes it names, so what is built is never larger than what was sent.
pub fn load_agent(model: &SavedModel, env: &PlacementEnv) -> Result<Box<dyn Agent>> {
    let header = &model.header;
    if let Some(ppo) = entity_config(model) {
        // Any cluster of the services it knows: no size to match.
        ppo.validate()?;
        entity_ppo::check_services(&header.services, env.scenario())?;
        let parameters = EntityPpoAgent::parameters(header.services.len(), &ppo) as u64;
        check_weight_bytes(&model.weights, parameters)?;
        return rebuilt("the entity network", &|| {
            let agent =
                EntityPpoAgent::from_weights(&model.weights, header.services.clone(), &ppo, header.seed)?;
            Ok(Box::new(agent))
        });
    }
    if let Some(dqn) = entity_dqn_model_config(model) {
        dqn.validate()?;
        entity_ppo::check_services(&header.services, env.scenario())?;
        let parameters = EntityDqnAgent::parameters(header.services.len(), &dqn) as u64;
        check_weight_bytes(&model.weights, parameters)?;
        return rebuilt("the entity network", &|| {
            let agent =
                EntityDqnAgent::from_weights(&model.weights, header.services.clone(), &dqn, header.seed)?;
            Ok(Box::new(agent))
        });
    }
    model.check_fits(&env.scenario().name, env.observation_space().len(), env.action_count())?;
    let rebuilt =
        |build: &dyn Fn() -> Result<Box<dyn Agent>>| rebuilt("the network the header describes", build);
    match header.agent {
        AgentKind::Qlearning => {
            let agent = QLearningAgent::from_weights(&model.weights, header.seed)?;
            if agent.action_count() != header.action_count {
                return Err(Error::BadModel(format!(
                    "the Q-table has values for {} actions, the header says {}",
                    agent.action_count(),
                    header.action_count
                )));
            }
            Ok(Box::new(agent))
        }
        AgentKind::Dqn => {
            let dqn = saved_dqn_config(&header.config)?;
            dqn.validate()?;
            let shape = network_shape(header, dqn.hidden);
            check_weight_bytes(&model.weights, shape.parameters(dqn.dueling))?;
            rebuilt(&|| {
                let agent = DqnAgent::from_weights(&model.weights, shape, &dqn)?;
                Ok(Box::new(agent.with_keep_margin(env.keep_action(), dqn.keep_margin)))
            })
        }
        AgentKind::Ppo => {
            let ppo = config::<PpoConfig>(&header.config)?;
            ppo.validate()?;
            let shape = network_shape(header, ppo.hidden);
            // The actor, and the critic with one output.
            let critic = NetworkShape { outputs: 1, ..shape };
            check_weight_bytes(&model.weights, shape.parameters(false) + critic.parameters(false))?;
            rebuilt(&|| Ok(Box::new(PpoAgent::from_weights(&model.weights, shape)?)))
        }
    }
}

/// Refuses weights too short to hold `parameters` 32-bit floats.
fn check_weight_bytes(weights: &[u8], parameters: u64) -> Result<()> {
    let needed = parameters.saturating_mul(4);
    if (weights.len() as u64) < needed {
        return Err(Error::BadModel(format!(
            "the header describes a network of {parameters} parameters ({needed} bytes), \
             but the weights hold {} bytes",
            weights.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::module::Module;

    use super::*;
    use crate::nets::Mlp;

    #[test]
    fn a_dqn_model_saved_before_the_dueling_head_still_loads() {
        let env = PlacementEnv::new(berth_env::shipped::shipped("tiny").unwrap()).unwrap();
        let (inputs, actions) = (env.observation_space().len(), env.action_count());
        let plain = Mlp::new(inputs, 8, actions, &Devices::cpu().plain);
        let mut old_config = serde_json::to_value(DqnConfig { hidden: 8, ..DqnConfig::cleanrl() }).unwrap();
        for new_field in ["dueling", "action_gap", "explore_keep"] {
            old_config.as_object_mut().unwrap().remove(new_field);
        }
        let model = SavedModel {
            header: ModelHeader {
                agent: AgentKind::Dqn,
                observation_len: inputs,
                action_count: actions,
                scenario: "tiny".into(),
                trained_steps: 1,
                seed: 1,
                config: old_config,
                services: Vec::new(),
            },
            weights: plain.into_record().into_bytes().unwrap().to_vec(),
        };
        let mut agent = load_agent(&model, &env).unwrap();
        let action = agent.act(env.observation(), env.action_mask(), crate::ActMode::Greedy);
        assert!(env.action_mask()[action]);
    }

    #[test]
    fn a_dqn_model_saved_before_the_keep_margin_acts_on_the_plain_argmax() {
        let mut saved = serde_json::to_value(DqnConfig { keep_margin: 3.0, ..DqnConfig::default() }).unwrap();
        assert_eq!(saved_dqn_config(&saved).unwrap().keep_margin, 3.0);
        assert!(saved_dqn_config(&saved).unwrap().dueling);
        saved.as_object_mut().unwrap().remove("keep_margin");
        assert_eq!(saved_dqn_config(&saved).unwrap().keep_margin, 0.0);
        assert_eq!(DqnConfig::default().keep_margin, 1.0, "new models get the default");
    }
}
