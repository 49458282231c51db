//! Errors of the agents crate.

/// What went wrong while training, saving or loading an agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gym refused something.
    #[error(transparent)]
    Env(#[from] berth_env::Error),
    /// A saved model is not one berth wrote, or is damaged.
    #[error("not a berth model: {0}")]
    BadModel(String),
    /// A saved model does not fit the env it is used with.
    #[error(
        "the model was trained for {model_obs} observation values and {model_actions} actions, \
         but `{scenario}` has {env_obs} and {env_actions}"
    )]
    SizeMismatch {
        /// Scenario of the env.
        scenario: String,
        /// Observation length the model expects.
        model_obs: usize,
        /// Actions the model expects.
        model_actions: usize,
        /// Observation length of the env.
        env_obs: usize,
        /// Actions of the env.
        env_actions: usize,
    },
    /// A hyperparameter is out of range.
    #[error("hyperparameter `{name}`: {reason}")]
    Config {
        /// The field.
        name: String,
        /// Why.
        reason: String,
    },
    /// The caller asked the run to stop (a cancelled training task).
    #[error("training stopped at step {step} as asked")]
    Cancelled {
        /// Environment steps done when it stopped.
        step: u64,
    },
    /// Writing the run's log or model failed.
    #[error("cannot write `{path}`: {reason}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Refuses hyperparameter `name` when `value` is over `max`, naming both.
    pub(crate) fn at_most(name: &str, value: usize, max: usize) -> Result<()> {
        if value <= max {
            return Ok(());
        }
        Err(Self::Config { name: name.into(), reason: format!("{value} is over the limit of {max}") })
    }
}

/// Results of the agents crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
