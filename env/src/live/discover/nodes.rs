//! The nodes of a discovered scenario, from Node objects: what each says, what had to be
//! assumed, and which a placed service cannot use.

use std::collections::BTreeMap;

use berth_core::GpuSharing;
use k8s_openapi::api::core::v1::{Node as KubeNode, Taint, Toleration};

use super::super::gpu_products::{self, UNKNOWN_MEMORY_MIB, UNKNOWN_SPEED};
use super::super::{labels, live_node};
use super::Findings;

/// The zone of a node with no zone label.
pub(super) const DEFAULT_ZONE: &str = "default";

/// A node as the scenario will hold it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FoundNode {
    pub name: String,
    pub zone: String,
    pub cpu_millicores: u64,
    pub memory_mib: u64,
    pub gpu: Option<FoundGpu>,
}

/// A node's GPUs.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FoundGpu {
    pub count: u32,
    pub class: String,
    pub memory_mib: u64,
    /// MIG instances or time-sliced shares, as the GPU operator advertises them.
    pub sharing: GpuSharing,
}

/// Whether any node's GPUs are time-sliced: then a pod asking for `nvidia.com/gpu` may be
/// given a share there.
pub(super) fn any_time_sliced(nodes: &FoundNodes) -> bool {
    nodes
        .nodes
        .iter()
        .any(|n| n.gpu.as_ref().is_some_and(|g| matches!(g.sharing, GpuSharing::TimeSliced { .. })))
}

/// The usable nodes, and the speed (against an L4) of every GPU class among them.
#[derive(Debug, Default)]
pub(super) struct FoundNodes {
    pub nodes: Vec<FoundNode>,
    pub speeds: BTreeMap<String, f64>,
}

/// Whether toleration `t` lets a pod onto a node with `taint` (the scheduler's rule).
fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let exists = t.operator.as_deref() == Some("Exists");
    let effect = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = match t.key.as_deref() {
        None | Some("") => exists,
        Some(k) => k == taint.key,
    };
    let value = exists || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
    effect && key && value
}

/// The taints that keep pods off a node, less the ones the node lifecycle sets on a node that
/// is NotReady or unreachable (the scenario's failures stand for those).
fn blocking_taints(node: &KubeNode) -> Vec<&Taint> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    taints
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .filter(|t| !t.key.starts_with("node.kubernetes.io/"))
        .collect()
}

fn taint_text(t: &Taint) -> String {
    format!("{}={}:{}", t.key, t.value.as_deref().unwrap_or(""), t.effect)
}

/// How a node's GPUs are shared, in words for the findings.
fn shared_text(count: u32, sharing: &GpuSharing) -> String {
    match sharing {
        GpuSharing::Mig(layout) => {
            let names: Vec<&str> = layout.instances().iter().map(|i| i.profile.name()).collect();
            format!("each of its {count} GPUs MIG-partitioned into [{}]", names.join(", "))
        }
        GpuSharing::TimeSliced { replicas, overhead } => format!(
            "each of its {count} GPUs time-sliced into {replicas} shares (berth's overhead {overhead} when shared)"
        ),
        GpuSharing::Whole => format!("{count} whole GPUs"),
    }
}

/// The class name of a product berth has no figures for: its label, lower case.
fn unknown_class(product: &str) -> String {
    product.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// The nodes pods of the placed services can run on; `tolerations` are each service's.
pub(super) fn found_nodes(
    objects: &[KubeNode],
    tolerations: &[(String, Vec<Toleration>)],
    findings: &mut Findings,
) -> FoundNodes {
    let mut found = FoundNodes::default();
    for object in objects {
        let live = live_node(object);
        let name = live.name.clone();
        if object.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
            findings.note(format!("node `{name}` is cordoned: left out"));
            continue;
        }
        let mut blocked = Vec::new();
        for taint in blocking_taints(object) {
            let by: Vec<&str> = tolerations
                .iter()
                .filter(|(_, ts)| ts.iter().any(|t| tolerates(t, taint)))
                .map(|(s, _)| s.as_str())
                .collect();
            if by.is_empty() {
                blocked.push(taint_text(taint));
            } else if by.len() < tolerations.len() {
                findings.note(format!(
                    "node `{name}`: taint {} is tolerated by {} only; the scenario lets every service use the node",
                    taint_text(taint),
                    by.join(", ")
                ));
            }
        }
        if !blocked.is_empty() {
            findings.note(format!(
                "node `{name}` has taint {} that no placed service tolerates: left out",
                blocked.join(", ")
            ));
            continue;
        }
        if live.cpu_millicores == 0 || live.memory_mib == 0 {
            findings.note(format!("node `{name}` reports no allocatable CPU or memory: left out"));
            continue;
        }
        if !live.ready {
            findings.note(format!(
                "node `{name}` is NotReady now: kept (the scenario's `failures:` model downtime)"
            ));
        }
        let zone = live.zone.clone().unwrap_or_else(|| {
            findings
                .fill(format!("node `{name}`: no `{}` label, put in zone `{DEFAULT_ZONE}`", labels::ZONE));
            DEFAULT_ZONE.into()
        });
        let has_gpus = live.gpus > 0 || !live.mig.is_empty();
        let gpu = has_gpus.then(|| {
            let product = live.gpu_product.clone().unwrap_or_else(|| {
                findings.fill(format!("node `{name}`: no `{}` label, GPU taken as an unknown `gpu`", labels::GPU_PRODUCT));
                "gpu".into()
            });
            let known = gpu_products::lookup(&product);
            let class = known.map_or_else(|| unknown_class(&product), |p| p.class.to_string());
            if known.is_none() && !found.speeds.contains_key(&class) {
                findings.fill(format!(
                    "GPU product `{product}` is not in berth's table: class `{class}` at an L4's speed ({UNKNOWN_SPEED}×)"
                ));
            }
            let memory_mib = live.gpu_memory_mib.filter(|&m| m > 0).unwrap_or_else(|| {
                let memory = known.map_or(UNKNOWN_MEMORY_MIB, |p| p.memory_mib);
                findings.fill(format!("node `{name}`: no `{}` label, {memory} MiB per GPU", labels::GPU_MEMORY));
                memory
            });
            (class, known, memory_mib)
        });
        let gpu = match gpu {
            None => None,
            Some((class, known, memory_mib)) => match live.gpu_sharing(memory_mib) {
                Err(reason) => {
                    findings.note(format!("node `{name}`: {reason}: left out"));
                    continue;
                }
                Ok(None) => None,
                Ok(Some((count, sharing))) => {
                    if sharing.is_shared() {
                        findings.note(format!("node `{name}`: {}", shared_text(count, &sharing)));
                    }
                    found.speeds.insert(class.clone(), known.map_or(UNKNOWN_SPEED, |p| p.speed));
                    Some(FoundGpu { count, class, memory_mib, sharing })
                }
            },
        };
        found.nodes.push(FoundNode {
            name,
            zone,
            cpu_millicores: live.cpu_millicores,
            memory_mib: live.memory_mib,
            gpu,
        });
    }
    found.nodes.sort_by(|a, b| (&a.zone, &a.name).cmp(&(&b.zone, &b.name)));
    found
}
