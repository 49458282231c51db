//! The learning curve a running task keeps with its progress: the return of the latest
//! finished episode and the latest update's losses at steps of the run, thinned to a bounded,
//! evenly spread set of points, so the console can draw a task while it trains (the full log
//! is stored only once it completes).

use berth_agents::Losses;
use berth_agents::run_log::keep_every_other;

use crate::store::CurvePoint;

/// The most points a task's stored curve holds; a long run keeps every other one when full.
pub const MAX_POINTS: usize = 400;

/// The points gathered so far and the stride in steps between those kept.
#[derive(Debug)]
pub struct Curve {
    points: Vec<CurvePoint>,
    stride: u64,
}

impl Default for Curve {
    fn default() -> Self {
        Self { points: Vec::new(), stride: 1 }
    }
}

impl Curve {
    /// Takes the return and losses reported at `step`, unless a point was kept less than a
    /// stride ago or no episode has ended yet.
    pub fn observe(&mut self, step: u64, episodic_return: Option<f64>, losses: Losses) {
        let Some(episodic_return) = episodic_return.filter(|r| r.is_finite()) else { return };
        let finite = |x: Option<f64>| x.filter(|x| x.is_finite());
        if let Some(last) = self.points.last()
            && step < last.step.saturating_add(self.stride)
        {
            return;
        }
        self.points.push(CurvePoint {
            step,
            episodic_return,
            td_loss: finite(losses.td_loss),
            policy_loss: finite(losses.policy_loss),
            value_loss: finite(losses.value_loss),
        });
        if self.points.len() > MAX_POINTS {
            // Every other point goes, and the stride doubles: the kept ones stay evenly spread
            // over the whole run, its start included.
            keep_every_other(&mut self.points);
            self.stride *= 2;
        }
    }

    /// The points kept, oldest first.
    pub fn points(&self) -> &[CurvePoint] {
        &self.points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_run_keeps_a_bounded_evenly_spread_curve_from_its_start() {
        let mut curve = Curve::default();
        for step in 1..=1_000_000u64 {
            curve.observe(step, Some(step as f64), Losses::default());
            assert!(curve.points().len() <= MAX_POINTS);
        }
        let steps: Vec<u64> = curve.points().iter().map(|p| p.step).collect();
        assert!(steps.len() >= MAX_POINTS / 2, "{}", steps.len());
        assert_eq!(steps[0], 1);
        assert!(*steps.last().unwrap() > 1_000_000 - 2 * 1_000_000 / MAX_POINTS as u64);
        let gaps: Vec<u64> = steps.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g == gaps[0]), "{:?}", &gaps[..10]);
        assert!(curve.points().iter().all(|p| p.episodic_return == p.step as f64));
    }

    #[test]
    fn reports_without_a_finished_episode_or_with_a_non_finite_return_add_nothing_and_losses_stay_finite() {
        let mut curve = Curve::default();
        let td = Losses { td_loss: Some(0.25), policy_loss: Some(f64::INFINITY), value_loss: None };
        curve.observe(10, None, td);
        curve.observe(20, Some(f64::NAN), td);
        curve.observe(30, Some(-1.5), td);
        let kept = CurvePoint {
            step: 30,
            episodic_return: -1.5,
            td_loss: Some(0.25),
            policy_loss: None,
            value_loss: None,
        };
        assert_eq!(curve.points(), &[kept]);
    }
}
