//! PodMetrics and NodeMetrics from the simulator's load model: each replica's utilisation
//! under the scenario's traffic at the emulated time of day, with the cluster's real
//! placement, so `metrics.k8s.io` shows what the scenario would.

use std::collections::HashSet;

use berth_core::Scenario;
use berth_env::live::{LiveError, LiveResult, Snapshot, labels, metrics, utilisation};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;

use super::node::MANAGER;

use crate::service::cluster::observe::TIME_OF_DAY;

/// Writes the PodMetrics of every placed replica in `namespace` and the NodeMetrics of
/// every node (the scenario's and those added since), as at `t_s` seconds into the simulated day.
pub async fn publish(
    client: &kube::Client,
    scenario: &Scenario,
    namespace: &str,
    t_s: f64,
) -> LiveResult<()> {
    let snapshot = Snapshot::read(client, namespace).await?;
    // Nodes added since the scenario was written (`berth emulate --add-node`) carry load too.
    let shaped = snapshot.shape(scenario).scenario;
    let scenario = &shaped;
    let placement = snapshot.placement(scenario)?;
    let rho = utilisation(scenario, &placement, t_s, 1.0);
    let timestamp = json!(Time(Timestamp::now()));
    let apply = PatchParams::apply(MANAGER).force();
    let mut node_cpu = vec![250.0; scenario.nodes.len()];
    let mut node_memory = vec![1024.0; scenario.nodes.len()];
    let pods = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &metrics::pod_metrics());
    let mut pods_written = HashSet::new();
    for (r, (s, index)) in scenario.replica_keys().into_iter().enumerate() {
        let service = &scenario.services[s];
        let Some(live) = snapshot.replica(&service.name, index) else { continue };
        let (Some(pod), true) = (live.pod.as_ref(), live.ready) else { continue };
        let cpu = service.requests.cpu_millicores as f64 * (0.05 + 0.95 * rho[r]);
        let memory = service.requests.memory_mib as f64 * 0.8;
        node_cpu[placement.nodes[r]] += cpu;
        node_memory[placement.nodes[r]] += memory;
        let object = json!({
            "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
            "metadata": {"name": pod, "namespace": namespace,
                         "labels": {labels::SERVICE: service.name, labels::REPLICA: index.to_string()},
                         "annotations": {"berth.io/utilisation": format!("{:.4}", rho[r])}},
            "timestamp": timestamp, "window": "30s",
            "containers": [{"name": service.name, "usage": {
                "cpu": metrics::cpu_quantity(cpu), "memory": metrics::memory_quantity(memory)}}],
        });
        pods.patch(pod, &apply, &Patch::Apply(object))
            .await
            .map_err(|e| LiveError::kube(format!("write the PodMetrics of `{pod}`"), e))?;
        pods_written.insert(pod.as_str());
    }
    // A moved replica's old pod is gone, and a pod not serving is not scraped: their
    // PodMetrics go, as metrics-server's would, instead of piling up.
    let placed =
        |m: &DynamicObject| m.metadata.labels.as_ref().is_some_and(|l| l.contains_key(labels::SERVICE));
    remove_unwritten(&pods, "PodMetrics", placed, &pods_written).await?;
    let nodes = Api::<DynamicObject>::all_with(client.clone(), &metrics::node_metrics());
    let mut written = HashSet::new();
    for (n, node) in scenario.nodes.iter().enumerate() {
        if !placement.node_ready[n] {
            continue;
        }
        written.insert(node.name.as_str());
        let object = json!({
            "apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetrics",
            // The emulated clock, so a recorder knows the time of day the usage belongs to.
            "metadata": {"name": node.name, "annotations": {TIME_OF_DAY: format!("{:.0}", t_s.rem_euclid(86_400.0))}},
            "timestamp": timestamp, "window": "30s",
            "usage": {"cpu": metrics::cpu_quantity(node_cpu[n]), "memory": metrics::memory_quantity(node_memory[n])},
        });
        nodes
            .patch(&node.name, &apply, &Patch::Apply(object))
            .await
            .map_err(|e| LiveError::kube(format!("write the NodeMetrics of `{}`", node.name), e))?;
    }
    // Nodes now down or gone: metrics-server stops reporting a node it cannot scrape; left
    // behind, their NodeMetrics would hold a stale clock and usage.
    let ours =
        |m: &DynamicObject| m.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(TIME_OF_DAY));
    remove_unwritten(&nodes, "NodeMetrics", ours, &written).await
}

/// Deletes the metrics objects of `kind` this emulator wrote (`ours`) and did not write this
/// round (`written`).
async fn remove_unwritten(
    api: &Api<DynamicObject>,
    kind: &str,
    ours: impl Fn(&DynamicObject) -> bool,
    written: &HashSet<&str>,
) -> LiveResult<()> {
    let listed =
        api.list(&ListParams::default()).await.map_err(|e| LiveError::kube(format!("list {kind}"), e))?;
    for stale in listed
        .items
        .iter()
        .filter(|m| ours(m) && m.metadata.name.as_deref().is_some_and(|name| !written.contains(name)))
    {
        let name = stale.metadata.name.as_deref().unwrap_or_default();
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(LiveError::kube(format!("delete the {kind} of `{name}`"), e)),
        }
    }
    Ok(())
}
