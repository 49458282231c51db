//! The simulator's load model on a live placement: what the emulator publishes as usage, and
//! what the recorder fits the observed usage against.

use berth_core::Scenario;

use super::LivePlacement;
use crate::cost::{CostModel, ReplicaView, RoutingTable, Scratch};

/// The mean utilisation the scenario's traffic model gives each replica in this placement at
/// `t_s` seconds into the day, with rates scaled by `scale` (0 when it does not serve; at
/// most 1, a saturated replica).
pub fn utilisation(scenario: &Scenario, placement: &LivePlacement, t_s: f64, scale: f64) -> Vec<f64> {
    let model = CostModel::new(scenario);
    let replicas = views(scenario, placement);
    let rates: Vec<f64> = scenario.user_groups.iter().map(|g| g.rate.mean_at(t_s) * scale).collect();
    let (mut table, mut scratch) = (RoutingTable::default(), Scratch::default());
    model.route(&replicas, &mut table);
    model.evaluate(&replicas, &table, &rates, &mut scratch);
    scratch.utilisation
}

/// The replicas as the cost model sees them: serving where their pod is Ready on a Ready node.
pub fn views(scenario: &Scenario, placement: &LivePlacement) -> Vec<ReplicaView> {
    scenario
        .replica_services()
        .iter()
        .zip(&placement.nodes)
        .zip(&placement.serving)
        .map(|((&service, &node), &serving)| ReplicaView {
            service,
            zone: scenario.nodes[node].zone,
            service_time_ms: scenario.service_time_ms(service, node).unwrap_or(f64::INFINITY),
            up: serving && placement.node_ready[node] && scenario.service_time_ms(service, node).is_some(),
        })
        .collect()
}
