//! The Deployments of a scenario's replicas: one per replica, so each can be pinned to its
//! own node. The workload chart (`helm/workloads`) renders the same objects for operators.

use berth_core::{NodeUsage, Scenario, Service};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::error::during;
use super::metrics;
use super::{LiveResult, labels, sharing};

/// How a placed service's container runs and says it is ready.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// Image reference.
    pub image: &'static str,
    /// Arguments.
    pub args: &'static [&'static str],
    /// The port its health endpoint listens on.
    pub port: u16,
    /// The readiness path.
    pub ready_path: &'static str,
}

/// The container of a service, by the names the shipped scenarios use: Infinity with the
/// three embedding models on 7997 (`/health`), the reranker on 9002 (`/health/ready`), and
/// the router (an nginx-style proxy) on 8080 for anything else.
pub fn container_for(service: &str) -> Container {
    match service {
        "infinity-embed" => Container {
            image: "michaelf34/infinity:0.0.77",
            args: &[
                "v2",
                "--port",
                "7997",
                "--model-id",
                "BAAI/bge-m3",
                "--model-id",
                "intfloat/multilingual-e5-large",
                "--model-id",
                "ai-forever/FRIDA",
            ],
            port: 7997,
            ready_path: "/health",
        },
        "rerank" => {
            Container { image: "berth/rerank:0.1.0", args: &[], port: 9002, ready_path: "/health/ready" }
        }
        _ => Container {
            image: "nginxinc/nginx-unprivileged:1.27-alpine",
            args: &[],
            port: 8080,
            ready_path: "/",
        },
    }
}

/// The Deployment name of a replica.
pub fn deployment_name(service: &str, replica: u32) -> String {
    format!("{service}-{replica}")
}

/// The GPU resource each replica asks for where `placement` puts it, in replica order: the
/// slot it takes there as the simulator seats replicas (the smallest MIG instance that
/// fits, else a share, else whole GPUs); `None` for a replica without GPUs.
pub fn gpu_resources(scenario: &Scenario, placement: &[usize]) -> Vec<Option<String>> {
    let mut usage = vec![NodeUsage::default(); scenario.nodes.len()];
    scenario
        .replica_services()
        .iter()
        .zip(placement)
        .map(|(&s, &n)| {
            let seat = usage[n].take(scenario.nodes[n].gpu.as_ref(), &scenario.services[s].requests);
            sharing::replica_resource(scenario, s, n, seat)
        })
        .collect()
}

fn deployment(service: &Service, replica: u32, node: &str, gpu: Option<&str>, namespace: &str) -> Deployment {
    let c = container_for(&service.name);
    let selector = json!({labels::SERVICE: service.name, labels::REPLICA: replica.to_string()});
    let mut requests = json!({
        "cpu": metrics::cpu_quantity(service.requests.cpu_millicores as f64),
        "memory": format!("{}Mi", service.requests.memory_mib),
    });
    let mut limits = json!({"memory": format!("{}Mi", service.requests.memory_mib)});
    if let Some(gpu) = gpu {
        // Extended resources must have limits equal to requests.
        requests[gpu] = json!(service.requests.gpus.to_string());
        limits[gpu] = json!(service.requests.gpus.to_string());
    }
    let object = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(&service.name, replica),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": service.name,
                "app.kubernetes.io/managed-by": labels::FIELD_MANAGER,
                labels::SERVICE: service.name,
                labels::REPLICA: replica.to_string(),
            },
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            // A move starts the new pod before the old one stops.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": selector},
                "spec": {
                    "nodeSelector": {labels::HOSTNAME: node},
                    "containers": [{
                        "name": service.name,
                        "image": c.image,
                        "args": c.args,
                        "ports": [{"name": "http", "containerPort": c.port}],
                        "resources": {"requests": requests, "limits": limits},
                        "readinessProbe": {"httpGet": {"path": c.ready_path, "port": c.port}, "periodSeconds": 5},
                        "livenessProbe": {
                            "httpGet": {"path": c.ready_path, "port": c.port},
                            "initialDelaySeconds": (service.cold_start_s.ceil() as u64) * 2 + 10,
                            "periodSeconds": 10,
                        },
                    }],
                },
            },
        },
    });
    serde_json::from_value(object).expect("a well-formed Deployment")
}

/// One Deployment per replica, pinned where `placement[r]` (a node index per replica, in the
/// scenario's replica order) says, asking for the GPU resource of the slot it takes there.
pub fn deployments(scenario: &Scenario, placement: &[usize], namespace: &str) -> Vec<Deployment> {
    let gpus = gpu_resources(scenario, placement);
    let mut r = 0;
    let mut out = Vec::new();
    for service in &scenario.services {
        for replica in 0..service.replicas {
            let node = &scenario.nodes[placement[r]].name;
            out.push(deployment(service, replica, node, gpus[r].as_deref(), namespace));
            r += 1;
        }
    }
    out
}

/// Creates or updates the Deployments (server-side apply as berth).
pub async fn apply(client: &kube::Client, namespace: &str, deployments: &[Deployment]) -> LiveResult<()> {
    let api = Api::<Deployment>::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(labels::FIELD_MANAGER).force();
    for d in deployments {
        let name = d.metadata.name.clone().unwrap_or_default();
        let action = format!("apply Deployment `{name}` in `{namespace}`");
        api.patch(&name, &params, &Patch::Apply(d)).await.map_err(during(&action))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shipped;

    #[test]
    fn one_pinned_deployment_per_replica_with_gpu_limits() {
        let scenario = shipped::load("gpu-small").unwrap();
        let placement: Vec<usize> = (0..scenario.replica_count()).map(|r| r % scenario.nodes.len()).collect();
        let all = deployments(&scenario, &placement, "serving");
        assert_eq!(all.len(), scenario.replica_count());
        let embed = all.iter().find(|d| d.metadata.name.as_deref() == Some("infinity-embed-1")).unwrap();
        let spec = &embed.spec;
        let pod = spec.template.spec.as_ref().unwrap();
        let r = scenario
            .replica_services()
            .iter()
            .position(|&s| scenario.services[s].name == "infinity-embed")
            .unwrap()
            + 1;
        assert_eq!(pod.node_selector.as_ref().unwrap()[labels::HOSTNAME], scenario.nodes[placement[r]].name);
        let resources = pod.containers[0].resources.as_ref().unwrap();
        assert_eq!(resources.limits.as_ref().unwrap()[labels::GPU_RESOURCE].0, "1");
        assert_eq!(
            pod.containers[0].readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(),
            Some("/health")
        );
        let surge = spec.strategy.as_ref().unwrap().rolling_update.as_ref().unwrap();
        assert_eq!(
            surge.max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
        );
        assert_eq!(embed.metadata.labels.as_ref().unwrap()[labels::REPLICA], "1");
    }

    #[test]
    fn a_replica_on_shared_gpus_asks_for_its_slot() {
        let scenario = shipped::load("gpu-mig").unwrap();
        let index = |name: &str| scenario.node_index(name).unwrap();
        let (mig, l4, cpu) = (index("h100-a-1"), index("l4-b-1"), index("cpu-a-1"));
        // Routers and rerankers on CPU nodes; the four embedding replicas two on the MIG node,
        // two on the time-sliced L4.
        let placement = [cpu, cpu, mig, mig, l4, l4, cpu, index("cpu-b-1")];
        assert_eq!(placement.len(), scenario.replica_count());
        let gpus = gpu_resources(&scenario, &placement);
        let embed = scenario
            .replica_services()
            .iter()
            .position(|&s| scenario.services[s].name == "infinity-embed")
            .unwrap();
        assert_eq!(gpus[0], None, "a router asks for no GPU");
        // The smallest instances that fit first: the two 1g.10gb of h100-a-1.
        assert_eq!(gpus[embed].as_deref(), Some("nvidia.com/mig-1g.10gb"));
        assert_eq!(gpus[embed + 1].as_deref(), Some("nvidia.com/mig-1g.10gb"));
        assert_eq!(gpus[embed + 2].as_deref(), Some("nvidia.com/gpu"), "a time-sliced share");
        let all = deployments(&scenario, &placement, "serving");
        let pod = all[embed].spec.template.spec.as_ref().unwrap();
        let resources = pod.containers[0].resources.as_ref().unwrap();
        for side in [resources.requests.as_ref().unwrap(), resources.limits.as_ref().unwrap()] {
            assert_eq!(side["nvidia.com/mig-1g.10gb"].0, "1");
            assert!(!side.contains_key("nvidia.com/gpu"));
        }
    }
}
