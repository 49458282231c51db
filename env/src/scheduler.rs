//! What kube-scheduler's default profile would do with a replica: filter the nodes it fits
//! on, then score them with NodeResourcesFit (LeastAllocated), NodeResourcesBalancedAllocation
//! and PodTopologySpread (replicas of a service spread over nodes and zones, weight 2), and
//! take the best. Used for the starting placement and by the `spread` baseline.

use berth_core::{Error, NodeUsage, Placement, Rng, Scenario};

use crate::error::Result;

/// Marks a replica that has no node yet while a placement is being built.
pub const UNPLACED: usize = usize::MAX;

/// The node kube-scheduler would pick for a replica of `service`, given the current usage,
/// node readiness and where the other replicas are (`placement`, [`UNPLACED`] for none).
pub fn best_node(
    scenario: &Scenario,
    service: usize,
    usage: &[NodeUsage],
    ready: &[bool],
    placement: &[usize],
    replica_service: &[usize],
) -> Option<usize> {
    let req = &scenario.services[service].requests;
    let feasible: Vec<usize> = (0..scenario.nodes.len())
        .filter(|&n| {
            let node = &scenario.nodes[n];
            ready[n]
                && scenario.service_time_ms(service, n).is_some()
                && usage[n].fits(&node.allocatable, node.gpu.as_ref(), req)
        })
        .collect();
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
        let least_allocated = ((1.0 - cpu) + (1.0 - mem)) / 2.0 * 100.0;
        let balanced = (1.0 - (cpu - mem).abs()) * 100.0;
        let spread =
            if max_skew == 0 { 100.0 } else { 100.0 * (max_skew - skew(n)) as f64 / max_skew as f64 };
        least_allocated + balanced + 2.0 * spread
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

/// Places every replica, in order, where kube-scheduler would.
pub fn spread_placement(scenario: &Scenario) -> Result<Placement> {
    let replica_service = scenario.replica_services();
    let ready = vec![true; scenario.nodes.len()];
    let mut usage = vec![NodeUsage::default(); scenario.nodes.len()];
    let mut placement = vec![UNPLACED; replica_service.len()];
    for r in 0..replica_service.len() {
        let s = replica_service[r];
        let n = best_node(scenario, s, &usage, &ready, &placement, &replica_service).ok_or_else(|| {
            Error::invalid(
                format!("services[{s}].replicas"),
                format!(
                    "the cluster cannot hold all replicas: replica {} of `{}` fits on no node after the others are placed",
                    r - replica_service.iter().position(|&x| x == s).unwrap_or(0) + 1,
                    scenario.services[s].name
                ),
            )
        })?;
        usage[n].add(&scenario.services[s].requests);
        placement[r] = n;
    }
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
            usage[n].add(req);
            placement[r] = n;
        }
        return Placement::new(placement);
    }
    fallback.clone()
}
