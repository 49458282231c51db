//! Reading a live cluster the way the recorder, `/api/v1/metrics` and deploy plans all do:
//! its time of day (the emulator's clock where `berth emulate` publishes one, else UTC) and
//! its load, as a scale over the scenario's traffic model fitted by least squares to the
//! replicas' observed CPU utilisation (used over requested, less a 5% idle floor).

use anyhow::Result;
use berth_core::Scenario;
use berth_env::live::{LivePlacement, Snapshot, metrics, utilisation};
use berth_env::replay::Sample;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams};

/// The node annotation in which `berth emulate` publishes its clock, seconds since midnight.
pub const TIME_OF_DAY: &str = "berth.io/time-of-day-s";

/// Utilisation from usage: CPU used over requested, less the idle floor, within [0, 1].
fn observed(usage_millicores: f64, request_millicores: f64) -> f64 {
    if request_millicores <= 0.0 {
        return 0.0;
    }
    ((usage_millicores / request_millicores - 0.05) / 0.95).clamp(0.0, 1.0)
}

/// The least-squares scale of the model's utilisation to the observed (1 with nothing to fit).
fn fit_scale(observed: &[f64], model: &[f64]) -> f64 {
    let (dot, norm) = observed.iter().zip(model).fold((0.0, 0.0), |(d, n), (o, m)| (d + o * m, n + m * m));
    if norm < 1e-12 { 1.0 } else { dot / norm }
}

/// The clock on the most recently written NodeMetrics. Not the largest: a node that went down
/// (or was removed) before the emulator took its metrics away keeps the clock of its last
/// write, and the largest would read 23:50 long after midnight.
fn freshest_clock(node_metrics: &[DynamicObject]) -> Option<f64> {
    node_metrics
        .iter()
        .filter_map(|n| {
            let clock = n.metadata.annotations.as_ref()?.get(TIME_OF_DAY)?.parse::<f64>().ok()?;
            let written = n.data.get("timestamp").and_then(|t| t.as_str()?.parse::<Timestamp>().ok());
            Some((written, clock))
        })
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .map(|(_, clock)| clock)
}

/// The emulator's clock, if it publishes one, else UTC; seconds since midnight. The recorder,
/// `/api/v1/metrics` and deploy plans all read the time of day here, so they agree.
pub async fn time_of_day(client: &kube::Client) -> f64 {
    let nodes = Api::<DynamicObject>::all_with(client.clone(), &metrics::node_metrics());
    let emulated = match nodes.list(&ListParams::default()).await {
        Ok(list) => freshest_clock(&list.items),
        // No metrics.k8s.io (metrics-server not installed): a real cluster, on UTC.
        Err(kube::Error::Api(status)) if status.code == 404 => None,
        Err(e) => {
            // A 403 here (an account without metrics.k8s.io nodes) would move every plan to
            // UTC's time of day unseen; say so.
            tracing::warn!(error = %e, "node metrics unreadable: the time of day is UTC's");
            None
        }
    };
    let utc = (mongodb::bson::DateTime::now().timestamp_millis() / 1000).rem_euclid(86_400) as f64;
    emulated.unwrap_or(utc).rem_euclid(86_400.0)
}

/// One look at the cluster: what it is, where things run, and the sample a trace keeps.
pub struct Observation {
    /// As read.
    pub snapshot: Snapshot,
    /// In the scenario's indices.
    pub placement: LivePlacement,
    /// Time of day, load scale, Ready nodes.
    pub sample: Sample,
}

/// Reads the cluster and fits its load scale, in the terms of `scenario` as it is.
pub async fn observe(client: &kube::Client, scenario: &Scenario, namespace: &str) -> Result<Observation> {
    observe_snapshot(client, Snapshot::read(client, namespace).await?, scenario).await
}

/// Fits the load scale of what `snapshot` read, in the terms of `scenario`.
pub async fn observe_snapshot(
    client: &kube::Client,
    snapshot: Snapshot,
    scenario: &Scenario,
) -> Result<Observation> {
    let placement: LivePlacement = snapshot.placement(scenario)?;
    let t_s = time_of_day(client).await;
    let model = utilisation(scenario, &placement, t_s, 1.0);
    let (mut seen, mut predicted) = (Vec::new(), Vec::new());
    for (r, (s, index)) in scenario.replica_keys().into_iter().enumerate() {
        let service = &scenario.services[s];
        let Some(pod) = snapshot.replica(&service.name, index).and_then(|l| l.pod.clone()) else { continue };
        let Some(usage) = snapshot.usage.iter().find(|u| u.pod == pod) else { continue };
        if placement.serving[r] {
            seen.push(observed(usage.cpu_millicores, service.requests.cpu_millicores as f64));
            predicted.push(model[r]);
        }
    }
    let sample =
        Sample { t_s, scale: fit_scale(&seen, &predicted), node_ready: placement.node_ready.clone() };
    Ok(Observation { snapshot, placement, sample })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_fit_recovers_a_uniform_load_factor() {
        let model = [0.2, 0.4, 0.1];
        let seen: Vec<f64> = model.iter().map(|m| m * 1.5).collect();
        assert!((fit_scale(&seen, &model) - 1.5).abs() < 1e-12);
        assert_eq!(fit_scale(&[], &[]), 1.0);
        // The emulator's usage formula, inverted.
        assert!((observed(0.05 * 1000.0 + 0.95 * 0.3 * 1000.0, 1000.0) - 0.3).abs() < 1e-12);
    }

    fn node_metrics(name: &str, clock: &str, written: Option<&str>) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetrics",
            "metadata": {"name": name, "annotations": {TIME_OF_DAY: clock}},
            "timestamp": written, "window": "30s", "usage": {},
        }))
        .unwrap()
    }

    #[test]
    fn the_clock_is_the_freshest_nodes_not_the_largest() {
        // A node down since 23:50; the others written after midnight.
        let items = [
            node_metrics("down", "85800", Some("2026-12-05T10:00:00Z")),
            node_metrics("a", "600", Some("2026-12-05T10:00:20Z")),
            node_metrics("b", "600", Some("2026-12-05T10:00:20Z")),
        ];
        assert_eq!(freshest_clock(&items), Some(600.0));
        // Without a readable timestamp an object counts as the oldest; without a clock, not at all.
        let items =
            [node_metrics("old", "70000", None), node_metrics("new", "100", Some("2026-12-05T10:00:00Z"))];
        assert_eq!(freshest_clock(&items), Some(100.0));
        assert_eq!(freshest_clock(&[node_metrics("x", "noon", Some("2026-12-05T10:00:00Z"))]), None);
        assert_eq!(freshest_clock(&[]), None);
    }
}
