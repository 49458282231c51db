//! One policy network for any cluster: it reads the gym's entity observation
//! ([`berth_env::entity`]) with weights shared across nodes, replicas and user groups, so its
//! parameter count depends on the feature widths (the services it knows), never on how many
//! nodes or replicas there are.
//!
//! The shape follows Decima (Mao et al., SIGCOMM 2019) and the attention model of Kool et al.
//! (ICLR 2019): per-entity encoders; one round of message passing, each node hearing the mean
//! of the replicas on it and each replica its node; a pooled global context; and a factored,
//! masked action: first keep or which replica (a score per replica beside one for keeping),
//! then which node for it (the compatibility of the node's key with the replica's query). The
//! action's log-probability is the sum of the two heads'. Logits are `C · tanh(x)` with
//! `C = 10`, as Kool et al. clip them, so the masked softmax over a segment needs no per-segment
//! maximum.
//!
//! A batch stacks the states' rows ([`EntityBatch`]), so states of different shapes train
//! together.

use berth_env::entity::{self, EntityObs};
use berth_env::gains::{MOVE_FEATURES, move_features};
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use burn::tensor::activation::relu;

/// Logit clipping of both heads.
const CLIP: f64 = 10.0;

/// The widths a network is built for: its services' feature widths and the hidden width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityShape {
    /// Services the model knows.
    pub services: usize,
    /// Width of every embedding.
    pub hidden: usize,
    /// Whether it reads the gain features ([`EntityObs::gains`]).
    pub gains: bool,
    /// Whether it reads the spreading features ([`EntityObs::spread`]).
    pub spread: bool,
}

/// The policy and value network over entity observations.
#[derive(Module, Debug)]
pub struct EntityNet {
    node_in: Linear,
    replica_in: Linear,
    group_in: Linear,
    global_in: Linear,
    node_update: Linear,
    replica_update: Linear,
    context: Linear,
    replica_score_hidden: Linear,
    replica_score: Linear,
    keep_score: Linear,
    query: Linear,
    key: Linear,
    /// With gains: embeds the move features of the chosen replica's targets into their keys.
    moves_in: Option<Linear>,
    value_hidden: Linear,
    value: Linear,
    /// Whether keeping is weighed against the mean of the replicas' move scores rather than
    /// their sum ([`EntityNet::with_keep_against_mean`]).
    #[module(skip)]
    keep_against_mean: bool,
    /// Whether it reads the gain features ([`EntityShape::gains`]).
    #[module(skip)]
    gains: bool,
    /// Whether it reads the spreading features ([`EntityShape::spread`]).
    #[module(skip)]
    spread: bool,
}

/// States' entity observations stacked row-wise, with the indices that tie rows together.
#[derive(Debug, Clone)]
pub struct EntityBatch {
    /// States in the batch.
    pub states: usize,
    nodes: Tensor<2>,
    replicas: Tensor<2>,
    groups: Tensor<2>,
    global: Tensor<2>,
    /// Row in `nodes` of each replica's node.
    replica_node: Tensor<1, Int>,
    node_state: Tensor<1, Int>,
    replica_state: Tensor<1, Int>,
    group_state: Tensor<1, Int>,
    /// `1 / count` per state of nodes, replicas and groups, `[states, 1]` each.
    inverse_counts: [Tensor<2>; 3],
    /// 1 / (replicas on the node, at least 1), `[nodes, 1]`.
    inverse_hosted: Tensor<2>,
    /// Rows of each state: `(first node, nodes, first replica, replicas)`.
    spans: Vec<(usize, usize, usize, usize)>,
}

/// The network's embeddings of a batch: what both heads read.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// Node rows, `[nodes, hidden]`.
    pub(crate) nodes: Tensor<2>,
    /// Replica rows, `[replicas, hidden]`.
    pub(crate) replicas: Tensor<2>,
    /// Each state's pooled context, `[states, hidden]`.
    pub(crate) context: Tensor<2>,
}

impl EntityBatch {
    /// Stacks `states` (all of the same services) on `device`.
    pub fn new(states: &[&EntityObs], device: &Device) -> Self {
        let kind = |s: &EntityObs| (s.services, s.gains, s.spread);
        let (services, gains, spread) = states.first().map_or((0, false, false), |s| kind(s));
        let (node_w, replica_w, group_w, global_w) = (
            entity::node_width(services, gains, spread),
            entity::replica_width(services, gains, spread),
            entity::group_width(services),
            entity::global_width(gains),
        );
        let (mut nodes, mut replicas, mut groups, mut global) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut replica_node, mut node_state, mut replica_state, mut group_state) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut counts = [Vec::new(), Vec::new(), Vec::new()];
        let mut hosted = Vec::new();
        let mut spans = Vec::with_capacity(states.len());
        for (b, s) in states.iter().enumerate() {
            assert_eq!(kind(s), (services, gains, spread), "a batch holds states of one kind");
            let (n_rows, r_rows, g_rows) =
                (s.nodes.len() / node_w, s.replicas.len() / replica_w, s.groups.len() / group_w);
            let node_base = node_state.len();
            spans.push((node_base, n_rows, replica_state.len(), r_rows));
            nodes.extend_from_slice(&s.nodes);
            replicas.extend_from_slice(&s.replicas);
            groups.extend_from_slice(&s.groups);
            global.extend_from_slice(&s.global);
            let mut on_node = vec![0u32; n_rows];
            for &n in &s.replica_node {
                replica_node.push((node_base + n as usize) as i64);
                on_node[n as usize] += 1;
            }
            hosted.extend(on_node.iter().map(|&c| 1.0 / c.max(1) as f32));
            node_state.extend(std::iter::repeat_n(b as i64, n_rows));
            replica_state.extend(std::iter::repeat_n(b as i64, r_rows));
            group_state.extend(std::iter::repeat_n(b as i64, g_rows));
            for (count, rows) in counts.iter_mut().zip([n_rows, r_rows, g_rows]) {
                count.push(1.0 / rows.max(1) as f32);
            }
        }
        let b = states.len();
        let float = |v: Vec<f32>, cols: usize| {
            let rows = v.len() / cols.max(1);
            Tensor::<2>::from_data(TensorData::new(v, [rows, cols]), device)
        };
        let int = |v: Vec<i64>| {
            let len = v.len();
            Tensor::<1, Int>::from_data(TensorData::new(v, [len]), device)
        };
        let [nodes_c, replicas_c, groups_c] = counts;
        Self {
            states: b,
            nodes: float(nodes, node_w),
            replicas: float(replicas, replica_w),
            groups: float(groups, group_w),
            global: float(global, global_w),
            replica_node: int(replica_node),
            node_state: int(node_state),
            replica_state: int(replica_state),
            group_state: int(group_state),
            inverse_counts: [float(nodes_c, 1), float(replicas_c, 1), float(groups_c, 1)],
            inverse_hosted: float(hosted, 1),
            spans,
        }
    }

    /// Rows of state `b`: `(first node, nodes, first replica, replicas)`.
    pub fn span(&self, b: usize) -> (usize, usize, usize, usize) {
        self.spans[b]
    }
}

/// Row-wise sum of `rows` into `groups` buckets by `index`: `[groups, cols]`.
fn scatter_sum(rows: Tensor<2>, index: Tensor<1, Int>, groups: usize) -> Tensor<2> {
    let [_, cols] = rows.dims();
    let device = rows.device();
    Tensor::<2>::zeros([groups, cols], &device).select_assign(0, index, rows, IndexingUpdateOp::Add)
}

impl EntityNet {
    /// A network for `shape`, with burn's default initialisation.
    pub fn new(shape: EntityShape, device: &Device) -> Self {
        let h = shape.hidden;
        let (s, gains, spread) = (shape.services, shape.gains, shape.spread);
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        Self {
            node_in: linear(entity::node_width(s, gains, spread), h),
            replica_in: linear(entity::replica_width(s, gains, spread), h),
            group_in: linear(entity::group_width(s), h),
            global_in: linear(entity::global_width(gains), h),
            node_update: linear(2 * h, h),
            replica_update: linear(2 * h, h),
            context: linear(4 * h, h),
            replica_score_hidden: linear(2 * h, h),
            replica_score: linear(h, 1),
            keep_score: linear(h, 1),
            query: linear(2 * h, h),
            key: linear(h, h),
            moves_in: gains.then(|| linear(MOVE_FEATURES.len(), h)),
            value_hidden: linear(h, h),
            value: linear(h, 1),
            keep_against_mean: false,
            gains,
            spread,
        }
    }

    /// An empty observation of the kind this network reads, for [`entity::observe_in`].
    pub fn observation(&self) -> EntityObs {
        EntityObs { gains: self.gains, spread: self.spread, ..EntityObs::default() }
    }

    /// The network with keeping weighed against the mean of the replicas' scores: the keep
    /// logit gains `ln(replicas open)`, so `P(keep) = e^k / (e^k + mean e^l)`. Against their
    /// sum (the default, as models were first trained) the chance of keeping falls as
    /// replicas are added, and a policy trained on 16 replicas moves nearly every tick on 200.
    pub fn with_keep_against_mean(mut self, on: bool) -> Self {
        self.keep_against_mean = on;
        self
    }

    /// The first head's log-probabilities over every state's replica rows, then every
    /// state's keep entry, with the open flags and the segments (states) they were taken over.
    fn first_head(
        &self,
        batch: &EntityBatch,
        e: &Embedded,
        decisions: &[Decision],
    ) -> (Tensor<1>, Vec<bool>, Vec<usize>) {
        let (mut open, mut segment) = (Vec::new(), Vec::new());
        for (b, d) in decisions.iter().enumerate() {
            let replicas = d.open.len() - 1;
            open.extend_from_slice(&d.open[..replicas]);
            segment.extend(std::iter::repeat_n(b, replicas));
        }
        open.extend(decisions.iter().map(|d| d.open[d.open.len() - 1]));
        segment.extend(0..decisions.len());
        let (replica, keep) = self.replica_logits(batch, e);
        let keep = if self.keep_against_mean {
            let offsets: Vec<f32> = decisions
                .iter()
                .map(|d| (d.open[..d.open.len() - 1].iter().filter(|&&o| o).count().max(1) as f32).ln())
                .collect();
            let len = offsets.len();
            keep + Tensor::<1>::from_data(TensorData::new(offsets, [len]), &e.context.device())
        } else {
            keep
        };
        let log_probs =
            segment_log_softmax(Tensor::cat(vec![replica, keep], 0), &open, &segment, decisions.len());
        (log_probs, open, segment)
    }

    /// Number of weights and biases.
    pub fn parameters(&self) -> usize {
        self.num_params()
    }

    /// The network with the keep score's bias replaced by `f` of it.
    pub(crate) fn map_keep_bias(mut self, f: impl FnOnce(Param<Tensor<1>>) -> Param<Tensor<1>>) -> Self {
        if let Some(bias) = self.keep_score.bias.take() {
            self.keep_score.bias = Some(f(bias));
        }
        self
    }

    /// Encodes, passes messages once and pools the context.
    pub fn embed(&self, batch: &EntityBatch) -> Embedded {
        let [n_rows, _] = batch.nodes.dims();
        let nodes = relu(self.node_in.forward(batch.nodes.clone()));
        let replicas = relu(self.replica_in.forward(batch.replicas.clone()));
        let groups = relu(self.group_in.forward(batch.groups.clone()));
        let global = relu(self.global_in.forward(batch.global.clone()));
        // Each node hears the mean of its replicas; then each replica its updated node.
        let heard =
            scatter_sum(replicas.clone(), batch.replica_node.clone(), n_rows) * batch.inverse_hosted.clone();
        let nodes = relu(self.node_update.forward(Tensor::cat(vec![nodes, heard], 1)));
        let host = nodes.clone().select(0, batch.replica_node.clone());
        let replicas = relu(self.replica_update.forward(Tensor::cat(vec![replicas, host], 1)));
        let b = batch.states;
        let [inv_n, inv_r, inv_g] = batch.inverse_counts.clone();
        let pooled = vec![
            scatter_sum(nodes.clone(), batch.node_state.clone(), b) * inv_n,
            scatter_sum(replicas.clone(), batch.replica_state.clone(), b) * inv_r,
            scatter_sum(groups, batch.group_state.clone(), b) * inv_g,
            global,
        ];
        let context = relu(self.context.forward(Tensor::cat(pooled, 1)));
        Embedded { nodes, replicas, context }
    }

    /// The state values, `[states]`.
    pub fn value(&self, e: &Embedded) -> Tensor<1> {
        self.value.forward(relu(self.value_hidden.forward(e.context.clone()))).flatten(0, 1)
    }

    /// First head, clipped logits: one per replica row `[replicas]`, and keeping per state
    /// `[states]`.
    pub fn replica_logits(&self, batch: &EntityBatch, e: &Embedded) -> (Tensor<1>, Tensor<1>) {
        let hidden = relu(linear_of_parts(
            &self.replica_score_hidden,
            vec![(e.replicas.clone(), None), (e.context.clone(), Some(batch.replica_state.clone()))],
        ));
        let replica = clip(self.replica_score.forward(hidden)).flatten(0, 1);
        let keep = clip(self.keep_score.forward(e.context.clone())).flatten(0, 1);
        (replica, keep)
    }

    /// Second head, clipped logits of every node row `[nodes]` for the replica `chosen[b]`
    /// (a replica row) of each state: the scaled dot product of the node's key with the
    /// replica's query. A network reading gains adds to each node's embedding that of
    /// `moves`, the [`MOVE_FEATURES`] of moving the chosen replica there (`[nodes, 3]`).
    pub fn node_logits(
        &self,
        batch: &EntityBatch,
        e: &Embedded,
        chosen: &[usize],
        moves: &[f32],
    ) -> Tensor<1> {
        let device = e.context.device();
        let rows = ints(chosen, &device);
        let replica = e.replicas.clone().select(0, rows);
        let query = self.query.forward(Tensor::cat(vec![replica, e.context.clone()], 1));
        let nodes = match &self.moves_in {
            Some(moves_in) => {
                let width = MOVE_FEATURES.len();
                let data = TensorData::new(moves.to_vec(), [moves.len() / width, width]);
                e.nodes.clone() + relu(moves_in.forward(Tensor::<2>::from_data(data, &device)))
            }
            None => e.nodes.clone(),
        };
        // key(node) · query = node · (W query) + bias · query: the key weights meet each
        // state's query once, not every node row (a matmul of [states, h] for one of [nodes, h]).
        let weight = self.key.weight.val();
        let [_, h] = weight.dims();
        let folded = query.clone().matmul(weight.transpose()).select(0, batch.node_state.clone());
        let mut dot = (nodes * folded).sum_dim(1);
        if let Some(bias) = &self.key.bias {
            let offset = (query * bias.val().unsqueeze_dim(0)).sum_dim(1);
            dot = dot + offset.select(0, batch.node_state.clone());
        }
        clip(dot.div_scalar((h as f64).sqrt())).flatten(0, 1)
    }
}

/// `linear` of rows that concatenate `parts`, as if they were concatenated first: each part
/// is a source and the index of the source row each output row takes (`None`: the source's
/// rows as they are). Each source row meets its block of the weights once, however many
/// output rows repeat it: a state's context once, not once per replica or candidate move.
/// The bias joins the last part before its rows are taken.
pub(crate) fn linear_of_parts(linear: &Linear, parts: Vec<(Tensor<2>, Option<Tensor<1, Int>>)>) -> Tensor<2> {
    let weight = linear.weight.val();
    let [_, outputs] = weight.dims();
    let (mut from, last) = (0, parts.len().saturating_sub(1));
    let mut sum: Option<Tensor<2>> = None;
    for (i, (source, index)) in parts.into_iter().enumerate() {
        let [_, width] = source.dims();
        let mut block = source.matmul(weight.clone().slice([from..from + width, 0..outputs]));
        from += width;
        if let (true, Some(bias)) = (i == last, &linear.bias) {
            block = block + bias.val().unsqueeze_dim(0);
        }
        let rows = match index {
            Some(index) => block.select(0, index),
            None => block,
        };
        sum = Some(match sum {
            Some(sum) => sum + rows,
            None => rows,
        });
    }
    sum.expect("at least one part")
}

fn clip<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    crate::nets::tanh(x.div_scalar(CLIP)).mul_scalar(CLIP)
}

/// Log-probabilities of a masked softmax over segments: `logits[i]` belongs to segment
/// `segment[i]` of `segments`; masked entries get `-inf`-like values and no mass. Every
/// segment needs at least one open entry. Logits are clipped to ±10, so `exp` needs no shift.
pub fn segment_log_softmax(
    logits: Tensor<1>,
    open: &[bool],
    segment: &[usize],
    segments: usize,
) -> Tensor<1> {
    let device = logits.device();
    let len = open.len();
    let open_f = Tensor::<1>::from_data(
        TensorData::new(open.iter().map(|&o| if o { 1.0f32 } else { 0.0 }).collect::<Vec<_>>(), [len]),
        &device,
    );
    let index = ints(segment, &device);
    let mass = logits.clone().exp() * open_f.clone();
    let total =
        Tensor::<1>::zeros([segments], &device).select_assign(0, index.clone(), mass, IndexingUpdateOp::Add);
    let log_total = total.clamp_min(1e-30).log().select(0, index);
    // Closed entries: a large negative log-probability, never sampled.
    let closed = open_f.neg().add_scalar(1.0).mul_scalar(-1e9);
    logits - log_total + closed
}

/// The first head's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Keep the placement.
    Keep,
    /// Move this replica (index within its state).
    Replica(usize),
}

/// One state's masks and the action taken in it, as the heads see them.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Per replica, whether any move of it is open; then whether keeping is.
    pub open: Vec<bool>,
    /// The first head's choice.
    pub pick: Pick,
    /// For a moved replica, the nodes open to it, and the one chosen.
    pub nodes: Option<(Vec<bool>, usize)>,
    /// For a moved replica, as a network reading gains sees its targets: the
    /// [`MOVE_FEATURES`] of each node row, row-major; else empty.
    pub moves: Vec<f32>,
}

impl Decision {
    /// The masks of `mask` (the env's flat mask over `1 + replicas · nodes` actions) and the
    /// decision behind `action`, with a node row for every node.
    pub fn from_action(mask: &[bool], replicas: usize, nodes: usize, action: usize) -> Self {
        let rows: Vec<u32> = (0..nodes as u32).collect();
        Self::in_rows(mask, replicas, &rows, action).expect("every node has a row")
    }

    /// [`Decision::from_action`] as a network sees it whose node rows are the env's nodes
    /// `rows` (ascending): `None` when `action` moves a replica to a node without a row.
    pub fn in_rows(mask: &[bool], replicas: usize, rows: &[u32], action: usize) -> Option<Self> {
        let nodes = env_nodes(mask, replicas);
        let allowed = |r: usize, n: u32| mask[1 + r * nodes + n as usize];
        let mut open: Vec<bool> = (0..replicas).map(|r| rows.iter().any(|&n| allowed(r, n))).collect();
        open.push(mask[0]);
        let Some(a) = action.checked_sub(1) else {
            return Some(Self { open, pick: Pick::Keep, nodes: None, moves: Vec::new() });
        };
        let (r, n) = (a / nodes, a % nodes);
        let row = rows.binary_search(&(n as u32)).ok()?;
        let open_rows = rows.iter().map(|&n| allowed(r, n)).collect();
        Some(Self { open, pick: Pick::Replica(r), nodes: Some((open_rows, row)), moves: Vec::new() })
    }

    /// The decision with the move features of its moved replica's targets, `rows`, in `env`
    /// (for a network reading gains).
    pub fn with_moves(mut self, env: &berth_env::PlacementEnv, rows: &[u32]) -> Self {
        self.moves.clear();
        if let Pick::Replica(r) = self.pick {
            move_features(env, r, rows, &mut self.moves);
        }
        self
    }
}

/// The env's node count behind a flat mask of `1 + replicas · nodes` actions.
fn env_nodes(mask: &[bool], replicas: usize) -> usize {
    (mask.len() - 1).checked_div(replicas).unwrap_or(0)
}

impl EntityNet {
    /// Log-probability of each state's decision (the sum of both heads'), `[states]`.
    pub fn log_prob(&self, batch: &EntityBatch, e: &Embedded, decisions: &[Decision]) -> Tensor<1> {
        self.evaluate(batch, e, decisions).0
    }

    /// Log-probability of each state's decision and the entropy of the policy there (the
    /// first head's, plus the second head's for the replica it moved), `[states]` each.
    pub fn evaluate(
        &self,
        batch: &EntityBatch,
        e: &Embedded,
        decisions: &[Decision],
    ) -> (Tensor<1>, Tensor<1>) {
        let device = e.context.device();
        // Head 1 over every state's replicas, then every state's keep entry.
        let states = decisions.len();
        let (head1_all, _, segment) = self.first_head(batch, e, decisions);
        let replica_rows = segment.len() - states;
        let picked: Vec<usize> = (0..states)
            .map(|b| match decisions[b].pick {
                Pick::Replica(r) => batch.span(b).2 + r,
                Pick::Keep => replica_rows + b,
            })
            .collect();
        let entropy1 = segment_entropy(head1_all.clone(), &segment, states);
        let head1 = head1_all.select(0, ints(&picked, &device));
        // Head 2 for states that moved a replica; keeping adds nothing.
        let chosen: Vec<usize> = (0..decisions.len())
            .map(|b| match decisions[b].pick {
                Pick::Replica(r) => batch.span(b).2 + r,
                Pick::Keep => batch.span(b).2,
            })
            .collect();
        let mut moves = Vec::new();
        if self.moves_in.is_some() {
            for (b, d) in decisions.iter().enumerate() {
                let count = batch.span(b).1;
                match d.nodes {
                    Some(_) => {
                        assert_eq!(
                            d.moves.len(),
                            count * MOVE_FEATURES.len(),
                            "a move's features per node row"
                        );
                        moves.extend_from_slice(&d.moves);
                    }
                    None => moves.resize(moves.len() + count * MOVE_FEATURES.len(), 0.0),
                }
            }
        }
        let nodes = self.node_logits(batch, e, &chosen, &moves);
        let (mut open, mut segment, mut picked, mut moved) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (b, d) in decisions.iter().enumerate() {
            let (first, count, _, _) = batch.span(b);
            match &d.nodes {
                Some((row, n)) => {
                    open.extend_from_slice(row);
                    picked.push(first + n);
                    moved.push(1.0f32);
                }
                None => {
                    // Any open entry keeps the softmax defined; the term is multiplied out.
                    open.extend((0..count).map(|i| i == 0));
                    picked.push(first);
                    moved.push(0.0);
                }
            }
            segment.extend(std::iter::repeat_n(b, count));
        }
        let head2_all = segment_log_softmax(nodes, &open, &segment, states);
        let entropy2 = segment_entropy(head2_all.clone(), &segment, states);
        let head2 = head2_all.select(0, ints(&picked, &device));
        let moved = Tensor::<1>::from_data(TensorData::new(moved, [states]), &device);
        (head1 + head2 * moved.clone(), entropy1 + entropy2 * moved)
    }

    /// Samples an action for `env`'s current state (the most likely one when `greedy`),
    /// with its log-probability. Only actions the env's mask allows are ever taken.
    /// `candidates`: the node rows it reads ([`berth_env::entity::observe_in`]).
    pub fn act(
        &self,
        env: &berth_env::PlacementEnv,
        candidates: Option<usize>,
        device: &Device,
        rng: &mut berth_core::Rng,
        greedy: bool,
    ) -> (usize, f32) {
        let mut obs = self.observation();
        berth_env::entity::observe_in(env, candidates, &mut obs);
        let step = self.decide(&obs, env, device, rng, greedy);
        (step.action, step.log_prob)
    }

    /// Samples an action (the most likely one when `greedy`) in the state `obs` of `env`,
    /// under its mask, with its decision, log-probability and the state's value.
    pub fn decide(
        &self,
        obs: &EntityObs,
        env: &berth_env::PlacementEnv,
        device: &Device,
        rng: &mut berth_core::Rng,
        greedy: bool,
    ) -> Decided {
        self.decide_all(&[obs], &[env], device, rng, greedy).pop().expect("one state")
    }

    /// [`EntityNet::decide`] for several states in one pass of the network (a rollout's env
    /// copies), so the per-operation overhead is paid once for all of them.
    /// The draws are made state by state, first heads before second heads.
    pub fn decide_all(
        &self,
        states: &[&EntityObs],
        envs: &[&berth_env::PlacementEnv],
        device: &Device,
        rng: &mut berth_core::Rng,
        greedy: bool,
    ) -> Vec<Decided> {
        use crate::nets::values;
        use berth_env::Env;
        let masks: Vec<&[bool]> = envs.iter().map(|e| e.action_mask()).collect();
        let batch = EntityBatch::new(states, device);
        let e = self.embed(&batch);
        let state_values = values(self.value(&e));
        let kept: Vec<Decision> = (0..states.len())
            .map(|b| Decision::in_rows(masks[b], batch.span(b).3, &states[b].node_ids, 0).expect("no node"))
            .collect();
        // Head 1: every state's replica rows, then every state's keep entry.
        let (head1, open, _) = self.first_head(&batch, &e, &kept);
        let head1 = values(head1);
        let replica_rows = open.len() - states.len();
        let picks: Vec<(usize, f32)> = (0..states.len())
            .map(|b| {
                let (_, _, first, count) = batch.span(b);
                let entries: Vec<usize> = (first..first + count).chain([replica_rows + b]).collect();
                let lp: Vec<f32> = entries.iter().map(|&i| head1[i]).collect();
                let on: Vec<bool> = entries.iter().map(|&i| open[i]).collect();
                let i = draw(&lp, &on, rng, greedy);
                (i, lp[i])
            })
            .collect();
        // Head 2 for the states that move a replica (the others score a stand-in row).
        let moves = |b: usize| picks[b].0 < batch.span(b).3;
        let chosen: Vec<usize> =
            (0..states.len()).map(|b| if moves(b) { batch.span(b).2 + picks[b].0 } else { 0 }).collect();
        let moving = (0..states.len()).any(moves);
        let (mut open, mut segment, mut moves) = (Vec::new(), Vec::new(), Vec::new());
        let width = MOVE_FEATURES.len();
        for (b, &(first, _)) in picks.iter().enumerate() {
            let (rows, replicas) = (&states[b].node_ids, batch.span(b).3);
            let nodes = env_nodes(masks[b], replicas);
            if first < replicas {
                open.extend(rows.iter().map(|&n| masks[b][1 + first * nodes + n as usize]));
                if self.moves_in.is_some() {
                    move_features(envs[b], first, rows, &mut moves);
                }
            } else {
                open.extend((0..rows.len()).map(|i| i == 0));
                if self.moves_in.is_some() {
                    moves.resize(moves.len() + rows.len() * width, 0.0);
                }
            }
            segment.extend(std::iter::repeat_n(b, rows.len()));
        }
        let head2 = if moving {
            let logits = self.node_logits(&batch, &e, &chosen, &moves);
            values(segment_log_softmax(logits, &open, &segment, states.len()))
        } else {
            Vec::new()
        };
        picks
            .into_iter()
            .enumerate()
            .map(|(b, (first, lp1))| {
                let (start, count, _, replicas) = batch.span(b);
                if first == replicas {
                    return Decided {
                        action: 0,
                        decision: kept[b].clone(),
                        log_prob: lp1,
                        value: state_values[b],
                    };
                }
                let node_open = &open[start..start + count];
                let n = draw(&head2[start..start + count], node_open, rng, greedy);
                let action = 1 + first * env_nodes(masks[b], replicas) + states[b].node_ids[n] as usize;
                // The same masks as keeping's, with the moved replica's open rows.
                let decision = Decision {
                    open: kept[b].open.clone(),
                    pick: Pick::Replica(first),
                    nodes: Some((node_open.to_vec(), n)),
                    // Empty for a network without gains: it wrote no move features.
                    moves: if moves.is_empty() {
                        Vec::new()
                    } else {
                        moves[start * width..(start + count) * width].to_vec()
                    },
                };
                Decided { action, decision, log_prob: lp1 + head2[start + n], value: state_values[b] }
            })
            .collect()
    }
}

/// An action chosen by [`EntityNet::decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// The env's flat action.
    pub action: usize,
    /// The same action as the heads see it.
    pub decision: Decision,
    /// Its log-probability.
    pub log_prob: f32,
    /// The state's value.
    pub value: f32,
}

/// An index drawn from log-probabilities over the open entries (the largest when `greedy`).
fn draw(log_probs: &[f32], open: &[bool], rng: &mut berth_core::Rng, greedy: bool) -> usize {
    let candidates = log_probs.iter().zip(open).enumerate().filter(|(_, (_, o))| **o);
    if greedy {
        return candidates.max_by(|a, b| a.1.0.total_cmp(b.1.0)).map_or(0, |(i, _)| i);
    }
    let mut u = rng.next_f64();
    let mut last = 0;
    for (i, (&lp, _)) in candidates {
        last = i;
        u -= f64::from(lp).exp();
        if u <= 0.0 {
            return i;
        }
    }
    last
}

/// `−Σ p · log p` per segment of the log-probabilities `log_probs` (closed entries have
/// `p = 0` and add nothing).
fn segment_entropy(log_probs: Tensor<1>, segment: &[usize], segments: usize) -> Tensor<1> {
    let device = log_probs.device();
    let terms = log_probs.clone().exp() * log_probs.clamp_min(-1e4);
    Tensor::<1>::zeros([segments], &device)
        .select_assign(0, ints(segment, &device), terms, IndexingUpdateOp::Add)
        .neg()
}

/// `v` as an index tensor on `device`.
pub(crate) fn ints(v: &[usize], device: &Device) -> Tensor<1, Int> {
    Tensor::<1, Int>::from_data(
        TensorData::new(v.iter().map(|&x| x as i64).collect::<Vec<_>>(), [v.len()]),
        device,
    )
}

#[cfg(test)]
mod tests {
    use berth_env::entity::observe_in;
    use berth_env::shipped::shipped;
    use berth_env::{Env, PlacementEnv};

    use super::*;
    use crate::nets::{Devices, values};

    /// Two states of `gpu-small` a few random moves apart, with gains and every node a row.
    fn two_states(net: &EntityNet) -> Vec<EntityObs> {
        let mut env = PlacementEnv::new(shipped("gpu-small").unwrap()).unwrap();
        env.reset(3);
        let mut rng = berth_core::Rng::new(3);
        (0..2)
            .map(|_| {
                for _ in 0..5 {
                    let open: Vec<usize> =
                        (0..env.action_count()).filter(|&a| env.action_mask()[a]).collect();
                    env.step(open[rng.below(open.len())]).unwrap();
                }
                let mut obs = net.observation();
                observe_in(&env, None, &mut obs);
                obs
            })
            .collect()
    }

    fn close(a: Tensor<1>, b: Tensor<1>) {
        let (a, b) = (values(a), values(b));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-4, "{x} against {y}");
        }
    }

    /// Both heads fold a layer's weights into the per-state side; the logits must be those of
    /// the layers applied to every row, as the network is defined.
    #[test]
    fn folded_heads_score_as_the_layers_applied_to_every_row() {
        let device = Devices::cpu().plain;
        let services = shipped("gpu-small").unwrap().services.len();
        let net = EntityNet::new(EntityShape { services, hidden: 16, gains: true, spread: false }, &device);
        let states = two_states(&net);
        let batch = EntityBatch::new(&states.iter().collect::<Vec<_>>(), &device);
        let e = net.embed(&batch);

        let ctx = e.context.clone().select(0, batch.replica_state.clone());
        let hidden = relu(net.replica_score_hidden.forward(Tensor::cat(vec![e.replicas.clone(), ctx], 1)));
        close(net.replica_logits(&batch, &e).0, clip(net.replica_score.forward(hidden)).flatten(0, 1));

        let chosen = [0, batch.span(1).2 + 1];
        let rows: usize = batch.spans.iter().map(|s| s.1).sum();
        let moves: Vec<f32> = (0..rows * MOVE_FEATURES.len()).map(|i| (i % 7) as f32 / 7.0 - 0.3).collect();
        let replica = e.replicas.clone().select(0, ints(&chosen, &device));
        let query = net.query.forward(Tensor::cat(vec![replica, e.context.clone()], 1));
        let data = TensorData::new(moves.clone(), [rows, MOVE_FEATURES.len()]);
        let with_moves =
            e.nodes.clone() + relu(net.moves_in.as_ref().unwrap().forward(Tensor::from_data(data, &device)));
        let keys = net.key.forward(with_moves);
        let dot = (keys * query.select(0, batch.node_state.clone())).sum_dim(1).div_scalar(4.0);
        close(net.node_logits(&batch, &e, &chosen, &moves), clip(dot).flatten(0, 1));
    }
}
