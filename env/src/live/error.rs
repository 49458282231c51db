//! Errors of the live backend: every one says what berth was doing when it failed.

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The kubeconfig (or in-cluster config) could not be loaded.
    #[error("kubeconfig: {0}")]
    Config(String),
    /// Kubernetes answered 403: the credentials lack a permission.
    #[error("Kubernetes refused to {action} (403 Forbidden): {message}")]
    Forbidden {
        /// What berth tried.
        action: String,
        /// The API server's message, which names the user, verb and resource.
        message: String,
    },
    /// Any other error of the API server or the connection.
    #[error("cannot {action}: {source}")]
    Kube {
        /// What berth tried.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A rollout did not finish in time.
    #[error("{what} was not done within {timeout_s} s: {last_seen}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The limit.
        timeout_s: f64,
        /// The last state seen, to tell why.
        last_seen: String,
    },
    /// The cluster and the scenario do not describe the same thing.
    #[error("the cluster does not match scenario `{scenario}`: {reason}")]
    Mismatch {
        /// The scenario's name.
        scenario: String,
        /// What differs.
        reason: String,
    },
}

/// The live backend's result.
pub type LiveResult<T> = std::result::Result<T, LiveError>;

impl LiveError {
    /// Wraps a client error, telling a 403 apart so the missing right is clear.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        let action = action.into();
        match &source {
            kube::Error::Api(status) if status.code == 403 => {
                Self::Forbidden { action, message: status.message.clone() }
            }
            _ => Self::Kube { action, source },
        }
    }

    /// Whether this is Kubernetes refusing for lack of rights.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Forbidden { .. })
    }
}

/// `.map_err(during("list nodes"))`.
pub(crate) fn during(action: &str) -> impl FnOnce(kube::Error) -> LiveError + '_ {
    move |source| LiveError::kube(action, source)
}
