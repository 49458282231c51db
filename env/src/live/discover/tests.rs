//! Discovery on Node and Deployment objects built as a kubelet, GPU feature discovery and the
//! workload chart publish them.

use serde_json::{Value, json};

use super::*;
use crate::live::{gpu_products, sharing, workload};
use crate::{scheduler, shipped};

/// A Node object as a kubelet and GPU feature discovery publish it.
fn node(name: &str, labels: Value, cpu: &str, memory: &str, gpus: u32) -> KubeNode {
    let gpus = if gpus > 0 { vec![("nvidia.com/gpu".to_string(), u64::from(gpus))] } else { Vec::new() };
    node_with(name, labels, cpu, memory, gpus)
}

/// The same, with these extended resources allocatable.
fn node_with(name: &str, labels: Value, cpu: &str, memory: &str, extended: Vec<(String, u64)>) -> KubeNode {
    let mut allocatable = json!({"cpu": cpu, "memory": memory});
    for (resource, count) in extended {
        allocatable[resource] = json!(count.to_string());
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "status": {"allocatable": allocatable, "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap()
}

/// The cluster a scenario describes: its nodes labelled and their GPUs advertised as on a
/// real cluster (shared ones as the GPU operator does), and its replicas' Deployments where
/// kube-scheduler's scoring puts them.
fn cluster_of(scenario: &Scenario) -> ClusterObjects {
    let nodes = scenario
        .nodes
        .iter()
        .map(|n| {
            let mut labels = json!({"topology.kubernetes.io/zone": scenario.zones[n.zone]});
            let mut extended = Vec::new();
            if let Some(gpu) = &n.gpu {
                let product = sharing::product_label(gpu, gpu_products::product_label(&gpu.model));
                labels["nvidia.com/gpu.product"] = json!(product);
                labels["nvidia.com/gpu.memory"] = json!(gpu.memory_mib.to_string());
                let advertised = sharing::advertised(gpu);
                for (k, v) in advertised.labels {
                    labels[k] = json!(v);
                }
                extended = advertised.resources;
            }
            let cpu = format!("{}m", n.allocatable.cpu_millicores);
            node_with(&n.name, labels, &cpu, &format!("{}Mi", n.allocatable.memory_mib), extended)
        })
        .collect();
    let placement = scheduler::spread_placement(scenario).unwrap();
    ClusterObjects { nodes, deployments: workload::deployments(scenario, &placement.nodes, "serving") }
}

fn deployment(value: Value) -> Deployment {
    serde_json::from_value(value).unwrap()
}

#[test]
fn a_cluster_laid_out_as_gpu_small_is_discovered_as_gpu_small() {
    let gpu_small = shipped::load("gpu-small").unwrap();
    let found = discover(&cluster_of(&gpu_small), "found", "serving").unwrap();
    let scenario = &found.scenario;
    assert_eq!(scenario.zones, gpu_small.zones);
    let mut expected: Vec<_> = gpu_small
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.zone, n.allocatable, gpu_small.classes[n.class].clone()))
        .collect();
    expected.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let seen: Vec<_> = scenario
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.zone, n.allocatable, scenario.classes[n.class].clone()))
        .collect();
    assert_eq!(seen, expected);
    for (found, shipped) in scenario.services.iter().zip(&gpu_small.services) {
        assert_eq!(
            (&found.name, found.replicas, found.requests),
            (&shipped.name, shipped.replicas, shipped.requests)
        );
        assert_eq!(found.cold_start_s, shipped.cold_start_s);
    }
    let embed = scenario.services.iter().find(|s| s.name == "infinity-embed").unwrap();
    let h100 = scenario.classes.iter().position(|c| c == "h100").unwrap();
    assert!((embed.service_time_ms[h100].unwrap() - 9.0).abs() < 0.1, "{:?}", embed.service_time_ms);
    assert!(found.findings.notes.is_empty(), "{:?}", found.findings.notes);
    // Traffic is not on a cluster: it is filled, and the header says so.
    assert!(found.document.contains("# - traffic: one user group per zone"), "{}", found.document);
    assert_eq!(scenario.user_groups.len(), 3);
    assert_eq!(scenario.user_groups[0].chain.len(), 3);
}

#[test]
fn what_a_node_does_not_say_is_filled_and_listed_and_what_cannot_host_is_left_out() {
    let mut cluster = cluster_of(&shipped::load("tiny").unwrap());
    cluster.nodes.push(node("bare-gpu", json!({}), "8", "32Gi", 2));
    cluster.nodes.push(node("b200", json!({"nvidia.com/gpu.product": "NVIDIA-B200"}), "8", "32Gi", 8));
    let mut tainted = node("reserved", json!({}), "8", "32Gi", 0);
    tainted.spec = Some(
        serde_json::from_value(json!({"taints": [{"key": "team", "value": "ml", "effect": "NoSchedule"}]}))
            .unwrap(),
    );
    cluster.nodes.push(tainted);
    let mut cordoned = node("cordoned", json!({}), "8", "32Gi", 0);
    cordoned.spec = Some(serde_json::from_value(json!({"unschedulable": true})).unwrap());
    cluster.nodes.push(cordoned);
    let uneven = json!({"nvidia.com/gpu.count": "2", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"});
    let seven = vec![("nvidia.com/mig-1g.10gb".to_string(), 7)];
    cluster.nodes.push(node_with("mig", uneven, "8", "32Gi", seven));
    let found = discover(&cluster, "t", "serving").unwrap();
    let (filled, notes) = (found.findings.filled.join("\n"), found.findings.notes.join("\n"));
    assert!(filled.contains("node `bare-gpu`: no `topology.kubernetes.io/zone` label"), "{filled}");
    assert!(filled.contains("node `bare-gpu`: no `nvidia.com/gpu.product` label"), "{filled}");
    assert!(
        filled.contains("GPU product `NVIDIA-B200` is not in berth's table: class `nvidia-b200`"),
        "{filled}"
    );
    assert!(filled.contains("node `b200`: no `nvidia.com/gpu.memory` label, 16384 MiB"), "{filled}");
    assert!(
        notes.contains("node `reserved` has taint team=ml:NoSchedule that no placed service tolerates"),
        "{notes}"
    );
    assert!(notes.contains("node `cordoned` is cordoned: left out"), "{notes}");
    assert!(
        notes.contains("node `mig`: 7 × 1g.10gb cannot be split alike among its 2 GPUs")
            && notes.contains("left out"),
        "{notes}"
    );
    let names: Vec<&str> = found.scenario.nodes.iter().map(|n| n.name.as_str()).collect();
    assert!(names.contains(&"b200") && names.contains(&"bare-gpu"), "{names:?}");
    assert!(
        !names.contains(&"reserved") && !names.contains(&"cordoned") && !names.contains(&"mig"),
        "{names:?}"
    );
    assert!(found.document.contains("# - node `bare-gpu`"), "the header lists what was filled");
}

#[test]
fn a_cluster_laid_out_as_gpu_mig_is_discovered_with_its_shared_gpus() {
    let gpu_mig = shipped::load("gpu-mig").unwrap();
    let found = discover(&cluster_of(&gpu_mig), "found", "serving").unwrap();
    for node in &gpu_mig.nodes {
        let seen = found.scenario.nodes.iter().find(|n| n.name == node.name).unwrap();
        let (want, got) = (node.gpu.as_ref(), seen.gpu.as_ref());
        assert_eq!(got.map(|g| (g.count, &g.sharing)), want.map(|g| (g.count, &g.sharing)), "{}", node.name);
    }
    let notes = found.findings.notes.join("\n");
    assert!(notes.contains("node `h100-a-1`: each of its 1 GPUs MIG-partitioned into [3g.40gb"), "{notes}");
    assert!(notes.contains("node `l4-b-1`: each of its 1 GPUs time-sliced into 2 shares"), "{notes}");
    // The embedding Deployments ask for the slots kube-scheduler's scoring gave them: some a
    // MIG instance (discovered as accepting it), all a share where GPUs are time-sliced.
    let embed = found.scenario.services.iter().find(|s| s.name == "infinity-embed").unwrap();
    let placement = scheduler::spread_placement(&gpu_mig).unwrap();
    let asks = workload::gpu_resources(&gpu_mig, &placement.nodes);
    let mig: Vec<&str> = asks.iter().flatten().filter_map(|r| r.strip_prefix("nvidia.com/mig-")).collect();
    assert_eq!(embed.requests.accepts.mig.map(|p| p.name()), mig.first().copied(), "{asks:?}");
    assert!(embed.requests.accepts.time_sliced && embed.requests.gpus == 1);
    assert!(
        notes.contains("infinity-embed ask for one `nvidia.com/gpu` and may be given a share"),
        "{notes}"
    );
}

#[test]
fn a_toleration_lets_a_service_onto_a_tainted_gpu_node() {
    let mut cluster = cluster_of(&shipped::load("tiny").unwrap());
    for node in &mut cluster.nodes {
        node.spec = Some(
            serde_json::from_value(json!({"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]}))
                .unwrap(),
        );
    }
    let error = discover(&cluster, "t", "serving").unwrap_err().to_string();
    assert!(
        error.starts_with("no node to place on") && error.contains("nvidia.com/gpu=:NoSchedule"),
        "{error}"
    );
    for d in &mut cluster.deployments {
        let pod = d.spec.template.spec.as_mut().unwrap();
        pod.tolerations = Some(vec![
            serde_json::from_value(json!({"key": "nvidia.com/gpu", "operator": "Exists"})).unwrap(),
        ]);
    }
    let found = discover(&cluster, "t", "serving").unwrap();
    assert_eq!(found.scenario.nodes.len(), cluster.nodes.len());
}

#[test]
fn a_service_run_as_one_deployment_of_n_replicas_is_counted_and_told_how_to_move() {
    let mut cluster = cluster_of(&shipped::load("tiny").unwrap());
    cluster.deployments.push(deployment(json!({
        "metadata": {"name": "search", "labels": {"berth.io/service": "search"}},
        "spec": {"replicas": 3, "selector": {}, "template": {"spec": {"containers": [
            {"name": "api", "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}]}}},
    })));
    cluster.deployments.push(deployment(json!({
        "metadata": {"name": "grafana"},
        "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "grafana"}]}}},
    })));
    let found = discover(&cluster, "t", "serving").unwrap();
    let search = found.scenario.services.iter().find(|s| s.name == "search").unwrap();
    assert_eq!((search.replicas, search.requests.cpu_millicores, search.requests.memory_mib), (3, 250, 256));
    let notes = found.findings.notes.join("\n");
    assert!(notes.contains("service `search` runs as Deployment `search` of 3 replicas"), "{notes}");
    assert!(notes.contains("helm upgrade --install search-replicas helm/workloads -n serving"), "{notes}");
    assert!(notes.contains("scale deployment/search --replicas=0"), "{notes}");
    assert!(
        notes.contains("without a `berth.io/service` label are not placed services, left out: grafana"),
        "{notes}"
    );
}

#[test]
fn bad_clusters_are_refused_naming_what_and_where() {
    let tiny = shipped::load("tiny").unwrap();
    let mut cluster = cluster_of(&tiny);
    cluster.deployments.push(deployment(json!({
        "metadata": {"name": "greedy", "labels": {"berth.io/service": "greedy", "berth.io/replica": "0"}},
        "spec": {"replicas": 1, "selector": {}, "template": {"spec": {"containers": [
            {"name": "app", "resources": {"requests": {"cpu": "1"}}}]}}},
    })));
    let error = discover(&cluster, "t", "serving").unwrap_err().to_string();
    assert!(
        error.contains("Deployment `greedy` in namespace `serving`, container `app`: no memory request"),
        "{error}"
    );

    let unlabelled = ClusterObjects {
        nodes: cluster.nodes.clone(),
        deployments: vec![deployment(
            json!({"metadata": {"name": "web"}, "spec": {"selector": {}, "template": {}}}),
        )],
    };
    let error = discover(&unlabelled, "t", "serving").unwrap_err().to_string();
    assert!(error.contains("no Deployment in namespace `serving` is labelled `berth.io/service`"), "{error}");
    assert!(error.contains("unlabelled: web"), "{error}");

    let empty = ClusterObjects { nodes: Vec::new(), deployments: cluster_of(&tiny).deployments };
    assert!(discover(&empty, "t", "serving").unwrap_err().to_string().contains("lists no node"));

    let one = cluster.nodes[0].clone();
    let huge = ClusterObjects {
        nodes: vec![one; limits::MAX_NODES as usize + 1],
        deployments: cluster_of(&tiny).deployments,
    };
    let error = discover(&huge, "t", "serving").unwrap_err().to_string();
    assert!(error.contains("8193 nodes; a scenario holds at most 8192"), "{error}");
}
