//! The placed services of a discovered scenario, from the namespace's Deployments: berth's
//! layout (one single-replica Deployment per replica, labelled with its service and index) or
//! a service still run as one Deployment of N replicas, which is counted and told how to move.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PodSpec, Toleration};

use berth_core::mig::MigProfile;
use berth_core::{Accepts, Resources};

use super::super::{labels, metrics};
use super::{DiscoverError, Findings};

/// A placed service's Deployments summed up.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FoundService {
    pub name: String,
    pub replicas: u64,
    /// One replica's requests (GPU memory is not a Kubernetes resource: left 0).
    pub requests: Resources,
    pub tolerations: Vec<Toleration>,
}

/// One replica's requests: each container's `requests`, else its `limits` (Kubernetes
/// defaults a request to the limit). A MIG instance (`nvidia.com/mig-<profile>`) counts as
/// one GPU whose replica accepts that profile or larger.
fn requests(deployment: &str, namespace: &str, pod: &PodSpec) -> Result<Resources, DiscoverError> {
    let whole = |v: f64| v.ceil().min(u64::MAX as f64) as u64;
    let mut total = Resources::default();
    for container in &pod.containers {
        let resources = container.resources.as_ref();
        let given = |key: &str| {
            let requested = resources.and_then(|r| r.requests.as_ref()).and_then(|m| m.get(key));
            let limited = || resources.and_then(|r| r.limits.as_ref()).and_then(|m| m.get(key));
            requested.or_else(limited).map(|q| q.0.as_str())
        };
        let missing = |resource: &str| DiscoverError::NoRequest {
            deployment: deployment.into(),
            namespace: namespace.into(),
            container: container.name.clone(),
            resource: resource.into(),
        };
        let cpu = given("cpu").and_then(metrics::cpu_millicores).ok_or_else(|| missing("cpu"))?;
        let memory = given("memory").and_then(metrics::memory_mib).ok_or_else(|| missing("memory"))?;
        let mut gpus: u32 = given(labels::GPU_RESOURCE).and_then(|q| q.parse().ok()).unwrap_or(0);
        for profile in MigProfile::ALL {
            if given(&profile.resource()).and_then(|q| q.parse::<u32>().ok()).is_some_and(|n| n > 0) {
                total.accepts.mig = Some(profile);
                gpus = gpus.max(1);
            }
        }
        total.cpu_millicores = total.cpu_millicores.saturating_add(whole(cpu));
        total.memory_mib = total.memory_mib.saturating_add(whole(memory));
        total.gpus = total.gpus.saturating_add(gpus);
    }
    Ok(total)
}

/// Each of the two's larger request; of MIG profiles asked for, the larger one.
fn larger(a: Resources, b: Resources) -> Resources {
    let size = |p: &MigProfile| (p.compute_slices(), p.memory_slices());
    let mig = a.accepts.mig.into_iter().chain(b.accepts.mig).max_by_key(size);
    Resources {
        cpu_millicores: a.cpu_millicores.max(b.cpu_millicores),
        memory_mib: a.memory_mib.max(b.memory_mib),
        gpus: a.gpus.max(b.gpus),
        gpu_memory_mib: a.gpu_memory_mib.max(b.gpu_memory_mib),
        accepts: Accepts { mig, time_sliced: a.accepts.time_sliced && b.accepts.time_sliced },
    }
}

/// How to move a service run as one Deployment of N replicas into berth's layout.
fn layout_advice(service: &str, deployment: &str, replicas: u64, namespace: &str) -> String {
    format!(
        "service `{service}` runs as Deployment `{deployment}` of {replicas} replicas; berth moves one \
         single-replica Deployment per replica (labels {}={service}, {}=0..{last}, pinned by nodeSelector {}). \
         Counted as {replicas} replicas here; to let berth place them, add `{service}` to the services of \
         helm/workloads/values.yaml (its resources, one node per replica), `helm upgrade --install \
         {service}-replicas helm/workloads -n {namespace}`, then `kubectl -n {namespace} scale \
         deployment/{deployment} --replicas=0`",
        labels::SERVICE,
        labels::REPLICA,
        labels::HOSTNAME,
        last = replicas.saturating_sub(1),
    )
}

/// The placed services in name order, or why there are none.
pub(super) fn found_services(
    deployments: &[Deployment],
    namespace: &str,
    findings: &mut Findings,
) -> Result<Vec<FoundService>, DiscoverError> {
    let mut by_service: BTreeMap<String, (FoundService, bool)> = BTreeMap::new();
    let mut unlabelled = Vec::new();
    for d in deployments {
        let name = d.metadata.name.clone().unwrap_or_default();
        let meta_labels = d.metadata.labels.clone().unwrap_or_default();
        let Some(service) = meta_labels.get(labels::SERVICE) else {
            unlabelled.push(name);
            continue;
        };
        let replicas = d.spec.replicas.unwrap_or(1).max(0) as u64;
        let pod = d.spec.template.spec.clone().unwrap_or_default();
        let replica_requests = requests(&name, namespace, &pod)?;
        if replicas != 1 || !meta_labels.contains_key(labels::REPLICA) {
            findings.note(layout_advice(service, &name, replicas, namespace));
        }
        let other_selectors: Vec<String> = pod
            .node_selector
            .iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != labels::HOSTNAME)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !other_selectors.is_empty()
            || pod.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()).is_some()
        {
            findings.note(format!(
                "Deployment `{name}` narrows its nodes ({}); scenarios have no node selectors: ignored",
                if other_selectors.is_empty() { "node affinity".into() } else { other_selectors.join(", ") }
            ));
        }
        let (found, differs) = by_service.entry(service.clone()).or_insert_with(|| {
            let found = FoundService {
                name: service.clone(),
                replicas: 0,
                requests: replica_requests,
                tolerations: pod.tolerations.clone().unwrap_or_default(),
            };
            (found, false)
        });
        found.replicas = found.replicas.saturating_add(replicas);
        *differs |= replica_requests != found.requests;
        found.requests = larger(found.requests, replica_requests);
    }
    if by_service.is_empty() {
        return Err(DiscoverError::NoServices { namespace: namespace.into(), unlabelled });
    }
    if !unlabelled.is_empty() {
        findings.note(format!(
            "Deployments without a `{}` label are not placed services, left out: {}",
            labels::SERVICE,
            unlabelled.join(", ")
        ));
    }
    Ok(by_service
        .into_values()
        .map(|(service, differs)| {
            if differs {
                findings.note(format!(
                    "the Deployments of `{}` request different resources: the largest taken for every replica",
                    service.name
                ));
            }
            service
        })
        .collect())
}
