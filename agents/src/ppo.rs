//! PPO with burn, after CleanRL's ppo.py: vectorised rollouts, GAE, the clipped policy loss,
//! a clipped value loss, an entropy bonus, a masked categorical policy, minibatch epochs,
//! learning-rate annealing, and approx_kl / clipfrac / explained variance per update.
//!
//! Two departures from ppo.py: a truncated episode is bootstrapped (its last reward gets
//! `γ · V(final observation)`, as Stable-Baselines3 does) rather than treated as terminal,
//! and masked actions get a logit of [`MASKED_LOGIT`] so they have probability zero.

use std::time::Instant;

use berth_core::Rng;
use berth_env::VecEnv;
use berth_env::gym::Env;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use crate::agent::{ActMode, Agent, AgentKind, masked_argmax};
use crate::error::{Error, Result};
use crate::nets::{Devices, Mlp, NetworkShape, PolicyNetwork, matrix, record_from_bytes, seeded, values};
use crate::normalize::RewardScaler;
use crate::progress::{Flow, Progress};
use crate::run_log::{LogRow, RunLog, Window};
use crate::teacher::Teacher;

/// Logit given to masked actions: `exp` of it underflows to exactly zero.
pub const MASKED_LOGIT: f32 = -1e9;

/// Most env copies stepped together.
pub const MAX_NUM_ENVS: usize = 1_024;
/// Most steps per copy in one rollout.
pub const MAX_NUM_STEPS: usize = 100_000;
/// Most rows (`num_envs * num_steps`) of one rollout.
pub const MAX_ROLLOUT: usize = 1_000_000;
/// Most passes over one rollout.
pub const MAX_UPDATE_EPOCHS: usize = 1_000;

/// Most candidate nodes per service.
pub const MAX_CANDIDATE_NODES: usize = 100_000;

/// Hyperparameters of PPO (CleanRL's names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// Adam learning rate at the start.
    pub learning_rate: f64,
    /// Env copies stepped together.
    pub num_envs: usize,
    /// Steps per copy in one rollout.
    pub num_steps: usize,
    /// Anneal the learning rate linearly to zero over the run.
    pub anneal_lr: bool,
    /// Discount factor γ.
    pub gamma: f64,
    /// λ of generalised advantage estimation.
    pub gae_lambda: f64,
    /// Minibatches per epoch.
    pub num_minibatches: usize,
    /// Passes over each rollout.
    pub update_epochs: usize,
    /// Normalise advantages per minibatch.
    pub norm_adv: bool,
    /// Divide rewards by the running standard deviation of the discounted return.
    pub norm_reward: bool,
    /// Clipping range ε of the probability ratio.
    pub clip_coef: f64,
    /// Clip the value loss around the rollout's values too.
    pub clip_vloss: bool,
    /// Weight of the entropy bonus.
    pub ent_coef: f64,
    /// Weight of the value loss.
    pub vf_coef: f64,
    /// Largest gradient norm.
    pub max_grad_norm: f64,
    /// Stop an update's epochs early once approx_kl exceeds this.
    pub target_kl: Option<f64>,
    /// Width of the hidden layers of the actor and the critic.
    pub hidden: usize,
    /// The untrained policy's probability of the keep action, in an env with one (0: the
    /// usual near-uniform start). A uniform start moves a replica nearly every tick, a random
    /// walk away from the start placement; a start that mostly keeps tries single moves from it.
    pub keep_prior: f64,
    /// Weight, at the start of the run, of the kickstarting loss (Schmitt et al., 2018):
    /// minus the log-probability of the env's teacher action ([`Env::teacher_action`]), in
    /// envs with a teacher. It falls linearly to zero over `teacher_fraction` of the run,
    /// after which PPO learns on its own. 0 turns it off.
    pub teacher_coef: f64,
    /// Share of the run over which `teacher_coef` falls to zero.
    pub teacher_fraction: f64,
    /// Whom kickstarting imitates: `greedy` (the env's teacher action) or, with the entity
    /// network on a placement scenario, `lookahead` ([`crate::teacher`]).
    pub teacher: Teacher,
    /// The policy network: `flat` (an MLP over the flat observation, bound to one cluster's
    /// size) or `entity` (one network for any cluster of the same services,
    /// [`crate::entity_net`]; placement scenarios only).
    pub network: PolicyNetwork,
    /// With the entity network: every episode on a new variation of the scenario (a random
    /// share of its nodes, its traffic and failure rate scaled, sometimes a whole zone down;
    /// [`berth_env::shapes`]), so the policy meets many cluster shapes.
    pub vary_shapes: bool,
    /// With `vary_shapes`: the share of episodes (0 to 1) that replay a variation and day
    /// where the policy trailed `greedy`, the further behind the more often (Genet-style;
    /// [`berth_env::shapes::Curriculum`]). `greedy` runs once on each new variation.
    pub oversample_trailing: f64,
    /// With the entity network: node rows for the candidate nodes only (those replicas run
    /// on and, per service, this many best places to move one to;
    /// [`berth_env::candidates`]), so a state costs the network about the same on 1,500 nodes
    /// as on 50. 0: a row for every node.
    pub candidate_nodes: usize,
    /// With the entity network: keeping weighs against the mean of the replicas' move scores,
    /// not their sum, so the chance of keeping does not fall as replicas are added (for
    /// models meant for larger clusters than they trained on). Off by default, as the first
    /// entity models were trained.
    pub keep_against_mean: bool,
    /// With the entity network: rows also carry what moves are worth (each replica's
    /// removal, each service's addition on each node, the best estimated move;
    /// [`berth_env::gains`]), the terms `greedy` ranks moves by, so a policy can carry
    /// `greedy`'s judgement to clusters it never saw. Off by default, as the first entity
    /// models were trained.
    pub gain_features: bool,
    /// With the entity network: rows also say how each service's replicas stand on each
    /// node ([`berth_env::entity::NODE_SPREAD_FEATURES`]), so a policy can tell nodes that
    /// score alike apart as its teacher does when it spreads a service over them. Off by
    /// default, as the first entity models were trained.
    pub spread_features: bool,
    /// With the entity network: the share of training days (0 to 1) that are failure drills,
    /// one node drawn at random down for 1 to 8 hours
    /// ([`berth_env::shapes::node_outage_drill`]), so the policy learns to evacuate a node
    /// and to place the day after. 0 (the default): the scenario's own failures only.
    pub outage_drills: f64,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-3,
            num_envs: 8,
            num_steps: 128,
            anneal_lr: true,
            gamma: 0.99,
            gae_lambda: 0.95,
            num_minibatches: 4,
            update_epochs: 4,
            norm_adv: true,
            norm_reward: true,
            clip_coef: 0.2,
            clip_vloss: true,
            ent_coef: 0.01,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            target_kl: None,
            hidden: 64,
            keep_prior: 0.0,
            teacher_coef: 0.3,
            teacher_fraction: 0.5,
            teacher: Teacher::Greedy,
            network: PolicyNetwork::Flat,
            vary_shapes: false,
            oversample_trailing: 0.0,
            candidate_nodes: 0,
            keep_against_mean: false,
            gain_features: false,
            spread_features: false,
            outage_drills: 0.0,
        }
    }
}

impl PpoConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, reason: &str| Err(Error::Config { name: name.into(), reason: reason.into() });
        let positive = |x: f64| x > 0.0 && x.is_finite();
        if !positive(self.learning_rate) {
            return bad("learning_rate", "must be positive");
        }
        if self.num_envs == 0 || self.num_steps == 0 {
            return bad("num_envs", "num_envs and num_steps must be at least 1");
        }
        Error::at_most("num_envs", self.num_envs, MAX_NUM_ENVS)?;
        Error::at_most("num_steps", self.num_steps, MAX_NUM_STEPS)?;
        // Both are bounded, so the product cannot overflow.
        let batch = self.num_envs * self.num_steps;
        if batch > MAX_ROLLOUT {
            return Err(Error::Config {
                name: "num_steps".into(),
                reason: format!(
                    "num_envs * num_steps is {batch}, over the limit of {MAX_ROLLOUT} rows per rollout"
                ),
            });
        }
        if self.num_minibatches == 0 || self.num_minibatches > batch {
            return bad("num_minibatches", "must be between 1 and num_envs * num_steps");
        }
        if self.update_epochs == 0 {
            return bad("update_epochs", "must be at least 1");
        }
        Error::at_most("update_epochs", self.update_epochs, MAX_UPDATE_EPOCHS)?;
        Error::at_most("hidden", self.hidden, crate::nets::MAX_HIDDEN)?;
        for (name, v) in [("gamma", self.gamma), ("gae_lambda", self.gae_lambda)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(name, "must be in [0, 1]");
            }
        }
        if !positive(self.clip_coef) {
            return bad("clip_coef", "must be positive");
        }
        for (name, v) in [("ent_coef", self.ent_coef), ("vf_coef", self.vf_coef)] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(name, "must be zero or more");
            }
        }
        if !positive(self.max_grad_norm) {
            return bad("max_grad_norm", "must be positive");
        }
        if self.target_kl.is_some_and(|k| !positive(k)) {
            return bad("target_kl", "must be positive");
        }
        if self.vary_shapes && self.network != PolicyNetwork::Entity {
            return bad("vary_shapes", "needs network = \"entity\": the flat network is bound to one shape");
        }
        if self.candidate_nodes > 0 && self.network != PolicyNetwork::Entity {
            return bad("candidate_nodes", "needs network = \"entity\": the flat network reads every node");
        }
        Error::at_most("candidate_nodes", self.candidate_nodes, MAX_CANDIDATE_NODES)?;
        if self.keep_against_mean && self.network != PolicyNetwork::Entity {
            return bad("keep_against_mean", "needs network = \"entity\"");
        }
        if self.gain_features && self.network != PolicyNetwork::Entity {
            return bad("gain_features", "needs network = \"entity\"");
        }
        if self.spread_features && self.network != PolicyNetwork::Entity {
            return bad("spread_features", "needs network = \"entity\"");
        }
        if !(0.0..=1.0).contains(&self.outage_drills) {
            return bad("outage_drills", "must be in [0, 1]");
        }
        if self.outage_drills > 0.0 && self.network != PolicyNetwork::Entity {
            return bad("outage_drills", "needs network = \"entity\"");
        }
        if !(0.0..=1.0).contains(&self.oversample_trailing) {
            return bad("oversample_trailing", "must be in [0, 1]");
        }
        if self.oversample_trailing > 0.0 && !self.vary_shapes {
            return bad("oversample_trailing", "needs vary_shapes = true: it replays the variations drawn");
        }
        if self.hidden == 0 {
            return bad("hidden", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.keep_prior) {
            return bad("keep_prior", "must be in [0, 1)");
        }
        if !(self.teacher_coef >= 0.0 && self.teacher_coef.is_finite()) {
            return bad("teacher_coef", "must be zero or more");
        }
        if !(0.0..=1.0).contains(&self.teacher_fraction) {
            return bad("teacher_fraction", "must be in [0, 1]");
        }
        if self.teacher.simulates() && self.network != PolicyNetwork::Entity {
            let name = serde_json::to_string(&self.teacher).unwrap_or_default();
            return bad("teacher", &format!("{name} needs network = \"entity\" on a placement scenario"));
        }
        Ok(())
    }

    pub(crate) fn batch_size(&self) -> usize {
        self.num_envs * self.num_steps
    }
}

/// Generalised advantage estimates and returns for a rollout.
///
/// `rewards`, `values`, `dones` are `[steps * envs]`, step-major; `dones[t * envs + i]` says
/// copy `i`'s episode ended with step `t` (no bootstrapping across it: fold a truncated
/// episode's bootstrap into its reward first). `last_values` are `V` of the observations
/// after the rollout. Returns `(advantages, returns)`, `returns = advantages + values`.
pub fn gae(
    rewards: &[f32],
    values: &[f32],
    dones: &[bool],
    last_values: &[f32],
    gamma: f32,
    lambda: f32,
) -> (Vec<f32>, Vec<f32>) {
    let envs = last_values.len();
    let steps = rewards.len() / envs.max(1);
    let mut advantages = vec![0.0; rewards.len()];
    let mut carry = vec![0.0f32; envs];
    for t in (0..steps).rev() {
        for i in 0..envs {
            let k = t * envs + i;
            let next_value = if t + 1 == steps { last_values[i] } else { values[k + envs] };
            let live = if dones[k] { 0.0 } else { 1.0 };
            let delta = rewards[k] + gamma * next_value * live - values[k];
            carry[i] = delta + gamma * lambda * live * carry[i];
            advantages[k] = carry[i];
        }
    }
    let returns = advantages.iter().zip(values).map(|(a, v)| a + v).collect();
    (advantages, returns)
}

/// The clipped surrogate loss `mean(max(-A·ρ, -A·clip(ρ, 1-ε, 1+ε)))`.
///
/// # Shapes
/// - `ratio`, `advantages`: `[batch]`; output: `[1]`
pub fn clipped_policy_loss(ratio: Tensor<1>, advantages: Tensor<1>, clip: f64) -> Tensor<1> {
    let unclipped = advantages.clone().neg() * ratio.clone();
    let clipped = advantages.neg() * ratio.clamp(1.0 - clip, 1.0 + clip);
    unclipped.max_pair(clipped).mean()
}

/// The value loss `½ · mean((V - R)²)`, or with `clip`, the larger of that and the loss of
/// `V` kept within `clip` of the rollout's values.
///
/// # Shapes
/// - `new`, `old`, `returns`: `[batch]`; output: `[1]`
pub fn value_loss(new: Tensor<1>, old: Tensor<1>, returns: Tensor<1>, clip: Option<f64>) -> Tensor<1> {
    let unclipped = (new.clone() - returns.clone()).powi_scalar(2);
    let loss = match clip {
        Some(c) => {
            let kept = old.clone() + (new - old).clamp(-c, c);
            unclipped.max_pair((kept - returns).powi_scalar(2))
        }
        None => unclipped,
    };
    loss.mean() * 0.5
}

/// Log-probabilities of a masked categorical: `log_softmax(logits + mask_logits)`, where
/// `mask_logits` is 0 for allowed actions and [`MASKED_LOGIT`] for masked ones.
///
/// # Shapes
/// - `logits`, `mask_logits`, output: `[batch, actions]`
pub fn masked_log_probs(logits: Tensor<2>, mask_logits: Tensor<2>) -> Tensor<2> {
    log_softmax(logits + mask_logits, 1)
}

/// Samples an allowed action from the categorical of `logits` restricted to `mask`, and
/// returns it with its log-probability. Masked actions have probability zero.
pub fn sample_masked(logits: &[f32], mask: &[bool], rng: &mut Rng) -> (usize, f32) {
    let max =
        logits.iter().zip(mask).filter(|(_, ok)| **ok).map(|(l, _)| *l).fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return (0, 0.0);
    }
    let total: f64 =
        logits.iter().zip(mask).filter(|(_, ok)| **ok).map(|(l, _)| ((l - max) as f64).exp()).sum();
    let mut u = rng.next_f64() * total;
    let mut chosen = None;
    for (a, (&l, &ok)) in logits.iter().zip(mask).enumerate() {
        if !ok {
            continue;
        }
        chosen = Some(a);
        u -= ((l - max) as f64).exp();
        if u < 0.0 {
            break;
        }
    }
    let a = chosen.expect("an allowed action");
    (a, ((logits[a] - max) as f64 - total.ln()) as f32)
}

/// The actor (action logits) and the critic (state value), as separate networks.
#[derive(Module, Debug)]
pub struct ActorCritic {
    actor: Mlp,
    critic: Mlp,
}

impl ActorCritic {
    fn new(obs_len: usize, hidden: usize, actions: usize, device: &Device) -> Self {
        Self {
            actor: Mlp::orthogonal_tanh(obs_len, hidden, actions, 0.01, device),
            critic: Mlp::orthogonal_tanh(obs_len, hidden, 1, 1.0, device),
        }
    }

    fn value(&self, obs: Tensor<2>) -> Tensor<1> {
        let b = obs.dims()[0];
        self.critic.forward(obs).reshape([b])
    }
}

/// A PPO policy: the actor and critic.
pub struct PpoAgent {
    net: ActorCritic,
    devices: Devices,
    obs_len: usize,
    rng: Rng,
}

impl PpoAgent {
    fn logits(&self, obs: &[f32], rows: usize) -> Vec<f32> {
        values(self.net.actor.forward(matrix(obs, rows, self.obs_len, &self.devices.plain)))
    }

    /// Logits and state values of `rows` observations, from one input tensor.
    fn logits_and_values(&self, obs: &[f32], rows: usize) -> (Vec<f32>, Vec<f32>) {
        let x = matrix(obs, rows, self.obs_len, &self.devices.plain);
        (values(self.net.actor.forward(x.clone())), values(self.net.value(x)))
    }

    fn state_values(&self, obs: &[f32], rows: usize) -> Vec<f32> {
        values(self.net.value(matrix(obs, rows, self.obs_len, &self.devices.plain)))
    }

    /// Rebuilds an agent from [`Agent::weights`].
    pub fn from_weights(bytes: &[u8], shape: NetworkShape) -> Result<Self> {
        let devices = Devices::cpu();
        let record = record_from_bytes(bytes, "PPO")?;
        let net =
            ActorCritic::new(shape.inputs, shape.hidden, shape.outputs, &devices.plain).load_record(record);
        Ok(Self { net, devices, obs_len: shape.inputs, rng: Rng::derive(shape.seed, 0x990) })
    }
}

impl Agent for PpoAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Ppo
    }

    fn act(&mut self, obs: &[f32], mask: &[bool], mode: ActMode) -> usize {
        let logits = self.logits(obs, 1);
        match mode {
            ActMode::Greedy => masked_argmax(&logits, mask),
            ActMode::Explore => sample_masked(&logits, mask, &mut self.rng).0,
        }
    }

    fn weights(&self) -> Vec<u8> {
        self.net.clone().into_record().into_bytes().expect("records serialise").to_vec()
    }
}

/// One rollout of `num_steps` steps of every copy, flat and step-major.
struct Rollout {
    obs: Vec<f32>,
    mask_logits: Vec<f32>,
    actions: Vec<usize>,
    log_probs: Vec<f32>,
    rewards: Vec<f32>,
    dones: Vec<bool>,
    values: Vec<f32>,
    /// The teacher's action per row, where it had one.
    teacher: Vec<Option<usize>>,
}

/// What one minibatch step measured.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UpdateStats {
    pub policy_loss: f64,
    pub value_loss: f64,
    pub entropy: f64,
    pub approx_kl: f64,
    pub clipfrac: f64,
}

/// The learning rate of update `update` of `updates` (1-based): annealed linearly to zero
/// with `anneal_lr`.
pub(crate) fn learning_rate_at(config: &PpoConfig, update: u64, updates: u64) -> f64 {
    if config.anneal_lr {
        config.learning_rate * (1.0 - (update - 1) as f64 / updates as f64)
    } else {
        config.learning_rate
    }
}

/// The advantages of the rows `idx`, normalised over them when `norm_adv`.
pub(crate) fn minibatch_advantages(advantages: &[f32], idx: &[usize], norm_adv: bool) -> Vec<f32> {
    let b = idx.len();
    let mut adv: Vec<f32> = idx.iter().map(|&i| advantages[i]).collect();
    if norm_adv && b > 1 {
        let mean = adv.iter().sum::<f32>() / b as f32;
        let var = adv.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / (b - 1) as f32;
        let std = var.sqrt() + 1e-8;
        adv.iter_mut().for_each(|a| *a = (*a - mean) / std);
    }
    adv
}

/// approx_kl (`mean((ρ − 1) − log ρ)`) and the share of ratios outside `1 ± clip`.
pub(crate) fn ratio_stats(ratio: &Tensor<1>, log_ratio: Tensor<1>, clip: f64) -> (f64, f64) {
    let (r, lr) = (ratio.clone().detach(), log_ratio.detach());
    let kl = ((r.clone() - 1.0) - lr).mean().into_scalar::<f32>() as f64;
    let clipped = (r - 1.0).abs().greater_elem(clip).float().mean().into_scalar::<f32>() as f64;
    (kl, clipped)
}

/// The update epochs over a rollout of `batch` rows: shuffled minibatches, each a gradient
/// step of `step` on the network, stopping early once approx_kl passes `target_kl`. Returns
/// the network after the last step and every step's figures.
pub(crate) fn run_epochs<N>(
    config: &PpoConfig,
    batch: usize,
    rng: &mut Rng,
    mut net: N,
    mut step: impl FnMut(N, &[usize]) -> (N, UpdateStats),
) -> (N, Vec<UpdateStats>) {
    let mut order: Vec<usize> = (0..batch).collect();
    let minibatch = batch / config.num_minibatches;
    let mut stats = Vec::new();
    for _ in 0..config.update_epochs {
        shuffle(&mut order, rng);
        for idx in order.chunks(minibatch) {
            let (next, s) = step(net, idx);
            net = next;
            stats.push(s);
        }
        if config.target_kl.is_some_and(|k| stats.last().is_some_and(|s| s.approx_kl > k)) {
            break;
        }
    }
    (net, stats)
}

/// Generalised advantage estimates and returns of a rollout under `config`'s γ and λ.
pub(crate) fn rollout_advantages(
    config: &PpoConfig,
    rewards: &[f32],
    values: &[f32],
    dones: &[bool],
    last_values: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    gae(rewards, values, dones, last_values, config.gamma as f32, config.gae_lambda as f32)
}

/// What an update logs: its minibatches' figures, the critic's fit and the teacher's share.
pub(crate) struct UpdateSummary<'a> {
    pub stats: &'a [UpdateStats],
    pub values: &'a [f32],
    pub returns: &'a [f32],
    pub learning_rate: f64,
    pub teacher_coef: f64,
    /// Steps that had a teacher's action, and those where the policy took it.
    pub taught: u64,
    pub agreed: u64,
}

impl UpdateSummary<'_> {
    /// The log row of the update.
    pub fn row(&self, row: LogRow) -> LogRow {
        let stats = self.stats;
        let mean = |f: fn(&UpdateStats) -> f64| Some(stats.iter().map(f).sum::<f64>() / stats.len() as f64);
        let taught = self.taught > 0;
        LogRow {
            policy_loss: mean(|s| s.policy_loss),
            value_loss: mean(|s| s.value_loss),
            entropy: mean(|s| s.entropy),
            approx_kl: stats.last().map(|s| s.approx_kl),
            clipfrac: mean(|s| s.clipfrac),
            explained_variance: explained_variance(self.values, self.returns),
            learning_rate: Some(self.learning_rate),
            teacher_coef: taught.then_some(self.teacher_coef),
            teacher_agreement: taught.then(|| self.agreed as f64 / self.taught as f64),
            ..row
        }
    }
}

/// The rows `idx` of a rollout, as tensors on the training device.
struct Minibatch {
    obs: Tensor<2>,
    mask_logits: Tensor<2>,
    actions: Tensor<2, Int>,
    old_log_probs: Tensor<1>,
    advantages: Tensor<1>,
    returns: Tensor<1>,
    old_values: Tensor<1>,
    /// The teacher's action per row (0 where it had none).
    teacher: Tensor<2, Int>,
    /// 1 where the teacher had an action, 0 where not: rows without one add no loss.
    teacher_weight: Tensor<1>,
}

impl Minibatch {
    fn gather(
        r: &Rollout,
        advantages: &[f32],
        returns: &[f32],
        idx: &[usize],
        norm_adv: bool,
        d: &Device,
    ) -> Self {
        let b = idx.len();
        let obs_len = r.obs.len() / r.actions.len();
        let actions = r.mask_logits.len() / r.actions.len();
        let rows = |src: &[f32], w: usize| -> Vec<f32> {
            idx.iter().flat_map(|&i| src[i * w..(i + 1) * w].iter().copied()).collect()
        };
        let pick = |src: &[f32]| -> Vec<f32> { idx.iter().map(|&i| src[i]).collect() };
        let adv = minibatch_advantages(advantages, idx, norm_adv);
        let vector = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [b]), d);
        let taken: Vec<i64> = idx.iter().map(|&i| r.actions[i] as i64).collect();
        let teacher: Vec<i64> = idx.iter().map(|&i| r.teacher[i].unwrap_or(0) as i64).collect();
        let teacher_weight = idx.iter().map(|&i| if r.teacher[i].is_some() { 1.0 } else { 0.0 }).collect();
        Self {
            obs: matrix(&rows(&r.obs, obs_len), b, obs_len, d),
            mask_logits: matrix(&rows(&r.mask_logits, actions), b, actions, d),
            actions: Tensor::<2, Int>::from_data(TensorData::new(taken, [b, 1]), d),
            old_log_probs: vector(pick(&r.log_probs)),
            advantages: vector(adv),
            returns: vector(pick(returns)),
            old_values: vector(pick(&r.values)),
            teacher: Tensor::<2, Int>::from_data(TensorData::new(teacher, [b, 1]), d),
            teacher_weight: vector(teacher_weight),
        }
    }
}

/// One gradient step of PPO's loss on a minibatch.
fn learn(
    net: ActorCritic,
    optimizer: &mut burn::optim::ModuleOptimizer,
    config: &PpoConfig,
    learning_rate: f64,
    teacher_coef: f64,
    mb: Minibatch,
) -> (ActorCritic, UpdateStats) {
    let b = mb.actions.dims()[0];
    let log_probs = masked_log_probs(net.actor.forward(mb.obs.clone()), mb.mask_logits);
    let new_log_prob = log_probs.clone().gather(1, mb.actions).reshape([b]);
    // Kickstarting: minus the mean log-probability of the teacher's actions, where it had one.
    let kickstart = (teacher_coef > 0.0).then(|| {
        (log_probs.clone().gather(1, mb.teacher).reshape([b]) * mb.teacher_weight).mean().neg() * teacher_coef
    });
    let entropy = (log_probs.clone().exp() * log_probs).sum_dim(1).neg().mean();
    let log_ratio = new_log_prob - mb.old_log_probs;
    let ratio = log_ratio.clone().exp();
    let (approx_kl, clipfrac) = ratio_stats(&ratio, log_ratio, config.clip_coef);
    let pg_loss = clipped_policy_loss(ratio, mb.advantages, config.clip_coef);
    let new_values = net.value(mb.obs);
    let v_loss =
        value_loss(new_values, mb.old_values, mb.returns, config.clip_vloss.then_some(config.clip_coef));
    let (loss, stats) = combined_loss(config, pg_loss, entropy, v_loss, kickstart, (approx_kl, clipfrac));
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    (optimizer.step(learning_rate, net, grads), stats)
}

/// PPO's loss from its parts, `policy − ent_coef · entropy + vf_coef · value` plus the
/// kickstarting term where there is one, and the figures the update logs (with approx_kl
/// and clipfrac from [`ratio_stats`]).
pub(crate) fn combined_loss(
    config: &PpoConfig,
    pg_loss: Tensor<1>,
    entropy: Tensor<1>,
    v_loss: Tensor<1>,
    kickstart: Option<Tensor<1>>,
    (approx_kl, clipfrac): (f64, f64),
) -> (Tensor<1>, UpdateStats) {
    let mut loss = pg_loss.clone() - entropy.clone() * config.ent_coef + v_loss.clone() * config.vf_coef;
    if let Some(kickstart) = kickstart {
        loss = loss + kickstart;
    }
    let stats = UpdateStats {
        policy_loss: pg_loss.into_scalar::<f32>() as f64,
        value_loss: v_loss.into_scalar::<f32>() as f64,
        entropy: entropy.into_scalar::<f32>() as f64,
        approx_kl,
        clipfrac,
    };
    (loss, stats)
}

/// `1 - Var(returns - values) / Var(returns)`: how much of the returns the critic explains.
pub fn explained_variance(values: &[f32], returns: &[f32]) -> Option<f64> {
    let var = |x: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = x.collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64
    };
    let var_returns = var(&mut returns.iter().map(|&r| r as f64));
    (var_returns > 0.0)
        .then(|| 1.0 - var(&mut returns.iter().zip(values).map(|(&r, &v)| (r - v) as f64)) / var_returns)
}

/// Trains PPO on copies of `env` for at least `steps` steps (whole rollouts).
pub fn train<E: Env + Clone>(
    env: &E,
    config: &PpoConfig,
    steps: u64,
    seed: u64,
    devices: &Devices,
    log: &mut RunLog,
    progress: &mut dyn FnMut(Progress) -> Flow,
) -> Result<PpoAgent> {
    config.validate()?;
    let devices = devices.clone();
    let (obs_len, actions) = (env.observation_space().len(), env.action_count());
    let (n, t_max) = (config.num_envs, config.num_steps);
    let batch = config.batch_size();
    let updates = steps.div_ceil(batch as u64).max(1);
    let total = updates * batch as u64;
    let mut vec_env = VecEnv::new(vec![env.clone(); n], seed)?;
    let mut net =
        seeded(&devices, seed, || ActorCritic::new(obs_len, config.hidden, actions, &devices.train));
    if let (Some(keep), true) = (env.keep_action(), config.keep_prior > 0.0) {
        let allowed = env.action_mask().iter().filter(|&&ok| ok).count();
        net.actor = net.actor.with_out_bias(keep, keep_logit(config.keep_prior, allowed));
    }
    let mut optimizer = AdamConfig::new()
        .with_epsilon(1e-5)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(config.max_grad_norm as f32)))
        .init();
    let mut agent =
        PpoAgent { net: net.valid(), devices: devices.clone(), obs_len, rng: Rng::derive(seed, 0x990) };
    let mut shuffle_rng = Rng::derive(seed, 0x5b);
    let mut roll = Rollout {
        obs: vec![0.0; batch * obs_len],
        mask_logits: vec![0.0; batch * actions],
        actions: vec![0; batch],
        log_probs: vec![0.0; batch],
        rewards: vec![0.0; batch],
        dones: vec![false; batch],
        values: vec![0.0; batch],
        teacher: vec![None; batch],
    };
    let mut scaler = RewardScaler::new(n, config.gamma);
    let mut window = Window::default();
    let (mut episode_return, mut episode_length) = (vec![0.0; n], vec![0u64; n]);
    let mut step_actions = vec![0; n];
    let start = Instant::now();
    let mut global_step = 0u64;
    for update in 1..=updates {
        let learning_rate = learning_rate_at(config, update, updates);
        let teacher_coef = teacher_weight_at(config, update, updates);
        let (mut taught, mut agreed) = (0u64, 0u64);
        for t in 0..t_max {
            let rows = t * n..(t + 1) * n;
            roll.obs[rows.start * obs_len..rows.end * obs_len].copy_from_slice(vec_env.observations());
            let (logits, state_values) = agent.logits_and_values(vec_env.observations(), n);
            roll.values[rows.clone()].copy_from_slice(&state_values);
            for i in 0..n {
                let k = t * n + i;
                let mask = vec_env.action_mask(i);
                let (a, lp) = sample_masked(&logits[i * actions..(i + 1) * actions], mask, &mut agent.rng);
                for (m, &ok) in roll.mask_logits[k * actions..(k + 1) * actions].iter_mut().zip(mask) {
                    *m = if ok { 0.0 } else { MASKED_LOGIT };
                }
                (roll.actions[k], roll.log_probs[k], step_actions[i]) = (a, lp, a);
                let teacher = if teacher_coef > 0.0 { vec_env.envs()[i].teacher_action() } else { None };
                roll.teacher[k] = teacher;
                taught += u64::from(teacher.is_some());
                agreed += u64::from(teacher == Some(a));
            }
            vec_env.step(&step_actions)?;
            global_step += n as u64;
            for i in 0..n {
                let k = t * n + i;
                let (reward, terminated) = (vec_env.rewards()[i], vec_env.terminated()[i]);
                let done = terminated || vec_env.truncated()[i];
                let mut r = if config.norm_reward { scaler.scale(i, reward, done) } else { reward } as f32;
                if done && !terminated {
                    r += config.gamma as f32 * agent.state_values(vec_env.final_observation(i), 1)[0];
                }
                (roll.rewards[k], roll.dones[k]) = (r, done);
                episode_return[i] += reward;
                episode_length[i] += 1;
                if done {
                    window.finished(episode_return[i], episode_length[i]);
                    (episode_return[i], episode_length[i]) = (0.0, 0);
                }
            }
        }
        let last_values = agent.state_values(vec_env.observations(), n);
        let (advantages, returns) =
            rollout_advantages(config, &roll.rewards, &roll.values, &roll.dones, &last_values);
        // Where no copy had a teacher (CartPole), the loss has no kickstarting term at all.
        let teacher_coef = if taught > 0 { teacher_coef } else { 0.0 };
        let (trained, stats) = run_epochs(config, batch, &mut shuffle_rng, net, |net, idx| {
            let mb = Minibatch::gather(&roll, &advantages, &returns, idx, config.norm_adv, &devices.train);
            learn(net, &mut optimizer, config, learning_rate, teacher_coef, mb)
        });
        net = trained;
        agent.net = net.valid();
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
    Ok(agent)
}

/// The kickstarting loss's weight in update `update` of `updates` (1-based): `teacher_coef`
/// falling linearly to zero over `teacher_fraction` of the run.
pub(crate) fn teacher_weight_at(config: &PpoConfig, update: u64, updates: u64) -> f64 {
    let progress = (update - 1) as f64 / updates as f64;
    if config.teacher_fraction <= 0.0 || progress >= config.teacher_fraction {
        return 0.0;
    }
    config.teacher_coef * (1.0 - progress / config.teacher_fraction)
}

/// The keep action's logit that gives it probability `prior` when the other `allowed - 1`
/// actions have logit 0: `p = e^l / (e^l + others)`.
pub(crate) fn keep_logit(prior: f64, allowed: usize) -> f32 {
    let others = allowed.saturating_sub(1).max(1) as f64;
    (prior / (1.0 - prior) * others).ln() as f32
}

/// Fisher–Yates with our own generator, so runs reproduce.
pub(crate) fn shuffle(v: &mut [usize], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(v: &[f32]) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Device::flex())
    }

    #[test]
    fn gae_matches_a_hand_computed_case() {
        // One env, three steps; the episode ends with step 1. γ = 0.9, λ = 0.8.
        // t=2: δ = 1 + 0.9·2 − 0.5 = 2.3, A = 2.3
        // t=1: done, δ = 1 − 0.5 = 0.5, A = 0.5
        // t=0: δ = 1 + 0.9·0.5 − 0.5 = 0.95, A = 0.95 + 0.9·0.8·0.5 = 1.31
        let (adv, ret) = gae(&[1.0; 3], &[0.5; 3], &[false, true, false], &[2.0], 0.9, 0.8);
        for (a, e) in adv.iter().zip([1.31, 0.5, 2.3]) {
            assert!((a - e).abs() < 1e-6, "{adv:?}");
        }
        assert!((ret[0] - 1.81).abs() < 1e-6);
        // Two envs interleave step-major and do not mix.
        let (adv2, _) =
            gae(&[1.0, 0.0, 1.0, 0.0], &[0.0; 4], &[false, false, false, false], &[0.0, 10.0], 1.0, 1.0);
        assert_eq!(adv2, vec![2.0, 10.0, 1.0, 10.0]);
    }

    #[test]
    fn clipped_loss_takes_the_pessimistic_side() {
        // A = +1, ρ = 1.5: clipped to 1.2 -> loss −1.2. A = −1, ρ = 0.5: −A·clip(ρ) = 0.8 >
        // −A·ρ = 0.5 -> 0.8. A = +2, ρ = 0.9 (inside the range): −1.8.
        let loss = clipped_policy_loss(vector(&[1.5, 0.5, 0.9]), vector(&[1.0, -1.0, 2.0]), 0.2);
        let got = loss.into_scalar::<f32>();
        assert!((got - (-1.2 + 0.8 - 1.8) / 3.0).abs() < 1e-6, "{got}");
        // The value loss: unclipped ½·mean((V−R)²); clipped keeps the larger.
        let v = value_loss(vector(&[3.0]), vector(&[0.0]), vector(&[1.0]), None).into_scalar::<f32>();
        assert_eq!(v, 2.0);
        let v = value_loss(vector(&[3.0]), vector(&[0.0]), vector(&[5.0]), Some(1.0)).into_scalar::<f32>();
        assert_eq!(v, 0.5 * 16.0, "clipped V = 1 is further from R = 5 than V = 3");
    }

    #[test]
    fn masked_categorical_never_samples_a_masked_action() {
        // The masked action has by far the largest logit.
        let logits = [0.0, 9.0, 0.5, -0.5];
        let mask = [true, false, true, true];
        let mut rng = Rng::new(5);
        let mut seen = [0; 4];
        for _ in 0..20_000 {
            let (a, lp) = sample_masked(&logits, &mask, &mut rng);
            assert!(mask[a]);
            seen[a] += 1;
            let p = (logits[a] as f64).exp() / [0.0f64, 0.5, -0.5].iter().map(|l| l.exp()).sum::<f64>();
            assert!((lp as f64 - p.ln()).abs() < 1e-5);
        }
        assert!(seen[0] > 0 && seen[2] > seen[0] && seen[0] > seen[3], "{seen:?}");
        // burn's log-probabilities agree and give the masked action probability zero.
        let d = Device::flex();
        let mask_logits: Vec<f32> = mask.iter().map(|&ok| if ok { 0.0 } else { MASKED_LOGIT }).collect();
        let lp = values(masked_log_probs(matrix(&logits, 1, 4, &d), matrix(&mask_logits, 1, 4, &d)));
        assert_eq!(lp[1].exp(), 0.0);
        let total: f32 = lp.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        let (_, sampled_lp) = sample_masked(&logits, &[false, false, true, false], &mut rng);
        assert_eq!(sampled_lp, 0.0, "a single allowed action is certain");
    }

    #[test]
    fn an_untrained_policy_keeps_with_the_keep_prior() {
        let scenario = berth_env::shipped::shipped("gpu-small").unwrap();
        let env = berth_env::PlacementEnv::new(scenario).unwrap();
        let devices = Devices::cpu();
        let mut log = RunLog::new();
        // One update's worth of steps at a learning rate too small to move the policy.
        let config = PpoConfig {
            keep_prior: 0.9,
            learning_rate: 1e-12,
            num_envs: 1,
            num_steps: 8,
            num_minibatches: 1,
            ..PpoConfig::default()
        };
        let agent = train(&env, &config, 8, 3, &devices, &mut log, &mut |_| Flow::Continue).unwrap();
        let mask = env.action_mask();
        let logits = agent.logits(env.observation(), 1);
        let lp = values(masked_log_probs(
            matrix(&logits, 1, logits.len(), &devices.plain),
            matrix(
                &mask.iter().map(|&ok| if ok { 0.0 } else { MASKED_LOGIT }).collect::<Vec<_>>(),
                1,
                mask.len(),
                &devices.plain,
            ),
        ));
        let keep = lp[0].exp();
        assert!((keep - 0.9).abs() < 0.02, "P(keep) = {keep}");
        assert!(PpoConfig { keep_prior: 1.0, ..PpoConfig::default() }.validate().is_err());
    }

    #[test]
    fn the_teacher_weight_falls_linearly_to_zero_over_its_fraction() {
        let config = PpoConfig { teacher_coef: 2.0, teacher_fraction: 0.5, ..PpoConfig::default() };
        let at = |update| teacher_weight_at(&config, update, 10);
        assert_eq!(at(1), 2.0);
        assert!((at(3) - 2.0 * (1.0 - 0.2 / 0.5)).abs() < 1e-12);
        assert_eq!(at(6), 0.0, "half the run is over");
        assert_eq!(at(10), 0.0);
        assert_eq!(teacher_weight_at(&PpoConfig { teacher_fraction: 0.0, ..config.clone() }, 1, 10), 0.0);
        assert!(PpoConfig { teacher_fraction: 1.5, ..config.clone() }.validate().is_err());
        assert!(PpoConfig { teacher_coef: -1.0, ..config }.validate().is_err());
    }

    #[test]
    fn kickstarting_pulls_the_policy_to_the_teacher() {
        let scenario = berth_env::shipped::shipped("gpu-small").unwrap();
        let env = berth_env::PlacementEnv::new(scenario).unwrap();
        let devices = Devices::cpu();
        let config = PpoConfig {
            num_envs: 2,
            num_steps: 64,
            num_minibatches: 2,
            hidden: 16,
            learning_rate: 3e-3,
            anneal_lr: false,
            ent_coef: 0.0,
            teacher_coef: 5.0,
            teacher_fraction: 1.0,
            ..PpoConfig::default()
        };
        let agreement = |config: &PpoConfig| {
            let mut log = RunLog::new();
            train(&env, config, 128 * 24, 4, &devices, &mut log, &mut |_| Flow::Continue).unwrap();
            log.rows().iter().map(|r| r.teacher_agreement).collect::<Vec<_>>()
        };
        let taught = agreement(&config);
        let (first, last) = (taught[0].unwrap(), taught.last().unwrap().unwrap());
        // The untrained policy is near uniform over the allowed actions.
        assert!(first < 0.2 && last > 0.8, "agreement {taught:?}");
        let alone = agreement(&PpoConfig { teacher_coef: 0.0, ..config });
        assert!(alone.iter().all(Option::is_none), "no teacher, no agreement logged: {alone:?}");
    }

    #[test]
    fn explained_variance_is_one_for_a_perfect_critic() {
        assert_eq!(explained_variance(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), Some(1.0));
        assert_eq!(explained_variance(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]), Some(0.0));
        assert_eq!(explained_variance(&[0.0], &[1.0]), None);
    }

    #[test]
    fn weights_round_trip_gives_identical_actions() {
        let devices = Devices::cpu();
        let mut agent = PpoAgent {
            net: ActorCritic::new(3, 8, 4, &devices.plain),
            devices,
            obs_len: 3,
            rng: Rng::new(1),
        };
        let mut loaded = PpoAgent::from_weights(
            &agent.weights(),
            NetworkShape { inputs: 3, hidden: 8, outputs: 4, seed: 1 },
        )
        .unwrap();
        let obs = [0.3, -0.2, 0.9];
        assert_eq!(agent.logits(&obs, 1), loaded.logits(&obs, 1));
        for mask in [[true; 4], [false, true, false, true]] {
            assert_eq!(agent.act(&obs, &mask, ActMode::Greedy), loaded.act(&obs, &mask, ActMode::Greedy));
        }
    }
}
