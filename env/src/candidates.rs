//! Candidate nodes: a bounded set of the nodes an entity observation describes, so that a
//! network's work per state stops growing with the cluster. On a 1,523-node cluster the
//! network's pass over every node row made training 100 times slower than on 32 nodes, while
//! a move worth making almost always goes to one of a few nodes: those whose hardware serves
//! the service fastest, close to where its requests come from.
//!
//! The set is every node a replica runs on (a replica's row needs its node's) and, per
//! service, the `per_service` nodes it could move to now with the lowest pre-score: its time
//! per request there over the SLO plus the mean RTT from the requests' zones to the node's,
//! over the SLO (the terms of the latency the cost model charges), the node with fewer of its
//! GPUs taken first on a tie, then the lower index. Nodes are returned in index order.

use crate::PlacementEnv;

/// Fills `out` with the candidate nodes of `env`'s current state, ascending; `demand_rtt` is
/// each zone's mean RTT from the requests now, over the SLO.
pub fn candidate_nodes(env: &PlacementEnv, per_service: usize, demand_rtt: &[f32], out: &mut Vec<u32>) {
    let scenario = env.scenario();
    let nodes = scenario.nodes.len();
    let mut chosen = vec![false; nodes];
    for &n in env.placement() {
        chosen[n] = true;
    }
    if per_service > 0 {
        let view = env.cluster_view();
        let slo = scenario.slo_ms;
        let mut scored: Vec<(f64, f64, usize)> = Vec::with_capacity(nodes);
        for s in 0..scenario.services.len() {
            scored.clear();
            for (n, node) in scenario.nodes.iter().enumerate() {
                if !env.node_ready()[n] || !view.fits(s, n) {
                    continue;
                }
                let Some(time) = env.time_if_placed(s, n) else { continue };
                let score = time / slo + f64::from(demand_rtt[node.zone]);
                let taken = env.usage()[n].gpu_fraction(node.gpu.as_ref());
                scored.push((score, taken, n));
            }
            let order = |a: &(f64, f64, usize), b: &(f64, f64, usize)| {
                a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2))
            };
            if scored.len() > per_service {
                scored.select_nth_unstable_by(per_service - 1, order);
                scored.truncate(per_service);
            }
            for &(_, _, n) in &scored {
                chosen[n] = true;
            }
        }
    }
    out.clear();
    out.extend((0..nodes).filter(|&n| chosen[n]).map(|n| n as u32));
}
