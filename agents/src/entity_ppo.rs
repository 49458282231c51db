//! PPO on the size-agnostic entity network ([`crate::entity_net`]): the same algorithm and
//! hyperparameters as [`crate::ppo`] (GAE, the clipped losses, the entropy bonus, reward
//! scaling, truncation bootstrapped, kickstarting from `greedy`, a keep prior), over
//! rollouts of entity observations instead of flat vectors; kickstarting may imitate
//! `lookahead` instead of `greedy` ([`crate::teacher`]). A rollout stores each state's
//! rows and the two heads' masks for the action taken (replicas open, the moved replica's
//! nodes), never the flat `1 + R·N` mask, so it stays small on a 1,523-node cluster.

use std::time::Instant;

use berth_core::Rng;
use berth_env::PlacementEnv;
use berth_env::entity::{EntityObs, observe_in};
use berth_env::gym::{Env, first_allowed};
use berth_env::shapes::{Condition, Curriculum, ShapeRanges};
use burn::grad_clipping::GradientClippingConfig;
use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;

use crate::agent::{ActMode, Agent, AgentKind};
use crate::entity_net::{Decision, EntityBatch, EntityNet, EntityShape};
use crate::episodes::Episodes;
use crate::error::{Error, Result};
use crate::nets::{Devices, record_from_bytes, seeded, values};
use crate::normalize::RewardScaler;
use crate::ppo::{
    PpoConfig, UpdateStats, UpdateSummary, clipped_policy_loss, combined_loss, keep_logit, learning_rate_at,
    minibatch_advantages, ratio_stats, rollout_advantages, run_epochs, teacher_weight_at, value_loss,
};
use crate::progress::{Flow, Progress};
use crate::run_log::{RunLog, Window};
use crate::teacher::Teachers;

/// A PPO policy on the entity network, acting on any cluster of its services.
pub struct EntityPpoAgent {
    net: EntityNet,
    devices: Devices,
    /// The services it knows, by name, in its network's order.
    services: Vec<String>,
    rng: Rng,
    obs: EntityObs,
    /// Candidate nodes per service it reads (`None`: every node), as it was trained.
    candidates: Option<usize>,
}

impl EntityPpoAgent {
    /// Rebuilds an agent from [`Agent::weights`] and the config it was trained with.
    pub fn from_weights(bytes: &[u8], services: Vec<String>, config: &PpoConfig, seed: u64) -> Result<Self> {
        let devices = Devices::cpu();
        let record = record_from_bytes(bytes, "PPO (entity)")?;
        let net = EntityNet::new(shape(services.len(), config), &devices.plain)
            .load_record(record)
            .with_keep_against_mean(config.keep_against_mean);
        let (rng, obs) = (Rng::derive(seed, 0x990), net.observation());
        Ok(Self { net, devices, services, rng, obs, candidates: candidates(config) })
    }

    /// Parameters of the network `config` builds for `services` services.
    pub fn parameters(services: usize, config: &PpoConfig) -> usize {
        EntityNet::new(shape(services, config), &Device::flex()).parameters()
    }

    /// The services it knows.
    pub fn services(&self) -> &[String] {
        &self.services
    }
}

impl Agent for EntityPpoAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Ppo
    }

    /// The entity network reads the env, not the flat observation: on a bare observation it
    /// keeps where it may, else takes the first allowed action. [`Agent::act_in`] is how
    /// it acts.
    fn act(&mut self, _obs: &[f32], mask: &[bool], _mode: ActMode) -> usize {
        first_allowed(mask)
    }

    fn act_in(&mut self, env: &PlacementEnv, mode: ActMode) -> usize {
        observe_in(env, self.candidates, &mut self.obs);
        let greedy = mode == ActMode::Greedy;
        self.net.decide(&self.obs, env, &self.devices.plain, &mut self.rng, greedy).action
    }

    fn weights(&self) -> Vec<u8> {
        self.net.clone().into_record().into_bytes().expect("records serialise").to_vec()
    }
}

/// One rollout, step-major over the env copies.
struct Rollout {
    obs: Vec<EntityObs>,
    decisions: Vec<Decision>,
    teacher: Vec<Option<Decision>>,
    log_probs: Vec<f32>,
    rewards: Vec<f32>,
    dones: Vec<bool>,
    values: Vec<f32>,
}

/// The rows of the rollout one minibatch step learns from.
struct Step<'a> {
    roll: &'a Rollout,
    advantages: &'a [f32],
    returns: &'a [f32],
    idx: &'a [usize],
}

/// Trains PPO with the entity network on copies of `env` for at least `steps` steps.
pub fn train(
    env: &PlacementEnv,
    config: &PpoConfig,
    steps: u64,
    seed: u64,
    devices: &Devices,
    log: &mut RunLog,
    progress: &mut dyn FnMut(Progress) -> Flow,
) -> Result<EntityPpoAgent> {
    config.validate()?;
    let scenario = env.scenario().clone();
    let services: Vec<String> = scenario.services.iter().map(|s| s.name.clone()).collect();
    let (n, t_max) = (config.num_envs, config.num_steps);
    let batch = config.batch_size();
    let updates = steps.div_ceil(batch as u64).max(1);
    let total = updates * batch as u64;
    let mut envs: Vec<PlacementEnv> = (0..n).map(|_| env.clone()).collect();
    let curriculum = config.vary_shapes.then(|| {
        Curriculum::new((*scenario).clone(), ShapeRanges::default(), seed, config.oversample_trailing)
    });
    let mut episodes = Episodes::new(env, curriculum, Rng::derive(seed, 0xe5), config.outage_drills, seed)?;
    let mut conditions: Vec<Option<Condition>> = vec![None; n];
    for (e, condition) in envs.iter_mut().zip(&mut conditions) {
        *condition = episodes.next(e)?;
    }
    let mut teachers = Teachers::new(config.teacher, seed, envs.iter().map(PlacementEnv::scenario))?;
    let rows = candidates(config);
    let shape = shape(services.len(), config);
    let mut net = seeded(devices, seed, || EntityNet::new(shape, &devices.train))
        .with_keep_against_mean(config.keep_against_mean);
    if config.keep_prior > 0.0 {
        let mut start = net.observation();
        observe_in(env, rows, &mut start);
        let open = Decision::in_rows(env.action_mask(), env.placement().len(), &start.node_ids, 0)
            .expect("keeping has no node");
        let replicas_open = open.open.iter().filter(|&&o| o).count();
        // Against the mean, keeping faces one replica's worth of mass, whatever their number.
        let weighed = if config.keep_against_mean { 2 } else { replicas_open };
        net = with_keep_bias(net, keep_logit(config.keep_prior, weighed));
    }
    let mut optimizer = AdamConfig::new()
        .with_epsilon(1e-5)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(config.max_grad_norm as f32)))
        .init();
    let mut acting = net.valid();
    let mut rng = Rng::derive(seed, 0x990);
    let mut shuffle_rng = Rng::derive(seed, 0x5b);
    let mut scaler = RewardScaler::new(n, config.gamma);
    let mut window = Window::default();
    let (mut episode_return, mut episode_length) = (vec![0.0; n], vec![0u64; n]);
    let mut current: Vec<EntityObs> = vec![net.observation(); n];
    let start = Instant::now();
    let mut global_step = 0u64;
    for update in 1..=updates {
        let learning_rate = learning_rate_at(config, update, updates);
        let teacher_coef = teacher_weight_at(config, update, updates);
        let (mut taught, mut agreed) = (0u64, 0u64);
        let mut roll = Rollout {
            obs: Vec::with_capacity(batch),
            decisions: Vec::with_capacity(batch),
            teacher: Vec::with_capacity(batch),
            log_probs: Vec::with_capacity(batch),
            rewards: Vec::with_capacity(batch),
            dones: Vec::with_capacity(batch),
            values: Vec::with_capacity(batch),
        };
        for _ in 0..t_max {
            for (e, obs) in envs.iter().zip(&mut current) {
                observe_in(e, rows, obs);
            }
            let states: Vec<&EntityObs> = current.iter().collect();
            let copies: Vec<&PlacementEnv> = envs.iter().collect();
            let steps = acting.decide_all(&states, &copies, &devices.plain, &mut rng, false);
            for ((i, e), step) in envs.iter_mut().enumerate().zip(steps) {
                let replicas = e.placement().len();
                // With gains the observation found `greedy`'s action on its routings already.
                let teacher = (teacher_coef > 0.0)
                    .then(|| teachers.action(i, e, current[i].greedy))
                    .flatten()
                    .and_then(|a| Decision::in_rows(e.action_mask(), replicas, &current[i].node_ids, a))
                    .map(|d| if config.gain_features { d.with_moves(e, &current[i].node_ids) } else { d });
                taught += u64::from(teacher.is_some());
                agreed += u64::from(teacher.as_ref() == Some(&step.decision));
                roll.obs.push(current[i].clone());
                roll.decisions.push(step.decision);
                roll.teacher.push(teacher);
                roll.log_probs.push(step.log_prob);
                roll.values.push(step.value);
                let s = e.step(step.action)?;
                let (reward, truncated) = (s.reward, s.truncated);
                global_step += 1;
                let mut r =
                    if config.norm_reward { scaler.scale(i, reward, truncated) } else { reward } as f32;
                episode_return[i] += reward;
                episode_length[i] += 1;
                if truncated {
                    observe_in(e, rows, &mut current[i]);
                    r += config.gamma as f32 * value_of(&acting, &current[i], &devices.plain);
                    window.finished(episode_return[i], episode_length[i]);
                    episodes.record(conditions[i], episode_return[i])?;
                    (episode_return[i], episode_length[i]) = (0.0, 0);
                    conditions[i] = episodes.next(e)?;
                    teachers.new_episode(i, e.scenario());
                }
                roll.rewards.push(r);
                roll.dones.push(truncated);
            }
        }
        let last_values: Vec<f32> = envs
            .iter()
            .enumerate()
            .map(|(i, e)| {
                observe_in(e, rows, &mut current[i]);
                value_of(&acting, &current[i], &devices.plain)
            })
            .collect();
        let (advantages, returns) =
            rollout_advantages(config, &roll.rewards, &roll.values, &roll.dones, &last_values);
        let teacher_coef = if taught > 0 { teacher_coef } else { 0.0 };
        let (trained, stats) = run_epochs(config, batch, &mut shuffle_rng, net, |net, idx| {
            let step = Step { roll: &roll, advantages: &advantages, returns: &returns, idx };
            learn(net, &mut optimizer, config, learning_rate, teacher_coef, step, devices)
        });
        net = trained;
        acting = net.valid();
        let update = UpdateSummary {
            stats: &stats,
            values: &roll.values,
            returns: &returns,
            learning_rate,
            teacher_coef,
            taught,
            agreed,
        };
        window.close((global_step, total), start, log, progress, |row| update.row(row))?;
    }
    let obs = acting.observation();
    Ok(EntityPpoAgent { net: acting, devices: devices.clone(), services, rng, obs, candidates: rows })
}

/// The network `config` builds for `services` services.
pub fn shape(services: usize, config: &PpoConfig) -> EntityShape {
    EntityShape {
        services,
        hidden: config.hidden,
        gains: config.gain_features,
        spread: config.spread_features,
    }
}

/// The candidate nodes per service of `config` (`None`: every node).
fn candidates(config: &PpoConfig) -> Option<usize> {
    (config.candidate_nodes > 0).then_some(config.candidate_nodes)
}

/// The value of one state.
fn value_of(net: &EntityNet, obs: &EntityObs, device: &Device) -> f32 {
    let batch = EntityBatch::new(&[obs], device);
    values(net.value(&net.embed(&batch)))[0]
}

/// The network with its keep score's bias set, so the untrained policy keeps with the
/// prior's probability.
fn with_keep_bias(net: EntityNet, bias: f32) -> EntityNet {
    net.map_keep_bias(|b| {
        let device = b.device();
        Param::from_tensor(Tensor::from_data(TensorData::new(vec![bias], [1]), &device))
    })
}

/// One gradient step of PPO's loss on the rollout rows of `step`.
fn learn(
    net: EntityNet,
    optimizer: &mut burn::optim::ModuleOptimizer,
    config: &PpoConfig,
    learning_rate: f64,
    teacher_coef: f64,
    step: Step<'_>,
    devices: &Devices,
) -> (EntityNet, UpdateStats) {
    let Step { roll, advantages, returns, idx } = step;
    let d = &devices.train;
    let b = idx.len();
    let states: Vec<&EntityObs> = idx.iter().map(|&i| &roll.obs[i]).collect();
    let decisions: Vec<Decision> = idx.iter().map(|&i| roll.decisions[i].clone()).collect();
    let batch = EntityBatch::new(&states, d);
    let e = net.embed(&batch);
    let (new_log_prob, entropy) = net.evaluate(&batch, &e, &decisions);
    let entropy = entropy.mean();
    let vector = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [b]), d);
    let pick = |src: &[f32]| -> Vec<f32> { idx.iter().map(|&i| src[i]).collect() };
    let adv = minibatch_advantages(advantages, idx, config.norm_adv);
    let log_ratio = new_log_prob - vector(pick(&roll.log_probs));
    let ratio = log_ratio.clone().exp();
    let (approx_kl, clipfrac) = ratio_stats(&ratio, log_ratio, config.clip_coef);
    let pg_loss = clipped_policy_loss(ratio, vector(adv), config.clip_coef);
    let v_loss = value_loss(
        net.value(&e),
        vector(pick(&roll.values)),
        vector(pick(returns)),
        config.clip_vloss.then_some(config.clip_coef),
    );
    // Kickstarting: minus the mean log-probability of the teacher's decisions, where it had
    // one, on the same embeddings (a state without one contributes its own decision, weighed 0).
    let taught: Vec<f32> = idx.iter().map(|&i| f32::from(u8::from(roll.teacher[i].is_some()))).collect();
    let kickstart = (teacher_coef > 0.0 && taught.contains(&1.0)).then(|| {
        let teacher: Vec<Decision> = idx
            .iter()
            .zip(&decisions)
            .map(|(&i, own)| roll.teacher[i].clone().unwrap_or_else(|| own.clone()))
            .collect();
        let log_prob = net.log_prob(&batch, &e, &teacher) * vector(taught);
        log_prob.sum().div_scalar(b as f64).neg() * teacher_coef
    });
    let (loss, stats) = combined_loss(config, pg_loss, entropy, v_loss, kickstart, (approx_kl, clipfrac));
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    (optimizer.step(learning_rate, net, grads), stats)
}

/// Refuses a model of `model_services` on a scenario with a service it has never seen.
pub fn check_services(model_services: &[String], scenario: &berth_core::Scenario) -> Result<()> {
    let names: Vec<&str> = scenario.services.iter().map(|s| s.name.as_str()).collect();
    if names.iter().copied().eq(model_services.iter().map(String::as_str)) {
        return Ok(());
    }
    let unknown: Vec<&str> =
        names.iter().copied().filter(|n| !model_services.iter().any(|m| m == n)).collect();
    let reason = if unknown.is_empty() {
        format!(
            "the scenario's services ({}) must be the model's, in its order ({})",
            names.join(", "),
            model_services.join(", ")
        )
    } else {
        format!(
            "the model has never seen the service(s) {} (it knows {})",
            unknown.join(", "),
            model_services.join(", ")
        )
    };
    Err(Error::BadModel(reason))
}
