//! What moves are worth: the change in the tick's steady-state cost (what `greedy` scores),
//! as fractions of the cost now, from each replica's best move, from taking each replica away,
//! and from adding a replica of each service on each node. A network reading them can keep or
//! move as `greedy` would, on any cluster, and learn where `greedy` is wrong.
//!
//! Nodes alike in zone and hardware score alike (as `greedy` assumes), and so do replicas
//! alike ([`WhatIf`]), so the best moves cost a routing per kind of replica and (zone,
//! hardware class) it may move to, as `greedy` does; removals one routing per kind of replica;
//! additions one per (service, zone, class). The sum of a removal
//! and an addition is no estimate of a move: taking a busy replica away overloads the others,
//! which the move's other half relieves, so the best move is routed whole.

use crate::gym::Env;
use crate::what_if::WhatIf;
use crate::{Move, PlacementEnv};

/// The cost changes of one state, each `cost after / cost now − 1` clamped to `[-1, 1]`
/// (0 where the cost now is 0).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gains {
    /// Per replica: its removal.
    pub removal: Vec<f32>,
    /// Per service and node (`s × nodes + n`): one more replica of the service there; 0
    /// where none may move.
    pub addition: Vec<f32>,
    /// Per replica: the change from its best move now; 1 where it may move nowhere.
    pub best_move: Vec<f32>,
    /// Per replica: [`Gains::best_move`] in moves' costs, `Δ cost / move cost`, clamped to
    /// `[-4, 4]` and over 4. Below `-1/4` the move saves more than it costs: `greedy`'s test,
    /// at the same scale on a cluster of 20 replicas as on one of 2,000.
    pub best_move_in_moves: Vec<f32>,
    /// The cost of one move over the cost now, capped at 1: the saving a move must beat.
    pub move_cost: f32,
    /// The action `greedy` takes in this state, found on the same routings as the best moves
    /// (a teacher that reads it computes no `greedy` of its own).
    pub greedy: usize,
}

impl Gains {
    /// The lowest [`Gains::best_move`] (1 without replicas).
    pub fn best(&self) -> f32 {
        self.best_move.iter().copied().fold(1.0, f32::min)
    }

    /// The lowest [`Gains::best_move_in_moves`] (1 without replicas).
    pub fn best_in_moves(&self) -> f32 {
        self.best_move_in_moves.iter().copied().fold(1.0, f32::min)
    }
}

/// Fills `out` with the [`Gains`] of `env`'s current state.
pub fn gains(env: &PlacementEnv, out: &mut Gains) {
    gains_of(&mut WhatIf::new(env), out);
}

/// [`gains`] of the state `what_if` asks about, its prices kept for later questions.
pub fn gains_of(what_if: &mut WhatIf<'_>, out: &mut Gains) {
    let env = what_if.env();
    let scenario = env.scenario();
    let (nodes, services) = (env.node_count(), scenario.services.len());
    let classes = scenario.classes.len();
    let now = env.steady_cost(None).cost;
    let move_cost = scenario.reward.move_cost;
    let change = |after: f64| relative(now, after);
    let replicas = env.placement().len();
    out.removal.clear();
    out.removal.extend((0..replicas).map(|r| change(what_if.removed(r))));
    out.move_cost = if now > 0.0 { (move_cost / now).min(1.0) as f32 } else { 1.0 };

    // Where a replica of each service may move to: some replica of it may move there now.
    let mask = env.action_mask();
    let services_of = env.replica_service();
    let mut open = vec![false; services * nodes];
    for (r, &s) in services_of.iter().enumerate() {
        let row = &mask[1 + r * nodes..1 + (r + 1) * nodes];
        for (o, &m) in open[s * nodes..(s + 1) * nodes].iter_mut().zip(row) {
            *o |= m;
        }
    }
    let mut by_class = vec![f32::NAN; scenario.zones.len() * classes];
    out.addition.clear();
    out.addition.resize(services * nodes, 0.0);
    for s in 0..services {
        by_class.fill(f32::NAN);
        for n in (0..nodes).filter(|&n| open[s * nodes + n]) {
            let pair = scenario.nodes[n].zone * classes + scenario.class_on(s, n);
            if by_class[pair].is_nan() {
                by_class[pair] = change(env.steady_cost_with_added(s, n).cost);
            }
            out.addition[s * nodes + n] = by_class[pair];
        }
    }

    // Each replica's best move, routed whole; and `greedy`'s pick among them, by its own rule
    // and in its order (a node whose class was scored before scores the same, and loses).
    let keep = if mask[0] { now - move_cost } else { f64::INFINITY };
    let mut greedy = (0, keep);
    let best_cost: Vec<f64> = (0..replicas)
        .map(|r| {
            let mut best = f64::INFINITY;
            move_costs(what_if, r, 0..nodes, |n, cost| {
                let Some(cost) = cost else { return };
                best = best.min(cost);
                if cost < greedy.1 - 1e-12 {
                    greedy = (env.encode(Move { replica: r, node: n }), cost);
                }
            });
            best
        })
        .collect();
    out.greedy = greedy.0;
    out.best_move.clear();
    out.best_move.extend(best_cost.iter().map(|&b| if b.is_finite() { change(b) } else { 1.0 }));
    out.best_move_in_moves.clear();
    out.best_move_in_moves
        .extend(best_cost.iter().map(|&b| if b.is_finite() { in_moves(now, b, move_cost) } else { 1.0 }));
}

/// `after / now − 1`, clamped to `[-1, 1]`; 0 where `now` is 0.
pub(crate) fn relative(now: f64, after: f64) -> f32 {
    if now > 0.0 { ((after / now) - 1.0).clamp(-1.0, 1.0) as f32 } else { 0.0 }
}

/// `(after − now) / move_cost`, clamped to `[-4, 4]`, over 4; 1 where moves cost nothing.
fn in_moves(now: f64, after: f64, move_cost: f64) -> f32 {
    if move_cost > 0.0 { ((after - now) / move_cost).clamp(-4.0, 4.0) as f32 / 4.0 } else { 1.0 }
}

/// Calls `visit(n, cost)` for each node `n` of `nodes` with the steady cost after moving
/// replica `r` there (`None` where the mask forbids it): a routing per (zone, hardware class)
/// and kind of replica ([`WhatIf`]).
fn move_costs(
    what_if: &mut WhatIf<'_>,
    r: usize,
    nodes: impl Iterator<Item = usize>,
    mut visit: impl FnMut(usize, Option<f64>),
) {
    let env = what_if.env();
    let count = env.node_count();
    let mask = &env.action_mask()[1 + r * count..1 + (r + 1) * count];
    for n in nodes {
        visit(n, mask[n].then(|| what_if.moved(r, n)));
    }
}

/// Features of moving one replica to each of some nodes, in order: [`MOVE_FEATURES`].
pub const MOVE_FEATURES: [&str; 3] = [
    "allowed",         // flag: the mask allows the move now
    "change",          // steady cost after the move / now − 1, in [-1, 1] (0 where not allowed)
    "change_in_moves", // the move's change of cost / a move's cost, in [-4, 4], / 4 (1 where not allowed)
];

/// Appends to `out` the [`MOVE_FEATURES`] of moving replica `r` to each node of `rows`: a
/// routing per (zone, hardware class) among them, so a policy that has chosen a replica can
/// score its targets as `greedy` would.
pub fn move_features(env: &PlacementEnv, r: usize, rows: &[u32], out: &mut Vec<f32>) {
    move_features_from(&mut WhatIf::new(env), env.steady_cost(None).cost, r, rows, out);
}

/// [`move_features`] given the steady cost now, `now`, for a caller scoring every replica's
/// moves in one state: one routing saved per replica, and each (kind, place) priced once.
pub fn move_features_from(what_if: &mut WhatIf<'_>, now: f64, r: usize, rows: &[u32], out: &mut Vec<f32>) {
    let move_cost = what_if.env().scenario().reward.move_cost;
    move_costs(what_if, r, rows.iter().map(|&n| n as usize), |_, after| match after {
        None => out.extend([0.0, 0.0, 1.0]),
        Some(after) => out.extend([1.0, relative(now, after), in_moves(now, after, move_cost)]),
    });
}
