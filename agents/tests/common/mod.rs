//! Clusters and checks the entity-network tests share.

use std::sync::Arc;

use berth_agents::{ActMode, SavedModel, load_agent};
use berth_core::Scenario;
use berth_env::{Env, PlacementEnv};

/// The `tiny` scenario's YAML.
pub const TINY: &str = include_str!("../../../scenarios/tiny.yaml");

/// `tiny` with an L4 node more, in zone b.
pub fn tiny_with_a_node_more() -> String {
    TINY.replace(
        "services:",
        "  - {name: l4-c, zone: zone-b, cpu_millicores: 16000, memory_mib: 65536, gpu: {count: 1, model: l4, memory_mib: 24576}}\nservices:",
    )
}

/// `tiny` without its node `l4-a`.
pub fn tiny_with_a_node_less() -> String {
    let fewer = TINY.replace(
        "  - name: l4-a\n    zone: zone-a\n    cpu_millicores: 16000\n    memory_mib: 65536\n    gpu: {count: 1, model: l4, memory_mib: 24576}      # L4 24 GB (FIGURES.md, GPUs)\n",
        "",
    );
    assert_ne!(fewer, TINY, "tiny.yaml no longer lists l4-a as this test expects");
    fewer
}

/// Loads `model` on `yaml`'s cluster, acts for a day and checks every action against the mask.
pub fn acts_on(model: &SavedModel, yaml: &str) {
    let scenario = Arc::new(Scenario::from_yaml(yaml).unwrap());
    let mut env = PlacementEnv::new(scenario).unwrap();
    let mut agent = load_agent(model, &env).unwrap();
    env.reset(2);
    for _ in 0..env.scenario().episode_ticks {
        let action = agent.act_in(&env, ActMode::Greedy);
        assert!(env.action_mask()[action], "masked action {action}");
        env.step(action).unwrap();
    }
}
