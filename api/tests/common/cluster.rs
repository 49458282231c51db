//! What the tests against the test API server share: its admin kubeconfig and client, fresh
//! namespaces, polling, and service accounts with kubeconfigs of their own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_env::live;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

pub fn kubeconfig() -> PathBuf {
    std::env::var("BERTH_TEST_KUBECONFIG")
        .expect(
            "BERTH_TEST_KUBECONFIG is not set: `scripts/test.sh` starts the API server and sets it; by hand, \
             export BERTH_TEST_KUBECONFIG=$(scripts/kube-apiserver.sh start | tail -n1)",
        )
        .into()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

pub async fn client() -> kube::Client {
    live::connect(Some(&kubeconfig())).await.expect("the test API server answers")
}

/// A fresh namespace (deleted first if a crashed run left it).
pub async fn namespace(client: &kube::Client, name: &str) {
    let api = Api::<Namespace>::all(client.clone());
    if api.get_opt(name).await.unwrap().is_some() {
        let _ = api.delete(name, &DeleteParams::default()).await;
        // A pod on an emulated node whose emulator is gone stays Terminating: no kubelet
        // finishes it. Finish it here, as the kubelet would.
        let pods = Api::<Pod>::namespaced(client.clone(), name);
        let now = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
        let deadline = Instant::now() + Duration::from_secs(60);
        while api.get_opt(name).await.unwrap().is_some() {
            for pod in pods.list(&ListParams::default()).await.unwrap().items {
                let _ = pods.delete(&pod.metadata.name.unwrap_or_default(), &now).await;
            }
            assert!(Instant::now() < deadline, "namespace {name} is not going away");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let object = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

/// Polls `read` until `done` holds of what it returns, or fails after `limit`.
pub async fn eventually<T: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    mut read: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let value = read().await;
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}; last seen {value:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A kubeconfig for a new service account of `ns` with these namespaced `rules` and
/// cluster-wide `cluster_rules` (RBAC rule lists), its token from the secret the
/// controller-manager makes for it.
pub async fn service_account(
    admin: &kube::Client,
    ns: &str,
    name: &str,
    rules: Value,
    cluster_rules: Value,
) -> Kubeconfig {
    let create = async |kind: &str, object: Value| {
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        let (group, version) =
            if kind == "ServiceAccount" { ("", "v1") } else { ("rbac.authorization.k8s.io", "v1") };
        let resource =
            kube::discovery::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(group, version, kind));
        let api = if kind.starts_with("Cluster") {
            Api::<DynamicObject>::all_with(admin.clone(), &resource)
        } else {
            Api::<DynamicObject>::namespaced_with(admin.clone(), ns, &resource)
        };
        api.patch(
            &object.metadata.name.clone().unwrap(),
            &PatchParams::apply("berth-test").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap();
    };
    let subject = json!([{"kind": "ServiceAccount", "name": name, "namespace": ns}]);
    let global = format!("{ns}-{name}");
    create(
        "ServiceAccount",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
    )
    .await;
    create("Role", json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name}, "rules": rules})).await;
    create("RoleBinding", json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}, "subjects": subject})).await;
    create("ClusterRole", json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": global}, "rules": cluster_rules})).await;
    create("ClusterRoleBinding", json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": global},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": global}, "subjects": subject})).await;
    token_kubeconfig(admin, ns, name).await
}

/// A kubeconfig for the service account `name` of `ns` (which exists), with the token from
/// the secret the controller-manager makes for it.
pub async fn token_kubeconfig(admin: &kube::Client, ns: &str, name: &str) -> Kubeconfig {
    let secrets = Api::<Secret>::namespaced(admin.clone(), ns);
    let token = eventually(
        "the service account's token",
        Duration::from_secs(30),
        async || {
            let list = secrets.list(&ListParams::default()).await.unwrap();
            list.items.into_iter().find_map(|s| {
                let mine =
                    s.metadata.annotations.as_ref()?.get("kubernetes.io/service-account.name")? == name;
                mine.then(|| s.data?.get("token").cloned()).flatten()
            })
        },
        Option::is_some,
    )
    .await
    .unwrap();
    let token = String::from_utf8(token.0).unwrap();
    let admin_config = std::fs::read_to_string(kubeconfig()).unwrap();
    let config: String = admin_config
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("token:") {
                format!("    token: {token}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = std::env::temp_dir().join(format!("berth-test-{ns}-{name}-{}.kubeconfig", std::process::id()));
    std::fs::write(&path, config).unwrap();
    Kubeconfig(path)
}

/// A service account's kubeconfig file, removed when dropped: it holds the account's token,
/// which should not outlive the test in the temp dir.
pub struct Kubeconfig(PathBuf);

impl Kubeconfig {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Kubeconfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
