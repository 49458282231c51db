//! The `replay` backend: episodes made of what a live cluster did, as the metrics recorder
//! (`berth record`) wrote it down, so agents train on the cluster's own traffic and failures.
//!
//! A recording is a list of [`Sample`]s: the time of day, how loaded the cluster was relative
//! to the scenario's traffic model at that time (`scale`, fitted from the replicas' observed
//! utilisation), and which nodes were Ready. An episode replays them on the tick grid: each
//! tick takes the sample nearest in time of day, its rates are the scenario's mean rates then
//! times that sample's scale, and a node's change of readiness between ticks is a failure or
//! a recovery. Replays are deterministic: every seed gives the recorded day.

use berth_core::{NodeEventKind, Scenario};

use crate::backend::{Backend, Trace, TraceEvent};
use crate::{Error, Result};

const DAY_S: f64 = 86_400.0;

/// One reading of the live cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds since midnight of the cluster's day.
    pub t_s: f64,
    /// Observed load over the scenario's model at that time (1 = as the scenario says).
    pub scale: f64,
    /// Whether each scenario node was Ready.
    pub node_ready: Vec<bool>,
}

/// Episodes replayed from a recording.
#[derive(Debug, Clone)]
pub struct ReplayBackend {
    samples: Vec<Sample>,
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument { name: "replay", reason }
}

impl ReplayBackend {
    /// A replay of `samples` for `scenario`: at least one sample, each with a finite
    /// non-negative scale, a time within the day, and one readiness flag per node.
    pub fn new(scenario: &Scenario, mut samples: Vec<Sample>) -> Result<Self> {
        if samples.is_empty() {
            return Err(invalid("the recording has no samples".into()));
        }
        for (i, s) in samples.iter().enumerate() {
            if !(s.scale.is_finite() && s.scale >= 0.0) {
                return Err(invalid(format!(
                    "sample {i}: scale must be a finite number >= 0, got {}",
                    s.scale
                )));
            }
            if !(0.0..DAY_S).contains(&s.t_s) {
                return Err(invalid(format!("sample {i}: t_s must be in [0, 86400), got {}", s.t_s)));
            }
            if s.node_ready.len() != scenario.nodes.len() {
                return Err(invalid(format!(
                    "sample {i}: {} node flags for the {} nodes of scenario `{}`",
                    s.node_ready.len(),
                    scenario.nodes.len(),
                    scenario.name
                )));
            }
        }
        samples.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        Ok(Self { samples })
    }

    /// The recorded samples, by time of day.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The sample nearest to `t_s` in time of day (the day wraps around).
    fn nearest(&self, t_s: f64) -> &Sample {
        let t = t_s.rem_euclid(DAY_S);
        let gap = |s: &Sample| {
            let d = (s.t_s - t).abs();
            d.min(DAY_S - d)
        };
        self.samples.iter().min_by(|a, b| gap(a).total_cmp(&gap(b))).expect("at least one sample")
    }
}

impl Backend for ReplayBackend {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn boxed_clone(&self) -> Box<dyn Backend> {
        Box::new(self.clone())
    }

    fn episode(&mut self, scenario: &Scenario, _seed: u64) -> Trace {
        let groups = scenario.user_groups.len();
        let dt = scenario.tick_s;
        let mut rates_rps = Vec::with_capacity((scenario.episode_ticks as usize + 1) * groups);
        let mut events = Vec::new();
        let mut ready = self.nearest(0.0).node_ready.clone();
        for t in 0..=scenario.episode_ticks {
            // The middle of the tick, as the simulator takes its mean rates.
            let at_s = if t == 0 { 0.0 } else { (t as f64 - 0.5) * dt };
            let sample = self.nearest(at_s);
            rates_rps
                .extend(scenario.user_groups.iter().map(|g| (g.rate.mean_at(at_s) * sample.scale).max(0.0)));
            if t == 0 {
                continue;
            }
            for (node, (&was, &now)) in ready.iter().zip(&sample.node_ready).enumerate() {
                if was != now {
                    let kind = if now { NodeEventKind::Recover } else { NodeEventKind::Fail };
                    events.push(TraceEvent { tick: t, at_s: (t - 1) as f64 * dt, node, kind });
                }
            }
            ready.clone_from(&sample.node_ready);
        }
        Trace { groups, rates_rps, events }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gym::Env;
    use crate::{PlacementEnv, SimBackend, shipped};

    fn sample(t_h: f64, scale: f64, down: Option<usize>) -> Sample {
        let mut node_ready = vec![true; 8];
        if let Some(n) = down {
            node_ready[n] = false;
        }
        Sample { t_s: t_h * 3600.0, scale, node_ready }
    }

    #[test]
    fn rates_are_the_models_scaled_by_the_nearest_sample_and_readiness_changes_are_events() {
        let scenario = shipped::load("gpu-small").unwrap();
        let samples = vec![sample(0.0, 1.0, None), sample(12.0, 2.0, Some(3)), sample(18.0, 1.0, None)];
        let mut replay = ReplayBackend::new(&scenario, samples).unwrap();
        let trace = replay.episode(&scenario, 7);
        let dt = scenario.tick_s;
        let g = 0;
        for (t, scale) in [(144u32, 2.0), (216, 1.0), (286, 1.0)] {
            let want = scenario.user_groups[g].rate.mean_at((t as f64 - 0.5) * dt) * scale;
            assert!((trace.rates(t)[g] - want).abs() < 1e-9, "tick {t}");
        }
        // Node 3 fails when the noon sample becomes the nearest (after 6:00), recovers after 15:00.
        let kinds: Vec<(u32, usize, NodeEventKind)> =
            trace.events.iter().map(|e| (e.tick, e.node, e.kind)).collect();
        assert_eq!(kinds, vec![(73, 3, NodeEventKind::Fail), (181, 3, NodeEventKind::Recover)]);
        // Every seed replays the same day.
        assert_eq!(replay.episode(&scenario, 8), trace);
    }

    #[test]
    fn the_gym_runs_a_whole_day_on_a_replay() {
        let scenario = shipped::load("gpu-small").unwrap();
        let replay = ReplayBackend::new(&scenario, vec![sample(0.0, 1.0, None)]).unwrap();
        let mut env = PlacementEnv::with_backend(scenario.clone(), Box::new(replay)).unwrap();
        assert_eq!(env.backend_name(), "replay");
        env.reset(1);
        for _ in 0..scenario.episode_ticks {
            env.step(0).unwrap();
        }
        let mut sim = SimBackend::new();
        let noisy = sim.episode(&scenario, 1);
        assert_eq!(noisy.rates_rps.len(), env.trace().rates_rps.len());
    }

    #[test]
    fn a_recording_that_does_not_fit_is_refused() {
        let scenario = shipped::load("gpu-small").unwrap();
        assert!(ReplayBackend::new(&scenario, vec![]).unwrap_err().to_string().contains("no samples"));
        let short = Sample { t_s: 0.0, scale: 1.0, node_ready: vec![true; 3] };
        assert!(ReplayBackend::new(&scenario, vec![short]).unwrap_err().to_string().contains("3 node flags"));
        let negative = sample(1.0, -1.0, None);
        assert!(ReplayBackend::new(&scenario, vec![negative]).unwrap_err().to_string().contains("scale"));
    }
}
