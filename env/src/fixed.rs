//! The `fixed` baseline: the best placement held all day, found by trying every one on a
//! few sample days (none of them an evaluation day) before the episodes it is scored on.
//! It answers "what does moving replicas with the time of day buy over the best fixed
//! placement?", which the oracle (free moves, hindsight) cannot.
//!
//! Replicas of a service are interchangeable, so candidates are multisets of nodes per
//! service, packed where the nodes' capacity allows. Each is driven to from the start
//! placement (one move per tick, as any policy) and held; a replica on a failed node is
//! moved to the first node allowed (evacuation) and returns once its target is back.
//! Every candidate is scored on the first [`SCREEN_DAYS`] sample days, the best
//! [`FINALISTS`] on all of them.

use std::sync::Arc;

use berth_core::{Placement, Scenario};

use crate::PlacementEnv;
use crate::baselines::Policy;
use crate::error::{Error, Result};
use crate::evaluate::run_policy;
use crate::gym::{Env, first_allowed};
use crate::oracle::{multisets, search_space};
use crate::placement_env::Move;
use crate::scheduler::spread_placement;

/// The largest number of candidate placements the search will try.
pub const MAX_CANDIDATES: u128 = 50_000;
/// Sample days every candidate is scored on.
pub const SCREEN_DAYS: usize = 2;
/// The best candidates on those, scored on every sample day.
pub const FINALISTS: usize = 256;
/// The sample days' episode seeds: far from the scenario seeds evaluations start at.
pub const SAMPLE_SEEDS: std::ops::Range<u64> = 1_000_000..1_000_016;

/// Drives the placement to `target` and holds it there.
#[derive(Debug, Clone)]
pub struct FixedPolicy {
    target: Vec<usize>,
}

impl FixedPolicy {
    /// Holds `target` (a node per replica, scenario order).
    pub fn new(target: Vec<usize>) -> Self {
        Self { target }
    }

    /// The best fixed placement for `scenario` on [`SAMPLE_SEEDS`], or
    /// [`Error::FixedRefused`] where there are more than [`MAX_CANDIDATES`]. `progress` is
    /// called once per simulated tick, [`search_steps`] times in all.
    pub fn search(scenario: Arc<Scenario>, progress: &mut dyn FnMut()) -> Result<Self> {
        let candidates = candidates(&scenario)?;
        let mut env = PlacementEnv::new(scenario)?;
        let seeds: Vec<u64> = SAMPLE_SEEDS.collect();
        let mut score = |target: &[usize], seeds: &[u64]| -> Result<f64> {
            Ok(run_policy(&mut env, &mut Self::new(target.to_vec()), seeds, &mut |_, _| progress())?.reward)
        };
        let mut scored = Vec::with_capacity(candidates.len());
        for target in candidates {
            scored.push((score(&target, &seeds[..SCREEN_DAYS])?, target));
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.truncate(FINALISTS);
        let mut best: Option<(f64, Vec<usize>)> = None;
        for (_, target) in scored {
            let mean = score(&target, &seeds)?;
            if best.as_ref().is_none_or(|(b, _)| mean > *b) {
                best = Some((mean, target));
            }
        }
        let (_, target) = best.expect("the start placement is always a candidate");
        Ok(Self::new(target))
    }

    /// The placement it holds.
    pub fn target(&self) -> &[usize] {
        &self.target
    }
}

impl Policy for FixedPolicy {
    fn name(&self) -> &str {
        "fixed"
    }

    fn act(&mut self, env: &PlacementEnv) -> usize {
        let mask = env.action_mask();
        let placement = env.placement();
        (0..placement.len())
            .filter(|&r| placement[r] != self.target[r])
            .map(|r| env.encode(Move { replica: r, node: self.target[r] }))
            .find(|&a| mask[a])
            .unwrap_or_else(|| first_allowed(mask))
    }
}

/// Ticks [`FixedPolicy::search`] simulates on `scenario`, for progress bars: every candidate
/// on the screening days, the finalists on every sample day. 0 where the search is refused.
pub fn search_steps(scenario: &Scenario) -> u64 {
    let Ok(candidates) = candidates(scenario) else {
        return 0;
    };
    let sample_days = SAMPLE_SEEDS.end - SAMPLE_SEEDS.start;
    let days =
        candidates.len() as u64 * SCREEN_DAYS as u64 + candidates.len().min(FINALISTS) as u64 * sample_days;
    days * u64::from(scenario.episode_ticks)
}

/// Every packable placement, up to interchanging replicas of a service, with each
/// service's replicas matched to its targets so that those already there stay.
fn candidates(scenario: &Scenario) -> Result<Vec<Vec<usize>>> {
    let hosts: Vec<Vec<usize>> = (0..scenario.services.len())
        .map(|s| (0..scenario.nodes.len()).filter(|&n| scenario.service_time_ms(s, n).is_some()).collect())
        .collect();
    let total = search_space(scenario, hosts.iter().map(Vec::len));
    if total > MAX_CANDIDATES {
        return Err(Error::FixedRefused(format!(
            "`{}` has {total} fixed placements to try (limit {MAX_CANDIDATES}); \
             the search is for small scenarios such as tiny and gpu-small",
            scenario.name
        )));
    }
    let start = spread_placement(scenario)?.nodes;
    let per_service: Vec<Vec<Vec<usize>>> = scenario
        .services
        .iter()
        .zip(&hosts)
        .map(|(svc, h)| {
            multisets(h.len(), svc.replicas as usize)
                .into_iter()
                .map(|m| m.into_iter().map(|i| h[i]).collect())
                .collect()
        })
        .collect();
    let replica_service = scenario.replica_services();
    let mut out = Vec::new();
    let mut choice = vec![0usize; per_service.len()];
    loop {
        let mut target = start.clone();
        for (s, &c) in choice.iter().enumerate() {
            let replicas: Vec<usize> = (0..target.len()).filter(|&r| replica_service[r] == s).collect();
            assign(&mut target, &replicas, &per_service[s][c]);
        }
        let target = Placement::new(target);
        if target.is_feasible(scenario) {
            out.push(target.nodes);
        }
        // The next combination, odometer-wise.
        let Some(s) = (0..choice.len()).rev().find(|&s| choice[s] + 1 < per_service[s].len()) else {
            return Ok(out);
        };
        choice[s] += 1;
        choice[s + 1..].fill(0);
    }
}

/// Gives `replicas` the nodes of `nodes` (a multiset), those already on one of them first.
fn assign(target: &mut [usize], replicas: &[usize], nodes: &[usize]) {
    let mut left = nodes.to_vec();
    let mut unplaced = Vec::new();
    for &r in replicas {
        match left.iter().position(|&n| n == target[r]) {
            Some(i) => {
                left.swap_remove(i);
            }
            None => unplaced.push(r),
        }
    }
    for (r, n) in unplaced.into_iter().zip(left) {
        target[r] = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shipped;

    #[test]
    fn replicas_already_on_a_target_node_stay_there() {
        let mut target = vec![5, 0, 9];
        assign(&mut target, &[0, 1], &[0, 3]);
        assert_eq!(target, vec![3, 0, 9]);
        let mut target = vec![5, 5];
        assign(&mut target, &[0, 1], &[5, 5]);
        assert_eq!(target, vec![5, 5]);
    }

    #[test]
    fn the_policy_makes_its_moves_then_holds() {
        let mut scenario = (*shipped::load("gpu-small").unwrap()).clone();
        scenario.failures.mtbf_s = None;
        let mut env = PlacementEnv::new(Arc::new(scenario.clone())).unwrap();
        let mut target = spread_placement(&scenario).unwrap().nodes;
        let cpu_a = scenario.node_index("cpu-a-1").unwrap();
        (target[1], target[5]) = (cpu_a, cpu_a);
        let mut policy = FixedPolicy::new(target.clone());
        env.reset(3);
        let mut moves = 0;
        for tick in 0..scenario.episode_ticks {
            let step = env.step(policy.act(&env)).unwrap();
            moves += step.info.moves;
            if tick >= 1 {
                assert_eq!(env.placement(), target.as_slice(), "tick {tick}");
            }
        }
        assert_eq!(moves, 2);
    }

    #[test]
    fn the_search_keeps_the_best_of_every_candidate() {
        // tiny has fewer candidates than FINALISTS: each is scored on every sample day.
        let scenario = shipped::load("tiny").unwrap();
        let all = candidates(&scenario).unwrap();
        assert!(all.len() > 1 && all.len() <= FINALISTS);
        let mut ticks = 0;
        let best = FixedPolicy::search(scenario.clone(), &mut || ticks += 1).unwrap();
        assert_eq!(ticks, search_steps(&scenario), "progress counts every simulated tick");
        let mut env = PlacementEnv::new(scenario).unwrap();
        let seeds: Vec<u64> = SAMPLE_SEEDS.collect();
        let mut mean = |target: &[usize]| {
            run_policy(&mut env, &mut FixedPolicy::new(target.to_vec()), &seeds, &mut |_, _| {})
                .unwrap()
                .reward
        };
        let found = mean(best.target());
        let scores: Vec<f64> = all.iter().map(|t| mean(t)).collect();
        assert!(scores.iter().all(|&s| s <= found), "{found} vs {scores:?}");
        assert!(scores.iter().any(|&s| s < found), "the search space is not flat on tiny");
    }

    #[test]
    fn large_scenarios_are_refused_with_their_count() {
        let Err(Error::FixedRefused(why)) = candidates(&shipped::load("gpu-medium").unwrap()) else {
            panic!("gpu-medium searched");
        };
        assert!(why.contains("`gpu-medium` has") && why.contains("limit 50000"), "{why}");
    }

    #[test]
    fn candidates_pack_and_include_the_start() {
        let scenario = shipped::load("gpu-small").unwrap();
        let all = candidates(&scenario).unwrap();
        let start = spread_placement(&scenario).unwrap().nodes;
        assert!(all.contains(&start));
        assert!(all.iter().all(|t| Placement::new(t.clone()).is_feasible(&scenario)));
        // Two replicas on a one-GPU L4 node do not pack: both embedding replicas there.
        let l4 = scenario.node_index("l4-b-1").unwrap();
        assert!(!all.iter().any(|t| t[2] == l4 && t[3] == l4));
        // Up to interchanging replicas: no two candidates are the same multisets.
        let services = scenario.replica_services();
        let mut keys: Vec<Vec<Vec<usize>>> = all
            .iter()
            .map(|t| {
                (0..scenario.services.len())
                    .map(|s| {
                        let mut nodes: Vec<usize> =
                            t.iter().zip(&services).filter(|&(_, &x)| x == s).map(|(&n, _)| n).collect();
                        nodes.sort();
                        nodes
                    })
                    .collect()
            })
            .collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }
}
