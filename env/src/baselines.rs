//! The baselines every result is put beside: `random`, `spread` (kube-scheduler's default,
//! placed once) and `greedy` (the best single improving move per tick).

use std::collections::HashSet;

use berth_core::Rng;

use crate::PlacementEnv;
use crate::gym::{Env, first_allowed, random_allowed};
use crate::placement_env::Move;
use crate::scheduler::best_node;

/// Something that picks an action in the placement env.
pub trait Policy {
    /// Name in tables (`random`, `spread`, `greedy`, or an agent's).
    fn name(&self) -> &str;
    /// Called at the start of each episode with its seed.
    fn reset(&mut self, _seed: u64) {}
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
        let placement = env.placement();
        let ready = env.node_ready();
        for (r, &n) in placement.iter().enumerate() {
            if ready[n] {
                continue;
            }
            let s = env.replica_service()[r];
            if let Some(node) =
                best_node(env.scenario(), s, env.usage(), ready, placement, env.replica_service())
            {
                let action = env.encode(Move { replica: r, node });
                if env.action_mask()[action] {
                    return action;
                }
            }
        }
        // Keep, or where replicas must be evacuated and the scheduler's pick is not allowed,
        // the first move that is.
        first_allowed(env.action_mask())
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
        let scenario = env.scenario();
        let mask = env.action_mask();
        // Keeping wins unless a move saves more than it costs; when keeping is not allowed
        // (replicas to evacuate), the best allowed move wins.
        let keep =
            if mask[0] { env.steady_cost(None).cost - scenario.reward.move_cost } else { f64::INFINITY };
        let mut best = (0, keep);
        let mut tried = HashSet::new();
        for r in 0..env.placement().len() {
            let s = env.replica_service()[r];
            tried.clear();
            for n in 0..env.node_count() {
                let action = env.encode(Move { replica: r, node: n });
                // Nodes in the same zone with the same hardware score the same: try one.
                if !mask[action] || !tried.insert((scenario.nodes[n].zone, scenario.class_on(s, n))) {
                    continue;
                }
                let cost = env.steady_cost(Some(Move { replica: r, node: n })).cost;
                if cost < best.1 - 1e-12 {
                    best = (action, cost);
                }
            }
        }
        best.0
    }
}

/// The baselines by name.
pub fn baseline(name: &str) -> Option<Box<dyn Policy>> {
    match name {
        "random" => Some(Box::new(RandomPolicy::new())),
        "spread" => Some(Box::new(SpreadPolicy)),
        "greedy" => Some(Box::new(GreedyPolicy)),
        _ => None,
    }
}
