//! The workload chart (`helm/workloads`): it lints, refuses bad values at install, renders
//! exactly the Deployments berth's live backend builds, and the API server accepts them.
//! helm and kubectl come from `scripts/helm.sh` (`scripts/test.sh` exports `BERTH_TEST_HELM`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth_env::live::workload;
use berth_env::{scheduler, shipped};
use k8s_openapi::api::apps::v1::Deployment;
use serde::Deserialize;
use serde_json::Value;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../helm/workloads");

fn tool(name: &str) -> PathBuf {
    let dir = std::env::var("BERTH_TEST_HELM").expect(
        "BERTH_TEST_HELM is not set: `scripts/test.sh` installs helm and sets it; by hand, \
         export BERTH_TEST_HELM=$(scripts/helm.sh | tail -n1)",
    );
    Path::new(&dir).join(name)
}

fn helm(args: &[&str]) -> Output {
    Command::new(tool("helm")).args(args).output().expect("helm runs")
}

fn render(extra: &[&str]) -> Output {
    let mut args = vec!["template", "w", CHART, "--namespace", "serving"];
    args.extend_from_slice(extra);
    helm(&args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_chart_lints_clean() {
    let out = helm(&["lint", "--strict", CHART]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn its_defaults_render_the_deployments_the_live_backend_builds_for_gpu_small() {
    let out = render(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rendered: BTreeMap<String, Deployment> = serde_norway::Deserializer::from_str(&text(&out.stdout))
        .map(|doc| {
            let value = Value::deserialize(doc).unwrap();
            let d: Deployment = serde_json::from_value(value).unwrap();
            (d.metadata.name.clone().unwrap(), d)
        })
        .collect();
    let scenario = shipped::load("gpu-small").unwrap();
    let placement = scheduler::spread_placement(&scenario).unwrap();
    let ours = workload::deployments(&scenario, &placement.nodes, "serving");
    assert_eq!(rendered.len(), ours.len(), "one Deployment per replica");
    // What values.yaml's `nodes` must say, should the scenario's start placement change.
    let mut nodes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (r, &s) in scenario.replica_services().iter().enumerate() {
        nodes
            .entry(scenario.services[s].name.clone())
            .or_default()
            .push(scenario.nodes[placement.nodes[r]].name.clone());
    }
    for d in &ours {
        let name = d.metadata.name.clone().unwrap();
        let chart = rendered.get(&name).unwrap_or_else(|| panic!("the chart has no `{name}`"));
        assert_eq!(chart.metadata.namespace, d.metadata.namespace, "{name}");
        let labels = |d: &Deployment| -> BTreeMap<String, String> {
            d.metadata
                .labels
                .clone()
                .unwrap()
                .into_iter()
                .filter(|(k, _)| k.starts_with("berth.io/"))
                .collect()
        };
        assert_eq!(labels(chart), labels(d), "{name}");
        assert_eq!(
            serde_json::to_value(&chart.spec).unwrap(),
            serde_json::to_value(&d.spec).unwrap(),
            "{name} (values.yaml's nodes should be {nodes:?})"
        );
    }
}

#[test]
fn bad_values_fail_at_install_naming_the_value() {
    for (set, named) in [
        ("services[1].resources.gpus=-1", "gpus"),
        ("services[0].port=0", "port"),
        ("services[0].readyPath=health", "readyPath"),
        ("services[0].colour=blue", "colour"),
    ] {
        let out = render(&["--set", set]);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(text(&out.stderr).contains(named), "{set}: {}", text(&out.stderr));
    }
}

#[test]
fn the_api_server_accepts_the_rendered_manifests() {
    let Ok(config) = std::env::var("BERTH_TEST_KUBECONFIG") else {
        panic!("BERTH_TEST_KUBECONFIG is not set: see api/tests/live.rs");
    };
    let out = render(&["--namespace", "default"]);
    assert!(out.status.success());
    // A server-side dry run: admission and validation as for a real install, nothing stored
    // (the live tests own the emulated nodes' GPUs).
    let mut apply = Command::new(tool("kubectl"))
        .args(["--kubeconfig", &config, "apply", "--dry-run=server", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    apply.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let applied = apply.wait_with_output().unwrap();
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let lines = text(&applied.stdout);
    assert_eq!(lines.matches("(server dry run)").count(), 6, "{lines}");
}
