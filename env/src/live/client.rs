//! A Kubernetes client from a kubeconfig file, or from the environment.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::{LiveError, LiveResult};

/// A client for the cluster in `kubeconfig`, or, without one, what `kube` infers
/// (`KUBECONFIG`, `~/.kube/config`, or the pod's service account when run in a cluster).
pub async fn connect(kubeconfig: Option<&Path>) -> LiveResult<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| LiveError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| LiveError::Config(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer().await.map_err(|e| LiveError::Config(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|e| LiveError::Config(e.to_string()))
}
