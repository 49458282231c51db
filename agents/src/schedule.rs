//! Schedules for exploration rates and learning rates.

use serde::{Deserialize, Serialize};

/// Goes linearly from `start` to `end` over the first `fraction` of training, then stays.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    /// Value at step 0.
    pub start: f64,
    /// Value from `fraction` of the run on.
    pub end: f64,
    /// Share of the run the change takes, in (0, 1].
    pub fraction: f64,
}

impl Linear {
    /// The value at `step` of a run of `total` steps.
    pub fn at(&self, step: u64, total: u64) -> f64 {
        let span = (self.fraction * total as f64).max(1.0);
        let t = (step as f64 / span).min(1.0);
        self.start + (self.end - self.start) * t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_schedule_reaches_its_end_and_stays() {
        let s = Linear { start: 1.0, end: 0.1, fraction: 0.5 };
        assert_eq!(s.at(0, 100), 1.0);
        assert!((s.at(25, 100) - 0.55).abs() < 1e-12);
        assert!((s.at(50, 100) - 0.1).abs() < 1e-12);
        assert_eq!(s.at(50, 100), s.at(99, 100));
    }
}
