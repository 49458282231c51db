//! The cluster at one moment, as `/api/v1/metrics` shows it and `metrics` stores it.

use mongodb::bson::DateTime;
use serde::{Deserialize, Serialize};

/// One node at the moment of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// `kubernetes.io/hostname`.
    pub name: String,
    /// `topology.kubernetes.io/zone`.
    pub zone: String,
    /// Whether the node is Ready.
    pub ready: bool,
    /// CPU requested by the placed replicas / allocatable, millicores.
    pub cpu_requested_millicores: u64,
    /// Allocatable CPU, millicores.
    pub cpu_allocatable_millicores: u64,
    /// Memory requested / allocatable, MiB.
    pub memory_requested_mib: u64,
    /// Allocatable memory, MiB.
    pub memory_allocatable_mib: u64,
    /// GPUs taken.
    pub gpus_requested: u32,
    /// GPUs on the node.
    pub gpus: u32,
    /// GPU product, if any.
    pub gpu_model: Option<String>,
}

/// Where one replica runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaSnapshot {
    /// Its service (`berth.io/service`).
    pub service: String,
    /// Its index within the service (`berth.io/replica`).
    pub replica: u32,
    /// The node it runs on.
    pub node: String,
}

/// The traffic of one user group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficSnapshot {
    /// The group.
    pub group: String,
    /// Its zone.
    pub zone: String,
    /// Requests per second.
    pub rps: f64,
}

/// Latency of the placed services over the last tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySnapshot {
    /// Mean end-to-end latency, ms.
    pub mean_ms: f64,
    /// Request-weighted p95, ms.
    pub p95_ms: f64,
    /// Fraction of requests over the SLO.
    pub slo_miss: f64,
    /// Requests per second offered.
    pub offered_rps: f64,
}

impl From<berth_env::cost::TickMetrics> for LatencySnapshot {
    fn from(m: berth_env::cost::TickMetrics) -> Self {
        Self {
            mean_ms: m.mean_latency_ms,
            p95_ms: m.p95_latency_ms,
            slo_miss: m.slo_miss,
            offered_rps: m.offered_rps,
        }
    }
}

/// The cluster at one moment, as stored in `metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When.
    pub timestamp: DateTime,
    /// `simulator` or `live`.
    pub source: String,
    /// The scenario the simulator runs.
    pub scenario: String,
    /// Simulated tick within its day.
    pub tick: u32,
    /// Every node.
    pub nodes: Vec<NodeSnapshot>,
    /// Every replica.
    pub replicas: Vec<ReplicaSnapshot>,
    /// Every user group.
    pub traffic: Vec<TrafficSnapshot>,
    /// Latency over the last tick.
    pub latency: LatencySnapshot,
}
