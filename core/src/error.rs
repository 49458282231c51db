//! Errors of the domain model: every one names where it happened and why.

/// What went wrong while reading a scenario or working on a placement.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// A scenario field is missing, malformed or inconsistent with the rest.
    #[error("{path}: {reason}")]
    Invalid {
        /// Where in the document, e.g. `nodes[2].gpu.count`.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// A placement puts more on a node than the node can hold.
    #[error("placement infeasible on node `{node}`: {reason}")]
    Infeasible {
        /// The node that does not fit.
        node: String,
        /// Which resource is exceeded.
        reason: String,
    },
}

impl Error {
    /// A scenario error at `path`.
    pub fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { path: path.into(), reason: reason.into() }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
