//! What kube-scheduler's default profile would do with a replica: filter the nodes it fits
//! on, then score them with NodeResourcesFit (LeastAllocated), NodeResourcesBalancedAllocation
//! and PodTopologySpread (replicas of a service spread over nodes and zones, weight 2), and
//! take the best. Used for the starting placement and by the `spread` baseline.
//! [`Fit::MostAllocated`] is the NodeResourcesFit strategy that the descheduler's
//! HighNodeUtilization profile is meant to run with.

use berth_core::{Error, NodeUsage, Placement, Rng, Scenario};

use crate::error::Result;

/// Marks a replica that has no node yet while a placement is being built.
pub const UNPLACED: usize = usize::MAX;

/// NodeResourcesFit's scoring strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// The default: prefer the node with the most left free (spreads load).
    #[default]
    LeastAllocated,
    /// Prefer the node with the least left free (packs nodes, so others drain).
    MostAllocated,
}

/// The cluster as a scheduler sees it: what each node has left and where replicas stand.
#[derive(Debug, Clone, Copy)]
pub struct ClusterView<'a> {
    /// The scenario (nodes, services).
    pub scenario: &'a Scenario,
    /// What the replicas on each node request in total.
    pub usage: &'a [NodeUsage],
    /// Whether each node is Ready.
    pub ready: &'a [bool],
    /// Node of each replica, [`UNPLACED`] for one being placed.
    pub placement: &'a [usize],
    /// Service of each replica.
    pub replica_service: &'a [usize],
}

impl ClusterView<'_> {
    /// Whether a replica of `service` can go on `node` now: Ready, hardware it runs on,
    /// requests within what is left.
    pub fn fits(&self, service: usize, node: usize) -> bool {
        let n = &self.scenario.nodes[node];
        self.ready[node]
            && self.scenario.can_host(service, node)
            && self.usage[node].fits(
                &n.allocatable,
                n.gpu.as_ref(),
                &self.scenario.services[service].requests,
            )
    }
}

/// The node kube-scheduler, NodeResourcesFit scoring by `fit`, would pick for a replica of
/// `service` in the cluster `view` shows.
pub fn best_node(fit: Fit, view: &ClusterView<'_>, service: usize) -> Option<usize> {
    let ClusterView { scenario, usage, placement, replica_service, .. } = *view;
    let req = &scenario.services[service].requests;
    let feasible: Vec<usize> = (0..scenario.nodes.len()).filter(|&n| view.fits(service, n)).collect();
    if feasible.is_empty() {
        return None;
    }
    let mut on_node = vec![0u32; scenario.nodes.len()];
    let mut in_zone = vec![0u32; scenario.zones.len()];
    for (r, &n) in placement.iter().enumerate() {
        if n != UNPLACED && replica_service[r] == service {
            on_node[n] += 1;
            in_zone[scenario.nodes[n].zone] += 1;
        }
    }
    let skew = |n: usize| on_node[n] + in_zone[scenario.nodes[n].zone];
    let max_skew = feasible.iter().map(|&n| skew(n)).max().unwrap_or(0);
    let score = |n: usize| {
        let node = &scenario.nodes[n];
        let cpu =
            (usage[n].cpu_millicores + req.cpu_millicores) as f64 / node.allocatable.cpu_millicores as f64;
        let mem = (usage[n].memory_mib + req.memory_mib) as f64 / node.allocatable.memory_mib as f64;
        let resources_fit = match fit {
            Fit::LeastAllocated => ((1.0 - cpu) + (1.0 - mem)) / 2.0 * 100.0,
            Fit::MostAllocated => (cpu + mem) / 2.0 * 100.0,
        };
        let balanced = (1.0 - (cpu - mem).abs()) * 100.0;
        let spread =
            if max_skew == 0 { 100.0 } else { 100.0 * (max_skew - skew(n)) as f64 / max_skew as f64 };
        resources_fit + balanced + 2.0 * spread
    };
    // Highest score wins; ties go to the first node, so the result is deterministic.
    feasible
        .into_iter()
        .fold(None, |best: Option<(usize, f64)>, n| {
            let s = score(n);
            match best {
                Some((_, b)) if b >= s => best,
                _ => Some((n, s)),
            }
        })
        .map(|(n, _)| n)
}

/// Places every replica, in order, on an empty cluster of Ready nodes where `pick` says;
/// the replica that fits nowhere after the others is the error.
pub fn place_each(
    scenario: &Scenario,
    mut pick: impl FnMut(&ClusterView<'_>, usize) -> Option<usize>,
) -> std::result::Result<Vec<usize>, usize> {
    let replica_service = scenario.replica_services();
    let ready = vec![true; scenario.nodes.len()];
    let mut usage = vec![NodeUsage::default(); scenario.nodes.len()];
    let mut placement = vec![UNPLACED; replica_service.len()];
    for r in 0..replica_service.len() {
        let s = replica_service[r];
        let view = ClusterView {
            scenario,
            usage: &usage,
            ready: &ready,
            placement: &placement,
            replica_service: &replica_service,
        };
        let n = pick(&view, s).ok_or(r)?;
        usage[n].take(scenario.nodes[n].gpu.as_ref(), &scenario.services[s].requests);
        placement[r] = n;
    }
    Ok(placement)
}

/// Places every replica, in order, where kube-scheduler would.
pub fn spread_placement(scenario: &Scenario) -> Result<Placement> {
    let placement = place_each(scenario, |view, s| best_node(Fit::LeastAllocated, view, s)).map_err(|r| {
        let replica_service = scenario.replica_services();
        let s = replica_service[r];
        Error::invalid(
            format!("services[{s}].replicas"),
            format!(
                "the cluster cannot hold all replicas: replica {} of `{}` fits on no node after the others are placed",
                r - replica_service.iter().position(|&x| x == s).unwrap_or(0) + 1,
                scenario.services[s].name
            ),
        )
    })?;
    Ok(Placement::new(placement))
}

/// A random feasible placement: each replica, in random order, on a uniformly drawn node
/// it fits on. Falls back to `fallback` after a few failed attempts.
pub fn random_placement(scenario: &Scenario, rng: &mut Rng, fallback: &Placement) -> Placement {
    let replica_service = scenario.replica_services();
    'attempt: for _ in 0..16 {
        let mut usage = vec![NodeUsage::default(); scenario.nodes.len()];
        let mut placement = vec![UNPLACED; replica_service.len()];
        let mut order: Vec<usize> = (0..replica_service.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        for r in order {
            let s = replica_service[r];
            let req = &scenario.services[s].requests;
            let fits: Vec<usize> = (0..scenario.nodes.len())
                .filter(|&n| {
                    let node = &scenario.nodes[n];
                    scenario.service_time_ms(s, n).is_some()
                        && usage[n].fits(&node.allocatable, node.gpu.as_ref(), req)
                })
                .collect();
            if fits.is_empty() {
                continue 'attempt;
            }
            let n = fits[rng.below(fits.len())];
            usage[n].take(scenario.nodes[n].gpu.as_ref(), req);
            placement[r] = n;
        }
        return Placement::new(placement);
    }
    fallback.clone()
}
