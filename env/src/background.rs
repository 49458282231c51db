//! The background pods of a shared cluster as an episode plays: each is placed when it
//! starts, on a node where it fits beside the replicas and the other pods then running, and
//! gives its room back when it ends. A pod that fits nowhere stays pending, as it would
//! in Kubernetes, and never holds anything.
//!
//! Nodes are chosen by best fit (the node with the least room left after the pod), the
//! bin-packing a shared GPU cluster's scheduler uses to keep whole GPUs free; CPU-only pods
//! prefer nodes without GPUs. A pod's GPU share goes to the fullest partly used GPU it fits
//! on, else to a free GPU, which from then on is not free for a whole-GPU replica.

use berth_core::{BackgroundPod, GpuClaim, NodeUsage, Resources, Scenario, WHOLE_GPU_MILLI};

/// Where a running pod landed.
#[derive(Debug, Clone, Copy)]
struct Landing {
    node: usize,
    /// Index into the node's shared GPUs, for a GPU share.
    shared_gpu: Option<usize>,
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
        let (gpus, shared_gpu) = match pod.gpu {
            GpuClaim::None => (0, None),
            GpuClaim::Whole(k) => (k, None),
            GpuClaim::Share(milli) => {
                let shares = &mut self.shares[node];
                match fullest_fitting(shares, milli) {
                    Some(g) => {
                        shares[g] += milli;
                        (0, Some(g))
                    }
                    None => {
                        let g = shares.iter().position(|&m| m == 0).unwrap_or_else(|| {
                            shares.push(0);
                            shares.len() - 1
                        });
                        shares[g] = milli;
                        (1, Some(g))
                    }
                }
            }
        };
        usage[node].add(&held(pod, gpus));
        self.landed[p] = Some(Landing { node, shared_gpu });
        self.running += 1;
        touched.push(node);
    }

    fn end(&mut self, scenario: &Scenario, p: usize, usage: &mut [NodeUsage], touched: &mut Vec<usize>) {
        self.next_end += 1;
        let Some(Landing { node, shared_gpu }) = self.landed[p].take() else {
            return;
        };
        let pod = &scenario.background[p];
        let freed_gpus = match (pod.gpu, shared_gpu) {
            (GpuClaim::Whole(k), _) => k,
            (GpuClaim::Share(milli), Some(g)) => {
                let share = &mut self.shares[node][g];
                *share -= milli;
                u32::from(*share == 0)
            }
            _ => 0,
        };
        usage[node].remove(&held(pod, freed_gpus));
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
            let free_gpus = node.gpu.as_ref().map_or(0, |g| g.count - u.gpus);
            let gpus_left = match pod.gpu {
                GpuClaim::None => free_gpus,
                GpuClaim::Whole(k) if k <= free_gpus => free_gpus - k,
                GpuClaim::Whole(_) => continue,
                GpuClaim::Share(milli) if fullest_fitting(&self.shares[n], milli).is_some() => free_gpus,
                GpuClaim::Share(_) if free_gpus > 0 => free_gpus - 1,
                GpuClaim::Share(_) => continue,
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

/// The partly used GPU with the least room that still takes `milli`.
fn fullest_fitting(shares: &[u32], milli: u32) -> Option<usize> {
    shares
        .iter()
        .enumerate()
        .filter(|&(_, &used)| used > 0 && used + milli <= WHOLE_GPU_MILLI)
        .max_by_key(|&(g, &used)| (used, std::cmp::Reverse(g)))
        .map(|(g, _)| g)
}
