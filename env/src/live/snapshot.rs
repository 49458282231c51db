//! What the cluster looks like now: nodes, where each replica runs, and pod usage.

use std::collections::BTreeMap;

use berth_core::Scenario;
use berth_core::mig::MigProfile;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, ListParams};

use super::error::during;
use super::metrics::{self, PodMetricsBody};
use super::{LiveError, LiveResult, labels, sharing};

/// A node as the placement sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LiveNode {
    /// The node's name (= its `kubernetes.io/hostname`).
    pub name: String,
    /// Its `Ready` condition is `True` and it is not cordoned.
    pub ready: bool,
    /// `topology.kubernetes.io/zone`.
    pub zone: Option<String>,
    /// Allocatable `nvidia.com/gpu`: whole GPUs, or time-sliced shares where the node's GPUs
    /// are shared (see [`LiveNode::gpu_sharing`]).
    pub gpus: u32,
    /// Allocatable CPU, millicores.
    pub cpu_millicores: u64,
    /// Allocatable memory, MiB.
    pub memory_mib: u64,
    /// `nvidia.com/gpu.product`, as GPU feature discovery labels it.
    pub gpu_product: Option<String>,
    /// `nvidia.com/gpu.memory`: MiB per GPU.
    pub gpu_memory_mib: Option<u64>,
    /// `nvidia.com/gpu.count`: physical GPUs.
    pub gpu_count: Option<u32>,
    /// `nvidia.com/gpu.replicas`: time-sliced shares per GPU.
    pub gpu_replicas: Option<u32>,
    /// Allocatable MIG instances by profile (`nvidia.com/mig-<profile>`, the mixed strategy).
    pub mig: BTreeMap<String, u32>,
}

/// One placed replica: its Deployment and the pod that serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveReplica {
    /// The scenario's service name (`berth.io/service`).
    pub service: String,
    /// Index within the service (`berth.io/replica`).
    pub replica: u32,
    /// The Deployment's name.
    pub deployment: String,
    /// The node its `nodeSelector` pins it to.
    pub pinned_to: Option<String>,
    /// The GPU resource its pods ask for (`nvidia.com/gpu`, `nvidia.com/mig-1g.10gb`), if any.
    pub gpu_resource: Option<String>,
    /// The pod serving it now (Ready first, else the newest live one).
    pub pod: Option<String>,
    /// The node that pod is bound to.
    pub node: Option<String>,
    /// Whether that pod is Ready.
    pub ready: bool,
}

/// A pod's usage from `metrics.k8s.io`, summed over its containers.
#[derive(Debug, Clone, PartialEq)]
pub struct PodUsage {
    /// The pod's name.
    pub pod: String,
    /// CPU, millicores.
    pub cpu_millicores: f64,
    /// Memory, MiB.
    pub memory_mib: f64,
}

/// One reading of the cluster.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Every node.
    pub nodes: Vec<LiveNode>,
    /// Every replica berth places in the namespace, by (service, replica).
    pub replicas: Vec<LiveReplica>,
    /// Pod usage; empty where the cluster serves no `metrics.k8s.io`.
    pub usage: Vec<PodUsage>,
}

/// A snapshot in the scenario's indices: what the gym and the planner need.
#[derive(Debug, Clone, PartialEq)]
pub struct LivePlacement {
    /// Node index of every scenario replica (where its pod runs, else where it is pinned).
    pub nodes: Vec<usize>,
    /// Whether each replica's pod is Ready.
    pub serving: Vec<bool>,
    /// Whether each scenario node is Ready (a node missing from the cluster is not).
    pub node_ready: Vec<bool>,
    /// The MIG profile each replica's Deployment asks for, if one.
    pub held: Vec<Option<MigProfile>>,
}

fn node_ready(node: &Node) -> bool {
    let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    ready && !cordoned
}

/// A node as the placement sees it, from its Node object.
pub fn live_node(node: &Node) -> LiveNode {
    let labels = node.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).cloned();
    let allocatable = |key: &str| {
        node.status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get(key))
            .map(|q| q.0.as_str())
    };
    let whole = |v: f64| v.min(u64::MAX as f64) as u64;
    let mig = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| {
            Some((k.strip_prefix(labels::MIG_RESOURCE_PREFIX)?.to_string(), q.0.parse().ok()?))
        })
        .filter(|&(_, n): &(String, u32)| n > 0)
        .collect();
    // The device plugin marks a time-sliced GPU's product; the product is the same GPU.
    let product = label(labels::GPU_PRODUCT)
        .map(|p| p.strip_suffix(labels::SHARED_PRODUCT_SUFFIX).map(String::from).unwrap_or(p));
    LiveNode {
        name: node.metadata.name.clone().unwrap_or_default(),
        ready: node_ready(node),
        zone: label(labels::ZONE),
        gpus: allocatable(labels::GPU_RESOURCE).and_then(|q| q.parse().ok()).unwrap_or(0),
        cpu_millicores: allocatable("cpu").and_then(metrics::cpu_millicores).map_or(0, whole),
        memory_mib: allocatable("memory").and_then(metrics::memory_mib).map_or(0, whole),
        gpu_product: product,
        gpu_memory_mib: label(labels::GPU_MEMORY).and_then(|m| m.parse().ok()),
        gpu_count: label(labels::GPU_COUNT).and_then(|c| c.parse().ok()),
        gpu_replicas: label(labels::GPU_REPLICAS).and_then(|r| r.parse().ok()),
        mig,
    }
}

/// Whether the pod's `Ready` condition is `True`.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The (service, replica) a labelled object belongs to.
pub(crate) fn replica_key(meta: &kube::api::ObjectMeta) -> Option<(String, u32)> {
    let labels = meta.labels.as_ref()?;
    Some((labels.get(labels::SERVICE)?.clone(), labels.get(labels::REPLICA)?.parse().ok()?))
}

fn pinned_node(deployment: &Deployment) -> Option<String> {
    deployment.spec.template.spec.as_ref()?.node_selector.as_ref()?.get(labels::HOSTNAME).cloned()
}

/// The GPU resource a Deployment's pods ask for: the first container's that asks for one.
pub(crate) fn gpu_resource(deployment: &Deployment) -> Option<String> {
    let pod = deployment.spec.template.spec.as_ref()?;
    pod.containers
        .iter()
        .filter_map(|c| c.resources.as_ref())
        .flat_map(|r| r.limits.iter().chain(r.requests.iter()).flat_map(|m| m.keys()))
        .find(|k| labels::is_gpu_resource(k))
        .cloned()
}

fn usage_of(object: DynamicObject) -> Option<PodUsage> {
    let pod = object.metadata.name?;
    let body: PodMetricsBody = serde_json::from_value(object.data).ok()?;
    let (mut cpu, mut memory) = (0.0, 0.0);
    for container in &body.containers {
        cpu += container.usage.get("cpu").and_then(|q| metrics::cpu_millicores(q)).unwrap_or(0.0);
        memory += container.usage.get("memory").and_then(|q| metrics::memory_mib(q)).unwrap_or(0.0);
    }
    Some(PodUsage { pod, cpu_millicores: cpu, memory_mib: memory })
}

impl Snapshot {
    /// Reads nodes, berth's Deployments and pods in `namespace`, and their metrics.
    pub async fn read(client: &kube::Client, namespace: &str) -> LiveResult<Self> {
        let placed = ListParams::default().labels(labels::SERVICE);
        let nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(during("list nodes"))?;
        let deployments = Api::<Deployment>::namespaced(client.clone(), namespace)
            .list(&placed)
            .await
            .map_err(during("list deployments"))?;
        let pods = Api::<Pod>::namespaced(client.clone(), namespace)
            .list(&placed)
            .await
            .map_err(during("list pods"))?;
        let metrics =
            Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &metrics::pod_metrics());
        let usage = match metrics.list(&placed).await {
            Ok(list) => list.items.into_iter().filter_map(usage_of).collect(),
            // No metrics.k8s.io (metrics-server not installed): placement still works.
            Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
            Err(e) => return Err(LiveError::kube("list pod metrics", e)),
        };

        let mut pods_by_replica: BTreeMap<(String, u32), Vec<&Pod>> = BTreeMap::new();
        for pod in pods.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
            if let Some(key) = replica_key(&pod.metadata) {
                pods_by_replica.entry(key).or_default().push(pod);
            }
        }
        let mut replicas: Vec<LiveReplica> = deployments
            .items
            .iter()
            .filter_map(|d| {
                let (service, replica) = replica_key(&d.metadata)?;
                let candidates = pods_by_replica.get(&(service.clone(), replica));
                let pod = candidates.and_then(|ps| {
                    ps.iter().find(|p| pod_ready(p)).or_else(|| {
                        ps.iter().max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
                    })
                });
                Some(LiveReplica {
                    pinned_to: pinned_node(d),
                    gpu_resource: gpu_resource(d),
                    deployment: d.metadata.name.clone().unwrap_or_default(),
                    pod: pod.and_then(|p| p.metadata.name.clone()),
                    node: pod.and_then(|p| p.spec.as_ref()?.node_name.clone()),
                    ready: pod.is_some_and(|p| pod_ready(p)),
                    service,
                    replica,
                })
            })
            .collect();
        replicas.sort_by(|a, b| (&a.service, a.replica).cmp(&(&b.service, b.replica)));
        Ok(Self { nodes: nodes.items.iter().map(live_node).collect(), replicas, usage })
    }

    /// The replica serving (service, replica), if the cluster has it.
    pub fn replica(&self, service: &str, replica: u32) -> Option<&LiveReplica> {
        self.replicas.iter().find(|r| r.service == service && r.replica == replica)
    }

    /// This snapshot in the scenario's indices. Every replica of the scenario must have its
    /// Deployment, and run (or be pinned) on a node the scenario knows.
    pub fn placement(&self, scenario: &Scenario) -> LiveResult<LivePlacement> {
        let mismatch = |reason: String| LiveError::Mismatch { scenario: scenario.name.clone(), reason };
        let node_ready = scenario
            .nodes
            .iter()
            .map(|n| self.nodes.iter().any(|live| live.name == n.name && live.ready))
            .collect();
        let (mut nodes, mut serving, mut held) = (Vec::new(), Vec::new(), Vec::new());
        for service in &scenario.services {
            for replica in 0..service.replicas {
                let live = self.replica(&service.name, replica).ok_or_else(|| {
                    mismatch(format!(
                        "no Deployment labelled {}={}, {}={replica}",
                        labels::SERVICE,
                        service.name,
                        labels::REPLICA
                    ))
                })?;
                let node = live.node.as_ref().or(live.pinned_to.as_ref()).ok_or_else(|| {
                    mismatch(format!(
                        "Deployment `{}` is neither running nor pinned to a node",
                        live.deployment
                    ))
                })?;
                let index = scenario.node_index(node).ok_or_else(|| {
                    mismatch(format!(
                        "Deployment `{}` runs on node `{node}`, which the scenario does not have",
                        live.deployment
                    ))
                })?;
                nodes.push(index);
                serving.push(live.ready);
                held.push(live.gpu_resource.as_deref().and_then(sharing::resource_profile));
            }
        }
        Ok(LivePlacement { nodes, serving, node_ready, held })
    }
}
