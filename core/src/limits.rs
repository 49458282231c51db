//! The largest scenario berth accepts. Every figure is checked while the document is
//! validated, before anything of that size is allocated, so a scenario file or an API body
//! cannot make the process allocate without bound (a `count` of 4,294,967,295 nodes).
//!
//! The figures leave room for production clusters: the `openb` trace's 1,523 GPU nodes, and
//! the shipped `gpu-large` (1,000 nodes, 200 replicas) several times over.

/// Nodes after templates are expanded.
pub const MAX_NODES: u64 = 8_192;
/// GPUs on one node (the largest servers carry 8 or 16).
pub const MAX_GPUS_PER_NODE: u32 = 64;
/// Slots of shared GPUs on one node (MIG instances or time-sliced shares, all GPUs together).
pub const MAX_GPU_SLOTS_PER_NODE: u64 = 64;
/// Zones.
pub const MAX_ZONES: usize = 256;
/// Services.
pub const MAX_SERVICES: usize = 256;
/// Replicas of all services together.
pub const MAX_REPLICAS: u64 = 4_096;
/// User groups.
pub const MAX_USER_GROUPS: usize = 1_024;
/// Services one user group's requests call in turn.
pub const MAX_CHAIN: usize = 64;
/// Ticks of one episode (a week of one-minute ticks is 10,080).
pub const MAX_EPISODE_TICKS: u32 = 100_000;
/// Scripted node events.
pub const MAX_EVENTS: usize = 100_000;
/// Replica-node pairs, the size of the action space (`gpu-large`: 200,000; `openb`-sized
/// clusters with a few hundred replicas stay well under it).
pub const MAX_REPLICA_NODE_PAIRS: u64 = 4_000_000;
/// Service-node pairs (per-pair tables of the cost model and the observation).
pub const MAX_SERVICE_NODE_PAIRS: u64 = 1_000_000;
/// (user group, service, zone) cells of the cost model's routing table.
pub const MAX_ROUTING_CELLS: u64 = 4_000_000;
/// Background pods (the `openb` trace has 8,152).
pub const MAX_BACKGROUND_PODS: usize = 200_000;
/// Samples of one rate trace (a week of 10-second samples is 60,480).
pub const MAX_TRACE_SAMPLES: u64 = 100_000;
/// Rate traces of one scenario.
pub const MAX_TRACES: usize = 64;
/// Quantiles of a scenario's cold-start shape (every 0.1% is 1,001).
pub const MAX_COLD_START_QUANTILES: usize = 1_001;
