//! A cluster whose scheduler places by one of the GPU-packing rules and never moves a replica
//! afterwards, except off a NotReady node (what Kubernetes does once the pod is evicted):
//! the day starts where the rule puts the replicas, and a replica that must be re-placed
//! goes where the rule says.

use berth_core::{InitialPlacement, Rng};

use super::Policy;
use crate::PlacementEnv;
use crate::gym::{Env, first_allowed};
use crate::packing::PlacementRule;
use crate::placement_env::Move;
use crate::scheduler::{ClusterView, UNPLACED};

/// Places by `rule`, then keeps.
#[derive(Debug, Clone)]
pub struct PlacedPolicy {
    name: String,
    rule: PlacementRule,
    rng: Rng,
}

impl PlacedPolicy {
    /// A policy named `name` placing by `rule`; its ties are broken by a generator re-seeded
    /// at every episode.
    pub fn new(name: &str, rule: PlacementRule) -> Self {
        Self { name: name.to_string(), rule, rng: Rng::new(0) }
    }
}

impl Policy for PlacedPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn reset(&mut self, seed: u64) {
        self.rng = Rng::derive(seed, 0x706c_6163);
    }

    fn start(&mut self, env: &PlacementEnv) -> Option<Vec<usize>> {
        start_by(env, self.rule, &mut self.rng)
    }

    fn act(&mut self, env: &PlacementEnv) -> usize {
        evacuate(env, self.rule, &mut self.rng)
    }
}

/// Where `rule` places the replicas at the start of the day, for a scenario that starts
/// where its scheduler puts them (one that starts at random models a cluster in any state).
pub(crate) fn start_by(env: &PlacementEnv, rule: PlacementRule, rng: &mut Rng) -> Option<Vec<usize>> {
    let scenario = env.scenario();
    if scenario.initial_placement != InitialPlacement::Spread {
        return None;
    }
    rule.place_all(scenario, rng)
}

/// The view of the cluster with replica `r` taken off its node, as the scheduler sees it
/// when the pod that replaces `r` is to be placed; calls `f` with it.
pub(crate) fn without_replica<T>(env: &PlacementEnv, r: usize, f: impl FnOnce(&ClusterView<'_>) -> T) -> T {
    let mut usage = env.usage().to_vec();
    let mut placement = env.placement().to_vec();
    let s = env.replica_service()[r];
    usage[placement[r]].release(&env.scenario().services[s].requests, env.seats()[r]);
    placement[r] = UNPLACED;
    f(&ClusterView { usage: &usage, placement: &placement, ..env.cluster_view() })
}

/// Moves the first replica on a NotReady node to where `rule` places it; keeps when there is
/// none (or, where replicas must be evacuated and the rule's pick is not allowed, takes the
/// first move that is).
pub(crate) fn evacuate(env: &PlacementEnv, rule: PlacementRule, rng: &mut Rng) -> usize {
    evacuation_move(env, rule, rng).unwrap_or_else(|| first_allowed(env.action_mask()))
}

/// The move of the first replica on a NotReady node to where `rule` places it, if any is
/// allowed.
pub(crate) fn evacuation_move(env: &PlacementEnv, rule: PlacementRule, rng: &mut Rng) -> Option<usize> {
    let ready = env.node_ready();
    for (r, &n) in env.placement().iter().enumerate() {
        if ready[n] {
            continue;
        }
        let s = env.replica_service()[r];
        if let Some(node) = without_replica(env, r, |view| rule.pick(view, s, rng)) {
            let action = env.encode(Move { replica: r, node });
            if env.action_mask()[action] {
                return Some(action);
            }
        }
    }
    None
}
