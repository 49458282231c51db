//! The baselines every result is put beside: `random`, `spread` (kube-scheduler's default,
//! placed once), `greedy` (the best single improving move per tick), and what operators run:
//! the [`descheduler`] beside kube-scheduler, and the GPU-packing placement rules of
//! [`crate::packing`] ([`placed`]). [`lookahead`] weighs `greedy`'s best move over hours on
//! a simulated copy; it costs hundreds of simulated ticks a tick, so it is asked for by name,
//! not run by default. [`planner`] plans paths of moves over placement classes: jointly over
//! the oracle's where it searches them, else one service at a time ([`by_service`]), on
//! clusters up to about `gpu-medium`'s size; it is built for a scenario
//! ([`planner::build`]), so evaluations and experiments build it for each one they play
//! ([`planner_horizon`] reads its name).

pub mod by_service;
pub mod descheduler;
pub mod lookahead;
pub mod placed;
pub mod planner;
pub(crate) mod service_classes;

use berth_core::Rng;

use crate::PlacementEnv;
use crate::gym::{Env, random_allowed};
use crate::packing::PlacementRule;
use crate::placement_env::Move;
use crate::scheduler::Fit;
use crate::what_if::WhatIf;

pub use by_service::ServicePlannerPolicy;
pub use descheduler::{DeschedulerPolicy, Profile};
pub use lookahead::LookaheadPolicy;
pub use placed::PlacedPolicy;
pub use planner::PlannerPolicy;

/// Something that picks an action in the placement env.
pub trait Policy {
    /// Name in tables (`random`, `spread`, `greedy`, or an agent's).
    fn name(&self) -> &str;
    /// Called at the start of each episode with its seed.
    fn reset(&mut self, _seed: u64) {}
    /// Where this policy's scheduler would have placed the replicas at the start of the day,
    /// for a scenario that starts where the scheduler puts them; `None` keeps the env's start
    /// (kube-scheduler's). Called after [`Policy::reset`].
    fn start(&mut self, _env: &PlacementEnv) -> Option<Vec<usize>> {
        None
    }
    /// The action to take now; must be allowed by the env's mask.
    fn act(&mut self, env: &PlacementEnv) -> usize;
}

/// A uniformly random allowed action (keep included).
#[derive(Debug, Clone)]
pub struct RandomPolicy {
    rng: Rng,
}

impl RandomPolicy {
    /// A random policy; re-seeded at every episode.
    pub fn new() -> Self {
        Self { rng: Rng::new(0) }
    }
}

impl Default for RandomPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl Policy for RandomPolicy {
    fn name(&self) -> &str {
        "random"
    }

    fn reset(&mut self, seed: u64) {
        self.rng = Rng::derive(seed, 0x7261_6e64);
    }

    fn act(&mut self, env: &PlacementEnv) -> usize {
        random_allowed(env.action_mask(), &mut self.rng)
    }
}

/// kube-scheduler's placement, never moved, except that a replica on a NotReady node is
/// re-placed where the scheduler would put it (what Kubernetes does once the pod is evicted).
#[derive(Debug, Clone, Copy, Default)]
pub struct SpreadPolicy;

impl Policy for SpreadPolicy {
    fn name(&self) -> &str {
        "spread"
    }

    fn act(&mut self, env: &PlacementEnv) -> usize {
        placed::evacuate(env, PlacementRule::KubeScheduler(Fit::LeastAllocated), &mut Rng::new(0))
    }
}

/// Each tick, the single move that lowers the steady-state cost of the tick most, if it
/// lowers it by more than the cost of a move. It looks one tick ahead and ignores cold starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct GreedyPolicy;

impl Policy for GreedyPolicy {
    fn name(&self) -> &str {
        "greedy"
    }

    fn act(&mut self, env: &PlacementEnv) -> usize {
        best_move(env, keep_bar(env), |_| true).map_or(0, |(action, _)| action)
    }
}

/// The steady cost a move must get below for `greedy` to make it: keeping's, less a move's
/// cost. Keeping wins unless a move saves more than it costs; when keeping is not allowed
/// (replicas to evacuate), any allowed move wins.
pub(crate) fn keep_bar(env: &PlacementEnv) -> f64 {
    match env.action_mask()[0] {
        true => env.steady_cost(None).cost - env.scenario().reward.move_cost,
        false => f64::INFINITY,
    }
}

/// The allowed move that `admit`s and lowers the steady cost of the tick most, with that
/// cost, where it is below `bar`. Moves are tried replica by replica, node by node; the first
/// of equal costs wins.
pub(crate) fn best_move(
    env: &PlacementEnv,
    bar: f64,
    mut admit: impl FnMut(usize) -> bool,
) -> Option<(usize, f64)> {
    let scenario = env.scenario();
    let mask = env.action_mask();
    let mut best: Option<(usize, f64)> = None;
    // Nodes in the same zone with the same hardware score the same: try one. A flag per
    // (zone, class), not a hash set: on 1,523 nodes and 200 replicas hashing the pairs took a
    // fifth of greedy's time.
    let classes = scenario.classes.len();
    let mut tried = vec![false; scenario.zones.len() * classes];
    let mut what_if = WhatIf::new(env);
    for r in 0..env.placement().len() {
        let s = env.replica_service()[r];
        tried.fill(false);
        for n in 0..env.node_count() {
            let action = env.encode(Move { replica: r, node: n });
            if !mask[action] || !admit(action) {
                continue;
            }
            let pair = scenario.nodes[n].zone * classes + scenario.class_on(s, n);
            if std::mem::replace(&mut tried[pair], true) {
                continue;
            }
            let cost = what_if.moved(r, n);
            if cost < best.map_or(bar, |(_, c)| c) - 1e-12 {
                best = Some((action, cost));
            }
        }
    }
    best
}

/// The horizon named after `lookahead` or `planner`: nothing for the default, `:<ticks>` for
/// whole ticks from 1 to [`lookahead::MAX_HORIZON_TICKS`]; `None` for anything else.
pub fn horizon(suffix: &str) -> Option<u32> {
    match suffix.strip_prefix(':') {
        None if suffix.is_empty() => Some(lookahead::HORIZON_TICKS),
        Some(ticks) => ticks.parse().ok().filter(|t| (1..=lookahead::MAX_HORIZON_TICKS).contains(t)),
        None => None,
    }
}

/// The planner's horizon where `name` is `planner` or `planner:<ticks>`; `None` for another
/// name or a horizon out of range. The planner is built for a scenario ([`planner::build`]),
/// so it is not one of [`baseline`]'s.
pub fn planner_horizon(name: &str) -> Option<u32> {
    name.strip_prefix("planner").and_then(horizon)
}

/// The baselines' names, as `--policy` and experiments take them. `descheduler` and
/// `descheduler-high` also take an interval in seconds, `descheduler:600`.
pub const NAMES: [&str; 10] = [
    "random",
    "spread",
    "greedy",
    "descheduler",
    "descheduler-high",
    "best-fit",
    "dot-product",
    "gpu-packing",
    "gpu-clustering",
    "fgd",
];

/// The baselines by name (one of [`NAMES`], or `lookahead` and `lookahead:<ticks>`); `None`
/// for another name, for a descheduler interval that is not a whole number of seconds from 1
/// to a day, or for a lookahead horizon that is not a whole number of ticks from 1 to
/// [`lookahead::MAX_HORIZON_TICKS`].
pub fn baseline(name: &str) -> Option<Box<dyn Policy>> {
    if let Some(ticks) = name.strip_prefix("lookahead") {
        return Some(Box::new(LookaheadPolicy::new(horizon(ticks)?)));
    }
    if let Some(rule) = PlacementRule::GPU_RULES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r) {
        return Some(Box::new(PlacedPolicy::new(name, rule)));
    }
    let (base, interval) = match name.split_once(':') {
        Some((base, secs)) => (base, Some(secs.parse::<u32>().ok().filter(|s| (1..=86_400).contains(s))?)),
        None => (name, None),
    };
    let profile = match base {
        "descheduler" => Profile::LowNodeUtilization,
        "descheduler-high" => Profile::HighNodeUtilization,
        _ if interval.is_some() => return None,
        "random" => return Some(Box::new(RandomPolicy::new())),
        "spread" => return Some(Box::new(SpreadPolicy)),
        "greedy" => return Some(Box::new(GreedyPolicy)),
        _ => return None,
    };
    let interval_s = interval.map_or(descheduler::DEFAULT_INTERVAL_S, f64::from);
    Some(Box::new(DeschedulerPolicy::new(name, profile, interval_s)))
}
