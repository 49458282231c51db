//! The charts. `helm/workloads` (the placed services) lints, refuses bad values at install,
//! renders exactly the Deployments berth's live backend builds, and the API server accepts
//! them. `helm/berth` (the service) lints, refuses bad values naming them, renders a locked-down
//! pod, installs on the test API server, and its ServiceAccount can do what the live backend
//! needs and nothing more. helm and kubectl come from `scripts/helm.sh` (`scripts/test.sh`
//! exports `BERTH_TEST_HELM`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth_env::live::{self, Mover, Snapshot, workload};
use berth_env::{scheduler, shipped};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde::Deserialize;
use serde_json::{Value, json};

mod common;
use common::cluster::{client, kubeconfig, namespace, runtime, token_kubeconfig};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../helm/workloads");
const BERTH_CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../helm/berth");
/// Values `helm/berth` needs (a JWT key and a MongoDB), as `--set` arguments.
const NEEDED: [&str; 4] = [
    "--set",
    "auth.jwtSecret=a-test-secret-of-more-than-32-bytes",
    "--set",
    "mongodb.uri=mongodb://db:27017",
];

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
    render_chart(CHART, extra)
}

fn render_chart(chart: &str, extra: &[&str]) -> Output {
    let mut args = vec!["template", "w", chart, "--namespace", "serving"];
    args.extend_from_slice(extra);
    helm(&args)
}

/// The rendered documents, by `Kind/name`.
fn documents(out: &Output) -> BTreeMap<String, Value> {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_norway::Deserializer::from_str(&text(&out.stdout))
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .map(|v| (format!("{}/{}", v["kind"].as_str().unwrap(), v["metadata"]["name"].as_str().unwrap()), v))
        .collect()
}

/// `kubectl apply` of `manifests` with the admin kubeconfig; stdout.
fn kubectl_apply(manifests: &[u8], extra: &[&str]) -> String {
    let mut apply = Command::new(tool("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .args(["apply", "-f", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    apply.stdin.take().unwrap().write_all(manifests).unwrap();
    let applied = apply.wait_with_output().unwrap();
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    text(&applied.stdout)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_workloads_chart_lints_clean() {
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
fn bad_workload_values_fail_at_install_naming_the_value() {
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
fn the_api_server_accepts_the_rendered_workloads() {
    let out = render(&["--namespace", "default"]);
    assert!(out.status.success());
    // A server-side dry run: admission and validation as for a real install, nothing stored
    // (the live tests own the emulated nodes' GPUs).
    let lines = kubectl_apply(&out.stdout, &["--dry-run=server"]);
    assert_eq!(lines.matches("(server dry run)").count(), 6, "{lines}");
}

#[test]
fn the_berth_chart_lints_clean() {
    let mut args = vec!["lint", "--strict", BERTH_CHART];
    args.extend_from_slice(&NEEDED);
    let out = helm(&args);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let mut args = vec!["lint", "--strict", BERTH_CHART, "--set", "serviceMonitor.enabled=true", "--set"];
    args.extend_from_slice(&[
        "mongodb.internal.enabled=true",
        "--set",
        "auth.jwtSecret=a-test-secret-of-more-than-32-bytes",
    ]);
    let out = helm(&args);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn the_berth_pod_is_locked_down_and_configured_from_the_values() {
    let docs = documents(&render_chart(BERTH_CHART, &NEEDED));
    let pod = &docs["Deployment/w-berth"]["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["serviceAccountName"], "w-berth");
    let container = &pod["containers"][0];
    // The image's entrypoint is `berth serve`: any args would be taken as serve's.
    assert!(container.get("args").is_none() && container.get("command").is_none());
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health/live");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/health/ready");
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(container["resources"][kind][resource].is_string(), "{kind}.{resource}");
        }
    }
    let env: BTreeMap<&str, &Value> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e.get("value").unwrap_or(&e["valueFrom"])))
        .collect();
    // The secrets come from the Secret, never inline.
    assert_eq!(env["BERTH_JWT_SECRET"]["secretKeyRef"], json!({"name": "w-berth", "key": "jwt-secret"}));
    assert_eq!(env["BERTH_MONGODB_URI"]["secretKeyRef"], json!({"name": "w-berth", "key": "mongodb-uri"}));
    assert_eq!(env["BERTH_LIVE"], "true");
    assert_eq!(env["BERTH_NAMESPACE"], "serving");
    assert!(!env.contains_key("BERTH_USERS"));
    assert_eq!(env["BERTH_LOG_FORMAT"], "json");
    assert!(!env.contains_key("OTEL_EXPORTER_OTLP_ENDPOINT"), "no collector by default");
    let secret = &docs["Secret/w-berth"]["stringData"];
    assert_eq!(secret["mongodb-uri"], "mongodb://db:27017");
    assert!(!docs.contains_key("Role/w-berth-jobs"), "no Job rights for the local executor");
    // Optional parts are off by default; the dashboard is on.
    assert!(docs.contains_key("ConfigMap/w-berth-dashboard"));
    assert!(!docs.keys().any(|k| k.starts_with("ServiceMonitor/") || k.starts_with("StatefulSet/")));

    // Live off: no RBAC, no token in the pod. An existing Secret: none made, its key used.
    let mut args =
        vec!["--set", "live.enabled=false", "--set", "existingSecret=ours", "--set", "auth.usersKey=people"];
    args.extend_from_slice(&[
        "--set",
        "mongodb.internal.enabled=true",
        "--set",
        "serviceMonitor.enabled=true",
    ]);
    let docs = documents(&render_chart(BERTH_CHART, &args));
    assert!(!docs.keys().any(|k| k.contains("Role") || k.starts_with("Secret/")), "{:?}", docs.keys());
    let pod = &docs["Deployment/w-berth"]["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    let env = pod["containers"][0]["env"].as_array().unwrap();
    assert!(!env.iter().any(|e| e["name"] == "BERTH_LIVE"));
    assert!(env.iter().any(|e| e["name"] == "BERTH_USERS"));
    assert_eq!(
        pod["volumes"][1]["secret"],
        json!({"secretName": "ours", "items": [{"key": "people", "path": "users.toml"}]})
    );
    assert!(docs.contains_key("StatefulSet/w-berth-mongodb") && docs.contains_key("ServiceMonitor/w-berth"));
}

#[test]
fn bad_berth_values_fail_at_install_naming_the_value() {
    let jwt = "auth.jwtSecret=a-test-secret-of-more-than-32-bytes";
    let uri = "mongodb.uri=mongodb://db:27017";
    for (sets, named) in [
        (vec![uri], "auth.jwtSecret"),
        (vec![jwt], "mongodb.uri"),
        (vec!["auth.jwtSecret=short", uri], "jwtSecret"),
        (vec![jwt, "mongodb.uri=postgres://db"], "uri"),
        (vec![jwt, uri, "mongodb.internal.enabled=true"], "mongodb.uri"),
        (vec![jwt, uri, "service.port=0"], "port"),
        (vec![jwt, uri, "image.pullPolicy=Sometimes"], "pullPolicy"),
        (vec![jwt, uri, "live.namespace=Not_A_Namespace"], "namespace"),
        (vec![jwt, uri, "resources.requests.cpu=lots"], "cpu"),
        (vec![jwt, uri, "training.workers=0"], "workers"),
        (vec![jwt, uri, "otlpEndpoint=collector:4318"], "otlpEndpoint"),
        (vec![jwt, uri, "replicas=3"], "replicas"),
        (vec!["existingSecret=ours", "auth.users=x"], "auth.users"),
    ] {
        let args: Vec<&str> = sets.iter().flat_map(|s| ["--set", s]).collect();
        let out = render_chart(BERTH_CHART, &args);
        assert!(!out.status.success(), "{sets:?} was accepted");
        assert!(text(&out.stderr).contains(named), "{sets:?}: {}", text(&out.stderr));
    }
}

/// Installs `helm/berth` on the test API server (release namespace `chart-berth`, placed
/// services in `chart-serving`) and acts as its ServiceAccount: what the live backend does
/// is allowed, everything around it refused.
#[test]
fn the_berth_chart_installs_and_its_service_account_has_the_least_rights() {
    let rt = runtime();
    let (home, serving) = ("chart-berth", "chart-serving");
    // The tiny scenario's Deployments, pinned to nodes no kubelet plays here.
    let scenario = shipped::load("tiny").unwrap();
    let placement = scheduler::spread_placement(&scenario).unwrap();
    let placed = workload::deployments(&scenario, &placement.nodes, serving);
    let admin = rt.block_on(async {
        let admin = client().await;
        namespace(&admin, home).await;
        namespace(&admin, serving).await;
        workload::apply(&admin, serving, &placed).await.unwrap();
        admin
    });
    // No berth pod is started (replicaCount 0): the image is not here, and the emulated nodes
    // belong to the live tests. Everything else is installed for real.
    let mut args = vec!["template", "b", BERTH_CHART, "--namespace", home, "--set", "replicaCount=0"];
    args.extend_from_slice(&[
        "--set",
        "live.namespace=chart-serving",
        "--set",
        "mongodb.internal.enabled=true",
    ]);
    args.extend_from_slice(&["--set", "auth.jwtSecret=a-test-secret-of-more-than-32-bytes"]);
    args.extend_from_slice(&["--set", "training.executor=kubernetes"]);
    let out = helm(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let applied = kubectl_apply(&out.stdout, &[]);
    for object in [
        "serviceaccount/b-berth",
        "deployment.apps/b-berth",
        "statefulset.apps/b-berth-mongodb",
        "configmap/b-berth-dashboard",
    ] {
        assert!(applied.contains(object), "{object}: {applied}");
    }

    rt.block_on(async {
        let config = token_kubeconfig(&admin, home, "b-berth").await;
        let berth = live::connect(Some(config.path())).await.unwrap();
        // Allowed: reading the placement and moving a replica (and back), its GPU request
        // swapped for a MIG instance's on the way and restored on the way back.
        let snapshot = Snapshot::read(&berth, serving).await.unwrap();
        assert_eq!(snapshot.replicas.len(), placed.len(), "{snapshot:?}");
        let deployment = workload::deployment_name("infinity-embed", 0);
        let was = snapshot.replica("infinity-embed", 0).unwrap().pinned_to.clone().unwrap();
        let mover = Mover::new(berth.clone(), serving);
        let asks = async || {
            let snapshot = Snapshot::read(&berth, serving).await.unwrap();
            snapshot.replica("infinity-embed", 0).unwrap().gpu_resource.clone()
        };
        assert_eq!(asks().await.as_deref(), Some("nvidia.com/gpu"));
        mover.pin(&deployment, "l4-a", Some("nvidia.com/mig-1g.10gb")).await.unwrap();
        assert_eq!(asks().await.as_deref(), Some("nvidia.com/mig-1g.10gb"));
        mover.pin(&deployment, &was, Some("nvidia.com/gpu")).await.unwrap();
        assert_eq!(asks().await.as_deref(), Some("nvidia.com/gpu"));
        let node_metrics = Api::<DynamicObject>::all_with(berth.clone(), &live::metrics::node_metrics());
        node_metrics.list(&ListParams::default()).await.unwrap();

        let forbidden = |e: kube::Error| matches!(e, kube::Error::Api(ref s) if s.code == 403);
        // The Job executor: training Jobs in the release's namespace, created and deleted.
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "berth-train-rbac"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "train", "image": "berth", "command": ["berth", "--version"]}]}}},
        }))
        .unwrap();
        let home_jobs = Api::<Job>::namespaced(berth.clone(), home);
        home_jobs.create(&Default::default(), &job).await.unwrap();
        home_jobs.delete("berth-train-rbac", &DeleteParams::background()).await.unwrap();
        let serving_jobs = Api::<Job>::namespaced(berth.clone(), serving);
        assert!(
            forbidden(serving_jobs.create(&Default::default(), &job).await.unwrap_err()),
            "Jobs elsewhere"
        );

        // Refused: another namespace's Deployments, deleting, Secrets, writing nodes.
        let elsewhere = Mover::new(berth.clone(), home).pin("b-berth", "l4-a", None).await.unwrap_err();
        assert!(elsewhere.is_forbidden(), "{elsewhere}");
        let deployments = Api::<Deployment>::namespaced(berth.clone(), serving);
        assert!(forbidden(deployments.delete(&deployment, &DeleteParams::default()).await.unwrap_err()));
        for ns in [home, serving] {
            let secrets = Api::<Secret>::namespaced(berth.clone(), ns);
            assert!(forbidden(secrets.list(&ListParams::default()).await.unwrap_err()), "secrets of {ns}");
        }
        let nodes = Api::<Node>::all(berth.clone());
        let patch = json!({"metadata": {"labels": {"berth.io/touched": "yes"}}});
        // Authorisation comes before lookup: a 403 whether or not the node exists.
        assert!(forbidden(
            nodes.patch("l4-a", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap_err()
        ));
        // Nothing was moved for good.
        let after = Snapshot::read(&admin, serving).await.unwrap();
        assert_eq!(after.replica("infinity-embed", 0).unwrap().pinned_to.as_deref(), Some(was.as_str()));
    });
}
