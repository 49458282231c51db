//! Double DQN with burn, after CleanRL's dqn.py: a replay buffer, a target network (hard
//! copies every `target_network_frequency` steps, or Polyak averaging with `tau < 1`), the
//! Huber loss, a linear epsilon schedule, a masked argmax everywhere an action is chosen,
//! gradient-norm clipping, and bootstrapping on truncation but not on termination.

use std::time::Instant;

use berth_core::Rng;
use berth_env::gym::Env;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::nn::loss::{HuberLossConfig, Reduction};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::agent::{ActMode, Agent, AgentKind, masked_argmax, random_allowed};
use crate::error::{Error, Result};
use crate::n_step::{Folded, NStep};
use crate::nets::{Devices, Mlp, NetworkShape, PolicyNetwork, matrix, record_from_bytes, seeded, values};
use crate::progress::{Flow, Progress};
use crate::run_log::{LogRow, REPORT_EVERY, RunLog, Window};
use crate::schedule::Linear as LinearSchedule;
use crate::validation::Validation;

/// Largest replay buffer, transitions.
pub const MAX_BUFFER_SIZE: usize = 10_000_000;
/// Largest minibatch, transitions.
pub const MAX_BATCH_SIZE: usize = 65_536;
/// Longest n-step return.
pub const MAX_N_STEP: usize = 1_000;
/// Most validation episodes per scoring.
pub const MAX_VALIDATION_EPISODES: usize = 1_000;
/// Most candidate moves per replica the entity network scores.
pub const MAX_CANDIDATE_MOVES: usize = 64;

/// Hyperparameters of DQN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DqnConfig {
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Transitions the replay buffer keeps.
    pub buffer_size: usize,
    /// Discount factor γ.
    pub gamma: f64,
    /// Target update rate: 1 copies the online network, less averages (Polyak).
    pub tau: f64,
    /// Steps between target updates.
    pub target_network_frequency: u64,
    /// Transitions per gradient step.
    pub batch_size: usize,
    /// Exploration rate ε over the run.
    pub epsilon: LinearSchedule,
    /// Steps of pure exploration before learning starts.
    pub learning_starts: u64,
    /// Steps between gradient steps.
    pub train_frequency: u64,
    /// Width of the two hidden layers.
    pub hidden: usize,
    /// Largest gradient norm; larger gradients are scaled down.
    pub max_grad_norm: f64,
    /// TD errors beyond this are penalised linearly (Huber loss). Small values let the rare
    /// large errors of terminal transitions count no more than ordinary ones, and Q-values
    /// then drift up: 1 diverged on CartPole with CleanRL's settings, 10 does not.
    pub huber_delta: f64,
    /// α of advantage learning (Bellemare et al., 2016): each target is lowered by α times
    /// how far the taken action falls short of the best one, which widens the gap between
    /// the best action and the rest by `1 / (1 - α)`. On a placement the gap between holding
    /// and a pointless move is the move penalty, far below the network's error on Q-values
    /// of a whole day, so without it the argmax moves almost every tick. 0 is plain DQN.
    pub action_gap: f64,
    /// A dueling network (a value head beside the advantage head): rewards here carry
    /// noise from traffic and node failures that every action shares, and a plain network
    /// spreads it over the actions' outputs unevenly, so the argmax chases it.
    pub dueling: bool,
    /// Share of the exploratory (ε) actions that keep the placement, in an env with a keep
    /// action (the rest are uniform over the allowed actions). With uniform exploration a
    /// policy that moves every tick is hardly ever shown what keeping earns, and random walks
    /// scramble the placement. Envs without a keep action (CartPole) explore uniformly.
    pub explore_keep: f64,
    /// Steps folded into each stored transition (n-step returns; 1 is plain DQN). A move
    /// costs at once and pays over the ticks after it: n steps carry that pay-off back to the
    /// move in one target instead of through n rounds of bootstrapping. 3 measured better
    /// than 1 on every seed on `gpu-small` (and 10 worse than 3).
    pub n_step: usize,
    /// How far (in Q units) a move's value must exceed keeping's before the greedy policy
    /// moves, in an env with a keep action. Two placements that serve alike (a router on
    /// either of two CPU nodes of a zone) get Q-values within the network's error of each
    /// other, and a plain argmax flipped a replica between them nearly every tick on three
    /// seeds of four on `gpu-small` (110-134 moves a day). A truly pointless move falls short
    /// of keeping by its penalty widened by advantage learning (0.02 / (1 - 0.99) = 2), so a
    /// margin of 1 holds back only moves the network cannot tell from keeping. 0 is the plain
    /// argmax.
    pub keep_margin: f64,
    /// Share of the exploratory (ε) actions that follow the env's teacher
    /// ([`Env::teacher_action`]), in an env with one; the rest explore as `explore_keep` says.
    /// Uniform exploration seldom strings together the moves that lead to the best
    /// placements, so their values are learnt from a handful of visits; the teacher's
    /// trajectories put them in the replay buffer (off-policy, so the greedy policy is still
    /// learnt from the rewards, not copied).
    pub explore_teacher: f64,
    /// Episodes each greedy policy is scored on to keep the run's best ([`Validation`]); 0
    /// keeps the last. On `gpu-medium` the last policy of one seed in three flipped a replica
    /// every tick and fell behind `greedy`, though the run had passed through better ones.
    pub validation_episodes: usize,
    /// Steps between validations, from `learning_starts` on; the last step is always scored.
    pub validation_every: u64,
    /// The Q-network: `flat` (an MLP over the flat observation with an output per action,
    /// bound to one cluster's size) or `entity` (the size-agnostic network scoring a few
    /// candidate moves per replica, [`crate::entity_dqn`]; placement scenarios only; its
    /// target network is copied, so `tau` must be 1, and `dueling` does not apply: keeping
    /// and moving have heads of their own).
    pub network: PolicyNetwork,
    /// With the entity network: the moves scored per replica, its best targets by the change
    /// in steady cost `greedy` would score, one per distinct change (nodes alike in zone and
    /// hardware score alike). Keeping is always scored too.
    pub candidate_moves: usize,
    /// With the entity network: node rows for the candidate nodes only, as PPO's
    /// `candidate_nodes` (0: a row for every node).
    pub candidate_nodes: usize,
    /// With the entity network: rows also carry what moves are worth, as PPO's
    /// `gain_features`.
    pub gain_features: bool,
    /// With the entity network: rows also say how each service's replicas stand on each
    /// node, as PPO's `spread_features`.
    pub spread_features: bool,
    /// With the entity network: the share of training days that are failure drills, as
    /// PPO's `outage_drills`.
    pub outage_drills: f64,
    /// With the entity network: every episode on a new variation of the scenario, as PPO's
    /// `vary_shapes`.
    pub vary_shapes: bool,
    /// With `vary_shapes`: the share of episodes that replay a variation and day where the
    /// policy trailed `greedy`, as PPO's `oversample_trailing`.
    pub oversample_trailing: f64,
}

impl Default for DqnConfig {
    fn default() -> Self {
        Self {
            learning_rate: 2.5e-4,
            buffer_size: 10_000,
            gamma: 0.99,
            tau: 1.0,
            target_network_frequency: 500,
            batch_size: 128,
            epsilon: LinearSchedule { start: 1.0, end: 0.05, fraction: 0.5 },
            learning_starts: 10_000,
            train_frequency: 10,
            hidden: 64,
            max_grad_norm: 10.0,
            huber_delta: 10.0,
            action_gap: 0.99,
            dueling: true,
            explore_keep: 0.9,
            n_step: 3,
            keep_margin: 1.0,
            explore_teacher: 0.5,
            validation_episodes: 3,
            validation_every: 20_000,
            network: PolicyNetwork::Flat,
            candidate_moves: 2,
            candidate_nodes: 0,
            gain_features: false,
            spread_features: false,
            outage_drills: 0.0,
            vary_shapes: false,
            oversample_trailing: 0.0,
        }
    }
}

impl DqnConfig {
    /// CleanRL's dqn.py (a plain network, no advantage learning, one-step targets, no
    /// teacher, the last policy kept), against whose published results berth checks the
    /// algorithm.
    pub fn cleanrl() -> Self {
        Self {
            action_gap: 0.0,
            dueling: false,
            n_step: 1,
            keep_margin: 0.0,
            explore_teacher: 0.0,
            validation_episodes: 0,
            ..Self::default()
        }
    }

    /// The defaults on CartPole: CleanRL's with three-step returns. With one-step targets 5
    /// seeds of 8 solved it in 200k steps (a mean of 475 over 100 greedy episodes; the others
    /// 321-466), and 5 of 8 in 350k; with three-step returns 16 of 16 in 200k.
    pub fn cartpole() -> Self {
        Self { n_step: 3, ..Self::cleanrl() }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, reason: &str| Err(Error::Config { name: name.into(), reason: reason.into() });
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad("learning_rate", "must be positive");
        }
        if !(0.0..=1.0).contains(&self.gamma) {
            return bad("gamma", "must be in [0, 1]");
        }
        if !(self.tau > 0.0 && self.tau <= 1.0) {
            return bad("tau", "must be in (0, 1]");
        }
        if self.batch_size == 0 || self.buffer_size < self.batch_size {
            return bad("buffer_size", "must be at least batch_size, and batch_size at least 1");
        }
        Error::at_most("buffer_size", self.buffer_size, MAX_BUFFER_SIZE)?;
        Error::at_most("batch_size", self.batch_size, MAX_BATCH_SIZE)?;
        Error::at_most("hidden", self.hidden, crate::nets::MAX_HIDDEN)?;
        Error::at_most("n_step", self.n_step, MAX_N_STEP)?;
        Error::at_most("validation_episodes", self.validation_episodes, MAX_VALIDATION_EPISODES)?;
        if self.target_network_frequency == 0 || self.train_frequency == 0 {
            return bad("train_frequency", "train_frequency and target_network_frequency must be at least 1");
        }
        if self.hidden == 0 {
            return bad("hidden", "must be at least 1");
        }
        if !(self.huber_delta > 0.0 && self.huber_delta.is_finite()) {
            return bad("huber_delta", "must be positive");
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm <= 0.0 {
            return bad("max_grad_norm", "must be positive");
        }
        if !(0.0..=1.0).contains(&self.explore_keep) {
            return bad("explore_keep", "must be in [0, 1]");
        }
        if !(self.keep_margin >= 0.0 && self.keep_margin.is_finite()) {
            return bad("keep_margin", "must be zero or more");
        }
        if self.n_step == 0 {
            return bad("n_step", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.explore_teacher) {
            return bad("explore_teacher", "must be in [0, 1]");
        }
        if self.validation_every == 0 {
            return bad("validation_every", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.action_gap) {
            return bad("action_gap", "must be in [0, 1)");
        }
        self.validate_entity()
    }

    /// Checks the fields of the entity network: set only with it, in range.
    fn validate_entity(&self) -> Result<()> {
        let bad = |name: &str, reason: &str| Err(Error::Config { name: name.into(), reason: reason.into() });
        let entity = self.network == PolicyNetwork::Entity;
        let needs = "needs network = \"entity\": the flat network is bound to one shape and reads every node";
        if !(0.0..=1.0).contains(&self.outage_drills) {
            return bad("outage_drills", "must be in [0, 1]");
        }
        let drills = self.outage_drills > 0.0;
        if !entity
            && (self.vary_shapes
                || self.candidate_nodes > 0
                || self.gain_features
                || self.spread_features
                || drills)
        {
            let name = if self.vary_shapes {
                "vary_shapes"
            } else if self.candidate_nodes > 0 {
                "candidate_nodes"
            } else if self.gain_features {
                "gain_features"
            } else if self.spread_features {
                "spread_features"
            } else {
                "outage_drills"
            };
            return bad(name, needs);
        }
        if entity && self.tau < 1.0 {
            return bad(
                "tau",
                "must be 1 with network = \"entity\" (its target network is copied, not averaged)",
            );
        }
        if self.candidate_moves == 0 {
            return bad("candidate_moves", "must be at least 1");
        }
        Error::at_most("candidate_moves", self.candidate_moves, MAX_CANDIDATE_MOVES)?;
        Error::at_most("candidate_nodes", self.candidate_nodes, crate::ppo::MAX_CANDIDATE_NODES)?;
        if !(0.0..=1.0).contains(&self.oversample_trailing) {
            return bad("oversample_trailing", "must be in [0, 1]");
        }
        if self.oversample_trailing > 0.0 && !self.vary_shapes {
            return bad("oversample_trailing", "needs vary_shapes = true: it replays variations");
        }
        Ok(())
    }
}

/// Double-DQN targets: `r + d · Q_target(s', argmax_{a' allowed} Q_online(s', a'))`, with no
/// bootstrap from a terminal state; `d` is each transition's discount (`γ^k` for `k` steps).
///
/// # Shapes
/// - `online_next`, `target_next`, `next_masks`: `[batch * actions]`, row-major
/// - `rewards`, `discounts`, `terminated`, output: `[batch]`
pub fn double_dqn_targets(
    online_next: &[f32],
    target_next: &[f32],
    next_masks: &[bool],
    rewards: &[f32],
    discounts: &[f32],
    terminated: &[bool],
) -> Vec<f32> {
    let actions = online_next.len() / rewards.len().max(1);
    (0..rewards.len())
        .map(|i| {
            if terminated[i] {
                return rewards[i];
            }
            let row = i * actions..(i + 1) * actions;
            let best = masked_argmax(&online_next[row.clone()], &next_masks[row]);
            rewards[i] + discounts[i] * target_next[i * actions + best]
        })
        .collect()
}

/// Advantage-learning targets: each of `targets` less `alpha · (max_{b allowed} Q(s, b) -
/// Q(s, a))`, with `Q` the target network's values of the states the actions were taken in.
///
/// # Shapes
/// - `target_now`, `masks`: `[batch * actions]`, row-major
/// - `actions`, `targets`, output: `[batch]`
pub fn advantage_learning_targets(
    targets: Vec<f32>,
    target_now: &[f32],
    masks: &[bool],
    actions: &[usize],
    alpha: f32,
) -> Vec<f32> {
    let width = target_now.len() / actions.len().max(1);
    targets
        .into_iter()
        .zip(actions)
        .enumerate()
        .map(|(i, (y, &a))| {
            let row = &target_now[i * width..(i + 1) * width];
            let best = row[masked_argmax(row, &masks[i * width..(i + 1) * width])];
            y - alpha * (best - row[a]).max(0.0)
        })
        .collect()
}

/// One gradient step of the Huber loss between `Q(obs, action)` and `targets`.
/// Returns the updated network, the loss and the mean Q of the taken actions.
///
/// # Shapes
/// - `obs`: `[batch * obs_len]`; `actions`, `targets`: `[batch]`
fn learn(
    online: Mlp,
    optimizer: &mut burn::optim::ModuleOptimizer,
    config: &DqnConfig,
    obs: &[f32],
    actions: &[usize],
    targets: Vec<f32>,
    devices: &Devices,
) -> (Mlp, f64, f64) {
    let b = actions.len();
    let obs = matrix(obs, b, obs.len() / b, &devices.train);
    let taken: Vec<i64> = actions.iter().map(|&a| a as i64).collect();
    let taken = Tensor::<2, Int>::from_data(TensorData::new(taken, [b, 1]), &devices.train);
    let q = online.forward(obs).gather(1, taken).reshape([b]);
    let y = Tensor::<1>::from_data(TensorData::new(targets, [b]), &devices.train);
    let loss = HuberLossConfig::new(config.huber_delta as f32).init().forward(q.clone(), y, Reduction::Mean);
    let loss_value = loss.clone().into_scalar::<f32>() as f64;
    let q_mean = q.detach().mean().into_scalar::<f32>() as f64;
    let grads = GradientsParams::from_grads(loss.backward(), &online);
    (optimizer.step(config.learning_rate, online, grads), loss_value, q_mean)
}

/// Transitions kept for replay, in flat ring buffers.
struct Replay {
    obs_len: usize,
    actions: usize,
    capacity: usize,
    len: usize,
    next: usize,
    obs: Vec<f32>,
    masks: Vec<bool>,
    next_obs: Vec<f32>,
    next_masks: Vec<bool>,
    action: Vec<usize>,
    reward: Vec<f32>,
    discount: Vec<f32>,
    terminated: Vec<bool>,
}

impl Replay {
    fn new(capacity: usize, obs_len: usize, actions: usize) -> Self {
        Self {
            obs_len,
            actions,
            capacity,
            len: 0,
            next: 0,
            obs: vec![0.0; capacity * obs_len],
            masks: vec![false; capacity * actions],
            next_obs: vec![0.0; capacity * obs_len],
            next_masks: vec![false; capacity * actions],
            action: vec![0; capacity],
            reward: vec![0.0; capacity],
            discount: vec![0.0; capacity],
            terminated: vec![false; capacity],
        }
    }

    /// Stores `t`, which ended in `next_obs` (with `next_mask`), `terminated` or not.
    fn push(
        &mut self,
        t: &Folded<(Vec<f32>, Vec<bool>)>,
        next_obs: &[f32],
        next_mask: &[bool],
        terminated: bool,
    ) {
        let i = self.next;
        let (o, a) = (self.obs_len, self.actions);
        let (obs, mask) = &t.state;
        self.obs[i * o..(i + 1) * o].copy_from_slice(obs);
        self.masks[i * a..(i + 1) * a].copy_from_slice(mask);
        self.next_obs[i * o..(i + 1) * o].copy_from_slice(next_obs);
        self.next_masks[i * a..(i + 1) * a].copy_from_slice(next_mask);
        self.action[i] = t.action;
        self.reward[i] = t.reward as f32;
        self.discount[i] = t.discount as f32;
        self.terminated[i] = terminated;
        self.next = (i + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
    }
}

/// A DQN policy: the online network.
pub struct DqnAgent {
    net: Mlp,
    devices: Devices,
    obs_len: usize,
    epsilon: f64,
    /// The env's keep action and the share of exploratory actions that take it.
    explore_keep: Option<(usize, f64)>,
    /// [`DqnConfig::explore_teacher`] while training; 0 once trained.
    explore_teacher: f64,
    /// The env's keep action and [`DqnConfig::keep_margin`].
    keep_margin: Option<(usize, f32)>,
    rng: Rng,
}

impl DqnAgent {
    /// Q-values of every action in `obs`.
    pub fn q_values(&self, obs: &[f32]) -> Vec<f32> {
        values(self.net.forward(matrix(obs, 1, self.obs_len, &self.devices.plain)))
    }

    /// Rebuilds an agent from [`Agent::weights`] of a network trained with `config`.
    pub fn from_weights(bytes: &[u8], shape: NetworkShape, config: &DqnConfig) -> Result<Self> {
        let devices = Devices::cpu();
        let record = record_from_bytes(bytes, "DQN")?;
        let net = q_network(shape.inputs, config, shape.outputs, &devices.plain).load_record(record);
        Ok(Self {
            net,
            devices,
            obs_len: shape.inputs,
            epsilon: 0.0,
            explore_keep: None,
            explore_teacher: 0.0,
            keep_margin: None,
            rng: Rng::derive(shape.seed, 0xd9),
        })
    }

    /// Holds back moves worth less than `margin` over `keep` (the env's keep action, where it
    /// has one) when acting greedily: [`DqnConfig::keep_margin`] for a loaded agent, whose
    /// weights do not say which action keeps.
    pub fn with_keep_margin(mut self, keep: Option<usize>, margin: f64) -> Self {
        self.keep_margin = keep.filter(|_| margin > 0.0).map(|k| (k, margin as f32));
        self
    }

    /// The action to take while training: with probability ε an exploratory one (the
    /// `teacher`'s, keep, or uniform over the allowed ones), else the greedy one.
    fn explore(&mut self, obs: &[f32], mask: &[bool], teacher: impl FnOnce() -> Option<usize>) -> usize {
        if self.rng.next_f64() < self.epsilon {
            if self.explore_teacher > 0.0
                && self.rng.next_f64() < self.explore_teacher
                && let Some(action) = teacher()
            {
                return action;
            }
            if let Some((keep, share)) = self.explore_keep
                && mask[keep]
                && self.rng.next_f64() < share
            {
                return keep;
            }
            return random_allowed(mask, &mut self.rng);
        }
        self.greedy(obs, mask)
    }

    /// The greedy action, holding back moves within the keep margin.
    fn greedy(&self, obs: &[f32], mask: &[bool]) -> usize {
        greedy_with_keep_margin(&self.q_values(obs), mask, self.keep_margin)
    }
}

/// The greedy action among the allowed ones, except that where `keep` is allowed, a better
/// action is taken only if it beats keeping by more than `margin`.
pub fn greedy_with_keep_margin(values: &[f32], mask: &[bool], keep: Option<(usize, f32)>) -> usize {
    let best = masked_argmax(values, mask);
    match keep {
        Some((k, margin)) if mask[k] && best != k && values[best] - values[k] <= margin => k,
        _ => best,
    }
}

impl Agent for DqnAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Dqn
    }

    fn act(&mut self, obs: &[f32], mask: &[bool], mode: ActMode) -> usize {
        match mode {
            ActMode::Explore => self.explore(obs, mask, || None),
            ActMode::Greedy => self.greedy(obs, mask),
        }
    }

    fn weights(&self) -> Vec<u8> {
        self.net.clone().into_record().into_bytes().expect("records serialise").to_vec()
    }
}

/// The Q-network `config` asks for.
fn q_network(inputs: usize, config: &DqnConfig, actions: usize, device: &Device) -> Mlp {
    if config.dueling {
        Mlp::dueling(inputs, config.hidden, actions, device)
    } else {
        Mlp::new(inputs, config.hidden, actions, device)
    }
}

/// Trains DQN on `env` for `steps` steps.
pub fn train<E: Env + Clone>(
    env: &mut E,
    config: &DqnConfig,
    steps: u64,
    seed: u64,
    devices: &Devices,
    log: &mut RunLog,
    progress: &mut dyn FnMut(Progress) -> Flow,
) -> Result<DqnAgent> {
    config.validate()?;
    let devices = devices.clone();
    let (obs_len, actions) = (env.observation_space().len(), env.action_count());
    let mut online = seeded(&devices, seed, || q_network(obs_len, config, actions, &devices.train));
    let mut target = online.clone().valid();
    let mut optimizer = AdamConfig::new()
        .with_grad_clipping(Some(GradientClippingConfig::Norm(config.max_grad_norm as f32)))
        .init();
    let mut agent = DqnAgent {
        net: online.valid(),
        devices: devices.clone(),
        obs_len,
        epsilon: 1.0,
        explore_keep: env.keep_action().map(|keep| (keep, config.explore_keep)),
        explore_teacher: config.explore_teacher,
        keep_margin: None,
        rng: Rng::derive(seed, 0xd9),
    }
    .with_keep_margin(env.keep_action(), config.keep_margin);
    let mut replay = Replay::new(config.buffer_size, obs_len, actions);
    let mut n_step = NStep::new(config.n_step, config.gamma);
    let mut sample_rng = Rng::derive(seed, 0x5a);
    let mut episode_seeds = Rng::derive(seed, 0xe9);
    let mut obs = env.reset(episode_seeds.next_u64()).obs.to_vec();
    let mut window = Window::default();
    let mut validation = (config.validation_episodes > 0)
        .then(|| Validation::new(env.clone(), config.validation_episodes, seed));
    // The last validation's score, until the next log row carries it.
    let mut validated = None;
    let log_every = (steps / 200).max(config.train_frequency);
    let start = Instant::now();
    let b = config.batch_size;
    for step in 1..=steps {
        agent.epsilon = config.epsilon.at(step, steps);
        let mask = env.action_mask().to_vec();
        let action = agent.explore(&obs, &mask, || env.teacher_action());
        let s = env.step(action)?;
        let (reward, terminated, truncated) = (s.reward, s.terminated, s.truncated);
        let next = s.obs.to_vec();
        // The step's observation and mask move into the n-step queue: `obs` is replaced below.
        for folded in n_step.push((std::mem::take(&mut obs), mask), action, reward, terminated || truncated) {
            replay.push(&folded, &next, env.action_mask(), terminated);
        }
        window.step(reward, terminated || truncated);
        obs = next;
        if terminated || truncated {
            obs = env.reset(episode_seeds.next_u64()).obs.to_vec();
        }
        if step > config.learning_starts && step % config.train_frequency == 0 && replay.len >= b {
            let idx: Vec<usize> = (0..b).map(|_| sample_rng.below(replay.len)).collect();
            let gather = |src: &[f32], width: usize| -> Vec<f32> {
                idx.iter().flat_map(|&i| src[i * width..(i + 1) * width].iter().copied()).collect()
            };
            let next_obs = matrix(&gather(&replay.next_obs, obs_len), b, obs_len, &devices.plain);
            let online_next = values(agent.net.forward(next_obs.clone()));
            let target_next = values(target.forward(next_obs));
            let gather_masks = |src: &[bool]| -> Vec<bool> {
                idx.iter().flat_map(|&i| src[i * actions..(i + 1) * actions].iter().copied()).collect()
            };
            let masks = gather_masks(&replay.next_masks);
            let rewards: Vec<f32> = idx.iter().map(|&i| replay.reward[i]).collect();
            let discounts: Vec<f32> = idx.iter().map(|&i| replay.discount[i]).collect();
            let terminal: Vec<bool> = idx.iter().map(|&i| replay.terminated[i]).collect();
            let y = double_dqn_targets(&online_next, &target_next, &masks, &rewards, &discounts, &terminal);
            let batch_obs = gather(&replay.obs, obs_len);
            let taken: Vec<usize> = idx.iter().map(|&i| replay.action[i]).collect();
            let y = if config.action_gap > 0.0 {
                let target_now = values(target.forward(matrix(&batch_obs, b, obs_len, &devices.plain)));
                let now_masks = gather_masks(&replay.masks);
                advantage_learning_targets(y, &target_now, &now_masks, &taken, config.action_gap as f32)
            } else {
                y
            };
            let (next_online, loss, q_mean) =
                learn(online, &mut optimizer, config, &batch_obs, &taken, y, &devices);
            online = next_online;
            window.learned(loss, q_mean);
            agent.net = online.valid();
        }
        if step % config.target_network_frequency == 0 {
            target = target.soft_update(&agent.net, config.tau);
        }
        if let Some(v) = validation.as_mut()
            && step > config.learning_starts
            && (step % config.validation_every == 0 || step == steps)
        {
            let greedy = |env: &E| agent.greedy(env.observation(), env.action_mask());
            validated = Some(v.offer(step, greedy, || agent.net.clone())?);
        }
        let at = Logged { step, steps, log_every, epsilon: agent.epsilon, start };
        log_row(&mut window, at, config, &mut validated, log, progress)?;
    }
    (agent.epsilon, agent.explore_teacher) = (0.0, 0.0);
    if let Some(best) = validation.and_then(Validation::into_best) {
        agent.net = best.policy;
    }
    Ok(agent)
}

/// Where a DQN run stands, for its log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Logged {
    pub step: u64,
    pub steps: u64,
    pub log_every: u64,
    pub epsilon: f64,
    pub start: Instant,
}

/// Closes the window into a log row every `log_every` steps and at the last (with the
/// last validation's score, which it takes), else reports progress every so often.
pub(crate) fn log_row(
    window: &mut Window,
    at: Logged,
    config: &DqnConfig,
    validated: &mut Option<f64>,
    log: &mut RunLog,
    progress: &mut dyn FnMut(Progress) -> Flow,
) -> Result<()> {
    let Logged { step, steps, log_every, epsilon, start } = at;
    if step % log_every == 0 || step == steps {
        let validation_return = validated.take();
        window.close((step, steps), start, log, progress, |row| LogRow {
            learning_rate: Some(config.learning_rate),
            epsilon: Some(epsilon),
            validation_return,
            ..row
        })?;
    } else if step % REPORT_EVERY == 0 {
        window.report((step, steps), start, progress)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use berth_env::CartPole;

    use super::*;

    #[test]
    fn double_dqn_target_uses_the_online_argmax_and_the_target_value() {
        // Two transitions, three actions.
        let online_next = [1.0, 5.0, 2.0, 9.0, 0.0, 3.0];
        let target_next = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0];
        // Row 0: action 1 is best online and allowed -> target value 20.
        // Row 1: action 0 (online 9) is masked -> action 2 (online 3) -> target value 60.
        let masks = [true, true, true, false, true, true];
        let targets = |discounts: &[f32], terminated: &[bool]| {
            double_dqn_targets(&online_next, &target_next, &masks, &[1.0, -1.0], discounts, terminated)
        };
        let y = targets(&[0.5, 0.5], &[false, false]);
        assert_eq!(y, vec![1.0 + 0.5 * 20.0, -1.0 + 0.5 * 60.0]);
        // Each transition's own discount (an n-step one: γ^k).
        let y = targets(&[0.5, 0.25], &[false, false]);
        assert_eq!(y, vec![1.0 + 0.5 * 20.0, -1.0 + 0.25 * 60.0]);
        // A terminal transition does not bootstrap; a truncated one is stored as not terminal.
        let y = targets(&[0.5, 0.5], &[true, false]);
        assert_eq!(y[0], 1.0);
    }

    #[test]
    fn advantage_learning_lowers_only_the_targets_of_actions_short_of_the_best() {
        // Two transitions, three actions; Q of the states the actions were taken in.
        let target_now = [1.0, 4.0, 2.0, 7.0, 3.0, 5.0];
        // Row 1's action 0 (Q 7) is masked: its best allowed is action 2 (Q 5).
        let masks = [true, true, true, false, true, true];
        let y = advantage_learning_targets(vec![10.0, 10.0], &target_now, &masks, &[1, 1], 0.5);
        // Row 0 took its best action: unchanged. Row 1 fell 5 - 3 = 2 short: lowered by 0.5 * 2.
        assert_eq!(y, vec![10.0, 9.0]);
        let y = advantage_learning_targets(vec![10.0, 10.0], &target_now, &masks, &[0, 2], 0.5);
        assert_eq!(y, vec![10.0 - 0.5 * 3.0, 10.0]);
    }

    #[test]
    fn a_move_must_beat_keeping_by_the_margin() {
        let q = [1.0, 1.5, 3.0, 0.0];
        let all = [true; 4];
        // Action 2 beats keep (0) by 2: taken under a margin of 1, held back under 2 or more.
        assert_eq!(greedy_with_keep_margin(&q, &all, Some((0, 1.0))), 2);
        assert_eq!(greedy_with_keep_margin(&q, &all, Some((0, 2.0))), 0);
        assert_eq!(greedy_with_keep_margin(&q, &all, None), 2);
        // Only the best action counts: action 1 is never taken in place of keeping.
        assert_eq!(greedy_with_keep_margin(&q, &[true, true, false, true], Some((0, 1.0))), 0);
        assert_eq!(greedy_with_keep_margin(&q, &[true, true, false, true], Some((0, 0.25))), 1);
        // Where keeping is not allowed (replicas to evacuate), the best allowed action.
        assert_eq!(greedy_with_keep_margin(&q, &[false, true, false, true], Some((0, 9.0))), 1);
        assert!(DqnConfig { keep_margin: -1.0, ..Default::default() }.validate().is_err());
        assert_eq!(DqnConfig::cleanrl().keep_margin, 0.0);
    }

    #[test]
    fn a_gradient_step_moves_q_toward_its_target() {
        let devices = Devices::cpu();
        let mut net = Mlp::new(2, 16, 3, &devices.train);
        let mut opt = AdamConfig::new().init();
        let test_config = DqnConfig { learning_rate: 1e-2, huber_delta: 1.0, ..Default::default() };
        let obs = [0.5, -0.5, 0.1, 0.9];
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..200 {
            let (n, loss, _) = learn(net, &mut opt, &test_config, &obs, &[1, 2], vec![3.0, -2.0], &devices);
            net = n;
            first.get_or_insert(loss);
            last = loss;
        }
        assert!(last < first.unwrap() * 0.05, "loss {first:?} -> {last}");
        let q = values(net.valid().forward(matrix(&obs, 2, 2, &devices.plain)));
        assert!((q[1] - 3.0).abs() < 0.3 && (q[5] + 2.0).abs() < 0.3, "{q:?}");
    }

    #[test]
    fn hard_and_soft_target_updates() {
        let devices = Devices::cpu();
        // Dueling networks, so the value head is blended too.
        let a = Mlp::dueling(3, 4, 2, &devices.plain);
        let b = Mlp::dueling(3, 4, 2, &devices.plain);
        let x = matrix(&[0.1, 0.2, 0.3], 1, 3, &devices.plain);
        let (ya, yb) = (values(a.forward(x.clone())), values(b.forward(x.clone())));
        let copied = b.clone().soft_update(&a, 1.0);
        assert_eq!(values(copied.forward(x.clone())), ya);
        let half = b.soft_update(&a, 0.5);
        let yh = values(half.forward(x));
        assert!(yh != ya && yh != yb, "a half step lands in between");
    }

    /// A greedy agent with a dueling network of 3 inputs, 8 hidden units and 4 actions.
    fn small_agent(devices: Devices) -> DqnAgent {
        DqnAgent {
            net: Mlp::dueling(3, 8, 4, &devices.plain),
            devices,
            obs_len: 3,
            epsilon: 0.0,
            explore_keep: None,
            explore_teacher: 0.0,
            keep_margin: None,
            rng: Rng::new(1),
        }
    }

    #[test]
    fn exploration_follows_the_teacher_for_its_share() {
        let devices = Devices::cpu();
        let mut agent = DqnAgent {
            epsilon: 1.0,
            explore_keep: Some((0, 0.0)),
            explore_teacher: 0.5,
            ..small_agent(devices)
        };
        let (obs, mask) = ([0.1, 0.2, 0.3], [true; 4]);
        let taught = (0..4000).filter(|_| agent.explore(&obs, &mask, || Some(3)) == 3).count();
        // Half follow the teacher, and a quarter of the uniform half also draws action 3.
        assert!((2300..2700).contains(&taught), "{taught} of 4000");
        let without = (0..4000).filter(|_| agent.explore(&obs, &mask, || None) == 3).count();
        assert!((850..1150).contains(&without), "no teacher: uniform, {without} of 4000");
        agent.epsilon = 0.0;
        let greedy = agent.act(&obs, &mask, ActMode::Greedy);
        assert!((0..100).all(|_| agent.explore(&obs, &mask, || Some(3)) == greedy), "ε = 0 never explores");
    }

    #[test]
    fn the_run_ends_with_its_best_validated_policy() {
        let config = DqnConfig {
            learning_starts: 500,
            validation_episodes: 2,
            validation_every: 500,
            ..DqnConfig::cleanrl()
        };
        let (steps, seed) = (5_000, 3);
        let mut log = RunLog::new();
        let mut agent =
            train(&mut CartPole::new(), &config, steps, seed, &Devices::cpu(), &mut log, &mut |_| {
                Flow::Continue
            })
            .unwrap();
        let scores: Vec<f64> = log.rows().iter().filter_map(|r| r.validation_return).collect();
        assert_eq!(scores.len(), 9, "every 500 steps after the first 500 (the last among them)");
        let best = scores.iter().copied().fold(f64::MIN, f64::max);
        assert!(best > scores[scores.len() - 1], "this seed's last policy is not its best: {scores:?}");
        // The same seed gives the same validation episodes: the returned policy scores the best.
        let mut rescore = Validation::new(CartPole::new(), 2, seed);
        let greedy = |env: &CartPole| agent.act(env.observation(), env.action_mask(), ActMode::Greedy);
        let returned = rescore.offer(0, greedy, || ()).unwrap();
        assert_eq!(returned, best, "{scores:?}");
        assert!(DqnConfig { validation_every: 0, ..Default::default() }.validate().is_err());
    }

    #[test]
    fn weights_round_trip_gives_identical_actions() {
        let devices = Devices::cpu();
        let mut agent = DqnAgent { keep_margin: Some((0, 0.05)), ..small_agent(devices) };
        let config = DqnConfig { hidden: 8, ..Default::default() };
        let mut loaded = DqnAgent::from_weights(
            &agent.weights(),
            NetworkShape { inputs: 3, hidden: 8, outputs: 4, seed: 1 },
            &config,
        )
        .unwrap()
        .with_keep_margin(Some(0), 0.05);
        let obs = [0.3, -0.2, 0.9];
        for mask in [[true; 4], [false, true, false, true], [false, false, true, false]] {
            assert_eq!(agent.act(&obs, &mask, ActMode::Greedy), loaded.act(&obs, &mask, ActMode::Greedy));
        }
        assert_eq!(agent.q_values(&obs), loaded.q_values(&obs));
    }
}
