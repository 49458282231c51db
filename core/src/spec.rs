//! The scenario document as written in YAML, before validation.
//!
//! Every struct refuses unknown fields so a typo is an error, not a silent default.
//! [`crate::Scenario::from_yaml`] turns this into the validated, indexed model.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::rate::TraceFit;
use crate::scenario::{InitialPlacement, NodeEventKind, Routing};

/// The whole document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScenarioSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub seed: u64,
    pub tick_s: f64,
    pub episode_ticks: u32,
    pub slo_ms: f64,
    pub timeout_ms: f64,
    pub routing: Routing,
    #[serde(default)]
    pub initial_placement: InitialPlacement,
    pub reward: RewardSpec,
    pub zones: Vec<String>,
    pub rtt_ms: Vec<Vec<f64>>,
    pub nodes: Vec<NodeSpec>,
    pub services: Vec<ServiceSpec>,
    pub user_groups: Vec<UserGroupSpec>,
    #[serde(default)]
    pub failures: FailureSpec,
    #[serde(default)]
    pub background: Vec<BackgroundPodSpec>,
    #[serde(default)]
    pub traces: BTreeMap<String, TraceSpec>,
    #[serde(default)]
    pub cold_starts: Option<ColdStartSpec>,
}

/// The shape of cold starts: quantiles at evenly spaced probabilities (`berth scenario trace`
/// writes them from a CSV file of model-load latencies).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ColdStartSpec {
    /// Where the quantiles came from, for the reader.
    #[serde(default, rename = "source")]
    pub _source: String,
    pub quantiles: Vec<f64>,
}

/// A request-rate time series at a regular step (`berth scenario trace` writes one from a CSV).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TraceSpec {
    /// Where the samples came from, for the reader.
    #[serde(default, rename = "source")]
    pub _source: String,
    pub step_s: f64,
    pub values: Vec<f64>,
}

/// Reward weights.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RewardSpec {
    pub violation: f64,
    #[serde(rename = "move")]
    pub move_cost: f64,
}

/// One node, or `count` alike nodes named `<name>-1`, `<name>-2`, ...
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeSpec {
    pub name: String,
    #[serde(default)]
    pub count: Option<u32>,
    pub zone: String,
    pub cpu_millicores: u64,
    pub memory_mib: u64,
    #[serde(default)]
    pub gpu: Option<GpuSpecRaw>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The GPUs of a node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GpuSpecRaw {
    pub count: u32,
    pub model: String,
    pub memory_mib: u64,
    /// MIG profiles every GPU is partitioned into (80 GB A100/H100).
    #[serde(default)]
    pub mig: Option<Vec<String>>,
    #[serde(default)]
    pub time_slicing: Option<TimeSlicingSpec>,
}

/// Time-sliced shares of each GPU.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TimeSlicingSpec {
    pub replicas: u32,
    #[serde(default)]
    pub overhead: Option<f64>,
}

/// What a replica accepts besides a whole GPU.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcceptsSpec {
    #[serde(default)]
    pub mig: Option<String>,
    #[serde(default)]
    pub time_sliced: bool,
}

/// A placed service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceSpec {
    pub name: String,
    pub replicas: u32,
    pub requests: RequestsSpec,
    pub service_time_ms: BTreeMap<String, f64>,
    pub cold_start_s: f64,
}

/// What one replica requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestsSpec {
    pub cpu_millicores: u64,
    pub memory_mib: u64,
    #[serde(default)]
    pub gpus: u32,
    #[serde(default)]
    pub gpu_memory_mib: u64,
    #[serde(default)]
    pub accepts: Option<AcceptsSpec>,
}

/// Users in one zone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserGroupSpec {
    pub name: String,
    pub zone: String,
    pub rate: RateSpec,
    pub chain: Vec<String>,
}

/// Request rate over time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateSpec {
    #[serde(default)]
    pub base_rps: Option<f64>,
    #[serde(default)]
    pub peak_rps: Option<f64>,
    #[serde(default)]
    pub trace: Option<String>,
    #[serde(default)]
    pub fit: TraceFit,
    #[serde(default)]
    pub amplitude: f64,
    #[serde(default = "default_period")]
    pub period_s: f64,
    #[serde(default)]
    pub phase_s: f64,
    #[serde(default)]
    pub noise: f64,
}

fn default_period() -> f64 {
    86_400.0
}

/// Node failures: random (mean time between failures and to repair) and scripted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailureSpec {
    #[serde(default)]
    pub mtbf_hours: Option<f64>,
    #[serde(default)]
    pub mttr_minutes: Option<f64>,
    #[serde(default)]
    pub events: Vec<NodeEventSpec>,
    /// Whether replicas on a NotReady node must be moved before anything else (default yes).
    #[serde(default)]
    pub evacuate: Option<bool>,
}

/// A scripted failure or recovery.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeEventSpec {
    pub at_s: f64,
    pub node: String,
    pub kind: NodeEventKind,
}

/// A pod of other workloads that holds capacity from `from_s` to `to_s`; the fields beside
/// the times are those of the `openb` trace's pod list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackgroundPodSpec {
    pub cpu_milli: u64,
    pub memory_mib: u64,
    #[serde(default)]
    pub num_gpu: u32,
    #[serde(default)]
    pub gpu_milli: u32,
    /// GPU models the pod accepts, `|`-separated; empty for any.
    #[serde(default)]
    pub gpu_spec: String,
    pub from_s: f64,
    pub to_s: f64,
}
