//! Property test: on random clusters (failures included), from random placements and times
//! of day, with a random policy, the shield never lets through a plan that its own simulation
//! scores worse than keeping the placement, nor the policy's plan or `lookahead`'s where it
//! leaves more services on one node than `greedy`'s or keeping, and the cost it records for
//! its choice is what simulating that plan again gives.

mod common;

use berth_core::Rng;
use berth_env::baselines::RandomPolicy;
use berth_env::plan::PlanLimits;
use berth_env::scheduler::random_placement;
use berth_env::shield::{Choice, rollout_cost, shield};
use berth_env::{PlacementEnv, StartState};

#[test]
fn the_shield_never_applies_a_plan_scored_worse_than_keeping() {
    let shape = common::Shape { nodes: 6, services: 3, max_replicas: 4, failures: true, sharing: true };
    let (mut checked, mut kept, mut moved, mut exposed, mut ahead) = (0, 0, 0, 0, 0);
    for seed in 3000..3060 {
        let Some(scenario) = common::random_scenario(seed, &shape) else { continue };
        let Ok(mut env) = PlacementEnv::new(scenario.clone()) else { continue };
        let mut rng = Rng::new(seed);
        let fallback = berth_env::scheduler::spread_placement(&scenario).unwrap();
        let placement = random_placement(&scenario, &mut rng, &fallback).nodes;
        let mut node_ready: Vec<bool> = (0..scenario.nodes.len()).map(|_| rng.below(5) > 0).collect();
        node_ready[0] = true;
        let start = StartState {
            placement,
            node_ready,
            tick: rng.below(scenario.episode_ticks as usize) as u32,
            held: Vec::new(),
        };
        let limits = PlanLimits { horizon_ticks: 6, max_moves: 4 };
        let s = shield(&mut env, &mut RandomPolicy::new(), &start, seed, limits).unwrap();
        let horizon = limits.horizon_ticks * 2;
        let again = rollout_cost(&mut env, &start, &s.plan.moves, seed, horizon).unwrap();
        let chosen = match s.choice {
            Choice::Policy => s.policy_cost,
            Choice::Greedy => s.greedy_cost,
            Choice::Lookahead => s.lookahead_cost,
            Choice::Keep => s.keep_cost,
        };
        assert!((again - chosen).abs() < 1e-9, "seed {seed}: recorded {chosen}, simulated again {again}");
        assert!(chosen <= s.keep_cost + 1e-9, "seed {seed}: {s:?}");
        // The policy's plan and `lookahead`'s may lose only where they leave a service on one
        // node that `greedy`'s plan and keeping do not.
        let [own_lone, greedy_lone, ahead_lone, keep_lone] = s.lone_services;
        let bar = greedy_lone.max(keep_lone);
        let (own_allowed, ahead_allowed) = (own_lone <= bar, ahead_lone <= bar);
        let mut best = s.greedy_cost;
        for (allowed, cost) in [(own_allowed, s.policy_cost), (ahead_allowed, s.lookahead_cost)] {
            if allowed {
                best = best.min(cost);
            }
        }
        assert!(chosen <= best + 1e-9, "seed {seed}: {s:?}");
        assert!(own_allowed || s.choice != Choice::Policy, "seed {seed}: {s:?}");
        assert!(ahead_allowed || s.choice != Choice::Lookahead, "seed {seed}: {s:?}");
        exposed += usize::from(!own_allowed);
        ahead += usize::from(s.choice == Choice::Lookahead);
        if s.choice == Choice::Keep {
            assert!(s.plan.moves.is_empty());
            kept += 1;
        } else {
            moved += 1;
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} scenarios");
    assert!(kept > 0 && moved > 0, "both outcomes happen: kept {kept}, moved {moved}");
    assert!(exposed > 0, "no random plan left a service on one node");
    assert!(ahead > 0, "lookahead's plan never won");
}
