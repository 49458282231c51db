//! Scenario loading: the shipped scenarios are valid and bad documents are refused with
//! the field path and the reason.

use berth_core::{Error, Scenario};

const TINY: &str = include_str!("../../scenarios/tiny.yaml");
const GPU_SMALL: &str = include_str!("../../scenarios/gpu-small.yaml");
const GPU_MEDIUM: &str = include_str!("../../scenarios/gpu-medium.yaml");
const GPU_LARGE: &str = include_str!("../../scenarios/gpu-large.yaml");

fn path_of(result: Result<Scenario, Error>) -> (String, String) {
    match result {
        Err(Error::Invalid { path, reason }) => (path, reason),
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn shipped_scenarios_have_the_sizes_the_issue_asks_for() {
    let sizes: Vec<(usize, usize, usize)> = [TINY, GPU_SMALL, GPU_MEDIUM, GPU_LARGE]
        .iter()
        .map(|t| {
            let s = Scenario::from_yaml(t).unwrap();
            (s.nodes.len(), s.replica_count(), s.zones.len())
        })
        .collect();
    assert_eq!(sizes, vec![(3, 2, 2), (8, 6, 3), (32, 16, 4), (1000, 200, 5)]);
    let small = Scenario::from_yaml(GPU_SMALL).unwrap();
    assert_eq!(small.user_groups.len(), 4);
    assert_eq!(small.classes, vec!["cpu", "h100", "l4"]);
}

#[test]
fn unknown_field_is_named_with_its_path() {
    let text = TINY.replace("memory_mib: 262144", "memory_mib: 262144\n    colour: blue");
    let (path, reason) = path_of(Scenario::from_yaml(&text));
    assert_eq!(path, "nodes[0].colour");
    assert!(reason.contains("unknown field `colour`"), "{reason}");
}

#[test]
fn negative_capacity_is_refused() {
    let text = TINY.replace("cpu_millicores: 32000", "cpu_millicores: -32000");
    let (path, reason) = path_of(Scenario::from_yaml(&text));
    assert_eq!(path, "nodes[0].cpu_millicores");
    assert!(reason.contains("-32000"), "{reason}");
}

#[test]
fn zero_capacity_is_refused() {
    let text = TINY.replace("memory_mib: 262144", "memory_mib: 0");
    assert_eq!(path_of(Scenario::from_yaml(&text)).0, "nodes[0].memory_mib");
}

#[test]
fn service_no_node_can_host_is_refused() {
    let text = TINY.replace("gpu_memory_mib: 8192", "gpu_memory_mib: 131072");
    let (path, reason) = path_of(Scenario::from_yaml(&text));
    assert_eq!(path, "services[0]");
    assert!(reason.contains("no node can ever host"), "{reason}");
}

#[test]
fn user_group_in_unknown_zone_is_refused() {
    let text = TINY.replace("zone: zone-b\n    rate", "zone: zone-z\n    rate");
    let (path, reason) = path_of(Scenario::from_yaml(&text));
    assert_eq!(path, "user_groups[1].zone");
    assert!(reason.contains("unknown zone `zone-z`"), "{reason}");
}

#[test]
fn rtt_matrix_that_is_not_square_is_refused() {
    let text = TINY.replace("[30.0, 0.3]", "[30.0, 0.3, 9.0]");
    let (path, reason) = path_of(Scenario::from_yaml(&text));
    assert_eq!(path, "rtt_ms[1]");
    assert!(reason.contains("not square"), "{reason}");
    let text = TINY.replace("  - [30.0, 0.3]\n", "");
    assert_eq!(path_of(Scenario::from_yaml(&text)).0, "rtt_ms");
}

#[test]
fn unknown_service_in_a_chain_is_refused() {
    let text = TINY.replacen("chain: [infinity-embed]", "chain: [infinity-embed, rerank]", 1);
    let (path, reason) = path_of(Scenario::from_yaml(&text));
    assert_eq!(path, "user_groups[0].chain[1]");
    assert!(reason.contains("unknown service `rerank`"), "{reason}");
}

#[test]
fn unknown_routing_policy_is_refused() {
    let text = TINY.replace("routing: uniform", "routing: round_robin");
    let (path, reason) = path_of(Scenario::from_yaml(&text));
    assert_eq!(path, "routing");
    assert!(reason.contains("unknown variant"), "{reason}");
}

#[test]
fn amplitude_above_one_and_nan_rates_are_refused() {
    let text = TINY.replace("base_rps: 20, amplitude: 0.5", "base_rps: 20, amplitude: 1.5");
    assert_eq!(path_of(Scenario::from_yaml(&text)).0, "user_groups[0].rate.amplitude");
    let text = TINY.replace("base_rps: 20", "base_rps: .nan");
    assert_eq!(path_of(Scenario::from_yaml(&text)).0, "user_groups[0].rate.base_rps");
}

#[test]
fn duplicate_names_are_refused() {
    let text = TINY.replace("name: l4-b", "name: l4-a");
    let (path, reason) = path_of(Scenario::from_yaml(&text));
    assert_eq!(path, "nodes[2].name");
    assert!(reason.contains("duplicate"), "{reason}");
}

#[test]
fn timeout_below_slo_is_refused() {
    let text = TINY.replace("timeout_ms: 3000", "timeout_ms: 100");
    assert_eq!(path_of(Scenario::from_yaml(&text)).0, "timeout_ms");
}

#[test]
fn failure_event_for_unknown_node_is_refused() {
    let text = format!("{TINY}failures:\n  events:\n    - {{at_s: 60, node: ghost, kind: fail}}\n");
    let (path, reason) = path_of(Scenario::from_yaml(&text));
    assert_eq!(path, "failures.events[0].node");
    assert!(reason.contains("ghost"), "{reason}");
}

#[test]
fn evacuation_is_on_unless_switched_off() {
    assert!(Scenario::from_yaml(GPU_SMALL).unwrap().failures.evacuate);
    let off = format!("{TINY}failures:\n  evacuate: false\n");
    assert!(!Scenario::from_yaml(&off).unwrap().failures.evacuate);
    let (path, _) = path_of(Scenario::from_yaml(&format!("{TINY}failures:\n  evacuate: maybe\n")));
    assert!(path.starts_with("failures"), "{path}");
}

#[test]
fn gpu_service_time_on_cpu_is_refused() {
    let text = TINY.replace("h100: 9.0", "cpu: 9.0");
    assert_eq!(path_of(Scenario::from_yaml(&text)).0, "services[0].service_time_ms.cpu");
}

#[test]
fn node_templates_expand_with_numbered_names() {
    let s = Scenario::from_yaml(GPU_MEDIUM).unwrap();
    assert!(s.node_index("l4-eu-a-1").is_some() && s.node_index("l4-eu-a-2").is_some());
    assert!(s.node_index("l4-eu-a-3").is_none());
}

#[test]
fn sizes_past_the_limits_are_refused_before_anything_is_expanded() {
    use berth_core::limits;
    let huge_template = GPU_LARGE.replacen("count: 20,", "count: 4294967295,", 1);
    let (path, reason) = path_of(Scenario::from_yaml(&huge_template));
    assert_eq!(path, "nodes[0].count");
    assert!(reason.contains("4294967295") && reason.contains(&limits::MAX_NODES.to_string()), "{reason}");

    let many_replicas = TINY.replace("replicas: 2", "replicas: 4294967295");
    let (path, reason) = path_of(Scenario::from_yaml(&many_replicas));
    assert_eq!(path, "services[0].replicas");
    assert!(reason.contains(&limits::MAX_REPLICAS.to_string()), "{reason}");

    let long_day = TINY.replace("episode_ticks: 96", "episode_ticks: 4294967295");
    assert!(Scenario::from_yaml(&long_day).is_err(), "u32 overflow is a parse error");
    let long_day = TINY.replace("episode_ticks: 96", "episode_ticks: 100001");
    let (path, reason) = path_of(Scenario::from_yaml(&long_day));
    assert_eq!(path, "episode_ticks");
    assert!(reason.contains("100001") && reason.contains("100000"), "{reason}");

    let many_gpus = TINY.replacen("gpu: {count: 1,", "gpu: {count: 65,", 1);
    assert_eq!(path_of(Scenario::from_yaml(&many_gpus)).0, "nodes[0].gpu.count");

    // 8,000 nodes pass alone, but not with 4,000 replicas' worth of pairs.
    let big =
        GPU_LARGE.replacen("count: 20,", "count: 7000,", 1).replacen("replicas: ", "replicas: 3000 #", 1);
    let (path, reason) = path_of(Scenario::from_yaml(&big));
    assert_eq!(path, "services");
    assert!(reason.contains("replica-node pairs"), "{reason}");
}

#[test]
fn a_scenario_at_the_openb_size_is_accepted() {
    // 1,523 nodes as in the production trace of the agents issue.
    let text = GPU_LARGE.replacen("count: 20,", "count: 543,", 1);
    assert_eq!(Scenario::from_yaml(&text).unwrap().nodes.len(), 1523);
}

#[test]
fn background_pods_are_validated_field_by_field() {
    let with = |pod: &str| format!("{TINY}\nbackground:\n  - {pod}\n");
    let ok = Scenario::from_yaml(&with("{cpu_milli: 1000, memory_mib: 512, num_gpu: 1, gpu_milli: 460, gpu_spec: \"L4|T4\", from_s: -60, to_s: 600}")).unwrap();
    let pod = &ok.background[0];
    assert_eq!(pod.gpu, berth_core::GpuClaim::Share(460));
    assert_eq!(pod.gpu_models, vec!["l4", "t4"]);
    assert!(pod.accepts(Some("l4")) && !pod.accepts(Some("h100")) && !pod.accepts(None));
    let cases = [
        ("{cpu_milli: 1, memory_mib: 1, from_s: 10, to_s: 10}", "background[0].to_s", "after from_s"),
        ("{cpu_milli: 1, memory_mib: 1, from_s: .nan, to_s: 10}", "background[0].from_s", "finite"),
        (
            "{cpu_milli: 1, memory_mib: 1, num_gpu: 1, gpu_milli: 1001, from_s: 0, to_s: 1}",
            "background[0].gpu_milli",
            "at most 1000",
        ),
        (
            "{cpu_milli: 1, memory_mib: 1, num_gpu: 2, gpu_milli: 500, from_s: 0, to_s: 1}",
            "background[0].gpu_milli",
            "needs num_gpu 1",
        ),
        (
            "{cpu_milli: 1, memory_mib: 1, num_gpu: 1, from_s: 0, to_s: 1}",
            "background[0].gpu_milli",
            "must be 1..1000",
        ),
        (
            "{cpu_milli: 1, memory_mib: 1, num_gpu: 65, gpu_milli: 1000, from_s: 0, to_s: 1}",
            "background[0].num_gpu",
            "at most 64",
        ),
        ("{cpu_milli: 1, memory_mib: 1, from_s: 0, to_s: 1, node: x}", "background[0].node", "unknown field"),
    ];
    for (pod, expected_path, expected_reason) in cases {
        let (path, reason) = path_of(Scenario::from_yaml(&with(pod)));
        assert_eq!(path, expected_path, "{pod}");
        assert!(reason.contains(expected_reason), "{pod}: {reason}");
    }
}

#[test]
fn shared_gpus_and_what_services_accept_are_validated_field_by_field() {
    let mig = include_str!("../../scenarios/gpu-mig.yaml");
    let ok = Scenario::from_yaml(mig).unwrap();
    let h100 = ok.nodes[0].gpu.as_ref().unwrap();
    assert_eq!(h100.sharing.slots_per_gpu(), 4);
    let embed = &ok.services[1].requests.accepts;
    assert_eq!(embed.mig.map(|p| p.name()), Some("1g.10gb"));
    assert!(embed.time_sliced);
    let layout = "mig: [3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb]";
    let sliced = "time_slicing: {replicas: 2}";
    let cases = [
        (layout, "mig: [3g.40gb, 5g.50gb]", "nodes[0].gpu.mig[1]", "unknown MIG profile `5g.50gb`"),
        (layout, "mig: [4g.40gb, 4g.40gb]", "nodes[0].gpu.mig", "no such layout"),
        (layout, "mig: []", "nodes[0].gpu.mig", "1 to 7"),
        (layout, "mig: [1g.10gb], time_slicing: {replicas: 2}", "nodes[0].gpu.time_slicing", "not both"),
        (sliced, "time_slicing: {replicas: 1}", "nodes[2].gpu.time_slicing.replicas", "at least 2"),
        (
            sliced,
            "time_slicing: {replicas: 2, overhead: 1.0}",
            "nodes[2].gpu.time_slicing.overhead",
            "[0, 1)",
        ),
        (sliced, "time_slicing: {replicas: 65}", "nodes[2].gpu", "at most 64"),
        (sliced, "time_slicing: {replicas: 4294967295}", "nodes[2].gpu", "at most 64"),
        (
            "accepts: {mig: 1g.10gb, time_sliced: true}",
            "accepts: {mig: 1g.5gb}",
            "services[1].requests.accepts.mig",
            "unknown MIG profile",
        ),
        (
            "gpu_memory_mib: 8192\n",
            "gpu_memory_mib: 0\n",
            "services[1].requests.gpu_memory_mib",
            "share its memory",
        ),
        ("gpus: 1\n", "gpus: 2\n", "services[1].requests.accepts", "requests.gpus is 2"),
    ];
    for (from, to, expected_path, expected_reason) in cases {
        assert!(mig.contains(from), "{from}");
        let (path, reason) = path_of(Scenario::from_yaml(&mig.replacen(from, to, 1)));
        assert_eq!(path, expected_path, "{to}");
        assert!(reason.contains(expected_reason), "{to}: {reason}");
    }
    // MIG on a 24 GB L4: the profiles berth knows are the 80 GB parts'.
    let (path, reason) = path_of(Scenario::from_yaml(&mig.replacen(sliced, "mig: [1g.10gb]", 1)));
    assert_eq!(path, "nodes[2].gpu.mig");
    assert!(reason.contains("80 GB"), "{reason}");
}
