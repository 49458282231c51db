//! The background pods of a shared cluster as an episode plays: each is placed when it
//! starts, on a node where it fits beside the replicas and the other pods then running, and
//! gives its room back when it ends. A pod that fits nowhere stays pending, as it would
//! in Kubernetes, and never holds anything.
//!
//! Nodes are chosen by best fit (the node with the least room left after the pod), the
//! bin-packing a shared GPU cluster's scheduler uses to keep whole GPUs free; CPU-only pods
//! prefer nodes without GPUs. A pod's GPU share goes to the fullest partly used GPU it fits
//! on, else to a free GPU:
//! - on a node of whole GPUs, that GPU is from then on not free for a whole-GPU replica;
//! - on a time-sliced node, the share is a tenant of the GPU like a replica in a share (issue
//!   30): it takes one of the GPU's shares and its part of the GPU's memory (`gpu_milli`
//!   thousandths), and counts as a busy tenant, so replicas beside it serve slower;
//! - MIG-partitioned nodes take no shares: an instance is not a fraction of a GPU a pod can
//!   ask for by thousandths.
//!
//! A pod asking for whole GPUs on a shared node takes GPUs none of whose slots is held, and
//! holds all their slots while it runs.

use berth_core::sharing::{GpuSharing, shares_of};
use berth_core::{BackgroundPod, GpuClaim, GpuSpec, NodeUsage, Resources, Scenario, WHOLE_GPU_MILLI};

/// Where a running pod landed.
#[derive(Debug, Clone, Copy)]
struct Landing {
    node: usize,
    gpu: Held,
}

/// What a running pod holds of its node's GPUs.
#[derive(Debug, Clone, Copy)]
enum Held {
    /// No GPU, or whole GPUs of a node of whole GPUs (counted in its usage).
    Counted(u32),
    /// A share of `milli` thousandths of GPU `gpu` of a node of whole GPUs (an index into its
    /// shared GPUs).
    ShareOf { gpu: usize, milli: u32 },
    /// This time-sliced share, as a slot of the node's shared GPUs.
    Slot(usize),
    /// Every slot of the shared GPUs whose bits are set.
    AllSlotsOf(u64),
}

/// The background pods' state in one episode.
#[derive(Debug, Clone, Default)]
pub struct Background {
    /// Pod indices by start time.
    starts: Vec<usize>,
    /// Pod indices by end time.
    ends: Vec<usize>,
    next_start: usize,
    next_end: usize,
    landed: Vec<Option<Landing>>,
    /// Per node, the thousandths taken on each GPU holding shares; a GPU whose shares all
    /// end is dropped (its entry is set to 0 and reused).
    shares: Vec<Vec<u32>>,
    running: u32,
    pending: u32,
}

impl Background {
    /// The background of `scenario`, before its first episode.
    pub fn new(scenario: &Scenario) -> Self {
        let pods = &scenario.background;
        let mut starts: Vec<usize> = (0..pods.len()).collect();
        starts.sort_by(|&a, &b| pods[a].from_s.total_cmp(&pods[b].from_s));
        let mut ends = starts.clone();
        ends.sort_by(|&a, &b| pods[a].to_s.total_cmp(&pods[b].to_s));
        Self {
            starts,
            ends,
            landed: vec![None; pods.len()],
            shares: vec![Vec::new(); scenario.nodes.len()],
            ..Self::default()
        }
    }

    /// Forgets every placed pod; `usage` must be rebuilt by the caller.
    pub fn reset(&mut self) {
        self.next_start = 0;
        self.next_end = 0;
        self.landed.fill(None);
        self.shares.iter_mut().for_each(Vec::clear);
        self.running = 0;
        self.pending = 0;
    }

    /// Pods holding capacity now.
    pub fn running(&self) -> u32 {
        self.running
    }

    /// Pods that started but found no node.
    pub fn pending(&self) -> u32 {
        self.pending
    }

    /// Plays every start and end up to `now_s` (an end before a start at the same time),
    /// changing `usage`; pushes each node whose usage changed onto `touched`.
    pub fn advance(
        &mut self,
        scenario: &Scenario,
        now_s: f64,
        usage: &mut [NodeUsage],
        node_ready: &[bool],
        touched: &mut Vec<usize>,
    ) {
        let pods = &scenario.background;
        loop {
            let end = self.ends.get(self.next_end).copied().filter(|&p| pods[p].to_s <= now_s);
            let start = self.starts.get(self.next_start).copied().filter(|&p| pods[p].from_s <= now_s);
            match (start, end) {
                (Some(s), Some(e)) if pods[s].from_s < pods[e].to_s => {
                    self.start(scenario, s, usage, node_ready, touched)
                }
                (_, Some(e)) => self.end(scenario, e, usage, touched),
                (Some(s), None) => self.start(scenario, s, usage, node_ready, touched),
                (None, None) => break,
            }
        }
    }

    fn start(
        &mut self,
        scenario: &Scenario,
        p: usize,
        usage: &mut [NodeUsage],
        node_ready: &[bool],
        touched: &mut Vec<usize>,
    ) {
        self.next_start += 1;
        let pod = &scenario.background[p];
        let Some(node) = self.best_node(scenario, pod, usage, node_ready) else {
            self.pending += 1;
            return;
        };
        let shared = scenario.nodes[node].gpu.as_ref().filter(|g| g.sharing.is_shared());
        let u = &mut usage[node];
        let gpu = match (pod.gpu, shared) {
            (GpuClaim::None, _) => Held::Counted(0),
            (GpuClaim::Whole(k), None) => Held::Counted(k),
            (GpuClaim::Whole(k), Some(g)) => Held::AllSlotsOf(hold_whole(u, g, k)),
            (GpuClaim::Share(milli), Some(g)) => {
                let slot = sliced_share(g, &u.slots, milli).expect("best_node found a share").slot;
                u.take_slot(g, &slot_memory(share_memory(g, milli)), slot);
                Held::Slot(slot)
            }
            (GpuClaim::Share(milli), None) => {
                let shares = &mut self.shares[node];
                match fullest_fitting(shares, milli) {
                    Some(g) => {
                        shares[g] += milli;
                        Held::ShareOf { gpu: g, milli }
                    }
                    None => {
                        let g = shares.iter().position(|&m| m == 0).unwrap_or_else(|| {
                            shares.push(0);
                            shares.len() - 1
                        });
                        shares[g] = milli;
                        u.gpus += 1;
                        Held::ShareOf { gpu: g, milli }
                    }
                }
            }
        };
        let counted = if let Held::Counted(k) = gpu { k } else { 0 };
        usage[node].add(&held(pod, counted));
        self.landed[p] = Some(Landing { node, gpu });
        self.running += 1;
        touched.push(node);
    }

    fn end(&mut self, scenario: &Scenario, p: usize, usage: &mut [NodeUsage], touched: &mut Vec<usize>) {
        self.next_end += 1;
        let Some(Landing { node, gpu }) = self.landed[p].take() else {
            return;
        };
        let pod = &scenario.background[p];
        let u = &mut usage[node];
        u.remove(&held(pod, 0));
        match gpu {
            Held::Counted(k) => u.gpus -= k,
            Held::ShareOf { gpu: g, milli } => {
                let share = &mut self.shares[node][g];
                *share -= milli;
                u.gpus -= u32::from(*share == 0);
            }
            Held::Slot(slot) => u.release(&Resources::default(), Some(slot as u8)),
            Held::AllSlotsOf(gpus) => {
                let per_gpu = scenario.nodes[node].gpu.as_ref().map_or(0, |g| g.sharing.slots_per_gpu());
                for slot in
                    (0..64).filter(|g| gpus >> g & 1 == 1).flat_map(|g| g * per_gpu..(g + 1) * per_gpu)
                {
                    u.release(&Resources::default(), Some(slot as u8));
                }
            }
        }
        self.running -= 1;
        touched.push(node);
    }

    /// The Ready node with the least room left after `pod`, CPU-only pods on nodes without
    /// GPUs first; ties go to the lower index, so every run places alike.
    fn best_node(
        &self,
        scenario: &Scenario,
        pod: &BackgroundPod,
        usage: &[NodeUsage],
        ready: &[bool],
    ) -> Option<usize> {
        let mut best: Option<(usize, (bool, u32, u64))> = None;
        for (n, node) in scenario.nodes.iter().enumerate() {
            let u = &usage[n];
            if !ready[n]
                || !u.fits(&node.allocatable, None, &held(pod, 0))
                || !pod.accepts(node.gpu.as_ref().map(|g| g.model.as_str()))
            {
                continue;
            }
            let shared = node.gpu.as_ref().filter(|g| g.sharing.is_shared());
            // Not for a share on a time-sliced node: its own pass over the slots counts them.
            let free_gpus = || u.free_gpus(node.gpu.as_ref());
            let gpus_left = match (pod.gpu, shared) {
                (GpuClaim::None, _) => free_gpus(),
                (GpuClaim::Whole(k), _) => match free_gpus().checked_sub(k) {
                    Some(left) => left,
                    None => continue,
                },
                (GpuClaim::Share(milli), Some(g)) => match sliced_share(g, &u.slots, milli) {
                    Some(share) => share.idle_gpus.saturating_sub(u.gpus + u32::from(!share.joins)),
                    None => continue,
                },
                (GpuClaim::Share(milli), None) => {
                    let free = free_gpus();
                    match (fullest_fitting(&self.shares[n], milli), free) {
                        (Some(_), _) => free,
                        (None, 0) => continue,
                        (None, _) => free - 1,
                    }
                }
            };
            let cpu_left = node.allocatable.cpu_millicores - u.cpu_millicores - pod.cpu_millicores;
            let has_gpus = pod.gpu == GpuClaim::None && node.gpu.is_some();
            let key = (has_gpus, gpus_left, cpu_left);
            if best.is_none_or(|(_, k)| key < k) {
                best = Some((n, key));
            }
        }
        best.map(|(n, _)| n)
    }
}

/// What `pod` holds of a node besides its GPU share: its CPU and memory, and `gpus` whole
/// GPUs taken from (or given back to) the node's free ones.
fn held(pod: &BackgroundPod, gpus: u32) -> Resources {
    Resources { cpu_millicores: pod.cpu_millicores, memory_mib: pod.memory_mib, gpus, ..Default::default() }
}

/// GPU memory a share of `milli` thousandths holds on `gpu`, MiB (at least 1).
fn share_memory(gpu: &GpuSpec, milli: u32) -> u64 {
    (gpu.memory_mib * u64::from(milli)).div_ceil(u64::from(WHOLE_GPU_MILLI)).max(1)
}

/// A request that holds `gpu_memory_mib` of a slot and nothing else (the pod's CPU and memory
/// are counted apart).
fn slot_memory(gpu_memory_mib: u64) -> Resources {
    Resources { gpus: 1, gpu_memory_mib, ..Default::default() }
}

/// Where a share lands on a time-sliced node.
#[derive(Debug, Clone, Copy)]
struct SlicedShare {
    slot: usize,
    /// Whether other tenants are on its GPU.
    joins: bool,
    /// GPUs of the node without tenants, before it lands.
    idle_gpus: u32,
}

/// The slot a share of `milli` takes on time-sliced `gpu`: a free share on the GPU whose
/// tenants hold the most memory and still leave room for it (an idle GPU last), the lowest
/// GPU on ties. `None` on other nodes or where none has room. One pass over the slots: every
/// pod start asks it of every node that fits.
fn sliced_share(gpu: &GpuSpec, slots: &[u64], milli: u32) -> Option<SlicedShare> {
    if !matches!(gpu.sharing, GpuSharing::TimeSliced { .. }) {
        return None;
    }
    let need = share_memory(gpu, milli);
    let mut best: Option<(u64, usize)> = None;
    let mut idle_gpus = 0;
    for g in 0..gpu.count as usize {
        let shares = shares_of(&gpu.sharing, slots, g);
        idle_gpus += u32::from(shares.tenants == 0);
        if let Some(slot) = shares.first_free
            && shares.memory_mib + need <= gpu.memory_mib
            && best.is_none_or(|(fullest, _)| shares.memory_mib > fullest)
        {
            best = Some((shares.memory_mib, slot));
        }
    }
    best.map(|(memory, slot)| SlicedShare { slot, joins: memory > 0, idle_gpus })
}

/// Holds every slot of `k` shared GPUs none of whose slots is held (the caller checked there
/// are that many) for a pod asking for whole GPUs; returns them as bits.
fn hold_whole(usage: &mut NodeUsage, gpu: &GpuSpec, k: u32) -> u64 {
    let per_gpu = gpu.sharing.slots_per_gpu();
    let full = slot_memory(gpu.memory_mib / per_gpu as u64);
    let idle: Vec<usize> = (0..gpu.count as usize)
        .filter(|&g| shares_of(&gpu.sharing, &usage.slots, g).tenants == 0)
        .take(k as usize)
        .collect();
    let mut held = 0u64;
    for g in idle {
        for slot in g * per_gpu..(g + 1) * per_gpu {
            usage.take_slot(gpu, &full, slot);
        }
        held |= 1 << g;
    }
    held
}

/// The partly used GPU with the least room that still takes `milli`.
fn fullest_fitting(shares: &[u32], milli: u32) -> Option<usize> {
    shares
        .iter()
        .enumerate()
        .filter(|&(_, &used)| used > 0 && used + milli <= WHOLE_GPU_MILLI)
        .max_by_key(|&(g, &used)| (used, std::cmp::Reverse(g)))
        .map(|(g, _)| g)
}
