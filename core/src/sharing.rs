//! GPU sharing (issue 30): how a node offers its GPUs (whole, as MIG instances, or as
//! time-sliced shares), what a replica accepts besides a whole GPU, which slot it takes on a
//! node, and how much slower it serves there than on a whole GPU of the same kind.
//!
//! A shared node's GPUs are cut into *slots*, numbered GPU by GPU: the instances of its MIG
//! layout (the same on every GPU), or `replicas` time-sliced shares per GPU. A replica takes
//! the smallest free slot it accepts, as the GPU operator's device plugin hands out the
//! resource a pod asks for; the only whole GPUs on such a node are the ones a layout leaves
//! as one `7g.80gb` instance.
//!
//! The cost model, per request of a replica in a slot:
//! - **MIG** isolates compute and memory, so an instance serves at its profile's share of the
//!   GPU (its compute slices of seven) whatever its neighbours run: a `1g.10gb` replica takes
//!   7x as long as on the whole GPU. Small models often do better than their share on small
//!   instances; taking the share is the conservative, documented assumption.
//! - **Time-slicing** isolates nothing: the GPU runs its tenants' contexts round-robin, so
//!   with `k` busy tenants each is served at `1/k` of the GPU, less the time lost switching
//!   contexts (`overhead`, by default [`TIME_SLICING_OVERHEAD`]). A tenant alone on its GPU
//!   runs at full speed. Every tenant placed on the GPU counts as busy: inference servers
//!   hold their context and, under the traffic berth places for, keep it busy. Their memory
//!   must fit on the GPU together.

use crate::mig::{MigLayout, MigProfile};
use crate::resources::Resources;
use crate::scenario::GpuSpec;

/// The share of a time-sliced GPU's throughput lost to switching between tenants: NVIDIA's
/// benchmark of a voice pipeline (ASR and TTS sharing A100s under Kubernetes) served about
/// 0.76 requests/s per GPU time-sliced against 1.00 with MIG ("Maximize AI Infrastructure
/// Throughput by Consolidating Underutilized GPU Workloads", NVIDIA Technical Blog,
/// 2026-03-25, <https://developer.nvidia.com/blog/maximize-ai-infrastructure-throughput-by-consolidating-underutilized-gpu-workloads>),
/// so 1 - 0.76.
pub const TIME_SLICING_OVERHEAD: f64 = 0.24;

/// How a node offers its GPUs.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum GpuSharing {
    /// Whole GPUs only (`nvidia.com/gpu`).
    #[default]
    Whole,
    /// Every GPU partitioned alike into MIG instances (the mixed strategy's
    /// `nvidia.com/mig-<profile>`).
    Mig(MigLayout),
    /// Every GPU offered as `replicas` time-sliced shares (the `nvidia.com/gpu.replicas`
    /// label), with `overhead` of its throughput lost switching between busy tenants.
    TimeSliced {
        /// Shares per GPU.
        replicas: u32,
        /// Fraction of throughput lost when two or more tenants share a GPU.
        overhead: f64,
    },
}

impl GpuSharing {
    /// Slots on one GPU (0 for whole GPUs).
    pub fn slots_per_gpu(&self) -> usize {
        match self {
            Self::Whole => 0,
            Self::Mig(layout) => layout.instances().len(),
            Self::TimeSliced { replicas, .. } => *replicas as usize,
        }
    }

    /// Whether GPUs are shared at all.
    pub fn is_shared(&self) -> bool {
        !matches!(self, Self::Whole)
    }
}

/// What a replica accepts besides a whole GPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepts {
    /// A MIG instance of this profile or a larger one (no fewer compute and memory slices).
    pub mig: Option<MigProfile>,
    /// A time-sliced share of a GPU.
    pub time_sliced: bool,
}

impl Accepts {
    /// Whether it accepts an instance of `profile`.
    pub fn takes_instance(&self, profile: MigProfile) -> bool {
        self.mig.is_some_and(|least| {
            profile.compute_slices() >= least.compute_slices()
                && profile.memory_slices() >= least.memory_slices()
        })
    }

    /// Whether it accepts any slot at all.
    pub fn any(&self) -> bool {
        self.mig.is_some() || self.time_sliced
    }
}

/// The GPU a slot belongs to.
pub fn gpu_of(sharing: &GpuSharing, slot: usize) -> usize {
    slot / sharing.slots_per_gpu().max(1)
}

/// The slot `request` would take on a shared node's GPUs, given the GPU memory each slot's
/// tenant holds (`taken[i]`, 0 or past the end where free): the smallest MIG instance it
/// accepts (fewest compute, then memory slices, then the lowest slot), or a share on the GPU
/// with the fewest tenants whose memory leaves room for it. `None` for whole GPUs, a request
/// of other than one GPU, or no slot free.
pub fn free_slot(gpu: &GpuSpec, taken: &[u64], request: &Resources) -> Option<usize> {
    if request.gpus != 1 {
        return None;
    }
    match &gpu.sharing {
        GpuSharing::Whole => None,
        GpuSharing::Mig(layout) => {
            let instances = layout.instances();
            free_instances(gpu, taken, request).min_by_key(|&i| {
                let p = instances[i % instances.len()].profile;
                (p.compute_slices(), p.memory_slices(), i)
            })
        }
        GpuSharing::TimeSliced { .. } => {
            if !request.accepts.time_sliced {
                return None;
            }
            (0..gpu.count as usize)
                .filter_map(|g| {
                    let shares = shares_of(&gpu.sharing, taken, g);
                    let room = shares.memory_mib + request.gpu_memory_mib <= gpu.memory_mib;
                    room.then_some((shares.tenants, shares.first_free?))
                })
                .min()
                .map(|(_, slot)| slot)
        }
    }
}

/// One time-sliced GPU as its slots' memory shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shares {
    /// Tenants holding a share.
    pub tenants: usize,
    /// Their GPU memory together, MiB.
    pub memory_mib: u64,
    /// Its first free share, as a slot; `None` when all are held.
    pub first_free: Option<usize>,
}

/// GPU `g`'s shares, from the memory each slot's tenant holds (`taken`, 0 or past the end
/// where free).
pub fn shares_of(sharing: &GpuSharing, taken: &[u64], g: usize) -> Shares {
    let k = sharing.slots_per_gpu();
    let mut shares = Shares { tenants: 0, memory_mib: 0, first_free: None };
    // One pass: masks and background pods ask this of every GPU of every node they try.
    for slot in g * k..(g + 1) * k {
        match taken.get(slot).copied().unwrap_or(0) {
            0 => _ = shares.first_free.get_or_insert(slot),
            held => {
                shares.tenants += 1;
                shares.memory_mib += held;
            }
        }
    }
    shares
}

/// The free MIG instances of a node's GPUs that `request` accepts (its profile or larger,
/// memory enough), as slots; none unless the GPUs are MIG-partitioned.
pub fn free_instances<'a>(
    gpu: &'a GpuSpec,
    taken: &'a [u64],
    request: &'a Resources,
) -> impl Iterator<Item = usize> + 'a {
    let instances = match &gpu.sharing {
        GpuSharing::Mig(layout) if request.gpus == 1 => layout.instances(),
        _ => &[],
    };
    (0..gpu.count as usize * instances.len()).filter(move |&i| {
        let p = instances[i % instances.len()].profile;
        taken.get(i).is_none_or(|&m| m == 0)
            && request.accepts.takes_instance(p)
            && p.memory_mib(gpu.memory_mib) >= request.gpu_memory_mib
    })
}

/// The MIG profile of `slot` on a node with `gpu` (`None` unless its GPUs are partitioned).
pub fn mig_profile_of(gpu: &GpuSpec, slot: u8) -> Option<MigProfile> {
    let GpuSharing::Mig(layout) = &gpu.sharing else { return None };
    let instances = layout.instances();
    Some(instances[usize::from(slot) % instances.len()].profile)
}

/// The first free instance of `profile` that `request` accepts on a node's GPUs: where a
/// replica the cluster shows holding that profile is seated. `None` if there is none.
pub fn free_instance_of(
    gpu: &GpuSpec,
    taken: &[u64],
    request: &Resources,
    profile: MigProfile,
) -> Option<usize> {
    let GpuSharing::Mig(layout) = &gpu.sharing else { return None };
    let instances = layout.instances();
    free_instances(gpu, taken, request).find(|&i| instances[i % instances.len()].profile == profile)
}

/// Tenants on the GPU of `slot` (time-slicing), from the slots' memory.
pub fn tenants_on_gpu(sharing: &GpuSharing, taken: &[u64], slot: usize) -> usize {
    shares_of(sharing, taken, gpu_of(sharing, slot)).tenants
}

/// How many times longer a tenant of a time-sliced GPU that `k` tenants share takes than the
/// GPU alone: `k / (1 - overhead)`, or 1 when it is alone.
pub fn time_sliced_slowdown(overhead: f64, k: usize) -> f64 {
    if k <= 1 { 1.0 } else { k as f64 / (1.0 - overhead) }
}

/// How many times longer a request takes in `slot` than on a whole GPU of the same kind:
/// `7 / compute slices` on a MIG instance; on a time-sliced GPU with `k` tenants,
/// `k / (1 - overhead)` (1 when alone).
pub fn slowdown(sharing: &GpuSharing, taken: &[u64], slot: usize) -> f64 {
    match sharing {
        GpuSharing::Whole => 1.0,
        GpuSharing::Mig(layout) => {
            let instances = layout.instances();
            1.0 / instances[slot % instances.len()].profile.compute_share()
        }
        GpuSharing::TimeSliced { overhead, .. } => {
            time_sliced_slowdown(*overhead, tenants_on_gpu(sharing, taken, slot))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mig::MigProfile::*;

    fn mig_node(count: u32, profiles: &[MigProfile]) -> GpuSpec {
        let layout = MigLayout::arrange("gpu.mig", profiles).unwrap();
        GpuSpec { count, model: "h100".into(), memory_mib: 81_920, sharing: GpuSharing::Mig(layout) }
    }

    fn sliced_node(count: u32, replicas: u32) -> GpuSpec {
        let sharing = GpuSharing::TimeSliced { replicas, overhead: TIME_SLICING_OVERHEAD };
        GpuSpec { count, model: "l4".into(), memory_mib: 24_576, sharing }
    }

    fn request(gpu_memory_mib: u64, accepts: Accepts) -> Resources {
        Resources { cpu_millicores: 1000, memory_mib: 1024, gpus: 1, gpu_memory_mib, accepts }
    }

    #[test]
    fn a_replica_takes_the_smallest_instance_it_accepts() {
        // Layout as arranged: 3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb.
        let gpu = mig_node(1, &[G3Gb40, G2Gb20, G1Gb10, G1Gb10]);
        let profiles: Vec<_> = gpu_layout(&gpu).iter().map(|i| i.profile).collect();
        let small = request(8_192, Accepts { mig: Some(G1Gb10), time_sliced: false });
        let first = free_slot(&gpu, &[], &small).unwrap();
        assert_eq!(profiles[first], G1Gb10);
        let mut taken = vec![0; 4];
        taken[first] = 8_192;
        let second = free_slot(&gpu, &taken, &small).unwrap();
        assert_eq!(profiles[second], G1Gb10);
        assert_ne!(first, second);
        taken[second] = 8_192;
        assert_eq!(profiles[free_slot(&gpu, &taken, &small).unwrap()], G2Gb20, "then the next larger");
        // 12 GiB does not fit a 1g.10gb instance; a 2g.20gb minimum skips the 1g ones.
        let big = request(12_288, Accepts { mig: Some(G1Gb10), time_sliced: false });
        assert_eq!(profiles[free_slot(&gpu, &[], &big).unwrap()], G2Gb20);
        let two = request(8_192, Accepts { mig: Some(G2Gb20), time_sliced: false });
        assert_eq!(profiles[free_slot(&gpu, &[], &two).unwrap()], G2Gb20);
        // No MIG accepted, or two GPUs asked: no slot.
        assert_eq!(free_slot(&gpu, &[], &request(8_192, Accepts::default())), None);
        assert_eq!(free_slot(&gpu, &[], &Resources { gpus: 2, ..small }), None);
    }

    fn gpu_layout(gpu: &GpuSpec) -> &[crate::mig::MigInstance] {
        match &gpu.sharing {
            GpuSharing::Mig(layout) => layout.instances(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn an_instance_serves_at_its_compute_share_whatever_its_neighbours_do() {
        let gpu = mig_node(1, &[G3Gb40, G2Gb20, G1Gb10, G1Gb10]);
        let expected = [7.0 / 3.0, 7.0 / 2.0, 7.0, 7.0];
        for (slot, want) in expected.into_iter().enumerate() {
            for taken in [vec![], vec![1; 4]] {
                assert!((slowdown(&gpu.sharing, &taken, slot) - want).abs() < 1e-12);
            }
        }
        let whole = mig_node(1, &[G7Gb80]);
        assert_eq!(slowdown(&whole.sharing, &[], 0), 1.0, "7g.80gb is the whole GPU");
    }

    #[test]
    fn time_sliced_tenants_slow_each_other_and_must_fit_together() {
        let gpu = sliced_node(2, 4);
        let share = request(8_192, Accepts { mig: None, time_sliced: true });
        // Spread over the GPUs first: slot 0 (GPU 0), then slot 4 (GPU 1), then slot 1.
        let mut taken = vec![0u64; 8];
        for want in [0, 4, 1] {
            let slot = free_slot(&gpu, &taken, &share).unwrap();
            assert_eq!(slot, want);
            taken[slot] = 8_192;
        }
        // GPU 0 has two tenants: each at half the GPU, less 24%: 2 / 0.76 = 2.63x as long.
        let two = 2.0 / (1.0 - TIME_SLICING_OVERHEAD);
        assert!((slowdown(&gpu.sharing, &taken, 0) - two).abs() < 1e-12);
        assert!((slowdown(&gpu.sharing, &taken, 1) - two).abs() < 1e-12);
        assert_eq!(slowdown(&gpu.sharing, &taken, 4), 1.0, "alone on GPU 1");
        // 3 x 8 GiB fit 24 GiB; a fourth does not, though a share is free.
        taken[5] = 8_192;
        taken[2] = 8_192;
        assert_eq!(free_slot(&gpu, &taken, &share), Some(6), "GPU 0 is full by memory");
        taken[6] = 8_192;
        assert_eq!(free_slot(&gpu, &taken, &share), None);
        assert!((slowdown(&gpu.sharing, &taken, 0) - 3.0 / 0.76).abs() < 1e-12);
        // A replica that does not accept time-slicing gets no share.
        assert_eq!(free_slot(&gpu, &[], &request(8_192, Accepts::default())), None);
    }
}
