//! The placement gym: one step is one tick of simulated time.
//!
//! Per step: traffic moves on to the next tick, node events of the tick happen, the action
//! is applied (a moved replica is unavailable for its cold start and its share goes to the
//! others), then the cost model scores the tick. Action `0` keeps the placement; action
//! `1 + r * N + n` moves replica `r` to node `n`. Infeasible moves are masked.
//!
//! Everything a step touches is updated incrementally: a move changes two nodes' usage,
//! two mask columns and two nodes' observation fields; routing is recomputed only when
//! the set of available replicas changes; the per-tick cost is O(replicas + groups ·
//! services · zones).
//!
//! Observation (all in [0, 1]): per node `[cpu requested, memory requested, GPUs taken,
//! load (max utilisation of its replicas), ready, replicas of each service / replicas of
//! that service]`; per replica its zone (one-hot), the hardware class it runs on (one-hot),
//! whether it is still cold-starting at the end of the tick and whether its node is NotReady, so a policy can tell which
//! replica an action moves and which replicas are down;
//! then per user group its rate over its peak, then the time of day as `(sin + 1) / 2` and
//! `(cos + 1) / 2`.
//!
//! A scenario's background pods (other workloads) start and end as the clock passes their
//! times ([`Background`]); what they hold counts in each node's usage, so in the mask and
//! the observation, as a scheduler would see it.

use std::sync::Arc;

use berth_core::mig::MigProfile;
use berth_core::sharing::{self, GpuSharing};
use berth_core::{GpuSpec, InitialPlacement, NodeEventKind, NodeUsage, Placement, Resources, Rng, Scenario};

use crate::backend::{Backend, BoxedBackend, SimBackend, Trace, streams};
use crate::background::Background;
use crate::baselines::{GreedyPolicy, Policy};
use crate::cost::{CostModel, ReplicaView, RoutingTable, Scratch, TickMetrics};
use crate::error::{Error, Result};
use crate::gym::{BoxSpace, Env, Reset, Step};
use crate::scheduler::{ClusterView, random_placement, spread_placement};

/// Seconds in a day, for the time-of-day features.
const DAY_S: f64 = 86_400.0;
/// Observation fields per node before the per-service replica counts.
const NODE_FIELDS: usize = 5;

/// Diagnostics of one step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TickInfo {
    /// The tick just simulated (0 after reset).
    pub tick: u32,
    /// Latency, SLO misses and cost of the tick.
    pub metrics: TickMetrics,
    /// Replica moves made this step.
    pub moves: u32,
    /// Replicas that could not serve for the whole tick (cold start or NotReady node).
    pub unavailable_replicas: u32,
    /// Nodes that are NotReady.
    pub nodes_not_ready: u32,
}

/// A move decoded from an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// Replica index.
    pub replica: usize,
    /// Target node index.
    pub node: usize,
}

/// Where a live cluster stands, for [`PlacementEnv::reset_at`].
#[derive(Debug, Clone, PartialEq)]
pub struct StartState {
    /// Node index of each replica, in the scenario's replica order.
    pub placement: Vec<usize>,
    /// Whether each node is Ready.
    pub node_ready: Vec<bool>,
    /// The tick the day is at (time of day over `tick_s`).
    pub tick: u32,
    /// The MIG profile each replica's pods hold where the cluster says so (its Deployment asks
    /// for `nvidia.com/mig-<profile>`), in replica order; empty where unknown. A replica on a
    /// MIG node is seated in a free instance of its profile, so a plan frees and fills the
    /// instances the cluster really has taken; others by the usual rule.
    pub held: Vec<Option<MigProfile>>,
}

/// The background pods placed on a state, with the usage and mask they leave.
#[derive(Debug, Clone)]
struct PlacedBackground {
    background: Background,
    usage: Vec<NodeUsage>,
    mask: Vec<bool>,
}

/// What placing the background at a reset depends on besides the scenario: the clock, where
/// each replica stands and which shared slot it holds, and which nodes are Ready.
#[derive(Debug, Clone, PartialEq)]
struct BackgroundKey {
    tick: u32,
    placement: Vec<usize>,
    seat: Vec<Option<u8>>,
    node_ready: Vec<bool>,
}

/// The placement environment over a backend (the simulator by default).
#[derive(Debug, Clone)]
pub struct PlacementEnv {
    scenario: Arc<Scenario>,
    backend: BoxedBackend,
    model: CostModel,
    replica_service: Vec<usize>,
    /// `service_time[s * N + n]`: ms, or `None` where `s` cannot run on `n`.
    service_time: Vec<Option<f64>>,
    start: Placement,
    /// The mask of `start` with every node Ready, kept after the first reset: rebuilding a
    /// 1000-node cluster's mask costs more than an episode of steps.
    start_mask: Vec<bool>,
    peak_rate: Vec<f64>,
    /// Where the per-replica block of the observation starts, and its stride.
    replica_obs: (usize, usize),
    /// Time-of-day features at the end of each tick, `(sin + 1) / 2` and `(cos + 1) / 2`.
    time_of_day: Vec<[f32; 2]>,
    space: BoxSpace,
    // Episode state.
    trace: Trace,
    tick: u32,
    next_event: usize,
    placement: Vec<usize>,
    /// The slot of shared GPUs each replica holds on its node (`None`: whole GPUs or none).
    seat: Vec<Option<u8>>,
    /// The profiles [`StartState::held`] gives, while [`PlacementEnv::reset_at`] seats them.
    held: Vec<Option<MigProfile>>,
    usage: Vec<NodeUsage>,
    background: Background,
    /// The background, usage and mask right after a reset from the scenario's own start,
    /// kept after the first: placing an `openb` day's 5,800 running pods costs more than
    /// the episode's steps.
    background_start: Option<PlacedBackground>,
    /// The same after the last reset from another start, and the state it was placed on:
    /// the shield resets a copy to one start several times a tick, and on `openb` placing the
    /// pods was two thirds of its time.
    background_at: Option<(BackgroundKey, PlacedBackground)>,
    /// Nodes the background changed in the last tick (scratch).
    touched: Vec<usize>,
    node_service_count: Vec<u32>,
    node_ready: Vec<bool>,
    ready_at_s: Vec<f64>,
    /// Seed of this episode's cold-start draws (used where the scenario has `cold_starts:`).
    cold_seed: u64,
    pending: Vec<usize>,
    is_pending: Vec<bool>,
    views: Vec<ReplicaView>,
    table: RoutingTable,
    partial_views: Vec<ReplicaView>,
    partial_table: RoutingTable,
    routing_dirty: bool,
    unavailable: u32,
    not_ready: u32,
    scratch: Scratch,
    mask: Vec<bool>,
    /// The mask while replicas must be evacuated ([`berth_core::FailureModel::evacuate`]):
    /// only the rows of the replicas on NotReady nodes, those listed in `evacuating`.
    evacuation_mask: Vec<bool>,
    evacuating: Vec<usize>,
    obs: Vec<f32>,
    node_load: Vec<f64>,
    loaded_nodes: Vec<usize>,
    info: TickInfo,
}

/// The shapes an env of a scenario has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvSizes {
    /// Length of the flat observation.
    pub observation_len: usize,
    /// Number of actions: keep, or move one replica to one node.
    pub action_count: usize,
}

impl PlacementEnv {
    /// The simulator env of a scenario.
    pub fn new(scenario: Arc<Scenario>) -> Result<Self> {
        Self::with_backend(scenario, Box::new(SimBackend::new()))
    }

    /// An env over any backend. Fails if the replicas cannot all be placed.
    pub fn with_backend(scenario: Arc<Scenario>, backend: Box<dyn Backend>) -> Result<Self> {
        let start = spread_placement(&scenario)?;
        let nodes = scenario.nodes.len();
        let services = scenario.services.len();
        let replica_service = scenario.replica_services();
        let service_time = (0..services)
            .flat_map(|s| (0..nodes).map(move |n| (s, n)))
            .map(|(s, n)| scenario.service_time_ms(s, n))
            .collect();
        let replicas = replica_service.len();
        let replica_stride = scenario.zones.len() + scenario.classes.len() + 2;
        let replica_base = nodes * (NODE_FIELDS + services);
        let EnvSizes { observation_len: obs_len, .. } = Self::sizes(&scenario);
        let mut env = Self {
            model: CostModel::new(&scenario),
            replica_obs: (replica_base, replica_stride),
            peak_rate: scenario.user_groups.iter().map(|g| g.rate.peak()).collect(),
            time_of_day: (0..=scenario.episode_ticks)
                .map(|t| {
                    let angle = std::f64::consts::TAU * ((t as f64 * scenario.tick_s) % DAY_S) / DAY_S;
                    [((angle.sin() + 1.0) / 2.0) as f32, ((angle.cos() + 1.0) / 2.0) as f32]
                })
                .collect(),
            space: BoxSpace::uniform(obs_len, 0.0, 1.0),
            backend: BoxedBackend(backend),
            replica_service,
            service_time,
            start,
            start_mask: Vec::new(),
            trace: Trace::default(),
            tick: 0,
            next_event: 0,
            placement: Vec::new(),
            seat: vec![None; replicas],
            held: Vec::new(),
            usage: vec![NodeUsage::default(); nodes],
            background: Background::new(&scenario),
            background_start: None,
            background_at: None,
            touched: Vec::new(),
            node_service_count: vec![0; nodes * services],
            node_ready: vec![true; nodes],
            ready_at_s: vec![f64::NEG_INFINITY; replicas],
            cold_seed: 0,
            pending: Vec::new(),
            is_pending: vec![false; replicas],
            views: Vec::with_capacity(replicas),
            table: RoutingTable::default(),
            partial_views: Vec::with_capacity(replicas),
            partial_table: RoutingTable::default(),
            routing_dirty: true,
            unavailable: 0,
            not_ready: 0,
            scratch: Scratch::default(),
            mask: vec![false; 1 + replicas * nodes],
            evacuation_mask: Vec::new(),
            evacuating: Vec::new(),
            obs: vec![0.0; obs_len],
            node_load: vec![0.0; nodes],
            loaded_nodes: Vec::new(),
            info: TickInfo::default(),
            scenario,
        };
        env.reset(env.scenario.seed);
        Ok(env)
    }

    /// The observation length and action count of `scenario`'s env, without building it.
    pub fn sizes(scenario: &Scenario) -> EnvSizes {
        let (nodes, services, replicas) =
            (scenario.nodes.len(), scenario.services.len(), scenario.replica_count());
        let replica_stride = scenario.zones.len() + scenario.classes.len() + 2;
        EnvSizes {
            observation_len: nodes * (NODE_FIELDS + services)
                + replicas * replica_stride
                + scenario.user_groups.len()
                + 2,
            action_count: 1 + replicas * nodes,
        }
    }

    /// About how many bytes one env of `scenario` holds, without building it: its action
    /// masks, observation, per-node and per-replica state, the day's clock, and the routing
    /// tables of the cost model. Used to refuse work that would not fit a memory budget.
    pub fn footprint_bytes(scenario: &Scenario) -> u64 {
        let sizes = Self::sizes(scenario);
        let (nodes, services, replicas) =
            (scenario.nodes.len() as u64, scenario.services.len() as u64, scenario.replica_count() as u64);
        let (zones, groups) = (scenario.zones.len() as u64, scenario.user_groups.len() as u64);
        // Three masks of one byte an action (the action mask, the start's, evacuation's).
        let masks = 3 * sizes.action_count as u64;
        // The observation and its space's bounds, f32 each.
        let observation = 12 * sizes.observation_len as u64;
        // Service times and per-node service counts.
        let service_node = 24 * services * nodes;
        // Node usage and readiness; replica views, timers and routing weights, twice over.
        let per_entity = 96 * nodes + 2 * 160 * replicas;
        // The routing table's visits per (group, service, zone), and the zone matrix.
        let routing = 8 * (groups * services * zones + zones * zones + 4 * groups);
        let clock = 8 * (scenario.episode_ticks as u64 + 1);
        // Background pods: their start and end orders and where each landed.
        let background = 40 * scenario.background.len() as u64;
        masks + observation + service_node + per_entity + routing + clock + background + 64 * 1024
    }

    /// The scenario.
    pub fn scenario(&self) -> &Arc<Scenario> {
        &self.scenario
    }

    /// The cost model.
    pub fn model(&self) -> &CostModel {
        &self.model
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.backend.0.name()
    }

    /// Node of each replica.
    pub fn placement(&self) -> &[usize] {
        &self.placement
    }

    /// Service of each replica.
    pub fn replica_service(&self) -> &[usize] {
        &self.replica_service
    }

    /// Readiness of each node.
    pub fn node_ready(&self) -> &[bool] {
        &self.node_ready
    }

    /// Requests placed on each node.
    pub fn usage(&self) -> &[NodeUsage] {
        &self.usage
    }

    /// Each replica's mean service time where it stands now, ms: its hardware's, slowed by
    /// the MIG instance or the time-sliced share it holds.
    pub fn service_times_ms(&self) -> impl Iterator<Item = f64> + '_ {
        self.views.iter().map(|v| v.service_time_ms)
    }

    /// Where the episode stands, as a start for [`PlacementEnv::reset_at`]: a plan or a
    /// shield rolled forward from here on a copy.
    pub fn start_state(&self) -> StartState {
        StartState {
            placement: self.placement.clone(),
            node_ready: self.node_ready.clone(),
            tick: self.tick,
            held: self.held(),
        }
    }

    /// The mean service time a replica of service `s` would have on node `n` now, ms: its
    /// hardware's, slowed by the slot of shared GPUs it would take there, with the tenant it
    /// would make (`None` where `s` cannot run on `n`'s hardware).
    pub fn time_if_placed(&self, s: usize, n: usize) -> Option<f64> {
        let base = self.service_time[s * self.node_count() + n]?;
        let Some(gpu) = self.scenario.nodes[n].gpu.as_ref().filter(|g| g.sharing.is_shared()) else {
            return Some(base);
        };
        let mut after = self.usage[n].clone();
        Some(match after.take(Some(gpu), &self.scenario.services[s].requests) {
            Some(slot) => base * sharing::slowdown(&gpu.sharing, &after.slots, usize::from(slot)),
            None => base,
        })
    }

    /// The slot of shared GPUs a replica of service `s` would take on node `n` now (`None`:
    /// whole GPUs, no GPU, or no slot free): what a move there must ask the cluster for.
    pub fn seat_if_placed(&self, s: usize, n: usize) -> Option<u8> {
        let gpu = self.scenario.nodes[n].gpu.as_ref().filter(|g| g.sharing.is_shared())?;
        let free = sharing::free_slot(gpu, &self.usage[n].slots, &self.scenario.services[s].requests)?;
        Some(free as u8)
    }

    /// Physical GPUs with anything on them now (a replica, a share or instance of one, or a
    /// background pod): what a placement costs in GPUs, which sharing can lower.
    pub fn gpus_in_use(&self) -> u32 {
        let nodes = self.scenario.nodes.iter().zip(&self.usage);
        nodes.filter_map(|(node, usage)| node.gpu.as_ref().map(|g| g.count - usage.free_gpus(Some(g)))).sum()
    }

    /// The MIG profile of the instance each replica holds (`None` elsewhere): what a copy
    /// started from here ([`StartState::held`]) seats them in.
    pub fn held(&self) -> Vec<Option<MigProfile>> {
        let nodes = &self.scenario.nodes;
        self.placement
            .iter()
            .zip(&self.seat)
            .map(|(&n, &seat)| sharing::mig_profile_of(nodes[n].gpu.as_ref()?, seat?))
            .collect()
    }

    /// The slot of shared GPUs each replica holds (`None`: whole GPUs or none).
    pub fn seats(&self) -> &[Option<u8>] {
        &self.seat
    }

    /// The cluster as a scheduler sees it now: usage, readiness and where replicas stand.
    pub fn cluster_view(&self) -> ClusterView<'_> {
        ClusterView {
            scenario: &self.scenario,
            usage: &self.usage,
            ready: &self.node_ready,
            placement: &self.placement,
            replica_service: &self.replica_service,
        }
    }

    /// Utilisation ρ of each replica in the tick last scored (0 while it is not serving).
    pub fn replica_utilisation(&self) -> &[f64] {
        &self.scratch.utilisation
    }

    /// Per node, the highest utilisation ρ of its replicas in the tick last scored.
    pub fn node_load(&self) -> &[f64] {
        &self.node_load
    }

    /// Whether each replica is still cold-starting at the end of the tick.
    pub fn cold_starting(&self) -> impl Iterator<Item = bool> + '_ {
        let now_s = self.tick as f64 * self.scenario.tick_s;
        self.is_pending.iter().zip(&self.ready_at_s).map(move |(&pending, &ready)| pending && ready > now_s)
    }

    /// Time of day at the end of the tick, `(sin + 1) / 2` and `(cos + 1) / 2`.
    pub fn time_of_day(&self) -> [f32; 2] {
        self.time_of_day[self.tick as usize]
    }

    /// The tick last simulated (0 after reset).
    pub fn tick(&self) -> u32 {
        self.tick
    }

    /// The trace of the current episode.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The rates the agent last observed.
    pub fn current_rates(&self) -> &[f64] {
        self.trace.rates(self.tick)
    }

    /// The last step's diagnostics.
    pub fn info(&self) -> TickInfo {
        self.info
    }

    /// The last step's cost: its tick's cost and its moves' (minus its reward).
    pub fn last_cost(&self) -> f64 {
        self.info.metrics.cost + self.scenario.reward.move_cost * f64::from(self.info.moves)
    }

    /// A scratch env of `env`'s scenario kept in `slot`, built again only when the scenario
    /// changes; `None` where it cannot be built.
    pub(crate) fn scratch_in<'a>(slot: &'a mut Option<Self>, env: &Self) -> Option<&'a mut Self> {
        if slot.as_ref().is_none_or(|copy| !Arc::ptr_eq(copy.scenario(), env.scenario())) {
            *slot = Self::new(env.scenario().clone()).ok();
        }
        slot.as_mut()
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.usage.len()
    }

    /// Action that moves `replica` to `node`.
    pub fn encode(&self, mv: Move) -> usize {
        1 + mv.replica * self.node_count() + mv.node
    }

    /// Whether `action` may be taken now: an error saying why not (episode over, out of
    /// range, masked), as `step` gives, without stepping.
    pub fn check_action(&self, action: usize) -> Result<()> {
        if self.tick >= self.scenario.episode_ticks {
            return Err(Error::EpisodeOver);
        }
        if action >= self.mask.len() {
            return Err(Error::ActionOutOfRange { action, actions: self.mask.len() });
        }
        if let Some(mv) = self.decode(action).filter(|_| !self.mask[action]) {
            return Err(Error::MaskedAction { action, reason: self.masked_reason(mv) });
        }
        if let Some(&r) = self.evacuating.first().filter(|_| !self.evacuation_mask[action]) {
            let (service, node) = (self.replica_service[r], self.placement[r]);
            let reason = format!(
                "replica {r} of `{}` is on NotReady node `{}`: move it first",
                self.scenario.services[service].name, self.scenario.nodes[node].name
            );
            return Err(Error::MaskedAction { action, reason });
        }
        Ok(())
    }

    /// The move an action asks for (`None` for keep).
    pub fn decode(&self, action: usize) -> Option<Move> {
        (action > 0).then(|| {
            let n = self.node_count();
            Move { replica: (action - 1) / n, node: (action - 1) % n }
        })
    }

    /// Whether replica `r` can be moved to node `n` now.
    #[inline]
    fn move_allowed(&self, r: usize, n: usize) -> bool {
        let s = self.replica_service[r];
        let node = &self.scenario.nodes[n];
        n != self.placement[r]
            && self.node_ready[n]
            && self.service_time[s * self.node_count() + n].is_some()
            && self.usage[n].fits(&node.allocatable, node.gpu.as_ref(), self.requests(r))
    }

    fn requests(&self, r: usize) -> &Resources {
        &self.scenario.services[self.replica_service[r]].requests
    }

    fn masked_reason(&self, mv: Move) -> String {
        let (r, n) = (mv.replica, mv.node);
        let node = &self.scenario.nodes[n];
        let service = &self.scenario.services[self.replica_service[r]].name;
        if n == self.placement[r] {
            format!("replica {r} of `{service}` is already on `{}`", node.name)
        } else if !self.node_ready[n] {
            format!("node `{}` is NotReady", node.name)
        } else if self.service_time[self.replica_service[r] * self.node_count() + n].is_none() {
            format!("`{service}` cannot run on the hardware of `{}`", node.name)
        } else {
            format!("replica {r} of `{service}` ({}) does not fit on `{}`", self.requests(r), node.name)
        }
    }

    fn refresh_mask_column(&mut self, n: usize) {
        let nodes = self.node_count();
        for r in 0..self.placement.len() {
            self.mask[1 + r * nodes + n] = self.move_allowed(r, n);
        }
    }

    /// Opens, in the evacuation mask, the rows of the replicas on NotReady nodes that can
    /// move; none open (nothing to evacuate, or nowhere to go) leaves the usual mask in force.
    fn refresh_evacuation(&mut self) {
        if !self.scenario.failures.evacuate || (self.evacuating.is_empty() && self.not_ready == 0) {
            return;
        }
        let nodes = self.node_count();
        if self.evacuation_mask.is_empty() {
            self.evacuation_mask = vec![false; self.mask.len()];
        }
        for r in self.evacuating.drain(..) {
            self.evacuation_mask[1 + r * nodes..1 + (r + 1) * nodes].fill(false);
        }
        for r in 0..self.placement.len() {
            let row = 1 + r * nodes..1 + (r + 1) * nodes;
            if !self.node_ready[self.placement[r]] && self.mask[row.clone()].contains(&true) {
                self.evacuation_mask[row.clone()].copy_from_slice(&self.mask[row]);
                self.evacuating.push(r);
            }
        }
    }

    fn refresh_node_obs(&mut self, n: usize) {
        let services = self.scenario.services.len();
        let node = &self.scenario.nodes[n];
        let u = &self.usage[n];
        let base = n * (NODE_FIELDS + services);
        self.obs[base] = (u.cpu_millicores as f64 / node.allocatable.cpu_millicores as f64) as f32;
        self.obs[base + 1] = (u.memory_mib as f64 / node.allocatable.memory_mib as f64) as f32;
        self.obs[base + 2] = u.gpu_fraction(node.gpu.as_ref()) as f32;
        self.obs[base + 3] = self.node_load[n] as f32;
        self.obs[base + 4] = if self.node_ready[n] { 1.0 } else { 0.0 };
        for s in 0..services {
            self.obs[base + NODE_FIELDS + s] =
                self.node_service_count[n * services + s] as f32 / self.scenario.services[s].replicas as f32;
        }
    }

    /// A free instance on node `n` of the MIG profile the cluster shows replica `r` holding
    /// ([`StartState::held`], while a reset seats it), if there is one.
    fn held_slot(&self, r: usize, n: usize) -> Option<usize> {
        let profile = self.held.get(r).copied().flatten()?;
        let request = &self.scenario.services[self.replica_service[r]].requests;
        sharing::free_instance_of(
            self.scenario.nodes[n].gpu.as_ref()?,
            &self.usage[n].slots,
            request,
            profile,
        )
    }

    fn place(&mut self, r: usize, n: usize) {
        let s = self.replica_service[r];
        let services = self.scenario.services.len();
        let req = self.scenario.services[s].requests;
        let gpu = self.scenario.nodes[n].gpu.as_ref();
        self.seat[r] = match (self.held_slot(r, n), gpu) {
            (Some(slot), Some(g)) => {
                self.usage[n].take_slot(g, &req, slot);
                Some(slot as u8)
            }
            _ => self.usage[n].take(gpu, &req),
        };
        self.node_service_count[n * services + s] += 1;
        self.placement[r] = n;
        self.views[r].zone = self.scenario.nodes[n].zone;
        self.views[r].service_time_ms = self.seated_time(r, n, &self.usage[n].slots, self.seat[r]);
        self.retime_tenants(n);
        let (base, stride) = self.replica_obs;
        let row = &mut self.obs[base + r * stride..base + (r + 1) * stride];
        let zones = self.scenario.zones.len();
        row.fill(0.0);
        row[self.scenario.nodes[n].zone] = 1.0;
        row[zones + self.scenario.class_on(s, n)] = 1.0;
        row[stride - 2] = if self.is_pending[r] { 1.0 } else { 0.0 };
        row[stride - 1] = if self.node_ready[n] { 0.0 } else { 1.0 };
    }

    /// Sets the cold-starting flag of replica `r` in the observation.
    fn set_pending(&mut self, r: usize, pending: bool) {
        self.is_pending[r] = pending;
        let (base, stride) = self.replica_obs;
        self.obs[base + (r + 1) * stride - 2] = if pending { 1.0 } else { 0.0 };
    }

    fn unplace(&mut self, r: usize) -> usize {
        let n = self.placement[r];
        let s = self.replica_service[r];
        let services = self.scenario.services.len();
        let req = self.scenario.services[s].requests;
        self.usage[n].release(&req, self.seat[r].take());
        self.node_service_count[n * services + s] -= 1;
        self.retime_tenants(n);
        n
    }

    /// How long a request of replica `r` takes on node `n` in `seat`, with the node's shared
    /// slots as `slots` say: its hardware's time, times the slot's slowdown.
    fn seated_time(&self, r: usize, n: usize, slots: &[u64], seat: Option<u8>) -> f64 {
        let base =
            self.service_time[self.replica_service[r] * self.node_count() + n].unwrap_or(f64::INFINITY);
        match (seat, &self.scenario.nodes[n].gpu) {
            (Some(slot), Some(gpu)) => base * sharing::slowdown(&gpu.sharing, slots, usize::from(slot)),
            _ => base,
        }
    }

    /// After a replica or a background pod came to or left time-sliced node `n`, every
    /// tenant there serves at its new share of the GPU (MIG instances and whole GPUs are not
    /// affected by neighbours).
    fn retime_tenants(&mut self, n: usize) {
        if self.time_sliced(n).is_some() {
            let mut views = std::mem::take(&mut self.views);
            let retimed = self.retime_in(&mut views, n, &self.usage[n].slots, None);
            self.views = views;
            // Background pods come and go on nodes without replicas every tick: only a
            // replica's new time changes the routing.
            self.routing_dirty |= retimed;
        }
    }

    /// In `views`, the times of the tenants of node `n` other than `moving`, if its GPUs are
    /// time-sliced, with its slots as `slots` say; whether any time changed.
    fn retime_in(&self, views: &mut [ReplicaView], n: usize, slots: &[u64], moving: Option<usize>) -> bool {
        if self.time_sliced(n).is_none() {
            return false;
        }
        let mut changed = false;
        for (r, view) in views.iter_mut().enumerate() {
            if Some(r) != moving && self.placement[r] == n && self.seat[r].is_some() {
                let time = self.seated_time(r, n, slots, self.seat[r]);
                changed |= time != view.service_time_ms;
                view.service_time_ms = time;
            }
        }
        changed
    }

    /// Node `n`'s GPUs if they are time-sliced.
    fn time_sliced(&self, n: usize) -> Option<&GpuSpec> {
        self.scenario.nodes[n].gpu.as_ref().filter(|g| matches!(g.sharing, GpuSharing::TimeSliced { .. }))
    }

    fn start_cold(&mut self, r: usize, ready_at_s: f64) {
        self.ready_at_s[r] = ready_at_s;
        if !self.is_pending[r] {
            self.set_pending(r, true);
            self.pending.push(r);
        }
        self.routing_dirty = true;
    }

    /// How long replica `r` takes to start now: its service's `cold_start_s`, times a draw
    /// from the scenario's cold-start shape where it has one. The draw is keyed by the
    /// episode's seed, the tick and the replica, so every policy played on the same day meets
    /// the same cold start for the same start, whatever else it did.
    fn cold_start_s(&self, r: usize) -> f64 {
        let mean = self.scenario.services[self.replica_service[r]].cold_start_s;
        match &self.scenario.cold_starts {
            None => mean,
            Some(shape) => {
                let key = (u64::from(self.tick) << 32) | r as u64;
                mean * shape.multiplier(Rng::derive(self.cold_seed, key).next_f64())
            }
        }
    }

    fn apply_move(&mut self, mv: Move, now_s: f64) {
        let from = self.unplace(mv.replica);
        self.place(mv.replica, mv.node);
        let cold = self.cold_start_s(mv.replica);
        self.start_cold(mv.replica, now_s + cold);
        for n in [from, mv.node] {
            self.refresh_mask_column(n);
            self.refresh_node_obs(n);
        }
    }

    fn apply_events(&mut self) {
        while let Some(e) = self.trace.events.get(self.next_event).copied() {
            if e.tick > self.tick {
                break;
            }
            self.next_event += 1;
            match e.kind {
                NodeEventKind::Fail if self.node_ready[e.node] => {
                    self.node_ready[e.node] = false;
                    self.not_ready += 1;
                }
                NodeEventKind::Recover if !self.node_ready[e.node] => {
                    self.node_ready[e.node] = true;
                    self.not_ready -= 1;
                    for r in 0..self.placement.len() {
                        if self.placement[r] == e.node {
                            let cold = self.cold_start_s(r);
                            self.start_cold(r, self.ready_at_s[r].max(e.at_s + cold));
                        }
                    }
                }
                _ => continue,
            }
            self.routing_dirty = true;
            self.refresh_mask_column(e.node);
            self.refresh_node_obs(e.node);
            let (base, stride) = self.replica_obs;
            let down = if self.node_ready[e.node] { 0.0 } else { 1.0 };
            for r in (0..self.placement.len()).filter(|&r| self.placement[r] == e.node) {
                self.obs[base + (r + 1) * stride - 1] = down;
            }
        }
    }

    /// Plays the background pods up to now and refreshes the mask and observation of the
    /// nodes they changed.
    fn advance_background(&mut self) {
        if self.scenario.background.is_empty() {
            return;
        }
        let now_s = self.tick as f64 * self.scenario.tick_s;
        let mut touched = std::mem::take(&mut self.touched);
        self.background.advance(&self.scenario, now_s, &mut self.usage, &self.node_ready, &mut touched);
        touched.sort_unstable();
        touched.dedup();
        for &n in &touched {
            self.retime_tenants(n);
            self.refresh_mask_column(n);
            self.refresh_node_obs(n);
        }
        touched.clear();
        self.touched = touched;
    }

    /// Background pods holding capacity now, and those that found no node.
    pub fn background_pods(&self) -> (u32, u32) {
        (self.background.running(), self.background.pending())
    }

    /// Scores the current tick over `[start_s, end_s)`.
    fn score_tick(&mut self, start_s: f64, end_s: f64) -> (TickMetrics, u32) {
        let dt = end_s - start_s;
        let (mut partial_weight, mut partial_count) = (0.0, 0u32);
        let mut i = 0;
        while i < self.pending.len() {
            let r = self.pending[i];
            if self.ready_at_s[r] <= start_s {
                self.set_pending(r, false);
                self.pending.swap_remove(i);
                self.routing_dirty = true;
                continue;
            }
            if self.ready_at_s[r] < end_s && self.node_ready[self.placement[r]] {
                partial_weight += (end_s - self.ready_at_s[r]) / dt;
                partial_count += 1;
            }
            i += 1;
        }
        if self.routing_dirty {
            for r in 0..self.views.len() {
                self.views[r].up = self.node_ready[self.placement[r]] && !self.is_pending[r];
            }
            self.model.route(&self.views, &mut self.table);
            self.unavailable = self.views.iter().filter(|v| !v.up).count() as u32;
            self.routing_dirty = false;
        }
        let rates = self.trace.rates(self.tick);
        let mut metrics = self.model.evaluate(&self.views, &self.table, rates, &mut self.scratch);
        if partial_count > 0 {
            self.partial_views.clone_from(&self.views);
            for &r in &self.pending {
                if self.ready_at_s[r] < end_s && self.node_ready[self.placement[r]] {
                    self.partial_views[r].up = true;
                }
            }
            self.model.route(&self.partial_views, &mut self.partial_table);
            let mut scratch = std::mem::take(&mut self.scratch);
            let with = self.model.evaluate(&self.partial_views, &self.partial_table, rates, &mut scratch);
            self.scratch = scratch;
            metrics = TickMetrics::blend(&metrics, &with, partial_weight / partial_count as f64);
        }
        (metrics, self.unavailable)
    }

    fn refresh_dynamic_obs(&mut self) {
        let services = self.scenario.services.len();
        let stride = NODE_FIELDS + services;
        for &n in &self.loaded_nodes {
            self.node_load[n] = 0.0;
            self.obs[n * stride + 3] = 0.0;
        }
        self.loaded_nodes.clear();
        for (r, &u) in self.scratch.utilisation.iter().enumerate() {
            if u > 0.0 {
                let n = self.placement[r];
                if self.node_load[n] == 0.0 {
                    self.loaded_nodes.push(n);
                }
                self.node_load[n] = self.node_load[n].max(u);
                self.obs[n * stride + 3] = self.node_load[n] as f32;
            }
        }
        // Cold-starting at the end of the tick, when the agent looks.
        let now_s = self.tick as f64 * self.scenario.tick_s;
        let (base, stride) = self.replica_obs;
        for &r in &self.pending {
            self.obs[base + (r + 1) * stride - 2] = if self.ready_at_s[r] > now_s { 1.0 } else { 0.0 };
        }
        let base = base + self.placement.len() * stride;
        let rates = self.trace.rates(self.tick);
        for (g, (&rate, &peak)) in rates.iter().zip(&self.peak_rate).enumerate() {
            self.obs[base + g] = if peak > 0.0 { (rate / peak).min(1.0) as f32 } else { 0.0 };
        }
        let t = base + rates.len();
        self.obs[t..t + 2].copy_from_slice(&self.time_of_day[self.tick as usize]);
    }

    fn reset_state(&mut self, seed: u64) {
        let nodes = self.node_count();
        self.trace = self.backend.0.episode(&self.scenario, seed);
        self.tick = 0;
        self.next_event = 0;
        let start = match self.scenario.initial_placement {
            InitialPlacement::Spread => self.start.clone(),
            InitialPlacement::Random => {
                random_placement(&self.scenario, &mut Rng::derive(seed, streams::INITIAL), &self.start)
            }
        };
        self.usage.fill(NodeUsage::default());
        self.seat.fill(None);
        self.background.reset();
        self.node_service_count.fill(0);
        self.node_ready.fill(true);
        self.not_ready = 0;
        self.ready_at_s.fill(f64::NEG_INFINITY);
        self.cold_seed = Rng::derive(seed, streams::COLD_STARTS).next_u64();
        self.pending.clear();
        self.is_pending.fill(false);
        self.placement = start.nodes.clone();
        self.views.clear();
        for r in 0..self.replica_service.len() {
            let service = self.replica_service[r];
            self.views.push(ReplicaView { service, zone: 0, service_time_ms: 0.0, up: true });
            self.place(r, start.nodes[r]);
        }
        self.routing_dirty = true;
        let spread_start = self.scenario.initial_placement == InitialPlacement::Spread;
        if spread_start && !self.start_mask.is_empty() {
            self.mask.copy_from_slice(&self.start_mask);
        } else {
            for r in 0..self.placement.len() {
                for n in 0..nodes {
                    self.mask[1 + r * nodes + n] = self.move_allowed(r, n);
                }
            }
            self.mask[0] = true;
            if spread_start {
                self.start_mask.clone_from(&self.mask);
            }
        }
        self.refresh_evacuation();
        self.node_load.fill(0.0);
        self.loaded_nodes.clear();
        let (metrics, unavailable) = self.score_tick(-self.scenario.tick_s, 0.0);
        for n in 0..nodes {
            self.refresh_node_obs(n);
        }
        self.refresh_dynamic_obs();
        self.info =
            TickInfo { tick: 0, metrics, moves: 0, unavailable_replicas: unavailable, nodes_not_ready: 0 };
    }

    /// Starts an episode from where a live cluster stands instead of the scenario's start:
    /// replicas on `from.placement`, nodes Ready as `from.node_ready` says, the clock at
    /// `from.tick`. The episode's traffic is the backend's for `seed`; its node events are
    /// dropped, so a plan rolled forward from here assumes the nodes stay as they are.
    pub fn reset_at(&mut self, seed: u64, from: &StartState) -> Result<Reset<'_, TickInfo>> {
        let (replicas, nodes) = (self.replica_service.len(), self.node_count());
        let invalid = |name: &'static str, reason: String| Error::InvalidArgument { name, reason };
        if from.placement.len() != replicas {
            return Err(invalid(
                "placement",
                format!("{} replicas given, the scenario has {replicas}", from.placement.len()),
            ));
        }
        if from.node_ready.len() != nodes {
            return Err(invalid(
                "node_ready",
                format!("{} nodes given, the scenario has {nodes}", from.node_ready.len()),
            ));
        }
        if from.tick >= self.scenario.episode_ticks {
            return Err(invalid(
                "tick",
                format!("{} is past the episode's {} ticks", from.tick, self.scenario.episode_ticks),
            ));
        }
        if !from.held.is_empty() && from.held.len() != replicas {
            return Err(invalid(
                "held",
                format!("{} replicas given, the scenario has {replicas}", from.held.len()),
            ));
        }
        self.check_placement(&from.placement)?;
        self.reset_state(seed);
        self.trace.events.clear();
        self.tick = from.tick;
        for (n, &ready) in from.node_ready.iter().enumerate() {
            self.node_ready[n] = ready;
        }
        self.not_ready = from.node_ready.iter().filter(|&&ready| !ready).count() as u32;
        self.held.clone_from(&from.held);
        self.settle(&from.placement);
        self.held.clear();
        self.start_background(false);
        Ok(Reset { obs: &self.obs, info: self.info })
    }

    /// Starts an episode of `seed` (traffic and node events as [`Env::reset`] draws them) with
    /// the replicas on `placement` instead of the scenario's start: the placement a cluster
    /// running another scheduler (a baseline's placement rule) would have begun the day with.
    pub fn reset_placed(&mut self, seed: u64, placement: &[usize]) -> Result<Reset<'_, TickInfo>> {
        if placement.len() != self.replica_service.len() {
            return Err(Error::InvalidArgument {
                name: "placement",
                reason: format!(
                    "{} replicas given, the scenario has {}",
                    placement.len(),
                    self.replica_service.len()
                ),
            });
        }
        self.check_placement(placement)?;
        self.reset_state(seed);
        self.settle(placement);
        self.start_background(false);
        Ok(Reset { obs: &self.obs, info: self.info })
    }

    /// Every replica of `placement` names a node its service can run on.
    fn check_placement(&self, placement: &[usize]) -> Result<()> {
        let nodes = self.node_count();
        for (r, &n) in placement.iter().enumerate() {
            let s = self.replica_service[r];
            if n >= nodes || self.service_time[s * nodes + n].is_none() {
                let service = &self.scenario.services[s].name;
                return Err(Error::InvalidArgument {
                    name: "placement",
                    reason: format!("replica {r} of `{service}` cannot run on node index {n}"),
                });
            }
        }
        Ok(())
    }

    /// After a reset, moves the replicas onto `placement` (checked) with the node readiness
    /// and clock already set, and scores the tick that ends now.
    fn settle(&mut self, placement: &[usize]) {
        let (replicas, nodes) = (self.replica_service.len(), self.node_count());
        // Every replica that moves leaves first, so none waits for a slot another still holds;
        // those the cluster shows in a MIG instance free at the target take theirs before the
        // rest are seated by the rule.
        let holds = |r: usize| self.held.get(r).is_some_and(Option::is_some);
        let mut moving: Vec<usize> =
            (0..replicas).filter(|&r| self.placement[r] != placement[r] || holds(r)).collect();
        for &r in &moving {
            self.unplace(r);
        }
        if !self.held.is_empty() {
            moving.sort_by_key(|&r| self.held_slot(r, placement[r]).is_none());
        }
        for &r in &moving {
            self.place(r, placement[r]);
        }
        let (base, stride) = self.replica_obs;
        for r in 0..replicas {
            self.obs[base + (r + 1) * stride - 1] =
                if self.node_ready[self.placement[r]] { 0.0 } else { 1.0 };
        }
        for n in 0..nodes {
            self.refresh_mask_column(n);
            self.refresh_node_obs(n);
        }
        self.refresh_evacuation();
        self.routing_dirty = true;
        let dt = self.scenario.tick_s;
        let end_s = self.tick as f64 * dt;
        let (metrics, unavailable) = self.score_tick(end_s - dt, end_s);
        self.refresh_dynamic_obs();
        self.info = TickInfo {
            tick: self.tick,
            metrics,
            moves: 0,
            unavailable_replicas: unavailable,
            nodes_not_ready: self.not_ready,
        };
    }

    /// Places the background pods running at the reset's time, once the replicas stand
    /// where the episode starts (they were there first). From the scenario's own start
    /// (`from_own_start`) every reset places them alike, so the first one's result is kept.
    fn start_background(&mut self, from_own_start: bool) {
        if self.scenario.background.is_empty() {
            return;
        }
        let key = (!from_own_start).then(|| BackgroundKey {
            tick: self.tick,
            placement: self.placement.clone(),
            seat: self.seat.clone(),
            node_ready: self.node_ready.clone(),
        });
        let cached = match &key {
            None => self.background_start.as_ref(),
            Some(key) => self.background_at.as_ref().filter(|(at, _)| at == key).map(|(_, placed)| placed),
        };
        if let Some(placed) = cached {
            self.background.clone_from(&placed.background);
            self.usage.clone_from(&placed.usage);
            self.mask.copy_from_slice(&placed.mask);
            for n in 0..self.node_count() {
                self.retime_tenants(n);
                self.refresh_node_obs(n);
            }
        } else {
            self.advance_background();
            let placed = PlacedBackground {
                background: self.background.clone(),
                usage: self.usage.clone(),
                mask: self.mask.clone(),
            };
            match key {
                None => self.background_start = Some(placed),
                Some(key) => self.background_at = Some((key, placed)),
            }
        }
        self.refresh_evacuation();
    }

    /// What the tick would cost, with the rates last observed, if `mv` were made and every
    /// replica on a Ready node were serving: the steady state the greedy baseline compares.
    pub fn steady_cost(&self, mv: Option<Move>) -> TickMetrics {
        let mut views = self.steady_views();
        if let Some(Move { replica, node }) = mv {
            views[replica] = self.view_on(replica, node);
            self.reseat(&mut views, replica, node);
        }
        self.model.score(&views, self.current_rates())
    }

    /// Replica `r` as the cost model would see it on node `n`, at its hardware's time (before
    /// any share of a GPU is reckoned: [`PlacementEnv::moves_shares`]).
    pub(crate) fn view_on(&self, r: usize, n: usize) -> ReplicaView {
        let s = self.replica_service[r];
        ReplicaView {
            service: s,
            zone: self.scenario.nodes[n].zone,
            service_time_ms: self.service_time[s * self.node_count() + n].unwrap_or(f64::INFINITY),
            up: self.node_ready[n],
        }
    }

    /// Whether moving replica `r` to node `n` changes how GPUs are shared (either node's are
    /// time-sliced or partitioned), so service times besides the replica's own change.
    pub(crate) fn moves_shares(&self, r: usize, n: usize) -> bool {
        let shared = |n: usize| self.scenario.nodes[n].gpu.as_ref().is_some_and(|g| g.sharing.is_shared());
        shared(self.placement[r]) || shared(n)
    }

    /// The cost model, for what-if questions asked many times in one state ([`crate::what_if`]).
    pub(crate) fn cost_model(&self) -> &CostModel {
        &self.model
    }

    /// [`PlacementEnv::steady_cost`] with replica `r` gone: what it is worth where it is.
    pub fn steady_cost_without(&self, r: usize) -> TickMetrics {
        let mut views = self.steady_views();
        views[r].up = false;
        self.model.score(&views, self.current_rates())
    }

    /// [`PlacementEnv::steady_cost`] with one replica of service `s` more, on node `n`, at
    /// the time it would serve there ([`PlacementEnv::time_if_placed`]; the tenants it would
    /// slow on shared GPUs are not retimed). What a move of an `s` replica there would add.
    pub fn steady_cost_with_added(&self, s: usize, n: usize) -> TickMetrics {
        let mut views = self.steady_views();
        views.push(ReplicaView {
            service: s,
            zone: self.scenario.nodes[n].zone,
            service_time_ms: self.time_if_placed(s, n).unwrap_or(f64::INFINITY),
            up: self.node_ready[n],
        });
        self.model.score(&views, self.current_rates())
    }

    /// The replicas as the steady state sees them: every one on a Ready node serving.
    pub(crate) fn steady_views(&self) -> Vec<ReplicaView> {
        let mut views = self.views.clone();
        for (r, v) in views.iter_mut().enumerate() {
            v.up = self.node_ready[self.placement[r]];
        }
        views
    }

    /// In `views`, the service times after replica `r` moved to `to`, where either node's
    /// GPUs are shared: the slot it would take there, and the tenants of both time-sliced
    /// nodes at their new shares.
    fn reseat(&self, views: &mut [ReplicaView], r: usize, to: usize) {
        if !self.moves_shares(r, to) {
            return;
        }
        let from = self.placement[r];
        let req = self.requests(r);
        let mut left = self.usage[from].clone();
        left.release(req, self.seat[r]);
        let mut joined = if to == from { left.clone() } else { self.usage[to].clone() };
        let seat = joined.take(self.scenario.nodes[to].gpu.as_ref(), req);
        views[r].service_time_ms = self.seated_time(r, to, &joined.slots, seat);
        for (n, usage) in [(from, &left), (to, &joined)] {
            self.retime_in(views, n, &usage.slots, Some(r));
        }
    }
}

impl Env for PlacementEnv {
    type Info = TickInfo;

    fn observation_space(&self) -> BoxSpace {
        self.space.clone()
    }

    fn action_count(&self) -> usize {
        self.mask.len()
    }

    fn reset(&mut self, seed: u64) -> Reset<'_, TickInfo> {
        self.reset_state(seed);
        let from_own_start = self.scenario.initial_placement == InitialPlacement::Spread;
        self.start_background(from_own_start);
        Reset { obs: &self.obs, info: self.info }
    }

    fn step(&mut self, action: usize) -> Result<Step<'_, TickInfo>> {
        self.check_action(action)?;
        let mv = self.decode(action);
        self.tick += 1;
        let dt = self.scenario.tick_s;
        let (start_s, end_s) = ((self.tick - 1) as f64 * dt, self.tick as f64 * dt);
        self.apply_events();
        if let Some(mv) = mv {
            self.apply_move(mv, start_s);
        }
        self.advance_background();
        self.refresh_evacuation();
        let (metrics, unavailable) = self.score_tick(start_s, end_s);
        self.refresh_dynamic_obs();
        let moves = u32::from(mv.is_some());
        self.info = TickInfo {
            tick: self.tick,
            metrics,
            moves,
            unavailable_replicas: unavailable,
            nodes_not_ready: self.not_ready,
        };
        let reward = -self.last_cost();
        Ok(Step {
            obs: &self.obs,
            reward,
            terminated: false,
            truncated: self.tick == self.scenario.episode_ticks,
            info: self.info,
        })
    }

    fn action_mask(&self) -> &[bool] {
        if self.evacuating.is_empty() { &self.mask } else { &self.evacuation_mask }
    }

    fn observation(&self) -> &[f32] {
        &self.obs
    }

    fn keep_action(&self) -> Option<usize> {
        Some(0)
    }

    fn teacher_action(&self) -> Option<usize> {
        let action = GreedyPolicy.act(self);
        self.action_mask()[action].then_some(action)
    }
}
