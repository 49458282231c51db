//! Training across shapes: a variation of a scenario drawn per episode, so a size-agnostic
//! policy meets clusters it was not built for. Each draw keeps a random share of the nodes,
//! scales every user group's traffic, scales the failure rate, and sometimes takes a whole
//! zone down for a stretch of the day. The services stay as they are: a model knows them
//! by name.

use berth_core::{NodeEvent, NodeEventKind, Rng, Scenario};

use crate::PlacementEnv;

/// The ranges draws come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapeRanges {
    /// Share of the nodes kept, drawn uniformly from this range.
    pub nodes_kept: (f64, f64),
    /// Factor on every user group's rate.
    pub traffic: (f64, f64),
    /// Factor on the failure rate (on `1 / mtbf`).
    pub failure_rate: (f64, f64),
    /// Probability that one whole zone is down for part of the day.
    pub zone_outage: f64,
}

impl Default for ShapeRanges {
    fn default() -> Self {
        Self { nodes_kept: (0.5, 1.0), traffic: (0.6, 1.4), failure_rate: (0.5, 4.0), zone_outage: 0.15 }
    }
}

/// An env of a fresh variation of `base` whose replicas can all be placed, or of `base`
/// itself after a few draws that could not be (too few nodes kept for the replicas).
pub fn varied_env(base: &Scenario, ranges: &ShapeRanges, rng: &mut Rng) -> crate::Result<PlacementEnv> {
    for _ in 0..8 {
        if let Ok(env) = PlacementEnv::new(std::sync::Arc::new(draw(base, ranges, rng))) {
            return Ok(env);
        }
    }
    PlacementEnv::new(std::sync::Arc::new(base.clone()))
}

fn uniform(rng: &mut Rng, (low, high): (f64, f64)) -> f64 {
    low + (high - low) * rng.next_f64()
}

fn draw(base: &Scenario, ranges: &ShapeRanges, rng: &mut Rng) -> Scenario {
    let mut s = base.clone();
    let keep = uniform(rng, ranges.nodes_kept);
    let kept: Vec<bool> = (0..base.nodes.len()).map(|_| rng.next_f64() < keep).collect();
    let mut new_index = vec![usize::MAX; base.nodes.len()];
    let mut next = 0;
    for (n, &k) in kept.iter().enumerate() {
        if k {
            new_index[n] = next;
            next += 1;
        }
    }
    s.nodes = base.nodes.iter().zip(&kept).filter(|(_, k)| **k).map(|(n, _)| n.clone()).collect();
    s.failures.events = base
        .failures
        .events
        .iter()
        .filter(|e| kept[e.node])
        .map(|e| NodeEvent { node: new_index[e.node], ..*e })
        .collect();
    let traffic = uniform(rng, ranges.traffic);
    for g in &mut s.user_groups {
        g.rate.base_rps *= traffic;
    }
    if let Some(mtbf) = s.failures.mtbf_s.as_mut() {
        *mtbf /= uniform(rng, ranges.failure_rate);
    }
    if rng.next_f64() < ranges.zone_outage && !s.nodes.is_empty() {
        let day = s.tick_s * f64::from(s.episode_ticks);
        let zone = s.nodes[rng.below(s.nodes.len())].zone;
        let from = uniform(rng, (0.0, 0.8)) * day;
        let to = (from + uniform(rng, (0.05, 0.25)) * day).min(day);
        for n in (0..s.nodes.len()).filter(|&n| s.nodes[n].zone == zone) {
            s.failures.events.push(NodeEvent { at_s: from, node: n, kind: NodeEventKind::Fail });
            s.failures.events.push(NodeEvent { at_s: to, node: n, kind: NodeEventKind::Recover });
        }
        s.failures.events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    }
    // Background pods keep their times; where their nodes went is decided as they start.
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variations_keep_the_services_and_a_placeable_cluster() {
        let base = crate::shipped::shipped("gpu-medium").unwrap();
        let mut rng = Rng::new(7);
        let mut sizes = std::collections::BTreeSet::new();
        let mut outages = 0;
        for _ in 0..40 {
            let env = varied_env(&base, &ShapeRanges::default(), &mut rng).unwrap();
            let s = env.scenario();
            assert_eq!(s.services, base.services);
            assert!(s.nodes.len() <= base.nodes.len());
            assert!(s.failures.events.iter().all(|e| e.node < s.nodes.len()));
            outages += usize::from(!s.failures.events.is_empty());
            sizes.insert(s.nodes.len());
        }
        assert!(sizes.len() > 5, "node counts drawn: {sizes:?}");
        assert!((1..40).contains(&outages), "{outages} zone outages in 40 draws");
    }
}
