//! `berth scenario discover`: the scenario of the cluster berth is pointed at, read from its
//! Node objects and the placed services' Deployments.
//!
//! What a cluster does not hold (traffic, service times, round trips, failures) is filled from
//! documented defaults; every such figure, and every node or Deployment left out, is listed in
//! the document's header, so a user knows what to check. The document is checked to load
//! before it is returned: a partial scenario is never handed back.

mod document;
mod nodes;
mod services;

use berth_core::{Scenario, limits};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::api::{Api, ListParams};

use super::error::during;
use super::{LiveError, labels};

/// What discovery reads from a cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterObjects {
    /// The nodes (those matching the selector, if one was given).
    pub nodes: Vec<KubeNode>,
    /// Every Deployment of the namespace.
    pub deployments: Vec<Deployment>,
}

/// Why discovery wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The cluster could not be read (a 403 names the right that is missing).
    #[error(transparent)]
    Live(#[from] LiveError),
    /// More of something than a scenario may hold.
    #[error("the cluster has {count} {what}; a scenario holds at most {max} (narrow it with --selector)")]
    TooMany {
        /// What there is too much of.
        what: &'static str,
        /// How many there are.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// No node a placed service can use.
    #[error("no node to place on{0}")]
    NoNodes(String),
    /// No Deployment is a placed service.
    #[error(
        "no Deployment in namespace `{namespace}` is labelled `berth.io/service` (berth places the \
         Deployments of the workload chart, helm/workloads){}",
        if unlabelled.is_empty() { String::new() } else { format!("; unlabelled: {}", unlabelled.join(", ")) }
    )]
    NoServices {
        /// The namespace read.
        namespace: String,
        /// The Deployments it has.
        unlabelled: Vec<String>,
    },
    /// A placed service's container requests nothing: berth places by requests.
    #[error(
        "Deployment `{deployment}` in namespace `{namespace}`, container `{container}`: no {resource} request \
         (nor limit); berth places replicas by their requests: set resources.requests.{resource}"
    )]
    NoRequest {
        /// The Deployment.
        deployment: String,
        /// Its namespace.
        namespace: String,
        /// The container without the request.
        container: String,
        /// `cpu` or `memory`.
        resource: String,
    },
    /// The document does not load (a figure of the cluster is outside a scenario's limits).
    #[error("the discovered scenario does not load: {0}")]
    Invalid(#[source] berth_core::Error),
}

/// What was assumed and what was seen, for the user to check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    /// Figures not read from the cluster but filled from documented defaults.
    pub filled: Vec<String>,
    /// Nodes and Deployments left out or read only in part, and why.
    pub notes: Vec<String>,
}

impl Findings {
    fn fill(&mut self, what: String) {
        self.filled.push(what);
    }

    fn note(&mut self, what: String) {
        self.notes.push(what);
    }
}

/// A discovered scenario: the document as written, the scenario it loads as, and the findings.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The YAML document, its header listing the findings.
    pub document: String,
    /// The document loaded.
    pub scenario: Scenario,
    /// What was assumed or left out.
    pub findings: Findings,
}

/// Reads the nodes (matching `selector`, a label selector, if given) and the namespace's
/// Deployments.
pub async fn read_cluster(
    client: &kube::Client,
    namespace: &str,
    selector: Option<&str>,
) -> Result<ClusterObjects, LiveError> {
    let nodes_params = selector.map_or_else(ListParams::default, |s| ListParams::default().labels(s));
    let nodes =
        Api::<KubeNode>::all(client.clone()).list(&nodes_params).await.map_err(during("list nodes"))?;
    let action = format!("list Deployments in namespace `{namespace}`");
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(during(&action))?;
    Ok(ClusterObjects { nodes: nodes.items, deployments: deployments.items })
}

fn header(namespace: &str, findings: &Findings) -> String {
    let mut lines = vec![
        format!(
            "# Discovered by `berth scenario discover` from the cluster's nodes and namespace `{namespace}`."
        ),
        "# Read from the cluster: nodes (allocatable CPU, memory, GPUs; zone; GPU product and memory),"
            .into(),
        "# and each placed service's replicas and requests.".into(),
        "# Filled from defaults (docs/scenarios.md, \"Discovering a cluster\"); check these:".into(),
    ];
    lines.extend(findings.filled.iter().map(|f| format!("# - {f}")));
    if !findings.notes.is_empty() {
        lines.push("# Left out or read in part:".into());
        lines.extend(findings.notes.iter().map(|n| format!("# - {n}")));
    }
    lines.join("\n") + "\n"
}

/// The scenario of `objects`, named `name`; `namespace` is where the Deployments were read.
pub fn discover(objects: &ClusterObjects, name: &str, namespace: &str) -> Result<Discovery, DiscoverError> {
    let too_many = |what, count: u64, max: u64| {
        if count > max { Err(DiscoverError::TooMany { what, count, max }) } else { Ok(()) }
    };
    too_many("nodes", objects.nodes.len() as u64, limits::MAX_NODES)?;
    let mut findings = Findings::default();
    let mut services = services::found_services(&objects.deployments, namespace, &mut findings)?;
    document::sort_as_chain(&mut services);
    too_many("placed services", services.len() as u64, limits::MAX_SERVICES as u64)?;
    too_many(
        "replicas",
        services.iter().fold(0u64, |sum, s| sum.saturating_add(s.replicas)),
        limits::MAX_REPLICAS,
    )?;
    let tolerations: Vec<_> = services.iter().map(|s| (s.name.clone(), s.tolerations.clone())).collect();
    let nodes = nodes::found_nodes(&objects.nodes, &tolerations, &mut findings);
    if nodes.nodes.is_empty() {
        let why = if objects.nodes.is_empty() {
            " (the cluster lists no node, or none matches the selector)".to_string()
        } else {
            format!(": {}", findings.notes.join("; "))
        };
        return Err(DiscoverError::NoNodes(why));
    }
    if nodes::any_time_sliced(&nodes) {
        let one_gpu = services.iter_mut().filter(|s| s.requests.gpus == 1);
        let names: Vec<String> = one_gpu
            .map(|s| {
                s.requests.accepts.time_sliced = true;
                s.name.clone()
            })
            .collect();
        if !names.is_empty() {
            findings.note(format!(
                "some nodes' GPUs are time-sliced: {} ask for one `{}` and may be given a share there \
                 (accepts.time_sliced)",
                names.join(", "),
                labels::GPU_RESOURCE
            ));
        }
    }
    let body = document::document(name, namespace, &nodes, &services, &mut findings);
    let scenario = Scenario::from_yaml(&body).map_err(DiscoverError::Invalid)?;
    let document = header(namespace, &findings) + &body;
    Ok(Discovery { document, scenario, findings })
}

#[cfg(test)]
mod tests;
