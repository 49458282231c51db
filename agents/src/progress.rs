//! What a run reports as it goes and what its caller answers: below the algorithms, which
//! report, and the `train` entry point that dispatches to them.

/// Where a run stands, for progress bars and the API's progress fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Environment steps done.
    pub step: u64,
    /// Steps the run will take.
    pub total: u64,
    /// Return of the last finished episode.
    pub recent_return: Option<f64>,
    /// Steps per second so far.
    pub sps: f64,
    /// The losses of the latest update, where the algorithm has them.
    pub losses: Losses,
}

/// One update's losses, for curves drawn while a run trains (the full log has every column).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Losses {
    /// Mean squared TD error (Q-learning, DQN).
    pub td_loss: Option<f64>,
    /// Clipped policy loss (PPO).
    pub policy_loss: Option<f64>,
    /// Value loss (PPO).
    pub value_loss: Option<f64>,
}

/// What the caller of a run answers to a progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on training.
    Continue,
    /// Stop now: the run ends with [`crate::Error::Cancelled`].
    Stop,
}
