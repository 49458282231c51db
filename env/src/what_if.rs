//! What moves would cost, asked many times in one state: `greedy` and the gain features
//! price every replica's move to every (zone, hardware class), thousands of routings a state
//! on `openb`. Both take nodes alike in zone and hardware class to score alike, and replicas
//! alike (service, zone, hardware time, serving) are interchangeable to the cost model, so
//! moving any of them to a given (zone, class) costs the same: each such price is computed
//! once a state, on working memory kept between questions. Where a move changes how a GPU is
//! shared, other replicas' times change with it: such a move is priced for its replica alone,
//! as [`PlacementEnv::steady_cost`] prices it, once per (zone, class) it is asked about.

use crate::cost::{ReplicaView, RoutingTable, Scratch};
use crate::{Move, PlacementEnv};

/// A replica's kind where its node's GPUs are shared: it is priced alone.
const ALONE: u32 = u32::MAX;

/// The steady costs of moves and removals in one state of `env`, each (kind, place) priced
/// once. Made for one state: the env must not step while it lives (it borrows it).
pub struct WhatIf<'a> {
    env: &'a PlacementEnv,
    /// The replicas as the steady state sees them; one is changed at a time, then restored.
    views: Vec<ReplicaView>,
    /// Per replica, its kind (or [`ALONE`]).
    kind: Vec<u32>,
    /// (zone, class) pairs of the scenario.
    pairs: usize,
    /// `moved[kind * pairs + pair]`: the cost after moving one of the kind there; NaN until asked.
    moved: Vec<f64>,
    /// `removed[kind]`: the cost with one of the kind gone; NaN until asked.
    removed: Vec<f64>,
    /// `alone[r * pairs + pair]`: moves that change how GPUs are shared, per replica; empty
    /// until the first is asked.
    alone: Vec<f64>,
    table: RoutingTable,
    scratch: Scratch,
    routings: usize,
}

impl<'a> WhatIf<'a> {
    /// Questions about `env`'s current state.
    pub fn new(env: &'a PlacementEnv) -> Self {
        let views = env.steady_views();
        let mut kinds: Vec<(usize, usize, u64, bool)> = Vec::new();
        let kind = views
            .iter()
            .enumerate()
            .map(|(r, v)| {
                if env.moves_shares(r, env.placement()[r]) {
                    return ALONE;
                }
                let key = (v.service, v.zone, v.service_time_ms.to_bits(), v.up);
                let found = kinds.iter().position(|k| *k == key).unwrap_or_else(|| {
                    kinds.push(key);
                    kinds.len() - 1
                });
                found as u32
            })
            .collect();
        let scenario = env.scenario();
        let pairs = scenario.zones.len() * scenario.classes.len();
        Self {
            env,
            views,
            kind,
            pairs,
            moved: vec![f64::NAN; kinds.len() * pairs],
            removed: vec![f64::NAN; kinds.len()],
            alone: Vec::new(),
            table: RoutingTable::default(),
            scratch: Scratch::default(),
            routings: 0,
        }
    }

    /// The env whose state this asks about.
    pub fn env(&self) -> &'a PlacementEnv {
        self.env
    }

    /// The steady cost after moving replica `r` to node `n` (a move the mask allows):
    /// [`PlacementEnv::steady_cost`] of the move.
    pub fn moved(&mut self, r: usize, n: usize) -> f64 {
        let env = self.env;
        let scenario = env.scenario();
        let s = env.replica_service()[r];
        let pair = scenario.nodes[n].zone * scenario.classes.len() + scenario.class_on(s, n);
        if self.kind[r] == ALONE || env.moves_shares(r, n) {
            if self.alone.is_empty() {
                self.alone = vec![f64::NAN; self.kind.len() * self.pairs];
            }
            let at = r * self.pairs + pair;
            if self.alone[at].is_nan() {
                self.alone[at] = env.steady_cost(Some(Move { replica: r, node: n })).cost;
            }
            return self.alone[at];
        }
        let at = self.kind[r] as usize * self.pairs + pair;
        if self.moved[at].is_nan() {
            self.moved[at] = self.with_view(r, env.view_on(r, n));
        }
        self.moved[at]
    }

    /// The steady cost with replica `r` gone: [`PlacementEnv::steady_cost_without`].
    pub fn removed(&mut self, r: usize) -> f64 {
        let kind = self.kind[r];
        if kind == ALONE {
            return self.env.steady_cost_without(r).cost;
        }
        if self.removed[kind as usize].is_nan() {
            let view = ReplicaView { up: false, ..self.views[r] };
            self.removed[kind as usize] = self.with_view(r, view);
        }
        self.removed[kind as usize]
    }

    /// Routings of the cluster run so far to answer (not counting moves priced alone).
    pub fn routings(&self) -> usize {
        self.routings
    }

    /// The steady cost with replica `r` seen as `view`, everything else as it is.
    fn with_view(&mut self, r: usize, view: ReplicaView) -> f64 {
        self.routings += 1;
        let before = std::mem::replace(&mut self.views[r], view);
        let model = self.env.cost_model();
        model.route(&self.views, &mut self.table);
        let cost = model.evaluate(&self.views, &self.table, self.env.current_rates(), &mut self.scratch).cost;
        self.views[r] = before;
        cost
    }
}
