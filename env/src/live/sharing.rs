//! GPU sharing as NVIDIA's GPU operator shows it on a node, both ways: what a node whose
//! GPUs are MIG-partitioned (the mixed strategy) or time-sliced advertises, which the
//! emulator plays, and a scenario's GPUs read back from a Node object, which the live shape
//! and discovery use. And the GPU resource a replica asks for in the slot it takes.
//!
//! The names follow the GPU operator's documentation ("GPU Operator with MIG",
//! "Time-Slicing GPUs in Kubernetes"): the mixed strategy advertises one resource per MIG
//! profile (`nvidia.com/mig-1g.10gb: 2`) and labels its count, and leaves `nvidia.com/gpu`
//! at 0 on a node whose GPUs are all partitioned; time-slicing advertises `nvidia.com/gpu`
//! as GPUs times replicas, labels `nvidia.com/gpu.replicas` and marks the product `-SHARED`.

use std::collections::BTreeMap;

use berth_core::mig::MigProfile;
use berth_core::{GpuSharing, GpuSpec, Scenario, gpu_sharing, limits};

use super::labels;
use super::snapshot::LiveNode;

/// What a node advertises for its GPUs: allocatable extended resources and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Advertised {
    /// Extended resources and their counts.
    pub resources: Vec<(String, u64)>,
    /// Labels and their values.
    pub labels: Vec<(String, String)>,
}

/// What the GPU operator advertises for a node's GPUs `gpu`.
pub fn advertised(gpu: &GpuSpec) -> Advertised {
    let count = u64::from(gpu.count);
    let mut node_labels = vec![(labels::GPU_COUNT.to_string(), count.to_string())];
    let resources = match &gpu.sharing {
        GpuSharing::Whole => vec![(labels::GPU_RESOURCE.to_string(), count)],
        GpuSharing::Mig(layout) => {
            node_labels.push((labels::MIG_STRATEGY.into(), "mixed".into()));
            let mut per_profile: BTreeMap<&str, u64> = BTreeMap::new();
            for instance in layout.instances() {
                *per_profile.entry(instance.profile.name()).or_default() += count;
            }
            let mut resources = vec![(labels::GPU_RESOURCE.to_string(), 0)];
            for (profile, n) in per_profile {
                let resource = format!("{}{profile}", labels::MIG_RESOURCE_PREFIX);
                node_labels.push((format!("{resource}.count"), n.to_string()));
                resources.push((resource, n));
            }
            resources
        }
        GpuSharing::TimeSliced { replicas, .. } => {
            node_labels.push((labels::GPU_REPLICAS.into(), replicas.to_string()));
            node_labels.push((labels::GPU_SHARING_STRATEGY.into(), "time-slicing".into()));
            vec![(labels::GPU_RESOURCE.to_string(), count * u64::from(*replicas))]
        }
    };
    Advertised { resources, labels: node_labels }
}

/// The product label of `gpu` whose table label is `product`: marked `-SHARED` where the
/// GPUs are time-sliced, as the device plugin marks it.
pub fn product_label(gpu: &GpuSpec, product: &str) -> String {
    match gpu.sharing {
        GpuSharing::TimeSliced { .. } => format!("{product}{}", labels::SHARED_PRODUCT_SUFFIX),
        _ => product.to_string(),
    }
}

/// The extended resource a one-GPU replica asks for in `seat` on a node with `gpu`: its MIG
/// instance's profile, else `nvidia.com/gpu` (a whole GPU or a time-sliced share).
pub fn seat_resource(gpu: Option<&GpuSpec>, seat: Option<u8>) -> String {
    match gpu.zip(seat).and_then(|(g, slot)| berth_core::sharing::mig_profile_of(g, slot)) {
        Some(profile) => profile.resource(),
        None => labels::GPU_RESOURCE.into(),
    }
}

/// The GPU resource a replica of service `s` asks for in `seat` on node `n` (see
/// [`seat_resource`]); `None` for a service without GPUs, whose requests a move leaves alone.
pub fn replica_resource(scenario: &Scenario, s: usize, n: usize, seat: Option<u8>) -> Option<String> {
    (scenario.services[s].requests.gpus > 0).then(|| seat_resource(scenario.nodes[n].gpu.as_ref(), seat))
}

/// The MIG profile a GPU resource names (`nvidia.com/mig-1g.10gb`), if it names one.
pub fn resource_profile(resource: &str) -> Option<MigProfile> {
    MigProfile::parse(resource.strip_prefix(labels::MIG_RESOURCE_PREFIX)?)
}

impl LiveNode {
    /// The node's physical GPUs and how they are shared, from what it advertises; `None`
    /// without GPUs. `memory_mib` is one GPU's memory (MIG profiles are those of 80 GB GPUs).
    /// An error says why a scenario cannot describe the node: a scenario node partitions all
    /// its GPUs alike.
    pub fn gpu_sharing(&self, memory_mib: u64) -> Result<Option<(u32, GpuSharing)>, String> {
        let path = format!("node `{}`", self.name);
        let (count, sharing) = if !self.mig.is_empty() {
            let listed: Vec<String> = self.mig.iter().map(|(p, n)| format!("{n} × {p}")).collect();
            let count = self.gpu_count.filter(|&c| c > 0).ok_or_else(|| {
                format!("MIG instances ({}) but no `{}` label", listed.join(", "), labels::GPU_COUNT)
            })?;
            if self.gpus > 0 {
                return Err(format!(
                    "{} whole GPUs beside MIG instances ({}); a scenario node partitions all its GPUs alike",
                    self.gpus,
                    listed.join(", ")
                ));
            }
            let mut profiles = Vec::new();
            for (profile, &n) in &self.mig {
                if n % count != 0 || n / count > u32::from(berth_core::mig::COMPUTE_SLICES) {
                    return Err(format!(
                        "{n} × {profile} cannot be split alike among its {count} GPUs; a scenario node \
                         partitions all its GPUs alike"
                    ));
                }
                profiles.extend((0..n / count).map(|_| profile.clone()));
            }
            (count, gpu_sharing(&path, memory_mib, Some(profiles), None).map_err(|e| e.to_string())?)
        } else if let Some(replicas) = self.gpu_replicas.filter(|&r| r >= 2) {
            let count = self.gpu_count.unwrap_or(self.gpus / replicas);
            if count == 0 || self.gpus == 0 {
                return Ok(None);
            }
            (count, gpu_sharing(&path, memory_mib, None, Some(replicas)).map_err(|e| e.to_string())?)
        } else if self.gpus == 0 {
            return Ok(None);
        } else {
            (self.gpus, GpuSharing::Whole)
        };
        let slots = u64::from(count) * sharing.slots_per_gpu() as u64;
        if slots > limits::MAX_GPU_SLOTS_PER_NODE {
            return Err(format!(
                "{slots} shared GPU slots; a node has at most {}",
                limits::MAX_GPU_SLOTS_PER_NODE
            ));
        }
        Ok(Some((count, sharing)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shipped;
    use k8s_openapi::api::core::v1::Node as KubeNode;
    use serde_json::json;

    /// The Node object a node with `gpu` would be: the advertised labels and resources.
    fn node_of(gpu: &GpuSpec) -> KubeNode {
        let ad = advertised(gpu);
        let mut node_labels: BTreeMap<String, String> = ad.labels.into_iter().collect();
        node_labels.insert(labels::GPU_PRODUCT.into(), product_label(gpu, "NVIDIA-H100-80GB-HBM3"));
        node_labels.insert(labels::GPU_MEMORY.into(), gpu.memory_mib.to_string());
        let allocatable: BTreeMap<String, String> =
            ad.resources.into_iter().map(|(k, v)| (k, v.to_string())).collect();
        serde_json::from_value(json!({
            "metadata": {"name": "n", "labels": node_labels},
            "status": {"allocatable": allocatable},
        }))
        .unwrap()
    }

    #[test]
    fn every_gpu_mig_node_reads_back_as_it_was_advertised() {
        let scenario = shipped::load("gpu-mig").unwrap();
        let mut kinds = Vec::new();
        for node in &scenario.nodes {
            let Some(gpu) = &node.gpu else { continue };
            let live = super::super::live_node(&node_of(gpu));
            assert_eq!(
                live.gpu_product.as_deref(),
                Some("NVIDIA-H100-80GB-HBM3"),
                "the -SHARED mark is dropped"
            );
            let (count, sharing) = live.gpu_sharing(gpu.memory_mib).unwrap().unwrap();
            assert_eq!((count, &sharing), (gpu.count, &gpu.sharing), "{}", node.name);
            kinds.push(std::mem::discriminant(&sharing));
        }
        kinds.dedup();
        assert_eq!(kinds.len(), 3, "MIG and time-sliced nodes, in turn");
    }

    #[test]
    fn the_advertised_resources_are_the_operators() {
        let scenario = shipped::load("gpu-mig").unwrap();
        let mig = scenario.nodes.iter().find(|n| n.name == "h100-a-1").unwrap().gpu.clone().unwrap();
        let ad = advertised(&mig);
        let resources: BTreeMap<&str, u64> = ad.resources.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        // [3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb] on each of its GPUs.
        let per_gpu =
            [("nvidia.com/mig-1g.10gb", 2), ("nvidia.com/mig-2g.20gb", 1), ("nvidia.com/mig-3g.40gb", 1)];
        for (resource, n) in per_gpu {
            assert_eq!(resources[resource], n * u64::from(mig.count), "{resource}");
        }
        assert_eq!(resources["nvidia.com/gpu"], 0);
        assert!(ad.labels.contains(&("nvidia.com/mig.strategy".into(), "mixed".into())));
        let l4 = scenario.nodes.iter().find(|n| n.name == "l4-b-1").unwrap().gpu.clone().unwrap();
        let ad = advertised(&l4);
        assert_eq!(ad.resources, [("nvidia.com/gpu".to_string(), u64::from(l4.count) * 2)]);
        assert!(ad.labels.contains(&("nvidia.com/gpu.replicas".into(), "2".into())));
        assert_eq!(product_label(&l4, "NVIDIA-L4"), "NVIDIA-L4-SHARED");
    }

    #[test]
    fn a_node_a_scenario_cannot_describe_says_why() {
        let base = LiveNode { name: "m".into(), gpu_count: Some(2), ..Default::default() };
        let uneven = LiveNode { mig: [("1g.10gb".to_string(), 3)].into(), ..base.clone() };
        assert!(uneven.gpu_sharing(81_920).unwrap_err().contains("cannot be split alike"));
        let beside = LiveNode { gpus: 1, mig: [("3g.40gb".to_string(), 2)].into(), ..base.clone() };
        assert!(beside.gpu_sharing(81_920).unwrap_err().contains("whole GPUs beside MIG"));
        let too_many = LiveNode { mig: [("3g.40gb".to_string(), 6)].into(), ..base.clone() };
        assert!(too_many.gpu_sharing(81_920).unwrap_err().contains("cannot hold"), "three 3g.40gb per GPU");
        let small = LiveNode { mig: [("1g.10gb".to_string(), 2)].into(), ..base.clone() };
        assert!(small.gpu_sharing(24_576).unwrap_err().contains("80 GB"));
        let uncounted = LiveNode { gpu_count: None, ..small };
        assert!(uncounted.gpu_sharing(81_920).unwrap_err().contains("nvidia.com/gpu.count"));
        let shares = LiveNode { gpus: 64, gpu_replicas: Some(64), gpu_count: Some(2), ..base.clone() };
        assert!(shares.gpu_sharing(24_576).unwrap_err().contains("at most 64"));
        let whole = LiveNode { gpus: 4, ..base.clone() };
        assert_eq!(whole.gpu_sharing(24_576).unwrap(), Some((4, GpuSharing::Whole)));
        assert_eq!(base.gpu_sharing(24_576).unwrap(), None);
    }

    #[test]
    fn a_seat_asks_for_its_instances_profile_or_a_gpu() {
        let scenario = shipped::load("gpu-mig").unwrap();
        let mig = scenario.nodes.iter().find(|n| n.name == "h100-a-1").unwrap().gpu.as_ref();
        let GpuSharing::Mig(layout) = &mig.unwrap().sharing else { panic!("h100-a-1 is partitioned") };
        let per_gpu = layout.instances().len() as u8;
        for slot in 0..2 * per_gpu {
            let profile = layout.instances()[usize::from(slot % per_gpu)].profile;
            assert_eq!(seat_resource(mig, Some(slot)), format!("nvidia.com/mig-{}", profile.name()));
        }
        let l4 = scenario.nodes.iter().find(|n| n.name == "l4-b-1").unwrap().gpu.as_ref();
        assert_eq!(seat_resource(l4, Some(1)), "nvidia.com/gpu");
        assert_eq!(seat_resource(None, None), "nvidia.com/gpu");
    }
}
