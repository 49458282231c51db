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
}

/// What the caller of a run answers to a progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on training.
    Continue,
    /// Stop now: the run ends with [`crate::Error::Cancelled`].
    Stop,
}
