//! The oracle: for every tick, the best feasible placement for that tick's traffic and
//! node states, found by exhaustive search. Moves and cold starts are free to it, so its
//! cost is a lower bound on what any policy can reach.
//!
//! The cost of a placement depends only on the zone and service time of each replica's seat
//! (its node's hardware, slowed on a MIG instance by the instance's profile and on a
//! time-sliced GPU by the tenants there), and replicas of a service are interchangeable. So
//! the oracle enumerates, per service, multisets of (zone, service time) slots, takes their
//! product across services, keeps the combinations that can really be packed onto the Ready
//! nodes (checked once per set of Ready nodes, by backtracking: each MIG instance is tried,
//! not only the smallest a move would take, and a time-sliced GPU must end with as many
//! tenants as their slot class says, so where tenants slow each other the search is joint),
//! precomputes each one's routing, and scores them all against each tick's rates. It refuses
//! scenarios whose search space exceeds
//! [`MAX_CONFIGURATIONS`] rather than running for hours.

use std::collections::HashMap;
use std::sync::Arc;

use berth_core::sharing::{self, GpuSharing};
use berth_core::{GpuSpec, NodeUsage, Resources, Scenario};

use crate::backend::Trace;
use crate::cost::{CostModel, ReplicaView, RoutingTable, Scratch, TickMetrics};
use crate::error::{Error, Result};

/// The largest number of slot combinations the oracle will enumerate.
pub const MAX_CONFIGURATIONS: u128 = 50_000;

/// A place a replica of one service can be: a zone and a service time, or nowhere
/// (`None`: left on a NotReady node).
type Slot = Option<(usize, f64)>;

/// One candidate: the slot index of every replica (sorted within each service), its views
/// and routing.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) slots: Vec<usize>,
    views: Vec<ReplicaView>,
    table: RoutingTable,
}

/// The oracle's answer for one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OracleTick {
    /// Metrics of the best placement.
    pub metrics: TickMetrics,
    /// Replicas whose slot changed since the previous tick's best placement.
    pub moves: u32,
}

/// Exhaustive per-tick search over a small scenario.
#[derive(Debug)]
pub struct Oracle {
    scenario: Arc<Scenario>,
    model: CostModel,
    replica_service: Vec<usize>,
    /// Per service: its slots; the last is "nowhere" (on a NotReady node) when nodes can fail.
    slots: Vec<Vec<Slot>>,
    /// Per service: every multiset of slot indices of its replica count.
    multisets: Vec<Vec<Vec<usize>>>,
    feasible: HashMap<Vec<bool>, Arc<Vec<Config>>>,
    scratch: Scratch,
}

/// The service times a replica of `s` can have on node `n`: its hardware's, or, on
/// MIG-partitioned GPUs, one per instance profile it accepts there.
fn seat_times(scenario: &Scenario, s: usize, n: usize) -> Vec<f64> {
    let base = scenario.service_time_ms(s, n).expect("can_host");
    let req = &scenario.services[s].requests;
    match scenario.nodes[n].gpu.as_ref().filter(|g| g.sharing.is_shared() && req.gpus > 0) {
        None => vec![base],
        Some(gpu) => match &gpu.sharing {
            GpuSharing::TimeSliced { replicas, overhead } => {
                (1..=*replicas as usize).map(|k| base * sharing::time_sliced_slowdown(*overhead, k)).collect()
            }
            _ => {
                let mut times: Vec<f64> = sharing::free_instances(gpu, &[], req)
                    .map(|i| base * sharing::slowdown(&gpu.sharing, &[], i))
                    .collect();
                times.dedup();
                times
            }
        },
    }
}

/// How many tenants a time-sliced GPU has when a replica of whole-GPU time `base` takes
/// `time` there.
fn tenants_of_time(gpu: &GpuSpec, base: f64, time: f64) -> Option<usize> {
    let GpuSharing::TimeSliced { replicas, overhead } = gpu.sharing else { return None };
    (1..=replicas as usize).find(|&k| base * sharing::time_sliced_slowdown(overhead, k) == time)
}

/// The free slots of node `n` where a replica of whole-GPU time `base` would serve in `time`:
/// MIG instances of that speed it accepts; or one share on each time-sliced GPU that holds
/// fewer tenants than `time` implies, is declared for that many or not yet (then the slot
/// comes with the GPU to declare), and has memory left for it.
fn seats_of_time(
    gpu: &GpuSpec,
    taken: &[u64],
    req: &Resources,
    base: f64,
    time: f64,
    n: usize,
    declared: &HashMap<(usize, usize), usize>,
) -> Vec<(usize, Option<(usize, usize)>)> {
    match &gpu.sharing {
        GpuSharing::TimeSliced { .. } if req.accepts.time_sliced => {
            let Some(k) = tenants_of_time(gpu, base, time) else { return Vec::new() };
            (0..gpu.count as usize)
                .filter_map(|g| {
                    let shares = sharing::shares_of(&gpu.sharing, taken, g);
                    let claim = match declared.get(&(n, g)) {
                        Some(&d) if d != k => return None,
                        Some(_) => None,
                        None => Some((n, g)),
                    };
                    let room = shares.memory_mib + req.gpu_memory_mib <= gpu.memory_mib;
                    (shares.tenants < k && room).then_some((shares.first_free?, claim))
                })
                .collect()
        }
        GpuSharing::TimeSliced { .. } => Vec::new(),
        _ => sharing::free_instances(gpu, taken, req)
            .filter(|&i| base * sharing::slowdown(&gpu.sharing, &[], i) == time)
            .map(|i| (i, None))
            .collect(),
    }
}

/// Number of multisets of size `k` from `m` kinds: C(m + k - 1, k), saturating at
/// `u128::MAX` (the services of a 1,523-node cluster overflow it).
pub(crate) fn multiset_count(m: usize, k: usize) -> u128 {
    (1..=k as u128)
        .try_fold(1u128, |acc, i| acc.checked_mul(m as u128 + i - 1).map(|x| x / i))
        .unwrap_or(u128::MAX)
}

/// How many placements an exhaustive search over `scenario` tries when each service's
/// replicas choose, as a multiset, among `choices[s]` places (saturating).
pub(crate) fn search_space(scenario: &Scenario, choices: impl IntoIterator<Item = usize>) -> u128 {
    scenario
        .services
        .iter()
        .zip(choices)
        .map(|(svc, m)| multiset_count(m, svc.replicas as usize))
        .fold(1u128, |a, b| a.saturating_mul(b))
}

/// All non-decreasing sequences of length `k` over `0..m`.
pub(crate) fn multisets(m: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur = vec![0usize; k];
    loop {
        out.push(cur.clone());
        let Some(i) = (0..k).rev().find(|&i| cur[i] + 1 < m) else {
            return out;
        };
        let v = cur[i] + 1;
        cur[i..].fill(v);
    }
}

impl Oracle {
    /// An oracle for `scenario`, or [`Error::OracleRefused`] when its search space is too large.
    pub fn new(scenario: Arc<Scenario>) -> Result<Self> {
        let can_fail = scenario.failures.mtbf_s.is_some() || !scenario.failures.events.is_empty();
        let mut slots = Vec::new();
        for s in 0..scenario.services.len() {
            let mut here: Vec<Slot> = Vec::new();
            for n in (0..scenario.nodes.len()).filter(|&n| scenario.can_host(s, n)) {
                let zone = scenario.nodes[n].zone;
                for time in seat_times(&scenario, s, n) {
                    if !here.contains(&Some((zone, time))) {
                        here.push(Some((zone, time)));
                    }
                }
            }
            if can_fail {
                here.push(None);
            }
            slots.push(here);
        }
        let total = search_space(&scenario, slots.iter().map(Vec::len));
        if total > MAX_CONFIGURATIONS {
            return Err(Error::OracleRefused(format!(
                "`{}` has {total} placement classes to search per tick (limit {MAX_CONFIGURATIONS}); \
                 the exhaustive oracle is for small scenarios such as tiny and gpu-small",
                scenario.name
            )));
        }
        let multisets = scenario
            .services
            .iter()
            .zip(&slots)
            .map(|(svc, sl)| multisets(sl.len(), svc.replicas as usize))
            .collect();
        Ok(Self {
            model: CostModel::new(&scenario),
            replica_service: scenario.replica_services(),
            slots,
            multisets,
            feasible: HashMap::new(),
            scratch: Scratch::default(),
            scenario,
        })
    }

    /// Whether replicas can be packed onto the Ready nodes so each lands in its slot.
    fn packable(&self, slots: &[usize], ready: &[bool]) -> bool {
        let sc = &self.scenario;
        // Most demanding replicas first: GPU ones, then by CPU.
        let mut order: Vec<usize> = (0..slots.len()).collect();
        order.sort_by_key(|&r| {
            let req = &sc.services[self.replica_service[r]].requests;
            std::cmp::Reverse((req.gpus, req.cpu_millicores, req.memory_mib))
        });
        let mut usage = vec![NodeUsage::default(); sc.nodes.len()];
        self.pack(&order, slots, ready, &mut usage, &mut HashMap::new())
    }

    /// Backtracking: places `order[0]` on each node (and shared slot) of its slot class in
    /// turn, then the rest. A time-sliced GPU is `declared` to hold as many tenants as the
    /// class of its first one says, and a packing counts only where each such GPU ends with
    /// that many: so every replica's time is the one its tenants really give it.
    fn pack(
        &self,
        order: &[usize],
        slots: &[usize],
        ready: &[bool],
        usage: &mut [NodeUsage],
        declared: &mut HashMap<(usize, usize), usize>,
    ) -> bool {
        let Some((&r, rest)) = order.split_first() else {
            return declared.iter().all(|(&(n, g), &k)| {
                let gpu = self.scenario.nodes[n].gpu.as_ref().expect("time-sliced");
                sharing::tenants_on_gpu(&gpu.sharing, &usage[n].slots, g * gpu.sharing.slots_per_gpu()) == k
            });
        };
        let s = self.replica_service[r];
        let slot = self.slots[s][slots[r]];
        let req = self.scenario.services[s].requests;
        for n in 0..self.scenario.nodes.len() {
            let node = &self.scenario.nodes[n];
            // A replica that serves nowhere is one left on a NotReady node: there must be
            // such a node it fits on, or a policy could not be in that state either.
            let here = match slot {
                Some((zone, _)) => {
                    ready[n] && node.zone == zone && self.scenario.service_time_ms(s, n).is_some()
                }
                None => !ready[n] && self.scenario.can_host(s, n),
            };
            if !here {
                continue;
            }
            if let (Some(gpu), Some((_, time))) = (node.gpu.as_ref().filter(|g| g.sharing.is_shared()), slot)
                && req.gpus > 0
            {
                if !usage[n].fits(&node.allocatable, None, &Resources { gpus: 0, ..req }) {
                    continue;
                }
                let base = self.scenario.service_time_ms(s, n).expect("here");
                for (i, claim) in seats_of_time(gpu, &usage[n].slots, &req, base, time, n, declared) {
                    usage[n].take_slot(gpu, &req, i);
                    if let Some(key) = claim {
                        declared.insert(key, tenants_of_time(gpu, base, time).expect("claimed"));
                    }
                    let ok = self.pack(rest, slots, ready, usage, declared);
                    if let Some(key) = claim {
                        declared.remove(&key);
                    }
                    usage[n].release(&req, Some(i as u8));
                    if ok {
                        return true;
                    }
                }
                continue;
            }
            let whole = slot.is_none_or(|(_, time)| self.scenario.service_time_ms(s, n) == Some(time));
            if whole && usage[n].fits(&node.allocatable, node.gpu.as_ref(), &req) {
                let seat = usage[n].take(node.gpu.as_ref(), &req);
                let ok = self.pack(rest, slots, ready, usage, declared);
                usage[n].release(&req, seat);
                if ok {
                    return true;
                }
            }
        }
        false
    }

    /// Every packable configuration for this set of Ready nodes, with its routing.
    pub(crate) fn configs(&mut self, ready: &[bool]) -> Arc<Vec<Config>> {
        if let Some(c) = self.feasible.get(ready) {
            return c.clone();
        }
        let services = self.multisets.len();
        let mut choice = vec![0usize; services];
        let mut out = Vec::new();
        loop {
            let slots: Vec<usize> =
                (0..services).flat_map(|s| self.multisets[s][choice[s]].iter().copied()).collect();
            if self.packable(&slots, ready) {
                let views: Vec<ReplicaView> = slots
                    .iter()
                    .enumerate()
                    .map(|(r, &k)| {
                        let service = self.replica_service[r];
                        match self.slots[service][k] {
                            Some((zone, service_time_ms)) => {
                                ReplicaView { service, zone, service_time_ms, up: true }
                            }
                            None => ReplicaView { service, zone: 0, service_time_ms: 1.0, up: false },
                        }
                    })
                    .collect();
                let mut table = RoutingTable::default();
                self.model.route(&views, &mut table);
                out.push(Config { slots, views, table });
            }
            // Odometer over the services' multisets.
            let Some(s) = (0..services).find(|&s| choice[s] + 1 < self.multisets[s].len()) else {
                break;
            };
            choice[s] += 1;
            choice[..s].fill(0);
        }
        let out = Arc::new(out);
        self.feasible.insert(ready.to_vec(), out.clone());
        out
    }

    /// The steady cost of `config` at these rates.
    pub(crate) fn cost_of(&mut self, config: &Config, rates_rps: &[f64]) -> f64 {
        self.model.evaluate(&config.views, &config.table, rates_rps, &mut self.scratch).cost
    }

    /// Per service, how many slots it has and whether the last is "nowhere" (on a NotReady
    /// node), with its replica count.
    pub(crate) fn service_slots(&self) -> impl Iterator<Item = (usize, bool, usize)> + '_ {
        self.slots
            .iter()
            .zip(&self.scenario.services)
            .map(|(here, svc)| (here.len(), here.last() == Some(&None), svc.replicas as usize))
    }

    /// The configuration (slots, sorted within each service) of replicas seen as `views`
    /// ([`crate::PlacementEnv::steady_views`]); `None` where a replica's seat is none of the
    /// oracle's slots.
    pub(crate) fn slots_of(&self, views: &[ReplicaView]) -> Option<Vec<usize>> {
        let mut out = Vec::with_capacity(views.len());
        let mut start = 0;
        for (s, svc) in self.scenario.services.iter().enumerate() {
            let k = svc.replicas as usize;
            for v in views.get(start..start + k)? {
                out.push(self.slot_of(s, v)?);
            }
            out[start..start + k].sort_unstable();
            start += k;
        }
        Some(out)
    }

    /// The slot of a replica of `s` seen as `view`.
    pub(crate) fn slot_of(&self, s: usize, view: &ReplicaView) -> Option<usize> {
        let seat = view.up.then_some((view.zone, view.service_time_ms));
        self.slots[s].iter().position(|slot| *slot == seat)
    }

    /// The zone and service time of slot `slot` of service `s`; `None` for "nowhere".
    pub(crate) fn seat(&self, s: usize, slot: usize) -> Option<(usize, f64)> {
        self.slots[s][slot]
    }

    /// The best placement's metrics for these rates and Ready nodes (`None` if nothing
    /// can be placed at all).
    pub fn best(&mut self, rates_rps: &[f64], ready: &[bool]) -> Option<TickMetrics> {
        self.best_config(rates_rps, ready).map(|(m, _)| m)
    }

    fn best_config(&mut self, rates_rps: &[f64], ready: &[bool]) -> Option<(TickMetrics, Vec<usize>)> {
        let configs = self.configs(ready);
        let mut best: Option<(TickMetrics, usize)> = None;
        for (i, c) in configs.iter().enumerate() {
            let m = self.model.evaluate(&c.views, &c.table, rates_rps, &mut self.scratch);
            if best.is_none_or(|(b, _)| m.cost < b.cost) {
                best = Some((m, i));
            }
        }
        best.map(|(m, i)| (m, configs[i].slots.clone()))
    }

    /// The oracle over a whole episode: one answer per step (ticks 1..=episode_ticks).
    pub fn episode(&mut self, trace: &Trace) -> Vec<OracleTick> {
        let mut ready = vec![true; self.scenario.nodes.len()];
        let mut next_event = 0;
        let mut previous: Option<Vec<usize>> = None;
        let mut out = Vec::with_capacity(self.scenario.episode_ticks as usize);
        for t in 1..=self.scenario.episode_ticks {
            while let Some(e) = trace.events.get(next_event).filter(|e| e.tick <= t) {
                ready[e.node] = e.kind == berth_core::NodeEventKind::Recover;
                next_event += 1;
            }
            let (metrics, slots) =
                self.best_config(trace.rates(t), &ready).expect("at least the empty configuration");
            let moves = previous.as_ref().map_or(0, |p| self.moved_replicas(p, &slots));
            previous = Some(slots);
            out.push(OracleTick { metrics, moves });
        }
        out
    }

    /// Replicas that must change slot to go from `a` to `b` (per service, multiset difference).
    fn moved_replicas(&self, a: &[usize], b: &[usize]) -> u32 {
        let mut moved = 0;
        let mut start = 0;
        for svc in &self.scenario.services {
            let k = svc.replicas as usize;
            let (mut x, mut y) = (a[start..start + k].to_vec(), b[start..start + k].to_vec());
            x.sort_unstable();
            y.sort_unstable();
            let (mut i, mut j, mut common) = (0, 0, 0);
            while i < k && j < k {
                match x[i].cmp(&y[j]) {
                    std::cmp::Ordering::Equal => {
                        common += 1;
                        i += 1;
                        j += 1;
                    }
                    std::cmp::Ordering::Less => i += 1,
                    std::cmp::Ordering::Greater => j += 1,
                }
            }
            moved += (k - common) as u32;
            start += k;
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multisets_are_counted_and_listed_alike() {
        for (m, k) in [(1, 1), (3, 2), (4, 3), (5, 1), (2, 4)] {
            let all = multisets(m, k);
            assert_eq!(all.len() as u128, multiset_count(m, k), "m={m} k={k}");
            assert!(all.iter().all(|v| v.windows(2).all(|w| w[0] <= w[1])));
        }
    }
}
