//! Property test: on random clusters with node failures, every baseline (the descheduler's
//! profiles and the GPU-packing rules included) starts from a feasible placement and only
//! ever takes actions the env's mask allows, so none can put a replica where it does not fit.

mod common;

use berth_core::Placement;
use berth_env::PlacementEnv;
use berth_env::baselines::{NAMES, baseline};
use berth_env::evaluate::run_policy;

#[test]
fn every_baseline_starts_feasible_and_acts_within_the_mask() {
    let shape = common::Shape { nodes: 6, services: 3, max_replicas: 4, failures: true, sharing: true };
    let mut scenarios = 0;
    for seed in 2000..2040 {
        let Some(scenario) = common::random_scenario(seed, &shape) else { continue };
        let Ok(mut env) = PlacementEnv::new(scenario.clone()) else { continue };
        scenarios += 1;
        for name in NAMES {
            let mut policy = baseline(name).unwrap();
            policy.reset(seed);
            if let Some(start) = policy.start(&env) {
                assert!(
                    Placement::new(start.clone()).is_feasible(&scenario),
                    "{name}, seed {seed}: {start:?}"
                );
            }
            // run_policy refuses (Err) any action the mask does not allow.
            let row = run_policy(&mut env, policy.as_mut(), &[seed, seed + 1], &mut |_, _| {});
            assert!(row.is_ok(), "{name}, seed {seed}: {row:?}");
        }
    }
    assert!(scenarios >= 20, "only {scenarios} placeable scenarios drawn");
}
