//! The placement rules people run on shared GPU clusters, for a replica that must be placed
//! (at the start of the day, off a failed node, after an eviction): kube-scheduler's own, and
//! best-fit, dot-product, GPU packing, GPU clustering and FGD (fragmentation gradient descent)
//! as Weng et al. define them ("Beware of Fragmentation", USENIX ATC 2023) and as their
//! simulator scores them (hkust-adsl/kubernetes-scheduler-simulator, commit 8f3d641,
//! `pkg/simulator/plugin/*_score.go`, `pkg/utils/frag.go`).
//!
//! The rules count whole GPUs: a GPU is free, or taken (wholly, or by any MIG instance or
//! time-sliced share on it), so the paper's partial-GPU cases reduce to whole GPUs. Every rule first filters the
//! nodes a replica fits on (Ready, hardware it runs on, requests within what is left), then
//! scores them; the highest score wins and ties are broken uniformly at random, as
//! kube-scheduler's `selectHost` does (the simulator runs each rule as the only score plugin).

use berth_core::{NodeUsage, Rng, Scenario};

use crate::scheduler::{ClusterView, Fit, best_node, place_each};

/// Milli-GPUs in a GPU: the simulator's unit of GPU capacity.
const MILLI: f64 = 1000.0;

/// Free GPUs on `node`.
fn free_gpus(view: &ClusterView<'_>, node: usize) -> u32 {
    view.usage[node].free_gpus(view.scenario.nodes[node].gpu.as_ref())
}

/// Free GPUs on `node` once a replica of `service` is there (on shared GPUs, one fewer only
/// where the slot it takes is on an idle GPU).
fn free_gpus_after(view: &ClusterView<'_>, service: usize, node: usize) -> u32 {
    let gpu = view.scenario.nodes[node].gpu.as_ref();
    let mut after = view.usage[node].clone();
    after.take(gpu, &view.scenario.services[service].requests);
    after.free_gpus(gpu)
}

/// A rule that places one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementRule {
    /// kube-scheduler's default profile with NodeResourcesFit by the given strategy
    /// ([`crate::scheduler`]); its ties go to the first node, as berth's start always has.
    KubeScheduler(Fit),
    /// The node left with the least CPU and GPU after the replica (equal weights).
    BestFit,
    /// The node whose free (CPU, GPU) vector has the smallest dot product with the request.
    DotProduct,
    /// Nodes with GPUs already taken first, then idle nodes with the fewest GPUs.
    GpuPacking,
    /// Nodes whose GPU replicas ask for as many GPUs as this one first.
    GpuClustering,
    /// The node whose GPU fragmentation, measured against the cluster's own mix of replicas,
    /// grows least.
    Fgd,
}

impl PlacementRule {
    /// The rules from the literature, by the name tables use.
    pub const GPU_RULES: [(&'static str, PlacementRule); 5] = [
        ("best-fit", PlacementRule::BestFit),
        ("dot-product", PlacementRule::DotProduct),
        ("gpu-packing", PlacementRule::GpuPacking),
        ("gpu-clustering", PlacementRule::GpuClustering),
        ("fgd", PlacementRule::Fgd),
    ];

    /// The node for one replica of `service`; `None` where it fits nowhere.
    pub fn pick(&self, view: &ClusterView<'_>, service: usize, rng: &mut Rng) -> Option<usize> {
        let score: Box<dyn Fn(usize) -> f64 + '_> = match *self {
            Self::KubeScheduler(fit) => return best_node(fit, view, service),
            Self::BestFit => Box::new(move |n| best_fit(view, service, n)),
            Self::DotProduct => Box::new(move |n| dot_product(view, service, n)),
            Self::GpuPacking => Box::new(move |n| gpu_packing(view, service, n)),
            Self::GpuClustering => Box::new(move |n| gpu_clustering(view, service, n)),
            Self::Fgd => {
                let mix = workload_mix(view.scenario);
                Box::new(move |n| fgd(view, &mix, service, n))
            }
        };
        let mut best: Vec<usize> = Vec::new();
        let mut best_score = f64::NEG_INFINITY;
        for n in (0..view.scenario.nodes.len()).filter(|&n| view.fits(service, n)) {
            let s = score(n);
            if s > best_score + 1e-12 {
                best_score = s;
                best.clear();
                best.push(n);
            } else if (s - best_score).abs() <= 1e-12 {
                best.push(n);
            }
        }
        match best.len() {
            0 => None,
            1 => Some(best[0]),
            k => Some(best[rng.below(k)]),
        }
    }

    /// Places every replica of the scenario, in order, on an empty cluster of Ready nodes;
    /// `None` where one fits nowhere after the others.
    pub fn place_all(&self, scenario: &Scenario, rng: &mut Rng) -> Option<Vec<usize>> {
        place_each(scenario, |view, s| self.pick(view, s, rng)).ok()
    }
}

/// The largest CPU and GPU count of any node: the simulator normalises by its cluster's
/// largest machine (`MaxSpecCpu`, `MaxSpecGpu`); berth by the scenario's.
fn max_spec(scenario: &Scenario) -> (f64, f64) {
    let cpu = scenario.nodes.iter().map(|n| n.allocatable.cpu_millicores).max().unwrap_or(1).max(1);
    let gpus = scenario.nodes.iter().filter_map(|n| n.gpu.as_ref()).map(|g| g.count).max().unwrap_or(0);
    (cpu as f64, f64::from(gpus.max(1)) * MILLI)
}

/// Best-fit (`best_fit_score.go`): `1 - Σ w·(free − request) / max spec` over CPU and GPU,
/// weights ½ each, so the node left with the least wins.
fn best_fit(view: &ClusterView<'_>, service: usize, n: usize) -> f64 {
    let (max_cpu, max_gpu) = max_spec(view.scenario);
    let req = &view.scenario.services[service].requests;
    let cpu_left = view.scenario.nodes[n].allocatable.cpu_millicores - view.usage[n].cpu_millicores;
    let cpu_after = (cpu_left - req.cpu_millicores) as f64;
    let gpu_after = f64::from(free_gpus_after(view, service, n)) * MILLI;
    1.0 - (0.5 * cpu_after / max_cpu + 0.5 * gpu_after / max_gpu)
}

/// Dot-product (`dot_product_score.go`, the paper's runs: GPUs merged into one dimension,
/// normalised by the largest machine): `1 − (free · request) / 2`, so the node whose free
/// resources align least with the request wins (it keeps the aligned nodes for later).
fn dot_product(view: &ClusterView<'_>, service: usize, n: usize) -> f64 {
    let (max_cpu, max_gpu) = max_spec(view.scenario);
    let req = &view.scenario.services[service].requests;
    let cpu_free = (view.scenario.nodes[n].allocatable.cpu_millicores - view.usage[n].cpu_millicores) as f64;
    let gpu_free = f64::from(free_gpus(view, n)) * MILLI;
    let dot = (cpu_free / max_cpu) * (req.cpu_millicores as f64 / max_cpu)
        + (gpu_free / max_gpu) * (f64::from(req.gpus) * MILLI / max_gpu);
    1.0 - dot / 2.0
}

/// GPU packing (`gpu_packing_score.go`), on the 0–100 scale of kube-scheduler scores: a
/// replica without GPUs scores 0 everywhere; one with GPUs prefers a node with GPUs already
/// taken (`max(50 − GPUs it takes, 33)`) to an idle node (`max(33 − free GPUs, free GPUs)`).
/// The paper's first tier, a GPU already shared, needs partial GPUs, which berth has not.
fn gpu_packing(view: &ClusterView<'_>, service: usize, n: usize) -> f64 {
    let req = &view.scenario.services[service].requests;
    if req.gpus == 0 {
        return 0.0;
    }
    let free = i64::from(free_gpus(view, n));
    let count = i64::from(view.scenario.nodes[n].gpu.as_ref().map_or(0, |g| g.count));
    let score = if free == count { (33 - free).max(free) } else { (50 - i64::from(req.gpus)).max(33) };
    score as f64
}

/// GPU clustering (`gpu_clustering_score.go`): GPU replicas go where replicas asking for the
/// same number of GPUs already are. Tiers of 25: only that kind on the node (75–100), that
/// kind among others (50–75), no GPU replica yet (25–50), only other kinds (0–25); within a
/// tier, `25 · (max GPUs − free GPUs) / max GPUs`. A replica without GPUs scores 0.
fn gpu_clustering(view: &ClusterView<'_>, service: usize, n: usize) -> f64 {
    let scenario = view.scenario;
    let gpus = scenario.services[service].requests.gpus;
    if gpus == 0 {
        return 0.0;
    }
    let (mut same, mut other) = (false, false);
    for (r, &at) in view.placement.iter().enumerate() {
        let g = scenario.services[view.replica_service[r]].requests.gpus;
        if at == n && g > 0 {
            if g == gpus { same = true } else { other = true }
        }
    }
    let tier = match (same, other) {
        (true, false) => 3.0,
        (true, true) => 2.0,
        (false, false) => 1.0,
        (false, true) => 0.0,
    };
    let (_, max_gpu) = max_spec(scenario);
    25.0 * tier + 25.0 * (max_gpu - f64::from(free_gpus(view, n)) * MILLI) / max_gpu
}

/// The target workload FGD measures fragmentation against: each service with the share of
/// the scenario's replicas it has (the paper takes the trace's mix of tasks).
fn workload_mix(scenario: &Scenario) -> Vec<(usize, f64)> {
    let total = scenario.replica_count().max(1) as f64;
    scenario.services.iter().enumerate().map(|(s, svc)| (s, f64::from(svc.replicas) / total)).collect()
}

/// A node's GPU fragmentation for the workload `mix` (`NodeGpuShareFragAmountScore`): for
/// each kind of task, the free GPUs it could not use, weighted by its share. With whole
/// GPUs a task uses a node's free GPUs only where it fits there outright (its hardware,
/// enough free GPUs, CPU and memory); otherwise, and for a task without GPUs, every free
/// GPU is a fragment to it.
pub fn fragmentation(scenario: &Scenario, mix: &[(usize, f64)], usage: &NodeUsage, n: usize) -> f64 {
    let node = &scenario.nodes[n];
    let Some(gpu) = node.gpu.as_ref() else { return 0.0 };
    let free = f64::from(usage.free_gpus(Some(gpu))) * MILLI;
    mix.iter()
        .map(|&(s, share)| {
            let req = &scenario.services[s].requests;
            let usable =
                req.gpus > 0 && scenario.can_host(s, n) && usage.fits(&node.allocatable, Some(gpu), req);
            if usable { 0.0 } else { share * free }
        })
        .sum()
}

/// FGD (`fgd_score.go`): the node where placing the replica grows fragmentation least
/// (the score is minus the growth; the simulator squashes it through a sigmoid and rounds to
/// an integer, which only adds ties).
fn fgd(view: &ClusterView<'_>, mix: &[(usize, f64)], service: usize, n: usize) -> f64 {
    let before = fragmentation(view.scenario, mix, &view.usage[n], n);
    let mut after_usage = view.usage[n].clone();
    after_usage.take(view.scenario.nodes[n].gpu.as_ref(), &view.scenario.services[service].requests);
    let after = fragmentation(view.scenario, mix, &after_usage, n);
    before - after
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::UNPLACED;
    use crate::test_cluster::{N, S, placed, scenario};

    /// Picks for one more replica of service `s` by every rule, with the cluster as `env` has it.
    fn picks(env: &crate::PlacementEnv, s: usize) -> Vec<(&'static str, Option<usize>)> {
        PlacementRule::GPU_RULES
            .iter()
            .map(|(name, rule)| (*name, rule.pick(&env.cluster_view(), s, &mut Rng::new(1))))
            .collect()
    }

    /// The paper's CPU-starved node (Weng et al. §4, "lack CPU"): a one-GPU replica that takes
    /// all of a node's CPU strands its other GPUs. Nodes `tight` (8 cores, 4 GPUs) and `roomy`
    /// (32 cores, 4 GPUs); the workload is only such replicas (1 GPU, 8 cores).
    /// - best-fit: tight is left with (0 cores, 3 GPUs): 1 − (½·0/32 + ½·3/4) = 0.625;
    ///   roomy with (24, 3): 1 − (½·24/32 + ½·3/4) = 0.25. Tight wins.
    /// - dot-product: tight (8/32, 4/4)·(8/32, 1/4) = 0.3125, score 0.84375; roomy
    ///   (32/32, 4/4)·(8/32, 1/4) = 0.5, score 0.75. Tight wins.
    /// - FGD: on tight the three free GPUs can no longer take the workload's replica (no CPU):
    ///   fragmentation 0 → 3000 milli-GPU; on roomy they can: 0 → 0. Roomy wins.
    /// - GPU packing: both idle, both score max(33 − 4, 4) = 29: a tie.
    #[test]
    fn fgd_keeps_the_node_whose_gpus_would_be_stranded_and_best_fit_does_not() {
        let sc = scenario(&[N("tight", "a", 8000, 4), N("roomy", "a", 32000, 4)], &[S("job", 2, 8000, 1)]);
        let env = placed(sc.clone(), &[1, 1]);
        // Take the two replicas off the view: an empty cluster, one replica to place.
        let usage = vec![NodeUsage::default(); 2];
        let view = ClusterView { usage: &usage, placement: &[UNPLACED, UNPLACED], ..env.cluster_view() };
        let mix = workload_mix(&sc);
        assert!(
            (best_fit(&view, 0, 0) - 0.625).abs() < 1e-12 && (best_fit(&view, 0, 1) - 0.25).abs() < 1e-12
        );
        assert!((dot_product(&view, 0, 0) - 0.84375).abs() < 1e-12);
        assert!((dot_product(&view, 0, 1) - 0.75).abs() < 1e-12);
        assert_eq!((fgd(&view, &mix, 0, 0), fgd(&view, &mix, 0, 1)), (-3000.0, 0.0));
        assert_eq!((gpu_packing(&view, 0, 0), gpu_packing(&view, 0, 1)), (29.0, 29.0));
        let pick = |rule: PlacementRule| rule.pick(&view, 0, &mut Rng::new(3));
        assert_eq!(pick(PlacementRule::BestFit), Some(0));
        assert_eq!(pick(PlacementRule::DotProduct), Some(0));
        assert_eq!(pick(PlacementRule::Fgd), Some(1));
    }

    /// GPU packing and clustering on three 4-GPU nodes: `idle`, `one` (holding a 1-GPU
    /// replica) and `two` (holding a 2-GPU replica). A new 1-GPU replica:
    /// - packing: idle scores max(33 − 4, 4) = 29; one and two must use a free GPU on a node
    ///   already in use, max(50 − 1, 33) = 49: a tie between them.
    /// - clustering: one holds only its kind, 75 + 25·(4 − 3)/4 = 81.25; idle 25 + 0 = 25;
    ///   two holds only another kind, 0 + 25·(4 − 2)/4 = 12.5. One wins.
    #[test]
    fn gpu_packing_prefers_used_nodes_and_clustering_prefers_its_own_kind() {
        let nodes = [N("idle", "a", 32000, 4), N("one", "a", 32000, 4), N("two", "a", 32000, 4)];
        let sc = scenario(&nodes, &[S("small", 2, 1000, 1), S("big", 1, 1000, 2)]);
        // Replica 0 (small) is the one being placed; 1 (small) on `one`, 2 (big) on `two`.
        let env = placed(sc, &[0, 1, 2]);
        let mut usage = env.usage().to_vec();
        usage[0] = NodeUsage::default();
        let view = ClusterView { usage: &usage, placement: &[UNPLACED, 1, 2], ..env.cluster_view() };
        let packing: Vec<f64> = (0..3).map(|n| gpu_packing(&view, 0, n)).collect();
        assert_eq!(packing, [29.0, 49.0, 49.0]);
        let clustering: Vec<f64> = (0..3).map(|n| gpu_clustering(&view, 0, n)).collect();
        assert_eq!(clustering, [25.0, 81.25, 12.5]);
        assert_eq!(PlacementRule::GpuClustering.pick(&view, 0, &mut Rng::new(1)), Some(1));
        let mut seen = [false; 3];
        for seed in 0..32 {
            seen[PlacementRule::GpuPacking.pick(&view, 0, &mut Rng::new(seed)).unwrap()] = true;
        }
        assert_eq!(seen, [false, true, true], "ties are broken at random between the two used nodes");
    }

    #[test]
    fn a_replica_that_fits_nowhere_gets_no_node_from_any_rule() {
        let sc = scenario(
            &[N("full", "a", 8000, 1), N("cpu", "a", 2000, 0)],
            &[S("job", 1, 8000, 1), S("late", 1, 1000, 0)],
        );
        let env = placed(sc, &[0, 1]);
        // `job` took the only GPU: another replica of it fits nowhere.
        for (name, pick) in picks(&env, 0) {
            assert_eq!(pick, None, "{name}");
        }
    }
}
