//! The live backend and `berth emulate` against a real API server: the control plane
//! `scripts/kube-apiserver.sh` starts (`scripts/test.sh` starts it and exports
//! `BERTH_TEST_KUBECONFIG`). Each test has its own namespace; only one registers nodes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_env::live::{self, LiveError, Mover, Snapshot, workload};
use berth_env::{scheduler, shipped};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use std::collections::BTreeMap;

use berth_core::Scenario;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;
use common::browser::Browser;
use common::cluster::{client, eventually, kubeconfig, namespace, runtime, service_account};
use common::{BERTH, Server, token, unique_database};

/// `berth emulate` in the background; killed when dropped.
struct Emulator(Child);

impl Emulator {
    fn start(scenario: &str, namespace: &str) -> Self {
        let child = Command::new(BERTH)
            .args(["emulate", "--scenario", scenario, "--workloads", "--namespace", namespace])
            .args(["--speed", "200", "--heartbeat-s", "1", "--metrics-interval-s", "0.5"])
            // Noon all along: the traffic, and so every deploy plan, the same from run to run.
            .args(["--clock-speed", "0"])
            .arg("--kubeconfig")
            .arg(kubeconfig())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("berth emulate starts");
        Self(child)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn emulated_gpu_small_serves_moves_fails_nodes_and_takes_deploys() {
    let rt = runtime();
    let ns = "live-e2e";
    let scenario = shipped::load("gpu-small").unwrap();
    let client = rt.block_on(async {
        let client = client().await;
        namespace(&client, ns).await;
        client
    });
    let emulator = Emulator::start("gpu-small", ns);
    rt.block_on(serves_moves_and_fails_nodes(&client, &scenario, ns));
    discovers_the_cluster_and_trains_on_it(&scenario, ns);
    steps_the_live_cluster_as_a_gym(&rt, &client, ns);
    takes_deploys(&rt, &client, ns);
    // The same control plane, now with gpu-mig's nodes in place of gpu-small's, and none of
    // gpu-small's Deployments left to take their namesakes' GPUs.
    drop(emulator);
    rt.block_on(async {
        let now = kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
        let all = ListParams::default();
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), ns)
            .delete_collection(&now, &all)
            .await
            .unwrap();
        Api::<k8s_openapi::api::apps::v1::ReplicaSet>::namespaced(client.clone(), ns)
            .delete_collection(&now, &all)
            .await
            .unwrap();
        Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
            .delete_collection(&now, &all)
            .await
            .unwrap();
        let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone());
        let emulated = ListParams::default().labels("berth.io/emulated=true");
        nodes.delete_collection(&Default::default(), &emulated).await.unwrap();
    });
    deploys_onto_shared_gpus(&rt, &client);
}

/// `gpu-mig` emulated as the GPU operator shows shared GPUs: its MIG instances and
/// time-sliced shares read back as the scenario has them, its Deployments ask for the slots
/// they hold, and a deploy onto MIG instances swaps their GPU requests, and rolls both the
/// node and the request back when a move fails and when asked to.
fn deploys_onto_shared_gpus(rt: &tokio::runtime::Runtime, client: &kube::Client) {
    let ns = "live-mig";
    let scenario = shipped::load("gpu-mig").unwrap();
    rt.block_on(namespace(client, ns));
    let _emulator = Emulator::start("gpu-mig", ns);
    let read = async || Snapshot::read(client, ns).await.unwrap();
    let all_serving = |s: &Snapshot| {
        s.placement(&scenario).is_ok_and(|p| p.serving.iter().all(|&x| x) && p.node_ready.iter().all(|&x| x))
    };
    let snapshot = rt.block_on(eventually("gpu-mig serving", Duration::from_secs(90), read, all_serving));
    // Every GPU node reads back as the scenario describes it; the Deployments ask for the
    // slots the simulator seats them in (the real scheduler counted them to bind the pods).
    let shape = snapshot.shape(&scenario);
    assert!(shape.added.is_empty() && shape.left_out.is_empty(), "{:?}", shape.left_out);
    for node in &scenario.nodes {
        let live = snapshot.nodes.iter().find(|n| n.name == node.name).unwrap();
        let read_back = live.gpu_sharing(node.gpu.as_ref().map_or(0, |g| g.memory_mib)).unwrap();
        assert_eq!(
            read_back.as_ref().map(|(c, s)| (*c, s)),
            node.gpu.as_ref().map(|g| (g.count, &g.sharing))
        );
    }
    let mig = snapshot.nodes.iter().find(|n| n.name == "h100-a-1").unwrap();
    assert_eq!((mig.gpus, mig.mig["1g.10gb"], mig.mig["3g.40gb"]), (0, 2, 1), "{mig:?}");
    assert_eq!(snapshot.nodes.iter().find(|n| n.name == "l4-b-1").unwrap().gpus, 2, "two shares");
    let placement = snapshot.placement(&scenario).unwrap().nodes;
    let asks: Vec<Option<String>> = scenario
        .replica_keys()
        .iter()
        .map(|&(s, r)| snapshot.replica(&scenario.services[s].name, r).unwrap().gpu_resource.clone())
        .collect();
    assert_eq!(asks, workload::gpu_resources(&scenario, &placement));
    assert!(asks.iter().flatten().any(|a| a.starts_with("nvidia.com/mig-")), "{asks:?}");

    // Both of the second L4's shares taken (a move onto a time-sliced GPU asks for
    // nvidia.com/gpu): the deploy below has an embedding replica to take off it.
    let embed = |i: u32| snapshot.replica("infinity-embed", i).unwrap().clone();
    let (on_l4, other_l4) = (embed(2), embed(3));
    let l4 = on_l4.node.clone().unwrap();
    assert!(l4.starts_with("l4-") && other_l4.node.as_deref().is_some_and(|n| n.starts_with("l4-")));
    let mover = Mover::new(client.clone(), ns);
    let done = rt.block_on(mover.move_replica(&other_l4.deployment, &l4, Some("nvidia.com/gpu"))).unwrap();
    assert_eq!(done.node, l4);

    let server = live_server(&unique_database("deploy-mig"), ns);
    let (operator, admin) = (token("operator"), token("admin"));
    let body = json!({"agent": "dqn", "scenario": "gpu-mig", "steps": 2000, "seed": 1});
    let task: Value = server.post("/api/v1/training", &operator, &body).json().unwrap();
    let task = server.wait_task(task["id"].as_str().unwrap(), &operator, Duration::from_secs(300), |t| {
        t["status"] == "completed" || t["status"] == "failed"
    });
    assert_eq!(task["status"], "completed", "{task:#}");
    let deploy = format!("/api/v1/models/{}/deploy", task["model_id"].as_str().unwrap());
    let before = rt.block_on(read());
    let asked = |s: &Snapshot| -> BTreeMap<String, (Option<String>, Option<String>)> {
        s.replicas
            .iter()
            .map(|r| (r.deployment.clone(), (r.pinned_to.clone(), r.gpu_resource.clone())))
            .collect()
    };
    // Behind the shield the plan is greedy's (the untrained network's costs more): an
    // embedding replica off the full L4 onto a MIG instance of the other H100, the request
    // swapped from a share to the instance's profile.
    let planned: Value =
        server.post(&deploy, &admin, &json!({"dry_run": true, "max_moves": 3})).json().unwrap();
    let onto_mig = |plan: &Value| -> Vec<Value> {
        let moves = plan["plan"].as_array().unwrap().iter();
        moves
            .filter(|m| m["gpu_to"].as_str().is_some_and(|g| g.starts_with("nvidia.com/mig-")))
            .cloned()
            .collect()
    };
    let swaps = onto_mig(&planned);
    assert!(swaps.iter().any(|m| m["gpu_from"] != m["gpu_to"]), "{planned:#}");
    for m in planned["plan"].as_array().unwrap() {
        let was =
            before.replica(m["service"].as_str().unwrap(), m["replica"].as_u64().unwrap() as u32).unwrap();
        assert_eq!(m["gpu_from"].as_str(), was.gpu_resource.as_deref(), "{planned:#}");
    }

    // A move whose pod never becomes Ready: undone, node and request alike.
    let target = swaps[0]["to"].as_str().unwrap().to_string();
    rt.block_on(annotate(client, &target, "berth.io/emulate-stuck", true));
    let id = start_deploy(&server, &deploy, &admin, &json!({"max_moves": 3}));
    let failed = wait_deployment(&server, &id, &admin);
    rt.block_on(annotate(client, &target, "berth.io/emulate-stuck", false));
    assert_eq!(failed["status"], "rolled_back", "{failed:#}");
    let steps = failed["steps"].as_array().unwrap();
    let stuck = steps.iter().find(|s| s["ok"] == false).unwrap();
    assert_eq!(stuck["to"].as_str(), Some(target.as_str()), "{failed:#}");
    assert!(stuck["gpu"].as_str().is_some_and(|g| g.starts_with("nvidia.com/mig-")), "{failed:#}");
    let back = steps.iter().rev().find(|s| s["deployment"] == stuck["deployment"]).unwrap();
    assert_eq!(back["action"], "rollback", "{failed:#}");
    let ready_again = |s: &Snapshot| all_serving(s) && asked(s) == asked(&before);
    rt.block_on(eventually("rolled back, requests too", Duration::from_secs(60), read, ready_again));

    // For real: each moved GPU replica asks for its slot's resource and serves there; then
    // rolled back on request, requests too.
    let id = start_deploy(&server, &deploy, &admin, &json!({"max_moves": 3}));
    let done = wait_deployment(&server, &id, &admin);
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["plan"], planned["plan"], "the same plan as the dry run");
    let after = rt.block_on(read());
    for m in done["plan"].as_array().unwrap() {
        let moved =
            after.replica(m["service"].as_str().unwrap(), m["replica"].as_u64().unwrap() as u32).unwrap();
        let to = m["to"].as_str();
        assert_eq!((moved.node.as_deref(), moved.ready), (to, true), "{done:#}");
        let expected = m["gpu_to"].as_str().or(m["gpu_from"].as_str());
        assert_eq!(moved.gpu_resource.as_deref(), expected, "{done:#}");
    }
    let response = server.post(&format!("/api/v1/deployments/{id}/rollback"), &admin, &json!({}));
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(wait_deployment(&server, &id, &admin)["status"], "rolled_back");
    rt.block_on(eventually("rolled back on request", Duration::from_secs(60), read, ready_again));
}

async fn serves_moves_and_fails_nodes(client: &kube::Client, scenario: &Scenario, ns: &str) {
    // Every replica Ready where kube-scheduler's scoring put it.
    let read = async || Snapshot::read(client, ns).await.unwrap();
    let all_serving = |s: &Snapshot| {
        s.placement(scenario).is_ok_and(|p| p.serving.iter().all(|&x| x) && p.node_ready.iter().all(|&x| x))
    };
    let snapshot = eventually("all replicas Ready", Duration::from_secs(90), read, all_serving).await;
    let placement = snapshot.placement(scenario).unwrap();
    assert_eq!(placement.nodes, scheduler::spread_placement(scenario).unwrap().nodes);

    // metrics.k8s.io shows every replica's usage, from the load model.
    let with_usage = |s: &Snapshot| s.usage.len() == scenario.replica_count();
    let snapshot = eventually("PodMetrics of every replica", Duration::from_secs(30), read, with_usage).await;
    assert!(
        snapshot.usage.iter().all(|u| u.cpu_millicores > 0.0 && u.memory_mib > 0.0),
        "{:?}",
        snapshot.usage
    );
    let nodes = Api::<DynamicObject>::all_with(client.clone(), &live::metrics::node_metrics());
    assert_eq!(nodes.list(&ListParams::default()).await.unwrap().items.len(), scenario.nodes.len());

    // A move: the embedding replica on an H100 goes to a free GPU node in another zone.
    let embed = snapshot.replica("infinity-embed", 0).unwrap().clone();
    let from = embed.node.clone().unwrap();
    let taken: Vec<&str> = snapshot.replicas.iter().filter_map(|r| r.node.as_deref()).collect();
    let to = scenario
        .nodes
        .iter()
        .find(|n| n.gpu.is_some() && n.name != from && !taken.contains(&n.name.as_str()))
        .expect("gpu-small has a free GPU node")
        .name
        .clone();
    let done = Mover::new(client.clone(), ns).move_replica(&embed.deployment, &to, None).await.unwrap();
    assert_eq!(done.node, to);
    assert!(done.took < Duration::from_secs(60), "{:?}", done.took);
    let after = Snapshot::read(client, ns).await.unwrap();
    let moved = after.replica("infinity-embed", 0).unwrap();
    assert_eq!(
        (moved.node.as_deref(), moved.pinned_to.as_deref(), moved.ready),
        (Some(to.as_str()), Some(to.as_str()), true)
    );
    assert_ne!(moved.pod, embed.pod, "a new pod serves the moved replica");
    // The old pod's PodMetrics go with it, as metrics-server's would.
    let old_pod = embed.pod.clone().unwrap();
    eventually(
        "no PodMetrics of the moved replica's old pod",
        Duration::from_secs(30),
        read,
        |s: &Snapshot| s.usage.len() == scenario.replica_count() && s.usage.iter().all(|u| u.pod != old_pod),
    )
    .await;

    // A node fails: the snapshot shows it NotReady and its replicas not serving; then back.
    let failed = after.replica("router", 0).unwrap().node.clone().unwrap();
    let status = Command::new(BERTH)
        .args(["emulate", "--fail", &failed, "--kubeconfig"])
        .arg(kubeconfig())
        .status()
        .unwrap();
    assert!(status.success());
    let index = scenario.node_index(&failed).unwrap();
    let router =
        scenario.replica_services().iter().position(|&s| scenario.services[s].name == "router").unwrap();
    let down = eventually("the failed node NotReady", Duration::from_secs(30), read, |s: &Snapshot| {
        s.placement(scenario).is_ok_and(|p| !p.node_ready[index] && !p.serving[router])
    })
    .await;
    assert!(!down.nodes.iter().find(|n| n.name == failed).unwrap().ready);
    // metrics-server reports no node it cannot scrape: the emulator takes its NodeMetrics away.
    let metric_names = async || -> Vec<String> {
        let listed = nodes.list(&ListParams::default()).await.unwrap();
        listed.items.into_iter().filter_map(|m| m.metadata.name).collect()
    };
    eventually(
        "no NodeMetrics of the failed node",
        Duration::from_secs(30),
        metric_names,
        |names: &Vec<String>| !names.contains(&failed) && names.len() == scenario.nodes.len() - 1,
    )
    .await;
    annotate(client, &failed, "berth.io/emulate-down", false).await;
    eventually("the node back and serving", Duration::from_secs(30), read, all_serving).await;
    eventually(
        "NodeMetrics of every node again",
        Duration::from_secs(30),
        metric_names,
        |names: &Vec<String>| names.len() == scenario.nodes.len(),
    )
    .await;
}

/// `berth scenario discover` reads the emulated gpu-small (its nodes labelled as GPU feature
/// discovery labels them) into a scenario with gpu-small's nodes and services, and `berth
/// train` trains on that scenario.
fn discovers_the_cluster_and_trains_on_it(scenario: &Scenario, ns: &str) {
    let dir = std::env::temp_dir().join(format!("berth-live-discover-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let found = dir.join("found.yaml");
    let out = Command::new(BERTH)
        .args(["scenario", "discover", "--namespace", ns, "--selector", "berth.io/emulated=true"])
        .arg("--out")
        .arg(&found)
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("traffic: one user group per zone"), "the defaults are listed: {stderr}");
    let discovered = Scenario::from_yaml(&std::fs::read_to_string(&found).unwrap()).unwrap();
    let mut names: Vec<&str> = discovered.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut expected: Vec<&str> = scenario.nodes.iter().map(|n| n.name.as_str()).collect();
    names.sort();
    expected.sort();
    assert_eq!(names, expected);
    for node in &discovered.nodes {
        let shipped = &scenario.nodes[scenario.node_index(&node.name).unwrap()];
        assert_eq!(node.allocatable, shipped.allocatable, "{}", node.name);
        assert_eq!(discovered.classes[node.class], scenario.classes[shipped.class], "{}", node.name);
    }
    let services = |s: &Scenario| {
        s.services.iter().map(|s| (s.name.clone(), s.replicas, s.requests)).collect::<Vec<_>>()
    };
    assert_eq!(services(&discovered), services(scenario));

    let run = dir.join("run");
    let out = Command::new(BERTH)
        .args(["train", "--agent", "dqn", "--steps", "1000", "--episodes", "1", "--scenario"])
        .arg(&found)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(run.join("model.bin").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `berth record` samples the emulated cluster into a trace; `berth train --replay` trains on it.
fn records_and_trains_on_the_replay(ns: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("berth-live-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("trace.csv");
    let out = Command::new(BERTH)
        .args([
            "record",
            "--scenario",
            "gpu-small",
            "--namespace",
            ns,
            "--interval-s",
            "0.3",
            "--samples",
            "4",
        ])
        .arg("--out")
        .arg(&trace)
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&trace).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("t_s,scale,ready:h100-a-1,"));
    let rows: Vec<Vec<f64>> = lines.map(|l| l.split(',').map(|c| c.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 4);
    for row in &rows {
        // The emulator's usage is the model's at scale 1; the fit finds about that.
        assert!((0.8..1.25).contains(&row[1]), "scale {} in {text}", row[1]);
        assert!(row[2..].iter().all(|&ready| ready == 1.0), "{text}");
    }
    let run = dir.join("run");
    let out = Command::new(BERTH)
        .args(["train", "--agent", "dqn", "--scenario", "gpu-small", "--steps", "1500", "--episodes", "1"])
        .arg("--replay")
        .arg(&trace)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let model = std::fs::read(run.join("model.bin")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    model
}

/// Each Deployment's node pin, the node its pod runs on, and whether that pod is Ready.
type Positions = BTreeMap<String, (Option<String>, Option<String>, bool)>;

/// Where each Deployment is pinned and where its Ready pod runs.
fn positions(rt: &tokio::runtime::Runtime, client: &kube::Client, ns: &str) -> Positions {
    let snapshot = rt.block_on(Snapshot::read(client, ns)).unwrap();
    snapshot.replicas.into_iter().map(|r| (r.deployment, (r.pinned_to, r.node, r.ready))).collect()
}

/// Starts a deploy (`POST path` with `body`, answered 202); its id.
fn start_deploy(server: &Server, path: &str, token: &str, body: &Value) -> String {
    let response = server.post(path, token, body);
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json::<Value>().unwrap()["id"].as_str().unwrap().to_string()
}

fn wait_deployment(server: &Server, id: &str, token: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = server.json(&format!("/api/v1/deployments/{id}"), token);
        if d["status"] != "running" {
            return d;
        }
        assert!(Instant::now() < deadline, "deployment still running: {d:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The gym on the live cluster: reset reads the placement; a move action moves the replica
/// on the cluster (pinned there, its pod Ready) and the env's state follows; keep moves
/// nothing; a masked action is refused; moving back restores the cluster.
fn steps_the_live_cluster_as_a_gym(rt: &tokio::runtime::Runtime, client: &kube::Client, ns: &str) {
    use berth_env::{Env, Move};
    let scenario = shipped::load("gpu-small").unwrap();
    let before = positions(rt, client, ns);
    let noon = (12.0 * 3600.0 / scenario.tick_s) as u32;
    let mut env = live::LiveEnv::connect(scenario.clone(), Some(&kubeconfig()), ns, noon).unwrap();
    env.set_move_timeout(Duration::from_secs(30));
    env.try_reset(1).unwrap();
    let placed = env.model().placement().to_vec();
    let name_of = |r: usize| {
        let (s, i) = scenario.replica_keys()[r];
        workload::deployment_name(&scenario.services[s].name, i)
    };
    for (r, &node) in placed.iter().enumerate() {
        assert_eq!(
            before[&name_of(r)].1.as_deref(),
            Some(scenario.nodes[node].name.as_str()),
            "{}",
            name_of(r)
        );
    }
    let action = (1..env.action_count()).find(|&a| env.action_mask()[a]).expect("a move is allowed");
    let mv = env.model().decode(action).unwrap();
    let reward = env.step(action).unwrap().reward;
    assert!(reward.is_finite());
    let to = scenario.nodes[mv.node].name.clone();
    let after = positions(rt, client, ns);
    assert_eq!(after[&name_of(mv.replica)], (Some(to.clone()), Some(to), true));
    assert_eq!(env.model().placement()[mv.replica], mv.node);
    env.step(0).unwrap();
    assert_eq!(positions(rt, client, ns), after, "keep moves nothing");
    if let Some(masked) = (1..env.action_count()).find(|&a| !env.action_mask()[a]) {
        assert!(env.step(masked).is_err(), "a masked action is refused");
        assert_eq!(positions(rt, client, ns), after);
    }
    env.step(env.model().encode(Move { replica: mv.replica, node: placed[mv.replica] })).unwrap();
    assert_eq!(positions(rt, client, ns), before);
    assert_eq!(env.model().placement(), placed.as_slice());
}

/// The same deploy from the operators' console in a headless Chromium: an admin plans (nothing
/// moves), deploys with the shield off, sees each replica on its new node in the cluster map,
/// and rolls back; every replica ends where it was.
fn deploys_from_the_console(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    ns: &str,
    server: &Server,
    deploy: &str,
    before: &Positions,
) {
    let model = deploy.trim_start_matches("/api/v1/models/").trim_end_matches("/deploy");
    let browser = Browser::start("admin", 1280, 900);
    browser.log_in(&server.base, "ada");
    browser.goto(&server.url(&format!("/#/deployments?model={model}")));
    browser.fill(&browser.find("#deploy-max-moves"), "3");
    browser.click(&browser.find("#deploy-shield"));
    // The id of the newest deployment card once it shows `status`.
    let newest = |status: &'static str| {
        let browser = &browser;
        move || {
            let card = browser.all("[data-deployment]").into_iter().next()?;
            let id = browser.attribute(&card, "data-deployment")?;
            let found = browser.all(&format!("[data-deployment='{id}'] .status-{status}"));
            (!found.is_empty()).then_some(id)
        }
    };
    browser.click(&browser.find("#plan-button"));
    let planned = browser.wait("a planned deployment", newest("planned"));
    assert!(!browser.all(&format!("[data-deployment='{planned}'] tr[data-move]")).is_empty());
    assert_eq!(&positions(rt, client, ns), before, "a dry run moves nothing");

    browser.click(&browser.find("#deploy-button"));
    let id = browser.wait_for("the deploy to succeed", Duration::from_secs(120), newest("succeeded"));
    assert_ne!(id, planned);
    let admin = token("admin");
    let done = server.json(&format!("/api/v1/deployments/{id}"), &admin);
    assert_eq!(done["dry_run"], false, "{done:#}");
    browser.screenshot("admin-deployed");

    // The cluster map shows each moved replica on its last target.
    browser.goto(&server.url("/#/cluster"));
    for m in done["plan"].as_array().unwrap() {
        let last = done["plan"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|x| x["deployment"] == m["deployment"])
            .unwrap();
        let chip = format!(
            "[data-node='{}'] [data-replica='{}/{}']",
            last["to"].as_str().unwrap(),
            m["service"].as_str().unwrap(),
            m["replica"]
        );
        browser.find(&chip);
    }
    browser.screenshot("admin-cluster");

    browser.goto(&server.url("/#/deployments"));
    browser.click(&browser.find(&format!("[data-deployment='{id}'] button[data-needs='admin']")));
    browser.wait_for("the rollback", Duration::from_secs(120), newest("rolled_back"));
    assert_eq!(&positions(rt, client, ns), before, "every replica back where it was");
}

/// `berth serve` on the live cluster's namespace `ns`, with database `database` and moves
/// that time out after 4 s.
fn live_server(database: &str, ns: &str) -> Server {
    let config = kubeconfig();
    let env = [
        ("BERTH_LIVE", "true"),
        ("BERTH_KUBECONFIG", config.to_str().unwrap()),
        ("BERTH_NAMESPACE", ns),
        ("BERTH_MOVE_TIMEOUT_S", "4"),
    ];
    Server::start_with(database, &env)
}

/// `berth serve --live` on the emulated cluster: a model trained through the API, planned
/// (dry run: nothing moves), deployed, rolled back, and a deploy whose pod never becomes
/// Ready rolled back by itself.
fn takes_deploys(rt: &tokio::runtime::Runtime, client: &kube::Client, ns: &str) {
    let database = unique_database("deploy");
    let server = live_server(&database, ns);
    let (operator, admin) = (token("operator"), token("admin"));
    let replayed = records_and_trains_on_the_replay(ns);
    // A model whose plan moves two replicas or more (the refused-patch case below needs a
    // second Deployment to refuse): short DQN runs of a few seeds, the first that plans so.
    // The emulator's clock stands still, so the search ends at the same seed every run.
    // 2,000 steps end before learning starts: the untrained network's Q-values all lie within
    // the default keep margin of each other, so it is turned off for these runs to move.
    // Its deploys run with the shield off ("shield": false): these check the moves themselves,
    // and the shield would rightly prefer greedy's plan, or none, to an untrained network's.
    let deploy = (1..=6)
        .find_map(|seed| {
            let response = server.post(
                "/api/v1/training",
                &operator,
                &json!({
                    "agent": "dqn",
                    "scenario": "gpu-small",
                    "steps": 2000,
                    "seed": seed,
                    "hyperparameters": {"keep_margin": 0.0},
                }),
            );
            assert_eq!(response.status(), StatusCode::CREATED);
            let task: Value = response.json().unwrap();
            let task =
                server.wait_task(task["id"].as_str().unwrap(), &operator, Duration::from_secs(300), |t| {
                    t["status"] == "completed" || t["status"] == "failed"
                });
            assert_eq!(task["status"], "completed", "{task:#}");
            let deploy = format!("/api/v1/models/{}/deploy", task["model_id"].as_str().unwrap());
            let planned: Value = server
                .post(&deploy, &admin, &json!({"dry_run": true, "max_moves": 3, "shield": false}))
                .json()
                .unwrap();
            let moved: std::collections::BTreeSet<&str> =
                planned["plan"].as_array().unwrap().iter().filter_map(|m| m["deployment"].as_str()).collect();
            (moved.len() >= 2).then_some(deploy)
        })
        .expect("one of six seeds plans moves of two replicas");
    let before = positions(rt, client, ns);

    // /api/v1/metrics reads the live cluster: its replicas where they run, traffic fitted
    // from the usage the emulator publishes, the cost model's latency for that placement.
    let now = server.json("/api/v1/metrics", &operator);
    assert_eq!(now["source"], "live", "{now:#}");
    assert_eq!(now["nodes"].as_array().unwrap().len(), 8);
    for r in now["replicas"].as_array().unwrap() {
        let name = format!("{}-{}", r["service"].as_str().unwrap(), r["replica"]);
        assert_eq!(before[&name].1.as_deref(), r["node"].as_str(), "{name}");
    }
    assert!(now["traffic"].as_array().unwrap().iter().all(|g| g["rps"].as_f64().unwrap() > 0.0), "{now:#}");
    assert!(now["latency"]["mean_ms"].as_f64().unwrap() > 0.0, "{now:#}");
    let gpus: u64 =
        now["nodes"].as_array().unwrap().iter().map(|n| n["gpus_requested"].as_u64().unwrap()).sum();
    assert_eq!(gpus, 2, "{now:#}");

    // The model trained on the recording, uploaded, planned (nothing moves) and deployed:
    // every Deployment it moves ends pinned to and running on its last target; then undone.
    let response =
        server.http.post(server.url("/api/v1/models")).bearer_auth(&operator).body(replayed).send().unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let uploaded: Value = response.json().unwrap();
    let deploy_replayed = format!("/api/v1/models/{}/deploy", uploaded["id"].as_str().unwrap());
    let planned: Value =
        server.post(&deploy_replayed, &admin, &json!({"dry_run": true, "max_moves": 3})).json().unwrap();
    assert_eq!(planned["status"], "planned", "{planned:#}");
    assert_eq!(positions(rt, client, ns), before);
    // Behind the shield (the default): the plan applied is the cheapest in simulation of the
    // model's, greedy's, lookahead's and none, and never costlier than none; the model's and
    // lookahead's only where they leave no more services on one node than greedy's or none.
    let shield = &planned["shield"];
    let cost = |k: &str| shield[k].as_f64().unwrap();
    let applied = shield["applied"].as_str().unwrap();
    assert!(["policy", "greedy", "lookahead", "keep"].contains(&applied), "{planned:#}");
    let chosen = cost(&format!("{applied}_cost"));
    let lone = |k: &str| shield["lone_services"][k].as_u64().unwrap();
    let allowed = |k: &str| lone(k) <= lone("greedy").max(lone("keep"));
    let best = ["policy", "lookahead"]
        .into_iter()
        .filter(|k| allowed(k))
        .map(|k| cost(&format!("{k}_cost")))
        .fold(cost("greedy_cost"), f64::min);
    assert!(chosen <= cost("keep_cost") && chosen <= best, "{planned:#}");
    assert!(allowed("policy") || applied != "policy", "{planned:#}");
    assert!(allowed("lookahead") || applied != "lookahead", "{planned:#}");
    assert_eq!(applied == "keep", planned["plan"].as_array().unwrap().is_empty(), "{planned:#}");
    let id = start_deploy(&server, &deploy_replayed, &admin, &json!({"max_moves": 3}));
    let done = wait_deployment(&server, &id, &admin);
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["plan"], planned["plan"], "the same plan as the dry run");
    let after = positions(rt, client, ns);
    for (name, (pinned, node, ready)) in &after {
        let last = done["plan"].as_array().unwrap().iter().rev().find(|m| m["deployment"] == name.as_str());
        let expected = last.map_or(before[name].0.clone(), |m| m["to"].as_str().map(String::from));
        assert_eq!((pinned, node, *ready), (&expected, &expected, true), "{name}: {done:#}");
    }
    let response = server.post(&format!("/api/v1/deployments/{id}/rollback"), &admin, &json!({}));
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(wait_deployment(&server, &id, &admin)["status"], "rolled_back");
    assert_eq!(positions(rt, client, ns), before);

    // Operators train; only admins deploy. Bad input names the field.
    assert_eq!(server.post(&deploy, &operator, &json!({})).status(), StatusCode::FORBIDDEN);
    let refused = server.post(&deploy, &admin, &json!({"max_moves": 0}));
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.json::<Value>().unwrap()["error"]["field"], "max_moves");
    let refused = server.post(&deploy, &admin, &json!({"dry_run": "yes"}));
    assert_eq!(refused.json::<Value>().unwrap()["error"]["field"], "dry_run");

    // A dry run returns the plan and moves nothing.
    let response = server.post(&deploy, &admin, &json!({"dry_run": true, "max_moves": 3, "shield": false}));
    assert_eq!(response.status(), StatusCode::CREATED);
    let planned: Value = response.json().unwrap();
    assert_eq!(planned["status"], "planned");
    assert!(!planned["plan"].as_array().unwrap().is_empty(), "{planned:#}");
    assert!(planned["latency_before_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(positions(rt, client, ns), before);

    // For real: every Deployment of the plan ends pinned to, and running on, its last target.
    let response = server.post(&deploy, &admin, &json!({"max_moves": 3, "shield": false}));
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let started: Value = response.json().unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    let done = wait_deployment(&server, &id, &admin);
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let plan = done["plan"].as_array().unwrap();
    assert_eq!(done["steps"].as_array().unwrap().len(), plan.len());
    let after = positions(rt, client, ns);
    for m in plan {
        let name = m["deployment"].as_str().unwrap();
        let last =
            plan.iter().rev().find(|x| x["deployment"] == name).unwrap()["to"].as_str().unwrap().to_string();
        assert_eq!(after[name], (Some(last.clone()), Some(last), true), "{name}");
    }
    assert!(done["latency_after_ms"].as_f64().unwrap() > 0.0, "{done:#}");
    let listed = server.json("/api/v1/deployments?status=succeeded", &admin);
    assert!(listed["items"].as_array().unwrap().iter().any(|d| d["id"] == id.as_str()));

    // Rolled back on request: every replica where it was.
    let response = server.post(&format!("/api/v1/deployments/{id}/rollback"), &admin, &json!({}));
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(wait_deployment(&server, &id, &admin)["status"], "rolled_back");
    assert_eq!(positions(rt, client, ns), before);
    let again = server.post(&format!("/api/v1/deployments/{id}/rollback"), &admin, &json!({}));
    assert_eq!(again.status(), StatusCode::CONFLICT);
    deploys_from_the_console(rt, client, ns, &server, &deploy, &before);

    // A pod that never becomes Ready: the move times out and is undone.
    let nodes: Vec<String> = before.values().filter_map(|(_, node, _)| node.clone()).collect();
    let all: Vec<String> = shipped::load("gpu-small").unwrap().nodes.iter().map(|n| n.name.clone()).collect();
    for node in &all {
        rt.block_on(annotate(client, node, "berth.io/emulate-stuck", true));
    }
    let id = start_deploy(&server, &deploy, &admin, &json!({"max_moves": 3, "shield": false}));
    // One deploy changes the cluster at a time; a dry run may still look.
    let busy = server.post(&deploy, &admin, &json!({"max_moves": 3, "shield": false}));
    assert_eq!(busy.status(), StatusCode::CONFLICT);
    assert_eq!(server.post(&deploy, &admin, &json!({"dry_run": true})).status(), StatusCode::CREATED);
    let failed = wait_deployment(&server, &id, &admin);
    interrupted_deploys_are_undone_by_another_replica(rt, client, ns, &database, &deploy, &before);
    for node in &all {
        rt.block_on(annotate(client, node, "berth.io/emulate-stuck", false));
    }
    assert_eq!(failed["status"], "rolled_back", "{failed:#}");
    let steps = failed["steps"].as_array().unwrap();
    assert_eq!(
        (steps[0]["action"].as_str(), steps[0]["ok"].as_bool()),
        (Some("move"), Some(false)),
        "{failed:#}"
    );
    assert!(steps[0]["error"].as_str().unwrap().contains("not done within 4 s"), "{failed:#}");
    assert!(steps[1..].iter().all(|s| s["action"] == "rollback" && s["ok"] == true), "{failed:#}");
    assert!(failed["error"].as_str().unwrap().contains("move 1 of"), "{failed:#}");
    assert_eq!(positions(rt, client, ns), before, "the replicas on {nodes:?} stayed");

    // Kubernetes refuses a patch mid-deploy: the service's account has what a deploy needs,
    // but may patch only the plan's first Deployment. The first move is made, the second is
    // refused, and the first goes back.
    let planned: Value = server
        .post(&deploy, &admin, &json!({"dry_run": true, "max_moves": 3, "shield": false}))
        .json()
        .unwrap();
    let first = planned["plan"][0]["deployment"].as_str().unwrap().to_string();
    assert!(
        planned["plan"].as_array().unwrap().iter().any(|m| m["deployment"] != first.as_str()),
        "{planned:#}"
    );
    let rules = json!([
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"], "resourceNames": [first]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["get", "list"]},
    ]);
    // Node metrics too, as the chart grants: they carry the emulator's clock, without which
    // plans follow UTC's time of day and the plan below would not be the one checked.
    let nodes_only = json!([
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["metrics.k8s.io"], "resources": ["nodes"], "verbs": ["get", "list"]},
    ]);
    let limited = rt.block_on(service_account(client, ns, "deployer", rules, nodes_only));
    let limited_server = Server::start_with(
        &database,
        &[
            ("BERTH_LIVE", "true"),
            ("BERTH_KUBECONFIG", limited.path().to_str().unwrap()),
            ("BERTH_NAMESPACE", ns),
        ],
    );
    let id = start_deploy(&limited_server, &deploy, &admin, &json!({"max_moves": 3, "shield": false}));
    let refused = wait_deployment(&limited_server, &id, &admin);
    assert_eq!(refused["plan"], planned["plan"], "the limited account plans as the dry run did");
    assert_eq!(refused["status"], "rolled_back", "{refused:#}");
    let steps: Vec<(String, bool)> = refused["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["action"].as_str().unwrap().to_string(), s["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(steps.first(), Some(&("move".to_string(), true)), "{refused:#}");
    assert_eq!(steps.last(), Some(&("rollback".to_string(), true)), "{refused:#}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("403 Forbidden") && error.contains("system:serviceaccount:live-e2e:deployer"),
        "{error}"
    );
    assert_eq!(positions(rt, client, ns), before);

    continuous_deploys_replan_until_stopped(&server, &deploy);
    deploys_on_a_node_that_joined_since_training(rt, client, ns, &server, &deploy);
}

/// A node joins the cluster after training and a replica lands on it: a model that fits any
/// cluster (entity PPO) plans and deploys on the live node list, nine nodes where it was
/// trained on eight; a model bound to its training shape (DQN) is refused, naming the node.
fn deploys_on_a_node_that_joined_since_training(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    ns: &str,
    server: &Server,
    flat_deploy: &str,
) {
    let (operator, admin) = (token("operator"), token("admin"));
    let body = json!({"agent": "ppo", "scenario": "gpu-small", "steps": 4096, "seed": 1,
                      "hyperparameters": {"network": "entity"}});
    let response = server.post("/api/v1/training", &operator, &body);
    assert_eq!(response.status(), StatusCode::CREATED);
    let task: Value = response.json().unwrap();
    let task = server.wait_task(task["id"].as_str().unwrap(), &operator, Duration::from_secs(300), |t| {
        t["status"] == "completed" || t["status"] == "failed"
    });
    assert_eq!(task["status"], "completed", "{task:#}");
    let deploy = format!("/api/v1/models/{}/deploy", task["model_id"].as_str().unwrap());

    // A copy of the embedding replica's H100 node joins, and the replica moves onto it.
    let before = positions(rt, client, ns);
    let embed =
        rt.block_on(Snapshot::read(client, ns)).unwrap().replica("infinity-embed", 0).unwrap().clone();
    let home = embed.node.clone().unwrap();
    let joined = "gpu-joined-1";
    let status = Command::new(BERTH)
        .args(["emulate", "--add-node", joined, "--like", &home, "--kubeconfig"])
        .arg(kubeconfig())
        .status()
        .unwrap();
    assert!(status.success());
    let mover = Mover::new(client.clone(), ns);
    assert_eq!(rt.block_on(mover.move_replica(&embed.deployment, joined, None)).unwrap().node, joined);

    // The bound model cannot account for a replica on a node it has never seen.
    let refused = server.post(flat_deploy, &admin, &json!({"dry_run": true}));
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let error = refused.json::<Value>().unwrap()["error"]["message"].as_str().unwrap().to_string();
    assert!(error.contains(joined), "{error}");

    // The metrics endpoint shows the node and the replica on it.
    let now = server.json("/api/v1/metrics", &operator);
    let nodes: Vec<&str> =
        now["nodes"].as_array().unwrap().iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(nodes.len(), 9, "{now:#}");
    assert!(nodes.contains(&joined), "{now:#}");

    // The model that fits any cluster plans on nine nodes and deploys; then it is undone.
    let response = server.post(&deploy, &admin, &json!({"max_moves": 3}));
    assert_eq!(response.status(), StatusCode::ACCEPTED, "{:?}", response.text());
    let id = response.json::<Value>().unwrap()["id"].as_str().unwrap().to_string();
    let done = wait_deployment(server, &id, &admin);
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["nodes_added"], json!([joined]), "{done:#}");
    assert_eq!(done["nodes_left_out"], json!([]), "{done:#}");
    assert!(done["latency_after_ms"].as_f64().unwrap() > 0.0, "{done:#}");
    let response = server.post(&format!("/api/v1/deployments/{id}/rollback"), &admin, &json!({}));
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(wait_deployment(server, &id, &admin)["status"], "rolled_back");

    // Back as it was: the replica home, the node gone.
    assert_eq!(rt.block_on(mover.move_replica(&embed.deployment, &home, None)).unwrap().node, home);
    rt.block_on(async {
        let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone());
        nodes.delete(joined, &Default::default()).await.unwrap();
        // The emulator takes its NodeMetrics away, as metrics-server would.
        let metrics = Api::<DynamicObject>::all_with(client.clone(), &live::metrics::node_metrics());
        let metric = async || metrics.get_opt(joined).await.unwrap();
        eventually("no NodeMetrics of the removed node", Duration::from_secs(30), metric, Option::is_none)
            .await;
    });
    assert_eq!(positions(rt, client, ns), before);
}

/// A continuous deploy re-plans and applies every second, holds the cluster meanwhile (other
/// deploys get 409), and stops when asked; bad settings name the field.
fn continuous_deploys_replan_until_stopped(server: &Server, deploy: &str) {
    let admin = token("admin");
    for (body, field) in [
        (json!({"continuous": true, "dry_run": true}), "continuous"),
        (json!({"interval_s": 5}), "interval_s"),
        (json!({"continuous": true, "interval_s": 0.1}), "interval_s"),
    ] {
        let refused = server.post(deploy, &admin, &body);
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(refused.json::<Value>().unwrap()["error"]["field"], field, "{body}");
    }
    let response = server.post(
        deploy,
        &admin,
        &json!({"continuous": true, "interval_s": 1, "max_moves": 3, "shield": false}),
    );
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().unwrap()["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/deployments/{id}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.json(&path, &admin)["continuous"]["rounds"].as_u64().unwrap() < 3 {
        assert!(Instant::now() < deadline, "not three rounds: {:#}", server.json(&path, &admin));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(server.post(deploy, &admin, &json!({})).status(), StatusCode::CONFLICT);
    assert_eq!(server.post(&format!("{path}/rollback"), &admin, &json!({})).status(), StatusCode::CONFLICT);
    assert_eq!(server.post(&format!("{path}/stop"), &admin, &json!({})).status(), StatusCode::ACCEPTED);
    let stopped = wait_deployment(server, &id, &admin);
    assert_eq!(stopped["status"], "stopped", "{stopped:#}");
    assert!(stopped["steps"].as_array().unwrap().iter().all(|s| s["ok"] == true), "{stopped:#}");
    assert_eq!(server.post(&format!("{path}/stop"), &admin, &json!({})).status(), StatusCode::CONFLICT);
    // The cluster is free again.
    assert_eq!(server.post(deploy, &admin, &json!({"dry_run": true})).status(), StatusCode::CREATED);
}

/// Two replicas of the service on one database, with 1 s deploy locks: while one deploys
/// (its first move waiting on a pod that never becomes Ready), the other is refused (409);
/// when the first is killed mid-move, the other takes the deployment over once the lock
/// lapses and moves back what it moved.
fn interrupted_deploys_are_undone_by_another_replica(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    ns: &str,
    database: &str,
    deploy: &str,
    before: &BTreeMap<String, (Option<String>, Option<String>, bool)>,
) {
    let config = kubeconfig();
    let env = [
        ("BERTH_LIVE", "true"),
        ("BERTH_KUBECONFIG", config.to_str().unwrap()),
        ("BERTH_NAMESPACE", ns),
        ("BERTH_MOVE_TIMEOUT_S", "60"),
        ("BERTH_TASK_LEASE_S", "1"),
    ];
    let admin = token("admin");
    let mut first = Server::start_with(database, &env);
    let response = first.post(deploy, &admin, &json!({"max_moves": 3, "shield": false}));
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().unwrap()["id"].as_str().unwrap().to_string();
    let second = Server::start_with(database, &env);
    assert_eq!(
        second.post(deploy, &admin, &json!({"max_moves": 3, "shield": false})).status(),
        StatusCode::CONFLICT
    );
    // The first move is patched and waits for Ready; kill the replica making it.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(second.json(&format!("/api/v1/deployments/{id}"), &admin)["status"], "running");
    first.kill();
    let taken_over = wait_deployment(&second, &id, &admin);
    assert_eq!(taken_over["status"], "rolled_back", "{taken_over:#}");
    assert!(taken_over["error"].as_str().unwrap().starts_with("interrupted"), "{taken_over:#}");
    let steps = taken_over["steps"].as_array().unwrap();
    assert!(
        !steps.is_empty() && steps.iter().all(|s| s["action"] == "rollback" && s["ok"] == true),
        "{taken_over:#}"
    );
    assert_eq!(&positions(rt, client, ns), before);
    // The cluster is free again.
    assert_eq!(second.post(deploy, &admin, &json!({"dry_run": true})).status(), StatusCode::CREATED);
}

async fn annotate(client: &kube::Client, node: &str, key: &str, on: bool) {
    let value = if on { json!("true") } else { Value::Null };
    let patch = json!({"metadata": {"annotations": {key: value}}});
    Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .patch(node, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

#[test]
fn a_pod_that_never_becomes_ready_times_out_with_what_was_seen() {
    runtime().block_on(async {
        let client = client().await;
        let ns = "live-timeout";
        namespace(&client, ns).await;
        // The tiny scenario's Deployments, pinned to nodes no kubelet plays in this test.
        let scenario = shipped::load("tiny").unwrap();
        let placement = scheduler::spread_placement(&scenario).unwrap();
        workload::apply(&client, ns, &workload::deployments(&scenario, &placement.nodes, ns)).await.unwrap();
        let mut mover = Mover::new(client.clone(), ns);
        mover.timeout = Duration::from_secs(2);
        let error = mover
            .move_replica(&workload::deployment_name("infinity-embed", 0), "nowhere", None)
            .await
            .unwrap_err();
        match &error {
            LiveError::Timeout { what, last_seen, .. } => {
                assert!(what.contains("infinity-embed-0") && what.contains("nowhere"), "{error}");
                assert!(last_seen.contains("0 ready"), "{error}");
            }
            other => panic!("expected a timeout, got {other}"),
        }
        // The patch itself landed: the Deployment is pinned to the target.
        let snapshot = Snapshot::read(&client, ns).await.unwrap();
        assert_eq!(snapshot.replica("infinity-embed", 0).unwrap().pinned_to.as_deref(), Some("nowhere"));
        assert!(snapshot.placement(&scenario).unwrap_err().to_string().contains("`nowhere`"));
    });
}

#[test]
fn too_few_rights_is_a_clear_403_naming_what_was_refused() {
    runtime().block_on(async {
        let admin = client().await;
        let ns = "live-rbac";
        namespace(&admin, ns).await;
        let scenario = shipped::load("tiny").unwrap();
        let placement = scheduler::spread_placement(&scenario).unwrap();
        workload::apply(&admin, ns, &workload::deployments(&scenario, &placement.nodes, ns)).await.unwrap();
        let pinned = async || {
            let snapshot = Snapshot::read(&admin, ns).await.unwrap();
            snapshot.replicas.into_iter().map(|r| (r.deployment, r.pinned_to)).collect::<Vec<_>>()
        };
        let before = pinned().await;

        // A service account that may read Deployments, but not patch them nor list nodes.
        let rules = json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}]);
        let config = service_account(&admin, ns, "reader", rules, json!([])).await;
        let reader = live::connect(Some(config.path())).await.unwrap();

        let error = Mover::new(reader.clone(), ns)
            .pin(&workload::deployment_name("infinity-embed", 0), "l4-a", None)
            .await
            .unwrap_err();
        assert!(error.is_forbidden(), "{error}");
        let message = error.to_string();
        assert!(message.contains("403 Forbidden") && message.contains("patch"), "{message}");
        assert!(message.contains("system:serviceaccount:live-rbac:reader"), "{message}");
        // Reading nodes is refused too, and says so.
        let error = Snapshot::read(&reader, ns).await.unwrap_err();
        assert!(error.is_forbidden() && error.to_string().contains("list nodes"), "{error}");
        // So is discovering the cluster: a clear message, and nothing written.
        let out_file = std::env::temp_dir().join(format!("berth-discover-403-{}.yaml", std::process::id()));
        let out = Command::new(BERTH)
            .args(["scenario", "discover", "--namespace", ns, "--kubeconfig"])
            .arg(config.path())
            .arg("--out")
            .arg(&out_file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("refused to list nodes (403 Forbidden)"), "{stderr}");
        assert!(!out_file.exists(), "nothing is written when the cluster cannot be read");
        // Nothing moved.
        assert_eq!(pinned().await, before);
    });
}

/// `berth serve --executor kubernetes`: a task becomes a Job running `berth train --task`
/// with the MongoDB URI from a Secret. The test plays the Job's pod (no kubelet runs
/// containers here): it runs the Job's command with the Job's environment, resolved from the
/// API server as a kubelet would. A completed task's Job is cleaned up; a task whose Job
/// disappears fails naming it; a cancelled task's Job is deleted.
#[test]
fn training_tasks_run_as_kubernetes_jobs() {
    let rt = runtime();
    let ns = "live-jobs";
    let client = rt.block_on(async {
        let client = client().await;
        namespace(&client, ns).await;
        let secret =
            json!({"metadata": {"name": "berth-db"}, "stringData": {"mongodb-uri": common::mongodb_uri()}});
        Api::<Secret>::namespaced(client.clone(), ns)
            .create(&Default::default(), &serde_json::from_value(secret).unwrap())
            .await
            .unwrap();
        client
    });
    let config = kubeconfig();
    let database = unique_database("jobs");
    let env = [
        ("BERTH_EXECUTOR", "kubernetes"),
        ("BERTH_KUBECONFIG", config.to_str().unwrap()),
        ("BERTH_JOB_NAMESPACE", ns),
        ("BERTH_JOB_IMAGE", "registry.example/berth:0.1.0"),
        ("BERTH_JOB_SECRET", "berth-db"),
        ("BERTH_JOB_GPU_IMAGE", "registry.example/berth-tch:0.1.0"),
    ];
    let mut server = Server::start_with(&database, &env);
    let operator = token("operator");
    let jobs = Api::<Job>::namespaced(client.clone(), ns);
    let submit = |steps: u64| -> String {
        let body = json!({"agent": "qlearning", "scenario": "tiny", "steps": steps, "seed": 1});
        let response = server.post("/api/v1/training", &operator, &body);
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json::<Value>().unwrap()["id"].as_str().unwrap().to_string()
    };
    // Each attempt at a task gets a Job of its own: `berth-train-<task>-<attempt>`.
    let job_of = |id: &str| -> Job {
        rt.block_on(eventually(
            "the task's Job",
            Duration::from_secs(30),
            async || jobs.get_opt(&format!("berth-train-{id}-1")).await.unwrap(),
            Option::is_some,
        ))
        .unwrap()
    };

    // A task runs as a Job, and the Job's command trains it into the store.
    let id = submit(3000);
    let job = job_of(&id);
    let spec = job.spec.clone().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("registry.example/berth:0.1.0"));
    let command = container.command.clone().unwrap();
    assert_eq!(command[..4], ["berth", "train", "--task", id.as_str()], "{command:?}");
    let task = server.json(&format!("/api/v1/training/{id}"), &operator);
    assert_eq!(task["status"], "running", "claimed while its Job runs: {task:#}");
    // The pod's environment as a kubelet resolves it: the URI from the Secret, never inline.
    let mut run = Command::new(BERTH);
    run.args(&command[1..]).env_clear().env("PATH", std::env::var("PATH").unwrap());
    for var in container.env.clone().unwrap() {
        let value = match (var.value, var.value_from) {
            (Some(value), _) => value,
            (None, Some(from)) => {
                let key = from.secret_key_ref.expect("only Secret references");
                let secret =
                    rt.block_on(Api::<Secret>::namespaced(client.clone(), ns).get(&key.name)).unwrap();
                String::from_utf8(secret.data.unwrap()[&key.key].0.clone()).unwrap()
            }
            (None, None) => String::new(),
        };
        run.env(var.name, value);
    }
    let out = run.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let task = server.wait_task(&id, &operator, Duration::from_secs(30), |t| t["status"] != "running");
    assert_eq!(task["status"], "completed", "{task:#}");
    assert_eq!(task["progress"]["step"], 3000, "{task:#}");
    let model = server.json(&format!("/api/v1/models/{}", task["model_id"].as_str().unwrap()), &operator);
    assert_eq!(model["agent"], "qlearning", "{model:#}");
    rt.block_on(eventually(
        "the finished task's Job deleted",
        Duration::from_secs(30),
        async || jobs.get_opt(&format!("berth-train-{id}-1")).await.unwrap().is_none(),
        |gone| *gone,
    ));
    // Run again, the command refuses: the task is no longer claimed.
    let again = Command::new(BERTH)
        .args(&command[1..])
        .env("BERTH_MONGODB_URI", common::mongodb_uri())
        .env("BERTH_DATABASE", &database)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("completed"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // A Job deleted before it finished fails its task, naming the Job.
    let id = submit(3000);
    job_of(&id);
    rt.block_on(jobs.delete(&format!("berth-train-{id}-1"), &Default::default())).unwrap();
    let task = server.wait_task(&id, &operator, Duration::from_secs(30), |t| t["status"] != "running");
    assert_eq!(task["status"], "failed", "{task:#}");
    assert!(task["error"].as_str().unwrap().contains(&format!("berth-train-{id}-1")), "{task:#}");

    // A CUDA task's Job runs the LibTorch image with a GPU.
    let body = json!({"agent": "dqn", "scenario": "tiny", "steps": 1000, "device": "cuda"});
    let response = server.post("/api/v1/training", &operator, &body);
    assert_eq!(response.status(), StatusCode::CREATED);
    let gpu_task = response.json::<Value>().unwrap();
    assert_eq!(gpu_task["device"], "cuda");
    let pod = job_of(gpu_task["id"].as_str().unwrap()).spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some("registry.example/berth-tch:0.1.0"));
    let limits = pod.containers[0].resources.clone().unwrap().limits.unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "1");
    let response = server.post(
        &format!("/api/v1/training/{}/cancel", gpu_task["id"].as_str().unwrap()),
        &operator,
        &json!({}),
    );
    assert_eq!(response.status(), StatusCode::OK);

    // A cancelled task's Job goes.
    let id = submit(3000);
    job_of(&id);
    let response = server.post(&format!("/api/v1/training/{id}/cancel"), &operator, &json!({}));
    assert_eq!(response.status(), StatusCode::OK);
    let task = server.wait_task(&id, &operator, Duration::from_secs(30), |t| t["status"] != "running");
    assert_eq!(task["status"], "cancelled", "{task:#}");
    rt.block_on(eventually(
        "the cancelled task's Job deleted",
        Duration::from_secs(30),
        async || jobs.get_opt(&format!("berth-train-{id}-1")).await.unwrap().is_none(),
        |gone| *gone,
    ));

    // The service dies while a task's Job runs: started again, it re-queues the task once the
    // lease lapses, runs it as a Job of a second attempt, and deletes the first attempt's.
    let id = submit(3000);
    job_of(&id);
    server.kill();
    let server = Server::start_with(&database, &env);
    rt.block_on(eventually(
        "the second attempt's Job, and the first one's gone",
        Duration::from_secs(30),
        async || {
            let list = jobs.list(&Default::default()).await.unwrap();
            let mut names: Vec<String> = list.items.into_iter().filter_map(|j| j.metadata.name).collect();
            names.retain(|n| n.contains(&id));
            names
        },
        |names| names == &[format!("berth-train-{id}-2")],
    ));
    let response = server.post(&format!("/api/v1/training/{id}/cancel"), &operator, &json!({}));
    assert_eq!(response.status(), StatusCode::OK);
}
