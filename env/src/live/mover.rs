//! One move on the cluster: pin a replica's Deployment to a node (and have it ask for the
//! GPU slot it takes there) and wait for its new pod.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::error::during;
use super::snapshot::{pod_ready, replica_key};
use super::{LiveError, LiveResult, labels};

/// A finished move.
#[derive(Debug, Clone, PartialEq)]
pub struct MoveDone {
    /// The Deployment moved.
    pub deployment: String,
    /// Where it runs now.
    pub node: String,
    /// Its Ready pod there.
    pub pod: String,
    /// From the patch to the pod being Ready and the old one gone.
    pub took: Duration,
}

/// Moves replicas of one namespace, one at a time.
#[derive(Clone)]
pub struct Mover {
    client: kube::Client,
    namespace: String,
    /// How long a rollout may take before the move counts as failed.
    pub timeout: Duration,
    /// How often the rollout is checked.
    pub poll: Duration,
}

/// What a rollout looks like now, in words for a timeout's message.
struct Rollout {
    done: bool,
    pod: Option<String>,
    seen: String,
}

impl Mover {
    /// A mover for `namespace`: five minutes per move (Infinity loads its models for tens of
    /// seconds), checked four times a second.
    pub fn new(client: kube::Client, namespace: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            timeout: Duration::from_secs(300),
            poll: Duration::from_millis(250),
        }
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Pins `deployment` to `node` and, where `gpu` names a GPU resource (the slot the
    /// replica takes there: a MIG profile's, or `nvidia.com/gpu` for a whole GPU or a share),
    /// has its pods ask for that one instead of the one they ask for now, in requests and
    /// limits alike. One patch, so one rollout makes the whole move, and moving back with the
    /// old node and resource undoes both. Returns the generation the rollout must reach.
    pub async fn pin(&self, deployment: &str, node: &str, gpu: Option<&str>) -> LiveResult<i64> {
        let mut pod = json!({"nodeSelector": {labels::HOSTNAME: node}});
        let mut action = format!("patch Deployment `{deployment}` in `{}` to node `{node}`", self.namespace);
        if let Some(gpu) = gpu {
            let read = format!("read Deployment `{deployment}` in `{}`", self.namespace);
            let current = self.deployments().get(deployment).await.map_err(during(&read))?;
            let swaps = gpu_swaps(&current, gpu);
            if !swaps.is_empty() {
                pod["containers"] = Value::Array(swaps);
                action.push_str(&format!(" asking for `{gpu}`"));
            }
        }
        let patch = json!({"spec": {"template": {"spec": pod}}});
        let params = PatchParams { field_manager: Some(labels::FIELD_MANAGER.into()), ..Default::default() };
        let patched = self
            .deployments()
            .patch(deployment, &params, &Patch::Strategic(&patch))
            .await
            .map_err(during(&action))?;
        Ok(patched.metadata.generation.unwrap_or(0))
    }

    /// Pins and waits: done when the rollout is complete and a Ready pod runs on `node`.
    pub async fn move_replica(
        &self,
        deployment: &str,
        node: &str,
        gpu: Option<&str>,
    ) -> LiveResult<MoveDone> {
        let started = Instant::now();
        let generation = self.pin(deployment, node, gpu).await?;
        self.wait_ready(deployment, node, generation, started).await
    }

    /// Waits, from `started`, for the rollout of a pin to `node` (at `generation`) to finish.
    pub async fn wait_ready(
        &self,
        deployment: &str,
        node: &str,
        generation: i64,
        started: Instant,
    ) -> LiveResult<MoveDone> {
        loop {
            let rollout = self.rollout(deployment, node, generation).await?;
            if let (true, Some(pod)) = (rollout.done, rollout.pod) {
                return Ok(MoveDone {
                    deployment: deployment.into(),
                    node: node.into(),
                    pod,
                    took: started.elapsed(),
                });
            }
            if started.elapsed() >= self.timeout {
                return Err(LiveError::Timeout {
                    what: format!("moving Deployment `{deployment}` to node `{node}`"),
                    timeout_s: self.timeout.as_secs_f64(),
                    last_seen: rollout.seen,
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn rollout(&self, deployment: &str, node: &str, generation: i64) -> LiveResult<Rollout> {
        let action = format!("read Deployment `{deployment}`");
        let current = self.deployments().get(deployment).await.map_err(during(&action))?;
        let want = current.spec.replicas.unwrap_or(1);
        let status = current.status.clone().unwrap_or_default();
        let observed = status.observed_generation.unwrap_or(0);
        let (updated, ready, total) = (
            status.updated_replicas.unwrap_or(0),
            status.ready_replicas.unwrap_or(0),
            status.replicas.unwrap_or(0),
        );
        let selector = replica_key(&current.metadata)
            .map(|(s, r)| format!("{}={s},{}={r}", labels::SERVICE, labels::REPLICA))
            .unwrap_or_default();
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(during("list pods"))?;
        let live: Vec<&Pod> = pods.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        let on_node = |p: &&&Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node);
        let pod = live.iter().filter(on_node).find(|p| pod_ready(p)).and_then(|p| p.metadata.name.clone());
        let done =
            observed >= generation && updated == want && ready == want && total == want && pod.is_some();
        let pods_seen: Vec<String> = live
            .iter()
            .map(|p| {
                let at = p.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("unscheduled");
                let state = if pod_ready(p) { "Ready" } else { "not Ready" };
                format!("{} on {at} ({state})", p.metadata.name.as_deref().unwrap_or("?"))
            })
            .collect();
        let seen = format!(
            "generation {observed}/{generation}, {updated} updated, {ready} ready, {total} in all of {want}; pods: [{}]",
            pods_seen.join(", ")
        );
        Ok(Rollout { done, pod, seen })
    }
}

/// The containers of `deployment` that ask for a GPU resource other than `gpu`, as a
/// strategic-merge patch (merged by container name) that swaps it for `gpu` at the same
/// count: the old key removed (`null`) and the new one set, in requests and limits alike
/// (an extended resource's request must equal its limit).
fn gpu_swaps(deployment: &Deployment, gpu: &str) -> Vec<Value> {
    let containers =
        deployment.spec.template.spec.as_ref().map(|p| p.containers.as_slice()).unwrap_or_default();
    containers
        .iter()
        .filter_map(|c| {
            let resources = c.resources.as_ref()?;
            let sides = [resources.requests.as_ref(), resources.limits.as_ref()];
            let (old, count) = sides
                .iter()
                .flatten()
                .flat_map(|m| m.iter())
                .find(|(k, _)| labels::is_gpu_resource(k) && k.as_str() != gpu)
                .map(|(k, q)| (k.clone(), q.0.clone()))?;
            let swap = json!({old.as_str(): Value::Null, gpu: count});
            Some(json!({"name": c.name, "resources": {"requests": swap, "limits": swap}}))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{snapshot, workload};
    use crate::shipped;

    #[test]
    fn a_gpu_swap_replaces_the_resource_at_its_count_and_leaves_cpu_replicas_alone() {
        let scenario = shipped::load("gpu-small").unwrap();
        let placement: Vec<usize> = (0..scenario.replica_count()).map(|r| r % scenario.nodes.len()).collect();
        let all = workload::deployments(&scenario, &placement, "serving");
        let embed = all.iter().find(|d| d.metadata.name.as_deref() == Some("infinity-embed-0")).unwrap();
        let swaps = gpu_swaps(embed, "nvidia.com/mig-1g.10gb");
        assert_eq!(
            swaps,
            [json!({"name": "infinity-embed", "resources": {
                "requests": {"nvidia.com/gpu": null, "nvidia.com/mig-1g.10gb": "1"},
                "limits": {"nvidia.com/gpu": null, "nvidia.com/mig-1g.10gb": "1"},
            }})]
        );
        assert!(gpu_swaps(embed, "nvidia.com/gpu").is_empty(), "already asks for it");
        let router = all.iter().find(|d| d.metadata.name.as_deref() == Some("router-0")).unwrap();
        assert!(gpu_swaps(router, "nvidia.com/mig-1g.10gb").is_empty());
        assert_eq!(snapshot::gpu_resource(embed).as_deref(), Some("nvidia.com/gpu"));
        assert_eq!(snapshot::gpu_resource(router), None);
    }
}
