//! Gymnasium's env checker over every shipped scenario, random scenarios and CartPole.

mod common;

use berth_env::checker::check_env;
use berth_env::shipped::{SHIPPED, shipped};
use berth_env::{CartPole, PlacementEnv};

#[test]
fn every_shipped_scenario_passes_the_env_checker() {
    for (name, _) in SHIPPED {
        let scenario = shipped(name).unwrap();
        let len = scenario.episode_ticks as usize;
        let mut env = PlacementEnv::new(scenario).unwrap();
        for seed in [0, 1] {
            check_env(&mut env, seed, len, Some(len)).unwrap_or_else(|e| panic!("{name}, seed {seed}: {e}"));
        }
    }
}

#[test]
fn random_scenarios_pass_the_env_checker() {
    let shape = common::Shape { nodes: 6, services: 3, max_replicas: 3, failures: true, sharing: true };
    let mut checked = 0;
    for seed in 0..60 {
        let Some(scenario) = common::random_scenario(seed, &shape) else { continue };
        let Ok(mut env) = PlacementEnv::new(scenario) else { continue };
        check_env(&mut env, seed, 24, Some(24)).unwrap_or_else(|e| panic!("random scenario {seed}: {e}"));
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} random scenarios were placeable");
}

#[test]
fn cartpole_passes_the_env_checker() {
    let mut env = CartPole::new();
    for seed in 0..5 {
        check_env(&mut env, seed, 600, None).unwrap();
    }
}
