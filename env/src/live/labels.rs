//! The label, annotation and resource names berth reads and writes on a cluster.

/// The placed service a Deployment or pod belongs to (the scenario's service name).
pub const SERVICE: &str = "berth.io/service";
/// The replica's index within its service (`0`, `1`, ...).
pub const REPLICA: &str = "berth.io/replica";
/// The node label a move pins a replica with.
pub const HOSTNAME: &str = "kubernetes.io/hostname";
/// The node's zone.
pub const ZONE: &str = "topology.kubernetes.io/zone";
/// GPU model, as NVIDIA's GPU feature discovery labels it.
pub const GPU_PRODUCT: &str = "nvidia.com/gpu.product";
/// MiB of memory per GPU, as NVIDIA's GPU feature discovery labels it.
pub const GPU_MEMORY: &str = "nvidia.com/gpu.memory";
/// The extended resource of a GPU.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// The field manager of every change berth makes.
pub const FIELD_MANAGER: &str = "berth";
