//! The emulated nodes: registered from the scenario, kept Ready by heartbeats and leases,
//! or failed on command (the [`DOWN`] annotation) the way a node that lost power looks.

use berth_core::{GpuSpec, Node, Resources, Scenario};
use berth_env::live::{LiveError, LiveNode, LiveResult, gpu_products, labels, live_node, metrics, sharing};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node as KubeNode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

/// Set to `true` on a Node to fail it, removed (or `false`) to bring it back.
pub const DOWN: &str = "berth.io/emulate-down";
/// Set to `true` on a Node to make its pods never become Ready (an image that never pulls, a
/// model that never loads), while the node itself stays Ready.
pub const STUCK: &str = "berth.io/emulate-stuck";
/// Marks the nodes the emulator plays.
pub const EMULATED: &str = "berth.io/emulated";
/// The field manager of the emulator's writes.
pub const MANAGER: &str = "berth-emulate";
const LEASE_NAMESPACE: &str = "kube-node-lease";

fn now() -> Value {
    json!(Time(Timestamp::now()))
}

/// The Node object of a scenario node: labels as GPU feature discovery (its product strings,
/// `NVIDIA-H100-80GB-HBM3`), the GPU operator (shared GPUs) and the cloud provider set them.
fn node_object(scenario: &Scenario, node: &Node) -> Value {
    let mut node_labels = json!({
        labels::HOSTNAME: node.name,
        labels::ZONE: scenario.zones[node.zone],
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": scenario.classes[node.class],
        EMULATED: "true",
    });
    if let Some(gpu) = &node.gpu {
        node_labels[labels::GPU_PRODUCT] =
            json!(sharing::product_label(gpu, gpu_products::product_label(&gpu.model)));
        node_labels[labels::GPU_MEMORY] = json!(gpu.memory_mib.to_string());
        for (k, v) in sharing::advertised(gpu).labels {
            node_labels[k] = json!(v);
        }
    }
    for (k, v) in &node.labels {
        node_labels[k] = json!(v);
    }
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "labels": node_labels}})
}

fn resources(node: &Node) -> Value {
    let mut r = json!({
        "cpu": metrics::cpu_quantity(node.allocatable.cpu_millicores as f64),
        "memory": format!("{}Mi", node.allocatable.memory_mib),
        "pods": "110",
    });
    for (resource, count) in node.gpu.iter().flat_map(|gpu| sharing::advertised(gpu).resources) {
        r[resource] = json!(count.to_string());
    }
    r
}

/// The node's status with a fresh heartbeat: Ready, or NotReady while it is down.
fn status(node: &Node, down: bool) -> Value {
    let (ready, reason, message) = if down {
        ("False", "KubeletNotReady", "berth emulate: node failed on command")
    } else {
        ("True", "KubeletReady", "berth emulate: kubelet is posting ready status")
    };
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now(), "lastTransitionTime": now()})
    };
    json!({"status": {
        "capacity": resources(node),
        "allocatable": resources(node),
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
            condition("Ready", ready, reason, message),
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": node.name}],
        "nodeInfo": {
            "machineID": node.name, "systemUUID": node.name, "bootID": node.name,
            "kernelVersion": "emulated", "osImage": "berth emulate", "containerRuntimeVersion": "emulated://0",
            "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2",
            "operatingSystem": "linux", "architecture": "amd64",
        },
    }})
}

/// Registers every node of the scenario (or updates its labels if it exists). A starting
/// emulator plays healthy nodes, as a restarted kubelet reports Ready: a [`DOWN`] or
/// [`STUCK`] left by an earlier run is cleared.
pub async fn register(client: &kube::Client, scenario: &Scenario) -> LiveResult<()> {
    let api = Api::<KubeNode>::all(client.clone());
    let apply = PatchParams::apply(MANAGER).force();
    let healthy = json!({"metadata": {"annotations": {DOWN: Value::Null, STUCK: Value::Null}}});
    for node in &scenario.nodes {
        let action = format!("register node `{}`", node.name);
        api.patch(&node.name, &apply, &Patch::Apply(node_object(scenario, node)))
            .await
            .map_err(|e| LiveError::kube(&action, e))?;
        api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&healthy))
            .await
            .map_err(|e| LiveError::kube(&action, e))?;
    }
    Ok(())
}

/// Whether the node's annotation `key` is `true` ([`DOWN`], [`STUCK`]).
pub fn flagged(node: &KubeNode, key: &str) -> bool {
    node.metadata.annotations.as_ref().and_then(|a| a.get(key)).is_some_and(|v| v == "true")
}

/// Posts the node's status and, while it is up, renews its lease, as a kubelet does every
/// ten seconds. A down node's lease is left to expire.
pub async fn heartbeat(client: &kube::Client, node: &Node, down: bool) -> LiveResult<()> {
    let action = format!("post the status of node `{}`", node.name);
    let params = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    Api::<KubeNode>::all(client.clone())
        .patch_status(&node.name, &params, &Patch::Merge(status(node, down)))
        .await
        .map_err(|e| LiveError::kube(&action, e))?;
    if down {
        return Ok(());
    }
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node.name, "namespace": LEASE_NAMESPACE},
        "spec": {"holderIdentity": node.name, "leaseDurationSeconds": 40,
                 "renewTime": MicroTime(Timestamp::now())},
    });
    let action = format!("renew the lease of node `{}`", node.name);
    Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE)
        .patch(&node.name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(lease))
        .await
        .map_err(|e| LiveError::kube(&action, e))?;
    Ok(())
}

/// A node added at run time, as its heartbeat needs it: its resources and GPUs, shared or
/// whole, from its Node object.
pub fn played(live: &LiveNode) -> LiveResult<Node> {
    let memory_mib = live.gpu_memory_mib.unwrap_or(0);
    let unplayable = |reason: String| LiveError::Mismatch { scenario: "emulate".into(), reason };
    let gpu = live.gpu_sharing(memory_mib).map_err(unplayable)?.map(|(count, sharing)| GpuSpec {
        count,
        model: live.gpu_product.clone().unwrap_or_default(),
        memory_mib,
        sharing,
    });
    let allocatable = Resources::of_node(live.cpu_millicores, live.memory_mib, gpu.as_ref());
    Ok(Node { name: live.name.clone(), zone: 0, allocatable, gpu, class: 0, labels: Default::default() })
}

/// Adds node `name` to the emulation, a copy of node `like` (labels and resources), in
/// `zone` if given: a node joining the cluster. The running emulator keeps it Ready.
pub async fn add(client: &kube::Client, name: &str, like: &str, zone: Option<&str>) -> LiveResult<()> {
    let api = Api::<KubeNode>::all(client.clone());
    let model = api.get(like).await.map_err(|e| LiveError::kube(format!("read node `{like}`"), e))?;
    let mut node_labels = model.metadata.labels.clone().unwrap_or_default();
    node_labels.insert(labels::HOSTNAME.into(), name.into());
    node_labels.insert(EMULATED.into(), "true".into());
    if let Some(zone) = zone {
        node_labels.insert(labels::ZONE.into(), zone.into());
    }
    let object =
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": node_labels}});
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(object))
        .await
        .map_err(|e| LiveError::kube(format!("add node `{name}`"), e))?;
    let added = played(&LiveNode { name: name.into(), ..live_node(&model) })?;
    heartbeat(client, &added, false).await
}

/// Fails (`down`) or recovers a node by its annotation; the running emulator acts on it.
pub async fn set_down(client: &kube::Client, name: &str, down: bool) -> LiveResult<()> {
    let patch =
        json!({"metadata": {"annotations": {DOWN: if down { Value::from("true") } else { Value::Null }}}});
    let params = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    let action = format!("{} node `{name}`", if down { "fail" } else { "recover" });
    Api::<KubeNode>::all(client.clone())
        .patch(name, &params, &Patch::Merge(patch))
        .await
        .map_err(|e| LiveError::kube(&action, e))?;
    Ok(())
}
