//! The placed services of a discovered scenario, from the namespace's Deployments: berth's
//! layout (one single-replica Deployment per replica, labelled with its service and index) or
//! a service still run as one Deployment of N replicas, which is counted and told how to move.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PodSpec, Toleration};

use super::super::{labels, metrics};
use super::{DiscoverError, Findings};

/// A placed service's Deployments summed up.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FoundService {
    pub name: String,
    pub replicas: u64,
    pub cpu_millicores: u64,
    pub memory_mib: u64,
    pub gpus: u32,
    pub tolerations: Vec<Toleration>,
}

/// One replica's requests: each container's `requests`, else its `limits` (Kubernetes
/// defaults a request to the limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Requests {
    cpu_millicores: u64,
    memory_mib: u64,
    gpus: u32,
}

fn requests(deployment: &str, namespace: &str, pod: &PodSpec) -> Result<Requests, DiscoverError> {
    let mut total = Requests { cpu_millicores: 0, memory_mib: 0, gpus: 0 };
    for container in &pod.containers {
        let resources = container.resources.as_ref();
        let quantity = |key: &str| {
            let of = |map: Option<&BTreeMap<_, _>>| {
                map.and_then(|m| m.get(key))
                    .map(|q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| q.0.clone())
            };
            of(resources.and_then(|r| r.requests.as_ref()))
                .or_else(|| of(resources.and_then(|r| r.limits.as_ref())))
        };
        let missing = |resource: &str| DiscoverError::NoRequest {
            deployment: deployment.into(),
            namespace: namespace.into(),
            container: container.name.clone(),
            resource: resource.into(),
        };
        let cpu = quantity("cpu").and_then(|q| metrics::cpu_millicores(&q)).ok_or_else(|| missing("cpu"))?;
        let memory =
            quantity("memory").and_then(|q| metrics::memory_mib(&q)).ok_or_else(|| missing("memory"))?;
        let gpus: u32 = quantity(labels::GPU_RESOURCE).and_then(|q| q.parse().ok()).unwrap_or(0);
        total.cpu_millicores = total.cpu_millicores.saturating_add(cpu.ceil().min(u64::MAX as f64) as u64);
        total.memory_mib = total.memory_mib.saturating_add(memory.ceil().min(u64::MAX as f64) as u64);
        total.gpus = total.gpus.saturating_add(gpus);
    }
    Ok(total)
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
    let mut by_service: BTreeMap<String, (FoundService, Vec<Requests>)> = BTreeMap::new();
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
        let entry = by_service.entry(service.clone()).or_insert_with(|| {
            let found = FoundService {
                name: service.clone(),
                replicas: 0,
                cpu_millicores: 0,
                memory_mib: 0,
                gpus: 0,
                tolerations: pod.tolerations.clone().unwrap_or_default(),
            };
            (found, Vec::new())
        });
        entry.0.replicas = entry.0.replicas.saturating_add(replicas);
        entry.1.push(replica_requests);
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
        .map(|(mut service, all)| {
            let most = all.iter().fold(Requests { cpu_millicores: 0, memory_mib: 0, gpus: 0 }, |m, r| Requests {
                cpu_millicores: m.cpu_millicores.max(r.cpu_millicores),
                memory_mib: m.memory_mib.max(r.memory_mib),
                gpus: m.gpus.max(r.gpus),
            });
            if all.iter().any(|r| *r != most) {
                findings.note(format!(
                    "the Deployments of `{}` request different resources: the largest taken for every replica",
                    service.name
                ));
            }
            (service.cpu_millicores, service.memory_mib, service.gpus) = (most.cpu_millicores, most.memory_mib, most.gpus);
            service
        })
        .collect())
}
