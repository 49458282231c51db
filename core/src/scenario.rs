//! The validated scenario: names resolved to indices, node templates expanded, every
//! number checked. Built only by [`Scenario::from_yaml`], so the rest of berth can trust it.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::background::{BackgroundPod, validate_background};
use crate::cold_start::{ColdStartShape, validate_cold_starts};
use crate::error::{Error, Result};
use crate::limits;
use crate::mig::{self, MigLayout, MigProfile};
use crate::rate::{RateModel, Traces, validate_rate, validate_traces};
use crate::resources::Resources;
use crate::sharing::{Accepts, GpuSharing, TIME_SLICING_OVERHEAD};
use crate::spec::{
    GpuSpecRaw, NodeSpec, RequestsSpec, ScenarioSpec, ServiceSpec, TimeSlicingSpec, UserGroupSpec,
};

/// The GPU memory, in MiB, of the parts whose MIG profiles berth knows: an H100 80GB reports
/// 81,559 MiB and an A100 80GB 81,920.
const MIG_GPU_MEMORY_MIB: (u64, u64) = (79_000, 82_000);

/// The hardware class of a replica that uses no GPU: it runs on the node's CPUs.
pub const CPU_CLASS: &str = "cpu";

/// How a caller's requests are spread over the replicas of the next service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// Evenly over all ready replicas, as kube-proxy does.
    Uniform,
    /// Evenly over ready replicas in the caller's zone, else over all (topology-aware hints).
    TopologyAware,
    /// To the nearest zone (by RTT) with ready replicas, split by replica speed.
    LeastLatency,
}

/// Where replicas start at the beginning of an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialPlacement {
    /// Where kube-scheduler's default scoring puts them.
    #[default]
    Spread,
    /// A random feasible placement drawn from the episode seed.
    Random,
}

/// Whether a node fails or comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeEventKind {
    /// The node goes NotReady: its replicas stop serving.
    Fail,
    /// The node is Ready again: its replicas cold-start.
    Recover,
}

/// A scripted node event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeEvent {
    /// Seconds from the start of the episode.
    pub at_s: f64,
    /// Index into [`Scenario::nodes`].
    pub node: usize,
    /// Failure or recovery.
    pub kind: NodeEventKind,
}

/// Node failure dynamics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailureModel {
    /// Mean time between failures of one node, seconds; `None` for no random failures.
    pub mtbf_s: Option<f64>,
    /// Mean time to repair, seconds.
    pub mttr_s: f64,
    /// Scripted events, sorted by time.
    pub events: Vec<NodeEvent>,
    /// While a replica stands on a NotReady node and can be moved, the only allowed actions
    /// are moves of such replicas. Kubernetes evicts pods from a NotReady node after 300 s
    /// anyway; a pinned replica left there is down until the node comes back, which no
    /// operator wants. The policy still chooses where each one goes.
    pub evacuate: bool,
}

/// Reward weights: `reward = -(mean latency / SLO) - violation * miss fraction - move * moves`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RewardWeights {
    /// Weight of the fraction of requests over the SLO.
    pub violation: f64,
    /// Cost of one replica move.
    pub move_cost: f64,
}

/// The GPUs of a node: `count` GPUs of one `model`, each with `memory_mib`, offered whole or
/// shared.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSpec {
    /// Number of GPUs (`nvidia.com/gpu`).
    pub count: u32,
    /// Product, lower case (`h100`, `l4`, ...): the hardware class of GPU replicas here.
    pub model: String,
    /// Memory per GPU (`nvidia.com/gpu.memory`).
    pub memory_mib: u64,
    /// How the GPUs are offered: whole, as MIG instances or as time-sliced shares.
    pub sharing: GpuSharing,
}

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique name (`kubernetes.io/hostname`).
    pub name: String,
    /// Index into [`Scenario::zones`].
    pub zone: usize,
    /// Allocatable resources.
    pub allocatable: Resources,
    /// GPUs, if any.
    pub gpu: Option<GpuSpec>,
    /// Index into [`Scenario::classes`] of the GPU model, or of `cpu`.
    pub class: usize,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
}

/// A placed service.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Unique name.
    pub name: String,
    /// Number of replicas.
    pub replicas: u32,
    /// Requests of one replica.
    pub requests: Resources,
    /// Mean service time per request by hardware class index; `None` where it cannot run.
    pub service_time_ms: Vec<Option<f64>>,
    /// Seconds from a replica's start to ready (Infinity loads its models).
    pub cold_start_s: f64,
}

/// Users in one zone and the chain of services each of their requests calls.
#[derive(Debug, Clone, PartialEq)]
pub struct UserGroup {
    /// Name.
    pub name: String,
    /// Index into [`Scenario::zones`].
    pub zone: usize,
    /// Request rate over time.
    pub rate: RateModel,
    /// Indices into [`Scenario::services`], in call order.
    pub chain: Vec<usize>,
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name.
    pub name: String,
    /// What it models.
    pub description: String,
    /// Default seed.
    pub seed: u64,
    /// Simulated seconds per step.
    pub tick_s: f64,
    /// Steps per episode (truncation).
    pub episode_ticks: u32,
    /// Latency objective of one request, end to end.
    pub slo_ms: f64,
    /// Latency given to a request that times out (a saturated or missing replica).
    pub timeout_ms: f64,
    /// Routing policy.
    pub routing: Routing,
    /// Where replicas start.
    pub initial_placement: InitialPlacement,
    /// Reward weights.
    pub reward: RewardWeights,
    /// Zone names.
    pub zones: Vec<String>,
    /// Round-trip time between zones, `rtt_ms[from][to]`.
    pub rtt_ms: Vec<Vec<f64>>,
    /// Hardware classes: `cpu` first, then GPU models in order of appearance.
    pub classes: Vec<String>,
    /// Nodes, templates expanded.
    pub nodes: Vec<Node>,
    /// Services.
    pub services: Vec<Service>,
    /// User groups.
    pub user_groups: Vec<UserGroup>,
    /// Node failures.
    pub failures: FailureModel,
    /// Other workloads' pods that hold capacity while they live, in document order.
    pub background: Vec<BackgroundPod>,
    /// The measured spread of cold starts around each service's `cold_start_s`; `None`:
    /// every cold start takes exactly `cold_start_s`.
    pub cold_starts: Option<ColdStartShape>,
}

pub(crate) fn finite_at_least(path: &str, value: f64, min: f64, strict: bool) -> Result<f64> {
    let ok = value.is_finite() && if strict { value > min } else { value >= min };
    if ok {
        Ok(value)
    } else if strict {
        Err(Error::invalid(path, format!("must be a finite number greater than {min}, got {value}")))
    } else {
        Err(Error::invalid(path, format!("must be a finite number of at least {min}, got {value}")))
    }
}

fn unique_names<'a>(path: &str, names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = HashMap::new();
    for (i, name) in names.enumerate() {
        if name.is_empty() {
            return Err(Error::invalid(format!("{path}[{i}].name"), "must not be empty"));
        }
        if let Some(first) = seen.insert(name, i) {
            return Err(Error::invalid(
                format!("{path}[{i}].name"),
                format!("duplicate name `{name}` (first at {path}[{first}])"),
            ));
        }
    }
    Ok(())
}

impl Scenario {
    /// Parses and validates a scenario; errors name the field path and the reason.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let de = serde_norway::Deserializer::from_str(text);
        let spec: ScenarioSpec = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { "(document)".to_string() } else { path };
            Error::invalid(path, e.into_inner().to_string())
        })?;
        Self::from_spec(spec)
    }

    fn from_spec(spec: ScenarioSpec) -> Result<Self> {
        if spec.name.trim().is_empty() {
            return Err(Error::invalid("name", "must not be empty"));
        }
        let tick_s = finite_at_least("tick_s", spec.tick_s, 0.0, true)?;
        if spec.episode_ticks == 0 {
            return Err(Error::invalid("episode_ticks", "must be at least 1"));
        }
        check_sizes(&spec)?;
        let slo_ms = finite_at_least("slo_ms", spec.slo_ms, 0.0, true)?;
        let timeout_ms = finite_at_least("timeout_ms", spec.timeout_ms, slo_ms, false).map_err(|_| {
            Error::invalid(
                "timeout_ms",
                format!("must be finite and at least slo_ms ({slo_ms}), got {}", spec.timeout_ms),
            )
        })?;
        let reward = RewardWeights {
            violation: finite_at_least("reward.violation", spec.reward.violation, 0.0, false)?,
            move_cost: finite_at_least("reward.move", spec.reward.move_cost, 0.0, false)?,
        };

        if spec.zones.is_empty() {
            return Err(Error::invalid("zones", "at least one zone is needed"));
        }
        let mut zone_index = HashMap::new();
        for (i, z) in spec.zones.iter().enumerate() {
            if z.is_empty() {
                return Err(Error::invalid(format!("zones[{i}]"), "must not be empty"));
            }
            if zone_index.insert(z.as_str(), i).is_some() {
                return Err(Error::invalid(format!("zones[{i}]"), format!("duplicate zone `{z}`")));
            }
        }
        let rtt_ms = validate_rtt(&spec.rtt_ms, spec.zones.len())?;

        let mut classes = vec![CPU_CLASS.to_string()];
        let nodes = expand_nodes(&spec.nodes, &zone_index, &mut classes)?;
        let services = spec
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| validate_service(i, s, &classes))
            .collect::<Result<Vec<_>>>()?;
        if services.is_empty() {
            return Err(Error::invalid("services", "at least one service is needed"));
        }
        unique_names("services", services.iter().map(|s| s.name.as_str()))?;
        let service_index: HashMap<&str, usize> =
            services.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
        let traces = validate_traces(&spec.traces)?;
        let user_groups = spec
            .user_groups
            .iter()
            .enumerate()
            .map(|(i, g)| validate_group(i, g, &zone_index, &service_index, &traces))
            .collect::<Result<Vec<_>>>()?;
        if user_groups.is_empty() {
            return Err(Error::invalid("user_groups", "at least one user group is needed"));
        }
        unique_names("user_groups", user_groups.iter().map(|g| g.name.as_str()))?;

        let node_index: HashMap<&str, usize> =
            nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
        let failures = validate_failures(&spec, &node_index, tick_s)?;
        let background = validate_background(&spec.background)?;
        let cold_starts = spec.cold_starts.as_ref().map(validate_cold_starts).transpose()?;

        let scenario = Scenario {
            name: spec.name,
            description: spec.description,
            seed: spec.seed,
            tick_s,
            episode_ticks: spec.episode_ticks,
            slo_ms,
            timeout_ms,
            routing: spec.routing,
            initial_placement: spec.initial_placement,
            reward,
            zones: spec.zones,
            rtt_ms,
            classes,
            nodes,
            services,
            user_groups,
            failures,
            background,
            cold_starts,
        };
        scenario.check_hostable()?;
        Ok(scenario)
    }

    /// Every service must fit, alone, on at least one node whose hardware it can run on.
    fn check_hostable(&self) -> Result<()> {
        for (s, service) in self.services.iter().enumerate() {
            if !(0..self.nodes.len()).any(|n| self.can_host(s, n)) {
                return Err(Error::invalid(
                    format!("services[{s}]"),
                    format!(
                        "no node can ever host a replica of `{}` (requests {}; it runs on {})",
                        service.name,
                        service.requests,
                        self.runnable_classes(s).join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn runnable_classes(&self, service: usize) -> Vec<&str> {
        self.services[service]
            .service_time_ms
            .iter()
            .zip(&self.classes)
            .filter(|(t, _)| t.is_some())
            .map(|(_, c)| c.as_str())
            .collect()
    }

    /// The hardware class a replica of `service` uses on `node`: the GPU model for GPU
    /// services, `cpu` otherwise.
    pub fn class_on(&self, service: usize, node: usize) -> usize {
        if self.services[service].requests.gpus > 0 { self.nodes[node].class } else { 0 }
    }

    /// Mean service time of one request of `service` on `node`, if it can run there.
    pub fn service_time_ms(&self, service: usize, node: usize) -> Option<f64> {
        self.services[service].service_time_ms[self.class_on(service, node)]
    }

    /// Whether `node`, empty, could host one replica of `service`.
    pub fn can_host(&self, service: usize, node: usize) -> bool {
        let n = &self.nodes[node];
        let req = &self.services[service].requests;
        self.service_time_ms(service, node).is_some() && req.fits_in(&n.allocatable, n.gpu.as_ref())
    }

    /// Total number of replicas over all services.
    pub fn replica_count(&self) -> usize {
        self.services.iter().map(|s| s.replicas as usize).sum()
    }

    /// The service of each replica, in replica order (services in order, replicas within).
    pub fn replica_services(&self) -> Vec<usize> {
        self.services
            .iter()
            .enumerate()
            .flat_map(|(s, svc)| std::iter::repeat_n(s, svc.replicas as usize))
            .collect()
    }

    /// `(service, index within the service)` of every replica, in replica order: the
    /// `berth.io/service` and `berth.io/replica` of its Deployment on a cluster.
    pub fn replica_keys(&self) -> Vec<(usize, u32)> {
        self.services.iter().enumerate().flat_map(|(s, svc)| (0..svc.replicas).map(move |i| (s, i))).collect()
    }

    /// Finds a node by name.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

/// Refuses a scenario larger than [`limits`] allows, from the document's counts alone:
/// nothing of the scenario's size has been allocated yet.
fn check_sizes(spec: &ScenarioSpec) -> Result<()> {
    let over = |path: String, what: &str, value: u64, limit: u64| {
        Error::invalid(path, format!("{value} {what}; a scenario has at most {limit}"))
    };
    if spec.episode_ticks > limits::MAX_EPISODE_TICKS {
        let ticks = u64::from(spec.episode_ticks);
        return Err(over("episode_ticks".into(), "ticks", ticks, limits::MAX_EPISODE_TICKS.into()));
    }
    let counted = [
        ("zones", spec.zones.len(), limits::MAX_ZONES),
        ("services", spec.services.len(), limits::MAX_SERVICES),
        ("user_groups", spec.user_groups.len(), limits::MAX_USER_GROUPS),
        ("failures.events", spec.failures.events.len(), limits::MAX_EVENTS),
        ("background", spec.background.len(), limits::MAX_BACKGROUND_PODS),
        ("traces", spec.traces.len(), limits::MAX_TRACES),
    ];
    for (path, count, limit) in counted {
        if count > limit {
            return Err(over(path.into(), "entries", count as u64, limit as u64));
        }
    }
    for (i, group) in spec.user_groups.iter().enumerate() {
        if group.chain.len() > limits::MAX_CHAIN {
            let (count, limit) = (group.chain.len() as u64, limits::MAX_CHAIN as u64);
            return Err(over(format!("user_groups[{i}].chain"), "services in the chain", count, limit));
        }
    }
    if let Some(cold) = &spec.cold_starts
        && cold.quantiles.len() > limits::MAX_COLD_START_QUANTILES
    {
        let (count, limit) = (cold.quantiles.len() as u64, limits::MAX_COLD_START_QUANTILES as u64);
        return Err(over("cold_starts.quantiles".into(), "quantiles", count, limit));
    }
    for (name, trace) in &spec.traces {
        let samples = trace.values.len() as u64;
        if samples > limits::MAX_TRACE_SAMPLES {
            return Err(over(format!("traces.{name}.values"), "samples", samples, limits::MAX_TRACE_SAMPLES));
        }
    }

    let mut nodes: u64 = 0;
    for (i, node) in spec.nodes.iter().enumerate() {
        if let Some(gpu) = &node.gpu
            && gpu.count > limits::MAX_GPUS_PER_NODE
        {
            let (count, limit) = (gpu.count.into(), limits::MAX_GPUS_PER_NODE.into());
            return Err(over(format!("nodes[{i}].gpu.count"), "GPUs on one node", count, limit));
        }
        if let Some(gpu) = &node.gpu {
            let per_gpu = match (&gpu.mig, &gpu.time_slicing) {
                (Some(profiles), _) => profiles.len() as u64,
                (None, Some(t)) => u64::from(t.replicas),
                (None, None) => 0,
            };
            let slots = u64::from(gpu.count) * per_gpu;
            if slots > limits::MAX_GPU_SLOTS_PER_NODE {
                let what = "shared GPU slots on one node (GPUs times slots per GPU)";
                return Err(over(format!("nodes[{i}].gpu"), what, slots, limits::MAX_GPU_SLOTS_PER_NODE));
            }
        }
        nodes += u64::from(node.count.unwrap_or(1));
        if nodes > limits::MAX_NODES {
            let path = if node.count.is_some() { format!("nodes[{i}].count") } else { format!("nodes[{i}]") };
            return Err(over(path, "nodes up to here", nodes, limits::MAX_NODES));
        }
    }
    let mut replicas: u64 = 0;
    for (i, service) in spec.services.iter().enumerate() {
        replicas += u64::from(service.replicas);
        if replicas > limits::MAX_REPLICAS {
            return Err(over(
                format!("services[{i}].replicas"),
                "replicas up to here",
                replicas,
                limits::MAX_REPLICAS,
            ));
        }
    }
    // Both factors are bounded above, so the products cannot overflow.
    let pairs = [
        (
            "services",
            "replica-node pairs (replicas x nodes)",
            replicas * nodes,
            limits::MAX_REPLICA_NODE_PAIRS,
        ),
        (
            "services",
            "service-node pairs (services x nodes)",
            spec.services.len() as u64 * nodes,
            limits::MAX_SERVICE_NODE_PAIRS,
        ),
    ];
    let cells = spec.user_groups.len() as u64 * spec.services.len() as u64 * spec.zones.len() as u64;
    if cells > limits::MAX_ROUTING_CELLS {
        let what = "routing cells (user groups x services x zones)";
        return Err(over("user_groups".into(), what, cells, limits::MAX_ROUTING_CELLS));
    }
    for (path, what, value, limit) in pairs {
        if value > limit {
            return Err(over(path.into(), what, value, limit));
        }
    }
    Ok(())
}

fn validate_rtt(rtt: &[Vec<f64>], zones: usize) -> Result<Vec<Vec<f64>>> {
    if rtt.len() != zones {
        return Err(Error::invalid(
            "rtt_ms",
            format!("must be a square {zones}x{zones} matrix (one row per zone), got {} rows", rtt.len()),
        ));
    }
    for (i, row) in rtt.iter().enumerate() {
        if row.len() != zones {
            return Err(Error::invalid(
                format!("rtt_ms[{i}]"),
                format!("matrix is not square: expected {zones} columns, got {}", row.len()),
            ));
        }
        for (j, &v) in row.iter().enumerate() {
            finite_at_least(&format!("rtt_ms[{i}][{j}]"), v, 0.0, false)?;
        }
    }
    Ok(rtt.to_vec())
}

fn expand_nodes(
    specs: &[NodeSpec],
    zones: &HashMap<&str, usize>,
    classes: &mut Vec<String>,
) -> Result<Vec<Node>> {
    if specs.is_empty() {
        return Err(Error::invalid("nodes", "at least one node is needed"));
    }
    let mut nodes = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for (i, spec) in specs.iter().enumerate() {
        let path = format!("nodes[{i}]");
        if spec.name.is_empty() {
            return Err(Error::invalid(format!("{path}.name"), "must not be empty"));
        }
        let zone = *zones
            .get(spec.zone.as_str())
            .ok_or_else(|| Error::invalid(format!("{path}.zone"), format!("unknown zone `{}`", spec.zone)))?;
        if spec.cpu_millicores == 0 {
            return Err(Error::invalid(format!("{path}.cpu_millicores"), "must be positive"));
        }
        if spec.memory_mib == 0 {
            return Err(Error::invalid(format!("{path}.memory_mib"), "must be positive"));
        }
        let gpu = match &spec.gpu {
            None => None,
            Some(g) => {
                if g.count == 0 {
                    return Err(Error::invalid(
                        format!("{path}.gpu.count"),
                        "must be positive (omit `gpu` for CPU-only nodes)",
                    ));
                }
                if g.memory_mib == 0 {
                    return Err(Error::invalid(format!("{path}.gpu.memory_mib"), "must be positive"));
                }
                let model = g.model.to_ascii_lowercase();
                if model.is_empty() || model == CPU_CLASS {
                    return Err(Error::invalid(
                        format!("{path}.gpu.model"),
                        "must name a GPU product, not be empty or `cpu`",
                    ));
                }
                let sharing = validate_sharing(&format!("{path}.gpu"), g)?;
                Some(GpuSpec { count: g.count, model, memory_mib: g.memory_mib, sharing })
            }
        };
        let class = match &gpu {
            None => 0,
            Some(g) => match classes.iter().position(|c| *c == g.model) {
                Some(c) => c,
                None => {
                    classes.push(g.model.clone());
                    classes.len() - 1
                }
            },
        };
        let allocatable = Resources::of_node(spec.cpu_millicores, spec.memory_mib, gpu.as_ref());
        let expanded: Vec<String> = match spec.count {
            None => vec![spec.name.clone()],
            Some(0) => {
                return Err(Error::invalid(format!("{path}.count"), "must be at least 1"));
            }
            Some(c) => (1..=c).map(|k| format!("{}-{k}", spec.name)).collect(),
        };
        for name in expanded {
            if let Some(first) = names.insert(name.clone(), path.clone()) {
                return Err(Error::invalid(
                    format!("{path}.name"),
                    format!("duplicate node name `{name}` (also from {first})"),
                ));
            }
            nodes.push(Node {
                name,
                zone,
                allocatable,
                gpu: gpu.clone(),
                class,
                labels: spec.labels.clone(),
            });
        }
    }
    Ok(nodes)
}

/// A GPU's sharing from its parts, checked as a scenario file's `gpu.mig` and
/// `gpu.time_slicing` are (with berth's overhead for time-slicing): for a description read
/// from elsewhere, such as a live node's labels. Errors name `path`.
pub fn gpu_sharing(
    path: &str,
    memory_mib: u64,
    mig: Option<Vec<String>>,
    time_sliced_replicas: Option<u32>,
) -> Result<GpuSharing> {
    let per_gpu = mig.as_ref().map_or(0, Vec::len) + time_sliced_replicas.map_or(0, |r| r as usize);
    if per_gpu as u64 > limits::MAX_GPU_SLOTS_PER_NODE {
        return Err(Error::invalid(
            path,
            format!("{per_gpu} slots per GPU; a node has at most {}", limits::MAX_GPU_SLOTS_PER_NODE),
        ));
    }
    let raw = GpuSpecRaw {
        count: 1,
        model: String::new(),
        memory_mib,
        mig,
        time_slicing: time_sliced_replicas.map(|replicas| TimeSlicingSpec { replicas, overhead: None }),
    };
    validate_sharing(path, &raw)
}

/// How a node's GPUs are offered: whole unless `mig` or `time_slicing` is set (not both).
/// The slots' count was bounded by `check_sizes`.
fn validate_sharing(path: &str, g: &GpuSpecRaw) -> Result<GpuSharing> {
    Ok(match (&g.mig, &g.time_slicing) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                format!("{path}.time_slicing"),
                "a GPU is either MIG-partitioned or time-sliced, not both",
            ));
        }
        (None, None) => return Ok(GpuSharing::Whole),
        (Some(names), None) => {
            if !(MIG_GPU_MEMORY_MIB.0..=MIG_GPU_MEMORY_MIB.1).contains(&g.memory_mib) {
                return Err(Error::invalid(
                    format!("{path}.mig"),
                    format!(
                        "the MIG profiles berth knows are those of 80 GB A100 and H100 GPUs \
                         ({}-{} MiB); this GPU has {} MiB",
                        MIG_GPU_MEMORY_MIB.0, MIG_GPU_MEMORY_MIB.1, g.memory_mib
                    ),
                ));
            }
            if names.is_empty() || names.len() > usize::from(mig::COMPUTE_SLICES) {
                return Err(Error::invalid(
                    format!("{path}.mig"),
                    format!("must list 1 to {} instance profiles, one GPU's layout", mig::COMPUTE_SLICES),
                ));
            }
            let profiles = names
                .iter()
                .enumerate()
                .map(|(i, name)| mig_profile(format!("{path}.mig[{i}]"), name))
                .collect::<Result<Vec<_>>>()?;
            GpuSharing::Mig(MigLayout::arrange(&format!("{path}.mig"), &profiles)?)
        }
        (None, Some(t)) => {
            if t.replicas < 2 {
                return Err(Error::invalid(
                    format!("{path}.time_slicing.replicas"),
                    "must be at least 2 (one share is the whole GPU)",
                ));
            }
            let overhead = match t.overhead {
                None => TIME_SLICING_OVERHEAD,
                Some(o) if o.is_finite() && (0.0..1.0).contains(&o) => o,
                Some(o) => {
                    return Err(Error::invalid(
                        format!("{path}.time_slicing.overhead"),
                        format!("must be a fraction in [0, 1), got {o}"),
                    ));
                }
            };
            GpuSharing::TimeSliced { replicas: t.replicas, overhead }
        }
    })
}

/// The MIG profile `name` at `path`, or an error listing the known ones.
fn mig_profile(path: String, name: &str) -> Result<MigProfile> {
    MigProfile::parse(name).ok_or_else(|| {
        let known: Vec<&str> = MigProfile::ALL.iter().map(|p| p.name()).collect();
        Error::invalid(path, format!("unknown MIG profile `{name}` (known: {})", known.join(", ")))
    })
}

/// What a replica accepts besides a whole GPU: a slot takes one GPU, and a time-sliced share
/// must say how much GPU memory it needs, since tenants' memory must fit together.
fn validate_accepts(path: &str, spec: &RequestsSpec) -> Result<Accepts> {
    let Some(a) = &spec.accepts else { return Ok(Accepts::default()) };
    let mig = a.mig.as_ref().map(|name| mig_profile(format!("{path}.accepts.mig"), name)).transpose()?;
    let accepts = Accepts { mig, time_sliced: a.time_sliced };
    if accepts.any() && spec.gpus != 1 {
        return Err(Error::invalid(
            format!("{path}.accepts"),
            format!("a MIG instance or time-sliced share is one GPU's slot; requests.gpus is {}", spec.gpus),
        ));
    }
    if accepts.time_sliced && spec.gpu_memory_mib == 0 {
        return Err(Error::invalid(
            format!("{path}.gpu_memory_mib"),
            "must be set when accepts.time_sliced is: tenants of a time-sliced GPU share its memory",
        ));
    }
    Ok(accepts)
}

fn validate_service(i: usize, spec: &ServiceSpec, classes: &[String]) -> Result<Service> {
    let path = format!("services[{i}]");
    if spec.replicas == 0 {
        return Err(Error::invalid(format!("{path}.replicas"), "must be at least 1"));
    }
    let requests = Resources {
        cpu_millicores: spec.requests.cpu_millicores,
        memory_mib: spec.requests.memory_mib,
        gpus: spec.requests.gpus,
        gpu_memory_mib: spec.requests.gpu_memory_mib,
        accepts: validate_accepts(&format!("{path}.requests"), &spec.requests)?,
    };
    if requests.gpus == 0 && requests.gpu_memory_mib > 0 {
        return Err(Error::invalid(format!("{path}.requests.gpu_memory_mib"), "is set but `gpus` is 0"));
    }
    if spec.service_time_ms.is_empty() {
        return Err(Error::invalid(
            format!("{path}.service_time_ms"),
            "must give the service time on at least one hardware class",
        ));
    }
    let mut times = vec![None; classes.len()];
    for (class, &t) in &spec.service_time_ms {
        let field = format!("{path}.service_time_ms.{class}");
        finite_at_least(&field, t, 0.0, true)?;
        let key = class.to_ascii_lowercase();
        let uses_gpu = requests.gpus > 0;
        if uses_gpu && key == CPU_CLASS {
            return Err(Error::invalid(
                field,
                "a service that requests GPUs runs on its GPU model, not on `cpu`",
            ));
        }
        if !uses_gpu && key != CPU_CLASS {
            return Err(Error::invalid(
                field,
                "a service that requests no GPU runs on `cpu` only (set requests.gpus to use GPUs)",
            ));
        }
        // A GPU model no node has is allowed (the same service spec serves many clusters).
        if let Some(c) = classes.iter().position(|c| *c == key) {
            times[c] = Some(t);
        }
    }
    let cold_start_s = finite_at_least(&format!("{path}.cold_start_s"), spec.cold_start_s, 0.0, false)?;
    Ok(Service {
        name: spec.name.clone(),
        replicas: spec.replicas,
        requests,
        service_time_ms: times,
        cold_start_s,
    })
}

fn validate_group(
    i: usize,
    spec: &UserGroupSpec,
    zones: &HashMap<&str, usize>,
    services: &HashMap<&str, usize>,
    traces: &Traces,
) -> Result<UserGroup> {
    let path = format!("user_groups[{i}]");
    let zone = *zones
        .get(spec.zone.as_str())
        .ok_or_else(|| Error::invalid(format!("{path}.zone"), format!("unknown zone `{}`", spec.zone)))?;
    if spec.chain.is_empty() {
        return Err(Error::invalid(format!("{path}.chain"), "must call at least one service"));
    }
    let chain = spec
        .chain
        .iter()
        .enumerate()
        .map(|(k, name)| {
            services.get(name.as_str()).copied().ok_or_else(|| {
                Error::invalid(format!("{path}.chain[{k}]"), format!("unknown service `{name}`"))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let rate = validate_rate(&format!("{path}.rate"), &spec.rate, traces)?;
    Ok(UserGroup { name: spec.name.clone(), zone, rate, chain })
}

fn validate_failures(spec: &ScenarioSpec, nodes: &HashMap<&str, usize>, tick_s: f64) -> Result<FailureModel> {
    let f = &spec.failures;
    let mtbf_s = match f.mtbf_hours {
        None => None,
        Some(h) => Some(finite_at_least("failures.mtbf_hours", h, 0.0, true)? * 3600.0),
    };
    let mttr_s = match f.mttr_minutes {
        None if mtbf_s.is_some() => {
            return Err(Error::invalid("failures.mttr_minutes", "is required with mtbf_hours"));
        }
        None => 0.0,
        Some(m) => finite_at_least("failures.mttr_minutes", m, 0.0, true)? * 60.0,
    };
    let horizon = tick_s * spec.episode_ticks as f64;
    let mut events = Vec::with_capacity(f.events.len());
    for (i, e) in f.events.iter().enumerate() {
        let path = format!("failures.events[{i}]");
        let at_s = finite_at_least(&format!("{path}.at_s"), e.at_s, 0.0, false)?;
        if at_s > horizon {
            return Err(Error::invalid(
                format!("{path}.at_s"),
                format!("{at_s} s is after the end of the episode ({horizon} s)"),
            ));
        }
        let node = *nodes
            .get(e.node.as_str())
            .ok_or_else(|| Error::invalid(format!("{path}.node"), format!("unknown node `{}`", e.node)))?;
        events.push(NodeEvent { at_s, node, kind: e.kind });
    }
    events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    Ok(FailureModel { mtbf_s, mttr_s, events, evacuate: f.evacuate.unwrap_or(true) })
}
