//! The kubelet's part for pods bound to emulated nodes: start them (Running, then Ready
//! after the service's cold start, drawn from the scenario's `cold_starts:` shape where it
//! has one), report them NotReady while their node is down, and
//! finish deleting the ones being terminated.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use berth_core::Scenario;
use berth_core::rng::{Rng, fnv1a};
use berth_env::live::{LiveError, LiveResult, labels, pod_ready};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::node::MANAGER;

/// What the emulated kubelets remember between syncs.
#[derive(Debug)]
pub struct Kubelets {
    /// When each pod (by uid) was first seen bound and not Ready, and its cold start in
    /// wall-clock seconds from then.
    starting: HashMap<String, (Instant, f64)>,
    /// Simulated seconds per wall-clock second: cold starts are this much shorter.
    speed: f64,
    next_ip: u32,
}

fn pod_status(pod: &Pod, is_ready: bool, ip: &str) -> Value {
    let flag = if is_ready { "True" } else { "False" };
    let now = json!(Time(Timestamp::now()));
    let condition =
        |kind: &str, status: &str| json!({"type": kind, "status": status, "lastTransitionTime": now});
    let containers: Vec<Value> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            json!({"name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "",
                   "ready": is_ready, "started": true, "restartCount": 0,
                   "state": {"running": {"startedAt": now}}})
        })
        .collect();
    json!({"status": {
        "phase": "Running", "hostIP": "127.0.0.1", "podIP": ip, "startTime": now,
        "conditions": [condition("Initialized", "True"), condition("Ready", flag),
                       condition("ContainersReady", flag), condition("PodScheduled", "True")],
        "containerStatuses": containers,
    }})
}

impl Kubelets {
    /// Kubelets for a cluster running `speed` times faster than the wall clock.
    pub fn new(speed: f64) -> Self {
        Self { starting: HashMap::new(), speed, next_ip: 1 }
    }

    /// The pod's cold start in wall-clock seconds: its service's figure, times a draw from
    /// the scenario's cold-start shape keyed by the pod's uid (the same pod always draws the
    /// same), at the emulator's `speed`.
    fn cold_start_s(speed: f64, scenario: &Scenario, pod: &Pod) -> f64 {
        let service = pod.metadata.labels.as_ref().and_then(|l| l.get(labels::SERVICE));
        let cold = service
            .and_then(|name| scenario.services.iter().find(|s| &s.name == name))
            .map_or(1.0, |s| s.cold_start_s);
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let spread = scenario
            .cold_starts
            .as_ref()
            .map_or(1.0, |shape| shape.multiplier(Rng::new(fnv1a(uid.as_bytes())).next_f64()));
        cold * spread / speed
    }

    /// One pass over the pods bound to `nodes`; `down` are the failed ones, and pods on
    /// `stuck` ones are never started.
    pub async fn sync(
        &mut self,
        client: &kube::Client,
        scenario: &Scenario,
        nodes: &HashSet<String>,
        down: &HashSet<String>,
        stuck: &HashSet<String>,
    ) -> LiveResult<()> {
        let pods = Api::<Pod>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| LiveError::kube("list pods", e))?;
        let mut seen = HashSet::new();
        for pod in &pods.items {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) else { continue };
            if !nodes.contains(node) {
                continue;
            }
            let (name, namespace) = (
                pod.metadata.name.clone().unwrap_or_default(),
                pod.metadata.namespace.clone().unwrap_or_default(),
            );
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let api = Api::<Pod>::namespaced(client.clone(), &namespace);
            let params = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
            if pod.metadata.deletion_timestamp.is_some() {
                // The containers have stopped: the kubelet removes the pod for good.
                match api
                    .delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
                    .await
                {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(e) => return Err(LiveError::kube(format!("delete pod `{name}`"), e)),
                }
                continue;
            }
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_else(|| {
                self.next_ip += 1;
                format!("10.244.{}.{}", self.next_ip / 250, self.next_ip % 250 + 1)
            });
            let action = format!("update the status of pod `{namespace}/{name}`");
            if down.contains(node) {
                if pod_ready(pod) {
                    api.patch_status(&name, &params, &Patch::Merge(pod_status(pod, false, &ip)))
                        .await
                        .map_err(|e| LiveError::kube(&action, e))?;
                }
                continue;
            }
            if pod_ready(pod) || stuck.contains(node) {
                continue;
            }
            seen.insert(uid.clone());
            let speed = self.speed;
            let (since, cold) = *self
                .starting
                .entry(uid.clone())
                .or_insert_with(|| (Instant::now(), Self::cold_start_s(speed, scenario, pod)));
            if since.elapsed().as_secs_f64() >= cold {
                api.patch_status(&name, &params, &Patch::Merge(pod_status(pod, true, &ip)))
                    .await
                    .map_err(|e| LiveError::kube(&action, e))?;
                self.starting.remove(&uid);
            }
        }
        self.starting.retain(|uid, _| seen.contains(uid));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(service: &str, uid: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.uid = Some(uid.into());
        pod.metadata.labels = Some([(labels::SERVICE.to_string(), service.to_string())].into());
        pod
    }

    #[test]
    fn cold_starts_follow_the_scenario_s_shape_per_pod_and_the_emulator_s_speed() {
        let plain = berth_env::shipped::shipped("gpu-small").unwrap();
        let shaped = berth_env::shipped::shipped("gentd26").unwrap();
        let service = &shaped.services.iter().find(|s| s.cold_start_s > 1.0).unwrap().name;
        let base = shaped.services.iter().find(|s| &s.name == service).unwrap().cold_start_s;
        let shape = shaped.cold_starts.as_ref().unwrap();
        let draws: Vec<f64> = (0..200)
            .map(|i| Kubelets::cold_start_s(10.0, &shaped, &pod(service, &format!("uid-{i}"))))
            .collect();
        // Each is the figure times a multiplier of the shape, at ten times the wall clock.
        let (low, high) = (shape.multiplier(0.0), shape.multiplier(1.0));
        assert!(
            draws.iter().all(|d| (base * low / 10.0 - 1e-9..=base * high / 10.0 + 1e-9).contains(d)),
            "{draws:?}"
        );
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - base / 10.0).abs() < 0.2 * base / 10.0, "mean {mean} vs {}", base / 10.0);
        assert!(draws.iter().any(|d| *d < 0.5 * base / 10.0) && draws.iter().any(|d| *d > 1.5 * base / 10.0));
        // The same pod draws the same; without a shape, the figure itself.
        assert_eq!(Kubelets::cold_start_s(10.0, &shaped, &pod(service, "uid-7")), draws[7]);
        let plain_service = &plain.services.iter().find(|s| &s.name == service).unwrap();
        assert_eq!(
            Kubelets::cold_start_s(10.0, &plain, &pod(service, "uid-7")),
            plain_service.cold_start_s / 10.0
        );
    }
}
