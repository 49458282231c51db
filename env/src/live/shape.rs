//! The scenario of the cluster as it is today: the stored scenario with the nodes that joined
//! since it was written added from their Node objects, so a plan for a model that fits any
//! cluster can use them, and a replica already running on one is accounted, not refused.
//!
//! The stored nodes keep their indices (a model's failure events and a size-bound model's
//! actions refer to them); one missing from the cluster stays, not Ready. A new node comes
//! after them, in name order, and is described by what its Node object says: allocatable CPU,
//! memory and `nvidia.com/gpu`, its zone label, and its GPU product and memory labels.

use std::collections::HashSet;

use berth_core::{GpuSpec, Node, Resources, Scenario, limits};

use super::snapshot::{LiveNode, Snapshot};
use super::{gpu_products, labels};

/// A node of the cluster the plan cannot use, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct LeftOut {
    /// The node's name.
    pub node: String,
    /// What is missing or unknown.
    pub reason: String,
}

/// The stored scenario brought up to the cluster's node list.
#[derive(Debug, Clone)]
pub struct LiveShape {
    /// The scenario with the new nodes appended.
    pub scenario: Scenario,
    /// The nodes added, in the order appended.
    pub added: Vec<String>,
    /// The nodes of the cluster left out, with the reason.
    pub left_out: Vec<LeftOut>,
}

impl Snapshot {
    /// `scenario` with every node of this snapshot it does not know appended where the
    /// node's labels and resources describe it well enough; the rest are reported.
    pub fn shape(&self, scenario: &Scenario) -> LiveShape {
        let known: HashSet<&str> = scenario.nodes.iter().map(|n| n.name.as_str()).collect();
        let mut new: Vec<&LiveNode> =
            self.nodes.iter().filter(|n| !known.contains(n.name.as_str())).collect();
        new.sort_by(|a, b| a.name.cmp(&b.name));
        let mut shaped = scenario.clone();
        let (mut added, mut left_out) = (Vec::new(), Vec::new());
        for live in new {
            match scenario_node(&mut shaped, live) {
                Ok(node) => {
                    added.push(node.name.clone());
                    shaped.nodes.push(node);
                }
                Err(reason) => left_out.push(LeftOut { node: live.name.clone(), reason }),
            }
        }
        LiveShape { scenario: shaped, added, left_out }
    }
}

/// A new node in the scenario's terms; a GPU product the scenario has no class for becomes a
/// new class no GPU service can run on (its CPU services still can).
fn scenario_node(scenario: &mut Scenario, live: &LiveNode) -> Result<Node, String> {
    if scenario.nodes.len() as u64 >= limits::MAX_NODES {
        return Err(format!("the scenario already has {} nodes, the most it may", limits::MAX_NODES));
    }
    let pairs = (scenario.nodes.len() as u64 + 1) * scenario.replica_count() as u64;
    if pairs > limits::MAX_REPLICA_NODE_PAIRS {
        return Err(format!(
            "{pairs} replica-node pairs; a scenario has at most {}",
            limits::MAX_REPLICA_NODE_PAIRS
        ));
    }
    let zone_label = live.zone.as_deref().ok_or_else(|| format!("no `{}` label", labels::ZONE))?;
    let zone = scenario.zones.iter().position(|z| z == zone_label).ok_or_else(|| {
        format!("zone `{zone_label}` is not one of the scenario's ({})", scenario.zones.join(", "))
    })?;
    if live.cpu_millicores == 0 || live.memory_mib == 0 {
        return Err("no allocatable CPU or memory".into());
    }
    let (gpu, class) = match live.gpus.max(live.gpu_count.unwrap_or(0)).max(live.mig.len() as u32) {
        0 => (None, 0),
        _ => {
            let product = live.gpu_product.as_deref().ok_or_else(|| {
                format!("GPUs are allocatable but there is no `{}` label", labels::GPU_PRODUCT)
            })?;
            let known = gpu_products::lookup(product);
            let class = gpu_products::class_index(&scenario.classes, product);
            let memory_mib = live
                .gpu_memory_mib
                .filter(|&m| m > 0)
                .or_else(|| {
                    let class = class?;
                    scenario.nodes.iter().find(|n| n.class == class).and_then(|n| n.gpu.as_ref()).map(|g| g.memory_mib)
                })
                .or(known.map(|p| p.memory_mib))
                .ok_or_else(|| {
                    format!(
                        "no `{}` label, no node of GPU `{product}` to take it from, and `{product}` is not in \
                         berth's table of GPU products",
                        labels::GPU_MEMORY
                    )
                })?;
            let Some((count, sharing)) = live.gpu_sharing(memory_mib)? else {
                return Err("no GPUs allocatable".into());
            };
            if count > limits::MAX_GPUS_PER_NODE {
                return Err(format!("{count} GPUs; a node has at most {}", limits::MAX_GPUS_PER_NODE));
            }
            let class = class.unwrap_or_else(|| {
                let model = known.map_or_else(|| product.to_ascii_lowercase(), |p| p.class.to_string());
                scenario.classes.push(model);
                for service in &mut scenario.services {
                    service.service_time_ms.push(None);
                }
                scenario.classes.len() - 1
            });
            let model = scenario.classes[class].clone();
            (Some(GpuSpec { count, model, memory_mib, sharing }), class)
        }
    };
    Ok(Node {
        name: live.name.clone(),
        zone,
        allocatable: Resources::of_node(live.cpu_millicores, live.memory_mib, gpu.as_ref()),
        gpu,
        class,
        labels: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(name: &str, zone: Option<&str>, gpus: u32, product: Option<&str>) -> LiveNode {
        LiveNode {
            name: name.into(),
            ready: true,
            zone: zone.map(String::from),
            gpus,
            cpu_millicores: 32_000,
            memory_mib: 131_072,
            gpu_product: product.map(String::from),
            gpu_memory_mib: product.map(|_| 81_920),
            ..Default::default()
        }
    }

    fn snapshot(scenario: &Scenario, extra: Vec<LiveNode>) -> Snapshot {
        let mut nodes: Vec<LiveNode> = scenario
            .nodes
            .iter()
            .map(|n| LiveNode { name: n.name.clone(), ..live("", Some(&scenario.zones[n.zone]), 0, None) })
            .collect();
        nodes.extend(extra);
        Snapshot { nodes, ..Default::default() }
    }

    #[test]
    fn a_new_node_is_appended_in_the_scenarios_terms_and_the_stored_ones_keep_their_indices() {
        let scenario = crate::shipped::load("gpu-small").unwrap();
        let zone = scenario.zones[1].clone();
        let h100 = scenario.classes.iter().position(|c| c == "h100").unwrap();
        let extra = vec![
            live("z-new-gpu", Some(&zone), 2, Some("NVIDIA-H100-80GB-HBM3")),
            live("a-new-cpu", Some(&zone), 0, None),
        ];
        let shape = snapshot(&scenario, extra).shape(&scenario);
        assert_eq!(shape.added, ["a-new-cpu", "z-new-gpu"]);
        assert!(shape.left_out.is_empty());
        let n = scenario.nodes.len();
        assert_eq!(shape.scenario.nodes[..n], scenario.nodes[..]);
        let gpu = &shape.scenario.nodes[n + 1];
        assert_eq!((gpu.zone, gpu.class, gpu.allocatable.gpus), (1, h100, 2));
        assert_eq!(shape.scenario.nodes[n].class, 0);
        assert_eq!(shape.scenario.classes, scenario.classes);
    }

    #[test]
    fn a_node_it_cannot_describe_is_left_out_with_the_reason() {
        let scenario = crate::shipped::load("gpu-small").unwrap();
        let zone = scenario.zones[0].clone();
        let mut bare = live("bare", Some(&zone), 1, Some("h100"));
        bare.gpu_memory_mib = None;
        bare.gpu_product = None;
        let extra = vec![
            live("no-zone", None, 0, None),
            live("far", Some("mars-1"), 0, None),
            bare,
            live("b200", Some(&zone), 8, Some("NVIDIA-B200")),
        ];
        let shape = snapshot(&scenario, extra).shape(&scenario);
        let reasons: Vec<(&str, &str)> =
            shape.left_out.iter().map(|l| (l.node.as_str(), l.reason.as_str())).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].0 == "bare" && reasons[0].1.contains("nvidia.com/gpu.product"), "{reasons:?}");
        assert!(reasons[1].0 == "far" && reasons[1].1.contains("`mars-1`"), "{reasons:?}");
        assert!(
            reasons[2].0 == "no-zone" && reasons[2].1.contains("topology.kubernetes.io/zone"),
            "{reasons:?}"
        );
        // A GPU product it has never priced: a node no GPU service can use.
        assert_eq!(shape.added, ["b200"]);
        let b200 = shape.scenario.nodes.last().unwrap();
        assert_eq!(shape.scenario.classes[b200.class], "nvidia-b200");
        let gpu_service = shape.scenario.services.iter().position(|s| s.requests.gpus > 0).unwrap();
        assert!(!shape.scenario.can_host(gpu_service, shape.scenario.nodes.len() - 1));
    }

    #[test]
    fn a_known_product_without_a_memory_label_takes_the_tables_memory_and_class() {
        let scenario = crate::shipped::load("gpu-small").unwrap();
        let mut a100 = live("a100-new", Some(&scenario.zones[0]), 4, Some("NVIDIA-A100-SXM4-80GB"));
        a100.gpu_memory_mib = None;
        let shape = snapshot(&scenario, vec![a100]).shape(&scenario);
        assert_eq!(shape.added, ["a100-new"], "{:?}", shape.left_out);
        let node = shape.scenario.nodes.last().unwrap();
        assert_eq!(shape.scenario.classes[node.class], "a100");
        assert_eq!(node.gpu.as_ref().unwrap().memory_mib, 81_920);
    }

    #[test]
    fn gpu_products_match_whole_words_only() {
        let classes: Vec<String> = ["cpu", "a10", "a100", "t4"].map(String::from).to_vec();
        assert_eq!(gpu_products::class_index(&classes, "NVIDIA-A100-SXM4-80GB"), Some(2));
        assert_eq!(gpu_products::class_index(&classes, "NVIDIA-A10"), Some(1));
        assert_eq!(gpu_products::class_index(&classes, "Tesla-T4"), Some(3));
        assert_eq!(gpu_products::class_index(&classes, "a100"), Some(2));
        assert_eq!(gpu_products::class_index(&classes, "NVIDIA-L4"), None);
    }
}
