//! Steps per second of the gym, single thread: what `berth bench env` prints and the
//! criterion bench measures.
//!
//! The driver keeps the placement 90% of the time and otherwise tries a random action,
//! keeping if it is masked: a policy's cost is not part of the figure, and drawing from
//! the mask of a 1000-node cluster would cost more than the step itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::{Rng, Scenario};
use serde::Serialize;

use crate::error::Result;
use crate::gym::{Env, first_allowed};
use crate::{PlacementEnv, VecEnv};

/// One line of `berth bench env`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchRow {
    /// Scenario name.
    pub scenario: String,
    /// Env steps per second (for a vector env: steps of all copies).
    pub steps_per_sec: f64,
    /// Whether it was the vectorised env.
    pub vectorized: bool,
    /// Copies stepped together (1 when not vectorised).
    pub copies: usize,
}

/// The benchmark's action: keep, or now and then a random action if it is allowed; an
/// allowed move whenever keeping is not (replicas to evacuate).
#[inline]
pub fn driver_action(mask: &[bool], rng: &mut Rng) -> usize {
    if mask[0] && rng.below(10) != 0 {
        return 0;
    }
    let a = rng.below(mask.len());
    if mask[a] { a } else { first_allowed(mask) }
}

/// Steps one env for at least `budget`; returns steps per second.
pub fn single(scenario: Arc<Scenario>, budget: Duration) -> Result<f64> {
    let mut env = PlacementEnv::new(scenario)?;
    let mut rng = Rng::new(1);
    let mut seed = 0;
    env.reset(seed);
    let start = Instant::now();
    let mut steps = 0u64;
    while start.elapsed() < budget {
        for _ in 0..256 {
            let action = driver_action(env.action_mask(), &mut rng);
            let done = {
                let s = env.step(action)?;
                s.terminated || s.truncated
            };
            steps += 1;
            if done {
                seed += 1;
                env.reset(seed);
            }
        }
    }
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

/// Steps a vector env of `copies` for at least `budget`; returns env steps per second.
pub fn vectorized(scenario: Arc<Scenario>, copies: usize, budget: Duration) -> Result<f64> {
    let env = PlacementEnv::new(scenario)?;
    let mut venv = VecEnv::new(vec![env; copies], 0)?;
    let mut rng = Rng::new(1);
    let mut actions = vec![0; copies];
    let start = Instant::now();
    let mut steps = 0u64;
    while start.elapsed() < budget {
        for _ in 0..64 {
            for (i, a) in actions.iter_mut().enumerate() {
                *a = driver_action(venv.action_mask(i), &mut rng);
            }
            venv.step(&actions)?;
            steps += copies as u64;
        }
    }
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

/// Peak resident memory (VmHWM) of process `pid`, or of this process when `None`, in MiB,
/// from /proc (Linux only): what `berth bench env` prints and the hardening tests bound.
pub fn peak_memory_mib(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(|| "/proc/self/status".to_string(), |p| format!("/proc/{p}/status"));
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_only_takes_allowed_actions() {
        let mut rng = Rng::new(3);
        for mask in [[true, false, true, false], [false, false, true, true], [false, true, false, false]] {
            for _ in 0..200 {
                assert!(mask[driver_action(&mask, &mut rng)], "{mask:?}");
            }
        }
    }
}
