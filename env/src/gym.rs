//! The Gymnasium-shaped environment contract every berth env follows.
//!
//! `reset(seed) -> (obs, info)`, `step(action) -> Step { obs, reward, terminated,
//! truncated, info }`, plus `action_mask()`. `terminated` (a terminal state: do not
//! bootstrap) and `truncated` (a time limit: bootstrap) are never folded into one `done`.
//! Observations are borrowed from the env, so a step allocates nothing.

use berth_core::Rng;

use crate::error::Result;

/// A box observation space: per-dimension bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxSpace {
    /// Lower bound per dimension.
    pub low: Vec<f32>,
    /// Upper bound per dimension.
    pub high: Vec<f32>,
}

impl BoxSpace {
    /// `len` dimensions, all in `[low, high]`.
    pub fn uniform(len: usize, low: f32, high: f32) -> Self {
        Self { low: vec![low; len], high: vec![high; len] }
    }

    /// Number of dimensions.
    pub fn len(&self) -> usize {
        self.low.len()
    }

    /// Whether there are no dimensions.
    pub fn is_empty(&self) -> bool {
        self.low.is_empty()
    }

    /// The first dimension outside the bounds (or not finite), if any.
    pub fn violation(&self, obs: &[f32]) -> Option<usize> {
        obs.iter()
            .zip(self.low.iter().zip(&self.high))
            .position(|(&x, (&lo, &hi))| !x.is_finite() || x < lo || x > hi)
    }
}

/// What `reset` returns.
#[derive(Debug)]
pub struct Reset<'a, I> {
    /// First observation.
    pub obs: &'a [f32],
    /// Diagnostics.
    pub info: I,
}

/// What `step` returns.
#[derive(Debug)]
pub struct Step<'a, I> {
    /// Observation after the step.
    pub obs: &'a [f32],
    /// Reward of the step.
    pub reward: f64,
    /// A terminal state was reached (no bootstrapping).
    pub terminated: bool,
    /// The time limit was reached (bootstrap from `obs`).
    pub truncated: bool,
    /// Diagnostics.
    pub info: I,
}

/// A discrete-action environment with action masks.
pub trait Env {
    /// Per-step diagnostics.
    type Info: Clone + Default + std::fmt::Debug;

    /// Bounds of the observation vector.
    fn observation_space(&self) -> BoxSpace;
    /// Size of the `Discrete` action space.
    fn action_count(&self) -> usize;
    /// Starts an episode; the same seed gives the same episode.
    fn reset(&mut self, seed: u64) -> Reset<'_, Self::Info>;
    /// Applies an action; masked or out-of-range actions are errors and change nothing.
    fn step(&mut self, action: usize) -> Result<Step<'_, Self::Info>>;
    /// `mask[a]` is whether action `a` is allowed now.
    fn action_mask(&self) -> &[bool];
    /// The current observation.
    fn observation(&self) -> &[f32];
    /// The action that changes nothing, where there is one (the placement gym's keep):
    /// exploration may favour it, since a random walk over moves scrambles the state.
    fn keep_action(&self) -> Option<usize> {
        None
    }
    /// What a hand-written heuristic would do now, where the env has one (the placement gym's
    /// `greedy`); always an allowed action. Agents learn from it early on (PPO's kickstarting
    /// loss, DQN's exploration): it takes them to states their own exploration seldom reaches.
    fn teacher_action(&self) -> Option<usize> {
        None
    }
}

/// The lowest allowed action: keep (0) where it is allowed, else the first allowed move
/// (replicas to evacuate); 0 when the mask allows none.
pub fn first_allowed(mask: &[bool]) -> usize {
    mask.iter().position(|&ok| ok).unwrap_or(0)
}

/// A uniformly random allowed action; 0 (keep) when the mask allows none.
pub fn random_allowed(mask: &[bool], rng: &mut Rng) -> usize {
    let allowed = mask.iter().filter(|&&m| m).count();
    if allowed == 0 {
        return 0;
    }
    let k = rng.below(allowed);
    mask.iter().enumerate().filter(|(_, m)| **m).nth(k).map_or(0, |(a, _)| a)
}
