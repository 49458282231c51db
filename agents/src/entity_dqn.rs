//! DQN on the size-agnostic entity network ([`crate::entity_net`]): the algorithm of
//! [`crate::dqn`] (double DQN, n-step returns, advantage learning, the keep margin,
//! exploration through the teacher and keeping, the best validated policy kept) with a
//! Q-value for keeping and for a few candidate moves per replica, instead of one output per
//! action of `1 + R·N`.
//!
//! The candidates are each replica's best targets by the change in steady cost `greedy`
//! scores, one per distinct change (nodes alike in zone and hardware score alike), as the
//! issue suggests: a cheap pre-score, so a state has `1 + k·R` entries whatever the node
//! count. A move's value reads the replica's embedding, its target node's (with the move's
//! features) and the pooled context; keeping's reads the context. The weights are shared
//! across entities, so one model acts on any cluster of its services.
//!
//! The replay buffer holds each state once, shared by the transitions that start and end in
//! it, so it costs one observation per step, not two.

use std::sync::Arc;
use std::time::Instant;

use berth_core::Rng;
use berth_env::PlacementEnv;
use berth_env::entity::{EntityObs, observe_with};
use berth_env::gains::{MOVE_FEATURES, move_features_from};
use berth_env::gym::{Env, first_allowed};
use berth_env::shapes::{Condition, Curriculum, ShapeRanges};
use berth_env::what_if::WhatIf;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::nn::loss::{HuberLossConfig, Reduction};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::agent::{ActMode, Agent, AgentKind};
use crate::dqn::{
    DqnConfig, Logged, advantage_learning_targets, double_dqn_targets, greedy_with_keep_margin, log_row,
};
use crate::entity_net::{EntityBatch, EntityNet, EntityShape, ints, linear_of_parts};
use crate::episodes::Episodes;
use crate::error::Result;
use crate::n_step::NStep;
use crate::nets::{Devices, record_from_bytes, seeded, values};
use crate::progress::{Flow, Progress};
use crate::run_log::{RunLog, Window};
use crate::validation::Validation;

/// One candidate move of a state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The replica it moves (its row).
    pub replica: usize,
    /// The node row it moves the replica to.
    pub row: usize,
    /// The env's flat action.
    pub action: usize,
    /// Its [`MOVE_FEATURES`].
    pub features: [f32; 3],
}

/// A state as the Q-network reads it: the entity rows, whether keeping is allowed, and the
/// candidate moves (all allowed). Its entries are keeping (0), then the moves in order.
#[derive(Debug, Clone, Default)]
pub struct QState {
    /// The entity observation.
    pub obs: EntityObs,
    /// Whether the env allows keeping.
    pub keep: bool,
    /// The candidate moves.
    pub moves: Vec<Candidate>,
}

impl QState {
    /// Entries: keeping, then each move.
    pub fn entries(&self) -> usize {
        1 + self.moves.len()
    }

    /// Whether entry `i` may be taken.
    pub fn open(&self, i: usize) -> bool {
        i > 0 || self.keep
    }

    /// The env's action of entry `i`.
    pub fn action(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.moves[i - 1].action }
    }

    /// The entry of the env's `action`, if it is one of the state's.
    pub fn entry_of(&self, action: usize) -> Option<usize> {
        (0..self.entries()).find(|&i| self.open(i) && self.action(i) == action)
    }
}

/// Fills `out` with `env`'s state: node rows as `rows` says
/// ([`berth_env::entity::observe_in`]) and, per replica, its best `per_replica` allowed moves
/// among them, one per distinct change of cost (priced on the routings the gains ran).
pub fn observe_moves(env: &PlacementEnv, rows: Option<usize>, per_replica: usize, out: &mut QState) {
    let mut what_if = WhatIf::new(env);
    observe_with(&mut what_if, rows, &mut out.obs);
    out.keep = env.action_mask()[0];
    out.moves.clear();
    let (width, nodes) = (MOVE_FEATURES.len(), env.node_count());
    let node_ids = &out.obs.node_ids;
    let (mut features, mut order) = (Vec::new(), Vec::new());
    let now = env.steady_cost(None).cost;
    for r in 0..env.placement().len() {
        features.clear();
        move_features_from(&mut what_if, now, r, node_ids, &mut features);
        order.clear();
        order.extend((0..node_ids.len()).filter(|&i| features[i * width] > 0.5));
        let change = |i: usize| features[i * width + 1];
        order.sort_by(|&a, &b| change(a).total_cmp(&change(b)).then(a.cmp(&b)));
        order.dedup_by(|b, a| change(*a) == change(*b));
        out.moves.extend(order.iter().take(per_replica).map(|&i| Candidate {
            replica: r,
            row: i,
            action: 1 + r * nodes + node_ids[i] as usize,
            features: [features[i * width], features[i * width + 1], features[i * width + 2]],
        }));
    }
}

/// The Q-network over entity states: the entity network's encoder and message passing, a
/// head scoring keeping from the context, and one scoring a move from its replica, its
/// target and the context.
#[derive(Module, Debug)]
pub struct EntityQNet {
    /// The entity network; only its encoder, message passing and pooling are used.
    body: EntityNet,
    moves_in: Linear,
    pair_hidden: Linear,
    pair_q: Linear,
    keep_hidden: Linear,
    keep_q: Linear,
}

impl EntityQNet {
    /// A network for `shape`, with burn's default initialisation.
    pub fn new(shape: EntityShape, device: &Device) -> Self {
        let h = shape.hidden;
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        Self {
            body: EntityNet::new(shape, device),
            moves_in: linear(MOVE_FEATURES.len(), h),
            pair_hidden: linear(3 * h, h),
            pair_q: linear(h, 1),
            keep_hidden: linear(h, h),
            keep_q: linear(h, 1),
        }
    }

    /// Number of weights and biases.
    pub fn parameters(&self) -> usize {
        self.num_params()
    }

    /// Q of every entry of every state, state by state (keeping first): `[Σ entries]`.
    pub fn q_values(&self, states: &[&QState], device: &Device) -> Tensor<1> {
        let obs: Vec<&EntityObs> = states.iter().map(|s| &s.obs).collect();
        let batch = EntityBatch::new(&obs, device);
        let e = self.body.embed(&batch);
        let keep = self.keep_q.forward(relu(self.keep_hidden.forward(e.context.clone()))).flatten(0, 1);
        let (mut replica_rows, mut node_rows, mut state_rows, mut features) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Where each entry sits in `[keep; moves]`.
        let (b, mut order) = (states.len(), Vec::new());
        for (s, state) in states.iter().enumerate() {
            let (first_node, _, first_replica, _) = batch.span(s);
            order.push(s);
            for c in &state.moves {
                order.push(b + replica_rows.len());
                replica_rows.push(first_replica + c.replica);
                node_rows.push(first_node + c.row);
                state_rows.push(s);
                features.extend_from_slice(&c.features);
            }
        }
        if replica_rows.is_empty() {
            return keep;
        }
        let width = MOVE_FEATURES.len();
        let moves = Tensor::<2>::from_data(TensorData::new(features, [node_rows.len(), width]), device);
        let nodes = e.nodes.select(0, ints(&node_rows, device)) + relu(self.moves_in.forward(moves));
        let pair = relu(linear_of_parts(
            &self.pair_hidden,
            vec![
                (e.replicas, Some(ints(&replica_rows, device))),
                (nodes, None),
                (e.context, Some(ints(&state_rows, device))),
            ],
        ));
        let moves = self.pair_q.forward(pair).flatten(0, 1);
        Tensor::cat(vec![keep, moves], 0).select(0, ints(&order, device))
    }
}

/// Entries of `states` padded to the widest: the values and which entries are open,
/// `[states × width]` row-major, and the width.
fn padded(flat: &[f32], states: &[&QState]) -> (Vec<f32>, Vec<bool>, usize) {
    let width = states.iter().map(|s| s.entries()).max().unwrap_or(1);
    let (mut out, mut open, mut at) = (Vec::new(), Vec::new(), 0);
    for s in states {
        let n = s.entries();
        out.extend_from_slice(&flat[at..at + n]);
        out.resize(out.len() + width - n, 0.0);
        open.extend((0..width).map(|i| i < n && s.open(i)));
        at += n;
    }
    (out, open, width)
}

/// A DQN policy on the entity network, acting on any cluster of its services.
pub struct EntityDqnAgent {
    net: EntityQNet,
    devices: Devices,
    /// The services it knows, by name, in its network's order.
    services: Vec<String>,
    /// Node rows it reads ([`berth_env::entity::observe_in`]) and candidate moves per
    /// replica, as trained.
    rows: Option<usize>,
    per_replica: usize,
    /// [`DqnConfig::keep_margin`].
    keep_margin: f32,
    epsilon: f64,
    explore_keep: f64,
    explore_teacher: f64,
    rng: Rng,
    state: QState,
}

impl EntityDqnAgent {
    /// Rebuilds an agent from [`Agent::weights`] and the config it was trained with.
    pub fn from_weights(bytes: &[u8], services: Vec<String>, config: &DqnConfig, seed: u64) -> Result<Self> {
        let devices = Devices::cpu();
        let record = record_from_bytes(bytes, "DQN (entity)")?;
        let net = EntityQNet::new(shape(services.len(), config), &devices.plain).load_record(record);
        Ok(Self::around(net, devices, services, config, seed))
    }

    fn around(
        net: EntityQNet,
        devices: Devices,
        services: Vec<String>,
        config: &DqnConfig,
        seed: u64,
    ) -> Self {
        let state = QState {
            obs: EntityObs {
                gains: config.gain_features,
                spread: config.spread_features,
                ..EntityObs::default()
            },
            ..QState::default()
        };
        Self {
            net,
            devices,
            services,
            rows: (config.candidate_nodes > 0).then_some(config.candidate_nodes),
            per_replica: config.candidate_moves,
            keep_margin: config.keep_margin as f32,
            epsilon: 0.0,
            explore_keep: config.explore_keep,
            explore_teacher: 0.0,
            rng: Rng::derive(seed, 0xd9),
            state,
        }
    }

    /// Parameters of the network `config` builds for `services` services.
    pub fn parameters(services: usize, config: &DqnConfig) -> usize {
        EntityQNet::new(shape(services, config), &Device::flex()).parameters()
    }

    /// The services it knows.
    pub fn services(&self) -> &[String] {
        &self.services
    }

    /// Observes `env` into the agent's state.
    fn observe(&mut self, env: &PlacementEnv) {
        observe_moves(env, self.rows, self.per_replica, &mut self.state);
    }

    /// The greedy entry of `state`, holding back moves within the keep margin; `None` where
    /// no entry is open.
    fn greedy_entry(&self, state: &QState) -> Option<usize> {
        let open: Vec<bool> = (0..state.entries()).map(|i| state.open(i)).collect();
        if !open.contains(&true) {
            return None;
        }
        let q = values(self.net.q_values(&[state], &self.devices.plain));
        let margin = (self.keep_margin > 0.0).then_some((0, self.keep_margin));
        Some(greedy_with_keep_margin(&q, &open, margin))
    }

    /// The entry to take while training in `state`, the state of `env`: with probability ε
    /// the teacher's (where it is a candidate), keeping, or a uniform open one; else greedy.
    fn explore_entry(&mut self, state: &QState, env: &PlacementEnv) -> Option<usize> {
        if self.rng.next_f64() >= self.epsilon {
            return self.greedy_entry(state);
        }
        if self.rng.next_f64() < self.explore_teacher {
            let teacher = state.obs.greedy.or_else(|| env.teacher_action());
            if let Some(entry) = teacher.and_then(|a| state.entry_of(a)) {
                return Some(entry);
            }
        }
        if state.keep && self.rng.next_f64() < self.explore_keep {
            return Some(0);
        }
        let open: Vec<usize> = (0..state.entries()).filter(|&i| state.open(i)).collect();
        (!open.is_empty()).then(|| open[self.rng.below(open.len())])
    }
}

impl Agent for EntityDqnAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Dqn
    }

    /// The entity network reads the env, not the flat observation: on a bare observation it
    /// keeps where it may, else takes the first allowed action. [`Agent::act_in`] is how
    /// it acts.
    fn act(&mut self, _obs: &[f32], mask: &[bool], _mode: ActMode) -> usize {
        first_allowed(mask)
    }

    fn act_in(&mut self, env: &PlacementEnv, _mode: ActMode) -> usize {
        self.observe(env);
        self.greedy_entry(&self.state)
            .map_or_else(|| first_allowed(env.action_mask()), |i| self.state.action(i))
    }

    fn weights(&self) -> Vec<u8> {
        self.net.clone().into_record().into_bytes().expect("records serialise").to_vec()
    }
}

/// The network `config` builds for `services` services.
pub fn shape(services: usize, config: &DqnConfig) -> EntityShape {
    EntityShape {
        services,
        hidden: config.hidden,
        gains: config.gain_features,
        spread: config.spread_features,
    }
}

/// A stored transition: the states are shared with the transitions next to it.
struct Transition {
    state: Arc<QState>,
    entry: usize,
    reward: f32,
    discount: f32,
    next: Arc<QState>,
    terminated: bool,
}

/// The last `capacity` transitions.
struct Replay {
    capacity: usize,
    items: Vec<Transition>,
    next: usize,
}

impl Replay {
    fn push(&mut self, t: Transition) {
        if self.items.len() < self.capacity {
            self.items.push(t);
        } else {
            self.items[self.next] = t;
        }
        self.next = (self.next + 1) % self.capacity;
    }
}

/// Trains DQN with the entity network on `env` (or variations of it) for `steps` steps.
pub fn train(
    env: &PlacementEnv,
    config: &DqnConfig,
    steps: u64,
    seed: u64,
    devices: &Devices,
    log: &mut RunLog,
    progress: &mut dyn FnMut(Progress) -> Flow,
) -> Result<EntityDqnAgent> {
    config.validate()?;
    let scenario = env.scenario().clone();
    let services: Vec<String> = scenario.services.iter().map(|s| s.name.clone()).collect();
    let shape = shape(services.len(), config);
    let mut online = seeded(devices, seed, || EntityQNet::new(shape, &devices.train));
    let mut target = online.valid();
    let mut agent = EntityDqnAgent::around(online.valid(), devices.clone(), services, config, seed);
    agent.explore_teacher = config.explore_teacher;
    let mut optimizer = AdamConfig::new()
        .with_grad_clipping(Some(GradientClippingConfig::Norm(config.max_grad_norm as f32)))
        .init();
    // Policies are scored on the scenario as given, whatever variation training is on.
    let mut validation = (config.validation_episodes > 0)
        .then(|| Validation::new(env.clone(), config.validation_episodes, seed));
    let mut env = env.clone();
    let curriculum = config.vary_shapes.then(|| {
        Curriculum::new((*scenario).clone(), ShapeRanges::default(), seed, config.oversample_trailing)
    });
    let mut episodes = Episodes::new(&env, curriculum, Rng::derive(seed, 0xe9), config.outage_drills, seed)?;
    let mut condition: Option<Condition> = episodes.next(&mut env)?;
    let mut replay = Replay { capacity: config.buffer_size, items: Vec::new(), next: 0 };
    let mut n_step = NStep::new(config.n_step, config.gamma);
    let mut sample_rng = Rng::derive(seed, 0x5a);
    let mut window = Window::default();
    let mut validated = None;
    let (log_every, start) = ((steps / 200).max(config.train_frequency), Instant::now());
    let mut episode_return = 0.0;
    agent.observe(&env);
    let mut state = Arc::new(agent.state.clone());
    for step in 1..=steps {
        agent.epsilon = config.epsilon.at(step, steps);
        // `state` is the training env's: validation acts through the agent's own state.
        let entry = agent.explore_entry(&state, &env);
        let action = entry.map_or_else(|| first_allowed(env.action_mask()), |i| state.action(i));
        let s = env.step(action)?;
        let (reward, terminated, truncated) = (s.reward, s.terminated, s.truncated);
        agent.observe(&env);
        let next = Arc::new(agent.state.clone());
        let ended = terminated || truncated;
        match entry {
            Some(entry) => {
                for folded in n_step.push(state.clone(), entry, reward, ended) {
                    replay.push(Transition {
                        state: folded.state,
                        entry: folded.action,
                        reward: folded.reward as f32,
                        discount: folded.discount as f32,
                        next: next.clone(),
                        terminated,
                    });
                }
            }
            // A step the Q-network could not choose: the folds waiting on it are dropped.
            None => n_step = NStep::new(config.n_step, config.gamma),
        }
        window.step(reward, ended);
        episode_return += reward;
        state = next;
        if ended {
            episodes.record(condition, episode_return)?;
            episode_return = 0.0;
            condition = episodes.next(&mut env)?;
            agent.observe(&env);
            state = Arc::new(agent.state.clone());
        }
        if step > config.learning_starts
            && step % config.train_frequency == 0
            && replay.items.len() >= config.batch_size
        {
            let idx: Vec<usize> =
                (0..config.batch_size).map(|_| sample_rng.below(replay.items.len())).collect();
            let batch: Vec<&Transition> = idx.iter().map(|&i| &replay.items[i]).collect();
            let y = targets(&agent.net, &target, config, &batch, &devices.plain);
            let (trained, loss, q_mean) = learn(online, &mut optimizer, config, &batch, y, &devices.train);
            online = trained;
            window.learned(loss, q_mean);
            agent.net = online.valid();
        }
        if step % config.target_network_frequency == 0 {
            target = agent.net.clone();
        }
        if let Some(v) = validation.as_mut()
            && step > config.learning_starts
            && (step % config.validation_every == 0 || step == steps)
        {
            let policy = agent.net.clone();
            let act = |e: &PlacementEnv| agent.act_in(e, ActMode::Greedy);
            validated = Some(v.offer(step, act, || policy)?);
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

/// Double-DQN targets of `batch` (with advantage learning where the config asks), on the
/// online network `online` and the target network `target`.
fn targets(
    online: &EntityQNet,
    target: &EntityQNet,
    config: &DqnConfig,
    batch: &[&Transition],
    device: &Device,
) -> Vec<f32> {
    let nexts: Vec<&QState> = batch.iter().map(|t| t.next.as_ref()).collect();
    let (online_next, open, _) = padded(&values(online.q_values(&nexts, device)), &nexts);
    let (target_next, _, _) = padded(&values(target.q_values(&nexts, device)), &nexts);
    let rewards: Vec<f32> = batch.iter().map(|t| t.reward).collect();
    let discounts: Vec<f32> = batch.iter().map(|t| t.discount).collect();
    let terminal: Vec<bool> = batch.iter().map(|t| t.terminated).collect();
    let y = double_dqn_targets(&online_next, &target_next, &open, &rewards, &discounts, &terminal);
    if config.action_gap <= 0.0 {
        return y;
    }
    let states: Vec<&QState> = batch.iter().map(|t| t.state.as_ref()).collect();
    let (target_now, open_now, _) = padded(&values(target.q_values(&states, device)), &states);
    let taken: Vec<usize> = batch.iter().map(|t| t.entry).collect();
    advantage_learning_targets(y, &target_now, &open_now, &taken, config.action_gap as f32)
}

/// One gradient step of the Huber loss between the Q of each transition's entry and its
/// target. Returns the updated network, the loss and the mean Q of the taken entries.
fn learn(
    online: EntityQNet,
    optimizer: &mut burn::optim::ModuleOptimizer,
    config: &DqnConfig,
    batch: &[&Transition],
    targets: Vec<f32>,
    device: &Device,
) -> (EntityQNet, f64, f64) {
    let states: Vec<&QState> = batch.iter().map(|t| t.state.as_ref()).collect();
    let (mut taken, mut at) = (Vec::with_capacity(batch.len()), 0);
    for t in batch {
        taken.push(at + t.entry);
        at += t.state.entries();
    }
    let q = online.q_values(&states, device).select(0, ints(&taken, device));
    let b = batch.len();
    let y = Tensor::<1>::from_data(TensorData::new(targets, [b]), device);
    let loss = HuberLossConfig::new(config.huber_delta as f32).init().forward(q.clone(), y, Reduction::Mean);
    let loss_value = loss.clone().into_scalar::<f32>() as f64;
    let q_mean = q.detach().mean().into_scalar::<f32>() as f64;
    let grads = GradientsParams::from_grads(loss.backward(), &online);
    (optimizer.step(config.learning_rate, online, grads), loss_value, q_mean)
}

#[cfg(test)]
mod tests {
    use berth_env::shipped::shipped;

    use super::*;

    /// A state of `moves` candidate moves (of replica 0 to node row 0), keeping allowed or not.
    fn state(moves: usize, keep: bool) -> QState {
        let c = Candidate { replica: 0, row: 0, action: 1, features: [1.0, 0.0, 0.0] };
        QState { obs: EntityObs::default(), keep, moves: vec![c; moves] }
    }

    /// The move head folds the replica and context blocks of its layer per row and per state;
    /// its values must be those of the layer applied to each candidate's concatenated rows.
    #[test]
    fn folded_move_head_scores_as_its_layer_applied_to_every_candidate() {
        let scenario = shipped("gpu-small").unwrap();
        let device = Devices::cpu().plain;
        let shape = EntityShape { services: scenario.services.len(), hidden: 16, gains: true, spread: false };
        let net = EntityQNet::new(shape, &device);
        let mut env = PlacementEnv::new(scenario).unwrap();
        let mut states = Vec::new();
        for seed in [4, 5] {
            env.reset(seed);
            env.step(first_allowed(env.action_mask())).unwrap();
            let mut state =
                QState { obs: EntityObs { gains: true, ..EntityObs::default() }, ..QState::default() };
            observe_moves(&env, None, 2, &mut state);
            states.push(state);
        }
        let refs: Vec<&QState> = states.iter().collect();
        let got = values(net.q_values(&refs, &device));

        let obs: Vec<&EntityObs> = states.iter().map(|s| &s.obs).collect();
        let batch = EntityBatch::new(&obs, &device);
        let e = net.body.embed(&batch);
        let mut at = 0;
        for (b, state) in states.iter().enumerate() {
            let (first_node, _, first_replica, _) = batch.span(b);
            at += 1; // keeping
            for c in &state.moves {
                let moves = Tensor::<2>::from_data(TensorData::new(c.features.to_vec(), [1, 3]), &device);
                let node = e.nodes.clone().select(0, ints(&[first_node + c.row], &device))
                    + relu(net.moves_in.forward(moves));
                let replica = e.replicas.clone().select(0, ints(&[first_replica + c.replica], &device));
                let context = e.context.clone().select(0, ints(&[b], &device));
                let pair = relu(net.pair_hidden.forward(Tensor::cat(vec![replica, node, context], 1)));
                let want = values(net.pair_q.forward(pair).flatten::<1>(0, 1))[0];
                assert!((got[at] - want).abs() < 1e-4, "state {b} entry {at}: {} against {want}", got[at]);
                at += 1;
            }
        }
        assert!(at > 10, "only {at} entries");
    }

    #[test]
    fn padding_closes_the_missing_entries_and_a_forbidden_keep() {
        let (a, b) = (state(2, true), state(0, false));
        let (values, open, width) = padded(&[1.0, 2.0, 3.0, 4.0], &[&a, &b]);
        assert_eq!(width, 3);
        assert_eq!(values, vec![1.0, 2.0, 3.0, 4.0, 0.0, 0.0]);
        assert_eq!(open, vec![true, true, true, false, false, false]);
    }

    #[test]
    fn a_gradient_step_moves_the_taken_entrys_q_toward_its_target() {
        let env = PlacementEnv::new(shipped("gpu-small").unwrap()).unwrap();
        let config = DqnConfig {
            learning_rate: 1e-2,
            huber_delta: 1.0,
            hidden: 16,
            network: crate::nets::PolicyNetwork::Entity,
            gain_features: true,
            ..DqnConfig::default()
        };
        let devices = Devices::cpu();
        let mut net = EntityQNet::new(shape(env.scenario().services.len(), &config), &devices.train);
        let mut s = QState { obs: EntityObs { gains: true, ..EntityObs::default() }, ..QState::default() };
        observe_moves(&env, None, 2, &mut s);
        assert!(s.moves.len() > 2, "{} moves", s.moves.len());
        let s = Arc::new(s);
        let t = |entry| Transition {
            state: s.clone(),
            entry,
            reward: 0.0,
            discount: 0.0,
            next: s.clone(),
            terminated: false,
        };
        let batch = [t(0), t(2)];
        let refs: Vec<&Transition> = batch.iter().collect();
        let mut optimizer = AdamConfig::new().init();
        for _ in 0..200 {
            net = learn(net, &mut optimizer, &config, &refs, vec![3.0, -2.0], &devices.train).0;
        }
        let q = values(net.valid().q_values(&[s.as_ref()], &devices.plain));
        assert!((q[0] - 3.0).abs() < 0.3 && (q[2] + 2.0).abs() < 0.3, "{q:?}");
    }
}
