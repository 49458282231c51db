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
/// The extended resource of a GPU (of a time-sliced share, where the node's GPUs are shared).
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// Physical GPUs on the node, as GPU feature discovery labels them whatever is shared.
pub const GPU_COUNT: &str = "nvidia.com/gpu.count";
/// Time-sliced shares per GPU, as the GPU operator labels a node whose GPUs are time-sliced.
pub const GPU_REPLICAS: &str = "nvidia.com/gpu.replicas";
/// How the GPUs are shared (`time-slicing`), beside [`GPU_REPLICAS`].
pub const GPU_SHARING_STRATEGY: &str = "nvidia.com/gpu.sharing-strategy";
/// The suffix the device plugin adds to a time-sliced GPU's product label.
pub const SHARED_PRODUCT_SUFFIX: &str = "-SHARED";
/// The MIG strategy of the node (`mixed`: one resource per profile).
pub const MIG_STRATEGY: &str = "nvidia.com/mig.strategy";
/// The start of a MIG instance's extended resource under the mixed strategy
/// (`nvidia.com/mig-1g.10gb`), and of its count label (`nvidia.com/mig-1g.10gb.count`).
pub const MIG_RESOURCE_PREFIX: &str = "nvidia.com/mig-";

/// Whether an extended resource is a GPU or a slot of one (a MIG instance, a share).
pub fn is_gpu_resource(name: &str) -> bool {
    name == GPU_RESOURCE || name.starts_with(MIG_RESOURCE_PREFIX)
}
/// The field manager of every change berth makes.
pub const FIELD_MANAGER: &str = "berth";
