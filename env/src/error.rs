//! Errors of the gym.

/// What went wrong in the gym.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario is invalid or cannot be placed.
    #[error(transparent)]
    Scenario(#[from] berth_core::Error),
    /// A scenario file could not be read.
    #[error("cannot read scenario `{path}`: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The action index is not in the action space.
    #[error("action {action} is out of range: the action space is Discrete({actions})")]
    ActionOutOfRange {
        /// The action given.
        action: usize,
        /// The number of actions.
        actions: usize,
    },
    /// The action is masked in this state.
    #[error("action {action} is masked: {reason}")]
    MaskedAction {
        /// The action given.
        action: usize,
        /// Why it is not allowed.
        reason: String,
    },
    /// `step` was called after the episode ended, before `reset`.
    #[error("the episode is over: call reset before step")]
    EpisodeOver,
    /// The oracle will not search a space this large.
    #[error("oracle refused: {0}")]
    OracleRefused(String),
    /// The `fixed` baseline will not search a space this large.
    #[error("fixed placement search refused: {0}")]
    FixedRefused(String),
    /// Arguments that do not fit together (e.g. a vector env of zero copies).
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// Results of the gym.
pub type Result<T, E = Error> = std::result::Result<T, E>;
