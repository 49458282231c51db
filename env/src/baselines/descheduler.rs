//! kube-scheduler with the descheduler beside it, the setup operators run to have pods moved
//! as a cluster drifts: kubernetes-sigs/descheduler v0.36.0 (commit 7d2b28b), its
//! strategies as its README and `pkg/framework/plugins` describe them.
//!
//! Every interval (5 minutes of simulated time unless told) one descheduling cycle looks at
//! the Ready nodes and picks pods to evict; kube-scheduler places each replacement pod with
//! the evicted one gone (a move, paying its cold start). The gym moves one replica a tick,
//! so a cycle's evictions are carried out one a tick, in the order the cycle chose them; an
//! eviction kube-scheduler would answer by placing the pod back on its node is dropped, and a
//! new cycle replaces what is left of the last. Replicas on a NotReady node are re-placed
//! first, as the node lifecycle controller's eviction makes Kubernetes do.
//!
//! The simulated services are Deployments, one per service, whose pods declare one topology
//! spread constraint, `maxSkew: 1` over `topology.kubernetes.io/zone`, `ScheduleAnyway`
//! (kube-scheduler scores it; the descheduler is configured with `constraints: [DoNotSchedule,
//! ScheduleAnyway]` so that it balances it too). The Default Evictor runs with `nodeFit: true`:
//! a pod is evicted only where another Ready node can take it. Eviction limits are unset, the
//! descheduler's defaults. Thresholds are the README's example (low 20%, target 50% of cpu,
//! memory and pods), with `nvidia.com/gpu` given the same figures on a cluster with GPUs. The
//! descheduler knows requests, not speed: it will move an embedding replica off a busy H100
//! node onto an idle L4 one, as it would on a real cluster.

use std::collections::VecDeque;

use berth_core::{NodeUsage, Rng};

use super::Policy;
use super::placed::{evacuation_move, without_replica};
use crate::PlacementEnv;
use crate::gym::{Env, first_allowed};
use crate::packing::PlacementRule;
use crate::placement_env::Move;
use crate::scheduler::{ClusterView, Fit};

/// The descheduler's default interval as berth runs it: every 5 minutes.
pub const DEFAULT_INTERVAL_S: f64 = 300.0;
/// Pods a node takes (kubelet's default `maxPods`), for the `pods` thresholds.
const MAX_PODS: f64 = 110.0;
/// `thresholds` of both profiles, percent of allocatable: cpu, memory, pods, nvidia.com/gpu.
const LOW: Amounts = Amounts { cpu: 20.0, memory: 20.0, pods: 20.0, gpus: 20.0 };
/// LowNodeUtilization's `targetThresholds`.
const TARGET: Amounts = Amounts { cpu: 50.0, memory: 50.0, pods: 50.0, gpus: 50.0 };

/// Which balance strategy the profile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// RemovePodsViolatingNodeAffinity, RemoveDuplicates, LowNodeUtilization and
    /// RemovePodsViolatingTopologySpreadConstraint, with kube-scheduler's default scoring.
    LowNodeUtilization,
    /// RemovePodsViolatingNodeAffinity and HighNodeUtilization, with kube-scheduler scoring
    /// NodeResourcesFit by MostAllocated, as the descheduler requires for this strategy.
    HighNodeUtilization,
}

impl Profile {
    fn fit(self) -> Fit {
        match self {
            Self::LowNodeUtilization => Fit::LeastAllocated,
            Self::HighNodeUtilization => Fit::MostAllocated,
        }
    }
}

/// The descheduler and kube-scheduler, as a policy.
#[derive(Debug, Clone)]
pub struct DeschedulerPolicy {
    name: String,
    profile: Profile,
    interval_s: f64,
    queue: VecDeque<usize>,
    rng: Rng,
}

impl DeschedulerPolicy {
    /// A policy named `name` running `profile` every `interval_s` simulated seconds.
    pub fn new(name: &str, profile: Profile, interval_s: f64) -> Self {
        Self { name: name.to_string(), profile, interval_s, queue: VecDeque::new(), rng: Rng::new(0) }
    }

    fn scheduler(&self) -> PlacementRule {
        PlacementRule::KubeScheduler(self.profile.fit())
    }
}

impl Policy for DeschedulerPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn reset(&mut self, seed: u64) {
        self.queue.clear();
        self.rng = Rng::derive(seed, 0x6465_7363);
    }

    fn start(&mut self, env: &PlacementEnv) -> Option<Vec<usize>> {
        // The default profile starts where the env does (kube-scheduler's default scoring).
        match self.profile {
            Profile::LowNodeUtilization => None,
            Profile::HighNodeUtilization => super::placed::start_by(env, self.scheduler(), &mut self.rng),
        }
    }

    fn act(&mut self, env: &PlacementEnv) -> usize {
        let scheduler = self.scheduler();
        if let Some(action) = evacuation_move(env, scheduler, &mut self.rng) {
            return action;
        }
        let every = (self.interval_s / env.scenario().tick_s).round().max(1.0) as u32;
        if env.tick().is_multiple_of(every) {
            self.queue = cycle(&env.cluster_view(), self.profile).into();
        }
        while let Some(r) = self.queue.pop_front() {
            let from = env.placement()[r];
            if !env.node_ready()[from] {
                continue;
            }
            let s = env.replica_service()[r];
            let target = without_replica(env, r, |view| scheduler.pick(view, s, &mut self.rng));
            if let Some(node) = target.filter(|&n| n != from) {
                let action = env.encode(Move { replica: r, node });
                if env.action_mask()[action] {
                    return action;
                }
            }
        }
        first_allowed(env.action_mask())
    }
}

/// The replicas one descheduling cycle evicts, in order, each once.
pub fn cycle(view: &ClusterView<'_>, profile: Profile) -> Vec<usize> {
    let mut evictions = Evictions { order: Vec::new(), taken: vec![false; view.placement.len()] };
    node_affinity(view, &mut evictions);
    match profile {
        Profile::LowNodeUtilization => {
            duplicates(view, &mut evictions);
            low_node_utilization(view, &mut evictions);
            topology_spread(view, &mut evictions);
        }
        Profile::HighNodeUtilization => high_node_utilization(view, &mut evictions),
    }
    evictions.order
}

/// The evictions of a cycle so far.
struct Evictions {
    order: Vec<usize>,
    taken: Vec<bool>,
}

impl Evictions {
    /// Evicts `r` if no strategy has yet and another Ready node can take it (`nodeFit`).
    fn evict(&mut self, view: &ClusterView<'_>, r: usize) -> bool {
        if self.taken[r] || !fits_elsewhere(view, r) {
            return false;
        }
        self.taken[r] = true;
        self.order.push(r);
        true
    }
}

/// Whether a Ready node other than its own can take replica `r` now.
fn fits_elsewhere(view: &ClusterView<'_>, r: usize) -> bool {
    let s = view.replica_service[r];
    (0..view.scenario.nodes.len()).any(|n| n != view.placement[r] && view.fits(s, n))
}

/// Replicas on Ready node `n`, in replica order.
fn pods_on(view: &ClusterView<'_>, n: usize) -> Vec<usize> {
    (0..view.placement.len()).filter(|&r| view.placement[r] == n).collect()
}

/// RemovePodsViolatingNodeAffinity: a replica on a node its required affinity (here, the
/// hardware it runs on) no longer matches. Node labels do not change in the simulator, so
/// this fires only from a state that starts wrong, such as a live snapshot.
fn node_affinity(view: &ClusterView<'_>, evictions: &mut Evictions) {
    for (r, &n) in view.placement.iter().enumerate() {
        if view.ready[n] && !view.scenario.can_host(view.replica_service[r], n) {
            evictions.evict(view, r);
        }
    }
}

/// RemoveDuplicates: on a node with more replicas of a service than `ceil(replicas / nodes
/// that could run it)`, the extra ones (the latest listed) go.
fn duplicates(view: &ClusterView<'_>, evictions: &mut Evictions) {
    let nodes = view.scenario.nodes.len();
    for s in 0..view.scenario.services.len() {
        let targets = (0..nodes).filter(|&n| view.ready[n] && view.scenario.can_host(s, n)).count();
        if targets < 2 {
            continue;
        }
        let on_ready: Vec<usize> = (0..view.placement.len())
            .filter(|&r| view.replica_service[r] == s && view.ready[view.placement[r]])
            .collect();
        let upper = on_ready.len().div_ceil(targets);
        for n in (0..nodes).filter(|&n| view.ready[n]) {
            let here: Vec<usize> = on_ready.iter().copied().filter(|&r| view.placement[r] == n).collect();
            for &r in here.iter().skip(upper) {
                evictions.evict(view, r);
            }
        }
    }
}

/// Requests (or capacities) in the four resources the thresholds name.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Amounts {
    cpu: f64,
    memory: f64,
    pods: f64,
    gpus: f64,
}

impl Amounts {
    /// Node `n`'s requests and capacity, with `pods` replicas on it.
    fn of_node(view: &ClusterView<'_>, n: usize, pods: f64) -> (Amounts, Amounts) {
        let node = &view.scenario.nodes[n];
        let u: &NodeUsage = &view.usage[n];
        let gpus = f64::from(node.gpu.as_ref().map_or(0, |g| g.count));
        let used = Amounts {
            cpu: u.cpu_millicores as f64,
            memory: u.memory_mib as f64,
            pods,
            gpus: u.gpu_fraction(node.gpu.as_ref()) * gpus,
        };
        let capacity = Amounts {
            cpu: node.allocatable.cpu_millicores as f64,
            memory: node.allocatable.memory_mib as f64,
            pods: MAX_PODS,
            gpus,
        };
        (used, capacity)
    }

    fn of_replica(view: &ClusterView<'_>, r: usize) -> Amounts {
        let req = &view.scenario.services[view.replica_service[r]].requests;
        Amounts {
            cpu: req.cpu_millicores as f64,
            memory: req.memory_mib as f64,
            pods: 1.0,
            gpus: f64::from(req.gpus),
        }
    }

    fn zip(self, other: Amounts, f: impl Fn(f64, f64) -> f64) -> Amounts {
        Amounts {
            cpu: f(self.cpu, other.cpu),
            memory: f(self.memory, other.memory),
            pods: f(self.pods, other.pods),
            gpus: f(self.gpus, other.gpus),
        }
    }

    fn all(self, f: impl Fn(f64) -> bool) -> bool {
        f(self.cpu) && f(self.memory) && f(self.pods) && f(self.gpus)
    }

    /// Usage in percent of capacity; a resource the node has none of counts as 0%.
    fn percent(used: Amounts, capacity: Amounts) -> Amounts {
        used.zip(capacity, |u, c| if c > 0.0 { 100.0 * u / c } else { 0.0 })
    }

    /// The sort key of `sortNodesByUsage`: the raw amounts summed (CPU in millicores, memory
    /// in bytes), so memory dominates, as it does there.
    fn sort_key(self) -> f64 {
        self.cpu + self.memory * 1_048_576.0 + self.pods + self.gpus
    }
}

/// `nvidia.com/gpu` is named in the thresholds only on a cluster with GPUs: where it is named,
/// the room left in it bounds the evictions like any resource's; on a cluster without, an
/// operator would not name it, so it bounds nothing.
fn count_gpus_if_any(view: &ClusterView<'_>, available: &mut Amounts) {
    if view.scenario.nodes.iter().all(|n| n.gpu.is_none()) {
        available.gpus = f64::INFINITY;
    }
}

/// A Ready node's usage and capacity.
struct NodeState {
    node: usize,
    used: Amounts,
    capacity: Amounts,
}

fn ready_nodes(view: &ClusterView<'_>) -> Vec<NodeState> {
    let mut pods = vec![0u32; view.scenario.nodes.len()];
    // A replica being placed (UNPLACED) counts nowhere.
    for &n in view.placement {
        if let Some(count) = pods.get_mut(n) {
            *count += 1;
        }
    }
    (0..view.scenario.nodes.len())
        .filter(|&n| view.ready[n])
        .map(|n| {
            let (used, capacity) = Amounts::of_node(view, n, f64::from(pods[n]));
            NodeState { node: n, used, capacity }
        })
        .collect()
}

/// LowNodeUtilization: when some nodes are below `thresholds` in every resource and some
/// above `targetThresholds` in any, evicts from the busiest of the latter until each is no
/// longer above its targets or the room the underused nodes have up to theirs runs out.
fn low_node_utilization(view: &ClusterView<'_>, evictions: &mut Evictions) {
    let nodes = ready_nodes(view);
    let is_low = |s: &NodeState| Amounts::percent(s.used, s.capacity).zip(LOW, |u, t| u - t).all(|d| d < 0.0);
    let is_high =
        |s: &NodeState| !Amounts::percent(s.used, s.capacity).zip(TARGET, |u, t| u - t).all(|d| d <= 0.0);
    let low: Vec<&NodeState> = nodes.iter().filter(|s| is_low(s)).collect();
    let mut high: Vec<&NodeState> = nodes.iter().filter(|s| !is_low(s) && is_high(s)).collect();
    if low.is_empty() || low.len() == nodes.len() || high.is_empty() {
        return;
    }
    let mut available = low.iter().fold(Amounts::default(), |acc, s| {
        let room = s.capacity.zip(TARGET, |c, t| c * t / 100.0).zip(s.used, |cap, u| cap - u);
        acc.zip(room, |a, b| a + b)
    });
    count_gpus_if_any(view, &mut available);
    high.sort_by(|a, b| b.used.sort_key().total_cmp(&a.used.sort_key()));
    for state in high {
        let target = state.capacity.zip(TARGET, |c, t| c * t / 100.0);
        let mut used = state.used;
        let go_on = |used: Amounts, available: Amounts| {
            !used.zip(target, |u, t| u - t).all(|d| d <= 0.0) && available.all(|a| a > 0.0)
        };
        for r in pods_on(view, state.node) {
            if !go_on(used, available) {
                break;
            }
            if evictions.evict(view, r) {
                let req = Amounts::of_replica(view, r);
                used = used.zip(req, |u, q| u - q);
                available = available.zip(req, |a, q| a - q);
            }
        }
    }
}

/// HighNodeUtilization: evicts every replica from the nodes below `thresholds` in every
/// resource (the least used first) while the other nodes have room, so MostAllocated
/// scoring packs them onto fewer nodes.
fn high_node_utilization(view: &ClusterView<'_>, evictions: &mut Evictions) {
    let nodes = ready_nodes(view);
    let is_low = |s: &NodeState| Amounts::percent(s.used, s.capacity).zip(LOW, |u, t| u - t).all(|d| d < 0.0);
    let mut sources: Vec<&NodeState> = nodes.iter().filter(|s| is_low(s)).collect();
    let destinations: Vec<&NodeState> = nodes.iter().filter(|s| !is_low(s)).collect();
    if sources.is_empty() || destinations.is_empty() {
        return;
    }
    let mut available = destinations
        .iter()
        .fold(Amounts::default(), |acc, s| acc.zip(s.capacity.zip(s.used, |c, u| c - u), |a, b| a + b));
    count_gpus_if_any(view, &mut available);
    sources.sort_by(|a, b| a.used.sort_key().total_cmp(&b.used.sort_key()));
    for state in sources {
        for r in pods_on(view, state.node) {
            if !available.all(|a| a > 0.0) {
                return;
            }
            if evictions.evict(view, r) {
                available = available.zip(Amounts::of_replica(view, r), |a, q| a - q);
            }
        }
    }
}

/// RemovePodsViolatingTopologySpreadConstraint for the zone constraint (`maxSkew: 1`): while
/// the zones that can run a service differ by more than one replica, one replica leaves the
/// fullest zone, if a node of the emptiest can take it (`topologyBalanceNodeFit`).
fn topology_spread(view: &ClusterView<'_>, evictions: &mut Evictions) {
    let scenario = view.scenario;
    for s in 0..scenario.services.len() {
        let mut domains: Vec<(usize, Vec<usize>)> = Vec::new();
        for z in 0..scenario.zones.len() {
            let in_zone = |n: usize| view.ready[n] && scenario.nodes[n].zone == z;
            if !(0..scenario.nodes.len()).any(|n| in_zone(n) && scenario.can_host(s, n)) {
                continue;
            }
            let pods = (0..view.placement.len())
                .filter(|&r| view.replica_service[r] == s && in_zone(view.placement[r]))
                .collect();
            domains.push((z, pods));
        }
        for _ in 0..view.placement.len() {
            let (Some(small), Some(big)) = (
                (0..domains.len()).min_by_key(|&d| domains[d].1.len()),
                (0..domains.len()).max_by_key(|&d| domains[d].1.len()),
            ) else {
                break;
            };
            if domains[big].1.len() <= domains[small].1.len() + 1 {
                break;
            }
            let zone = domains[small].0;
            if !(0..scenario.nodes.len()).any(|n| scenario.nodes[n].zone == zone && view.fits(s, n)) {
                break;
            }
            // The latest listed leaves; one another strategy evicts already moves anyway.
            let Some(r) = domains[big].1.pop() else { break };
            evictions.evict(view, r);
            domains[small].1.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::baseline;
    use crate::test_cluster::{N, S, placed, scenario};

    fn run(
        nodes: &[N],
        services: &[S],
        at: &[usize],
        strategy: fn(&ClusterView<'_>, &mut Evictions),
    ) -> Vec<usize> {
        let env = placed(scenario(nodes, services), at);
        let view = env.cluster_view();
        let mut evictions = Evictions { order: Vec::new(), taken: vec![false; at.len()] };
        strategy(&view, &mut evictions);
        evictions.order
    }

    const THREE: [N; 3] = [N("n0", "a", 10000, 0), N("n1", "a", 10000, 0), N("n2", "a", 10000, 0)];

    /// n0 holds four 2-core replicas (80% CPU, above the 50% target), n1 one (20%: not
    /// below 20%), n2 none (underused). Room on n2 up to its target: 5 cores. Evicting r0
    /// leaves n0 at 60%, still above; r1 brings it to 40%, and eviction stops.
    #[test]
    fn low_node_utilization_evicts_from_the_busy_node_until_it_is_under_target() {
        let got = run(&THREE, &[S("web", 5, 2000, 0)], &[0, 0, 0, 0, 1], low_node_utilization);
        assert_eq!(got, [0, 1]);
    }

    #[test]
    fn low_node_utilization_leaves_a_replica_no_other_node_can_take() {
        let nodes = [N("n0", "a", 10000, 0), N("small", "a", 1500, 0)];
        let got = run(&nodes, &[S("web", 4, 2000, 0)], &[0, 0, 0, 0], low_node_utilization);
        assert!(got.is_empty(), "{got:?}");
    }

    /// Five replicas over three nodes that can run them: at most ceil(5 / 3) = 2 on a node, so
    /// two of n0's four go, the latest listed.
    #[test]
    fn remove_duplicates_keeps_at_most_the_upper_average_on_a_node() {
        let got = run(&THREE, &[S("web", 5, 2000, 0)], &[0, 0, 0, 0, 1], duplicates);
        assert_eq!(got, [2, 3]);
    }

    /// 20-core nodes: n0 at 30% is used enough, n1 at 10% and n2 at 0% are under 20%; n1's
    /// replica goes so MostAllocated can pack it onto n0.
    #[test]
    fn high_node_utilization_empties_the_underused_nodes() {
        let nodes = [N("n0", "a", 20000, 0), N("n1", "a", 20000, 0), N("n2", "a", 20000, 0)];
        let got = run(&nodes, &[S("web", 4, 2000, 0)], &[0, 0, 0, 1], high_node_utilization);
        assert_eq!(got, [3]);
    }

    /// Three replicas in zone a, none in b: one leaves, and a skew of 2 − 1 = 1 is allowed.
    #[test]
    fn topology_spread_balances_zones_to_a_skew_of_one_where_the_small_zone_has_room() {
        let web = [S("web", 3, 2000, 0)];
        let roomy = [N("a1", "a", 10000, 0), N("b1", "b", 10000, 0)];
        assert_eq!(run(&roomy, &web, &[0, 0, 0], topology_spread), [2]);
        let full = [N("a1", "a", 10000, 0), N("b1", "b", 1000, 0)];
        assert!(run(&full, &web, &[0, 0, 0], topology_spread).is_empty());
    }

    #[test]
    fn a_cycle_runs_its_strategies_in_order_and_evicts_each_replica_once() {
        let env = placed(scenario(&THREE, &[S("web", 5, 2000, 0)]), &[0, 0, 0, 0, 1]);
        assert_eq!(cycle(&env.cluster_view(), Profile::LowNodeUtilization), [2, 3, 0, 1]);
    }

    /// The policy carries a cycle's evictions out one a tick, each replica to where
    /// kube-scheduler places its replacement (an empty node here), and keeps once done.
    #[test]
    fn the_policy_moves_one_evicted_replica_a_tick() {
        let mut env = placed(scenario(&THREE, &[S("web", 5, 2000, 0)]), &[0, 0, 0, 0, 1]);
        let mut policy = baseline("descheduler:1200").unwrap();
        policy.reset(1);
        let mut moved = Vec::new();
        for _ in 0..3 {
            let action = policy.act(&env);
            if let Some(mv) = env.decode(action) {
                assert_ne!(mv.node, 0);
                moved.push(mv.replica);
            }
            env.step(action).unwrap();
        }
        // The duplicates first. Then the cycle's LowNodeUtilization evictions (r0, r1): with
        // the duplicates gone, kube-scheduler would place their replacements back on n0 (no
        // busier than n2, and first), so they are dropped instead of paying a cold start.
        assert_eq!(moved, [2, 3]);
    }

    #[test]
    fn the_interval_is_read_from_the_name_and_checked() {
        assert_eq!(baseline("descheduler:600").unwrap().name(), "descheduler:600");
        for bad in ["descheduler:0", "descheduler:x", "descheduler:86401", "spread:300", "fgd:1"] {
            assert!(baseline(bad).is_none(), "{bad}");
        }
    }
}
