//! One move on the cluster: pin a replica's Deployment to a node and wait for its new pod.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};

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

    /// Pins `deployment` to `node`; returns the generation the rollout must reach.
    pub async fn pin(&self, deployment: &str, node: &str) -> LiveResult<i64> {
        let patch = serde_json::json!({
            "spec": {"template": {"spec": {"nodeSelector": {labels::HOSTNAME: node}}}}
        });
        let params = PatchParams { field_manager: Some(labels::FIELD_MANAGER.into()), ..Default::default() };
        let action = format!("patch Deployment `{deployment}` in `{}` to node `{node}`", self.namespace);
        let patched = self
            .deployments()
            .patch(deployment, &params, &Patch::Merge(&patch))
            .await
            .map_err(during(&action))?;
        Ok(patched.metadata.generation.unwrap_or(0))
    }

    /// Pins and waits: done when the rollout is complete and a Ready pod runs on `node`.
    pub async fn move_replica(&self, deployment: &str, node: &str) -> LiveResult<MoveDone> {
        let started = Instant::now();
        let generation = self.pin(deployment, node).await?;
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
