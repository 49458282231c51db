//! CartPole-v1 as in Gymnasium's classic control, to check agents against published
//! results (CleanRL: PPO 490 ± 6, DQN 489 ± 16 after 500k steps).
//!
//! Same constants, Euler integration, termination when the pole leans past 12° or the
//! cart leaves ±2.4, truncation at 500 steps, reward 1 per step.

use berth_core::Rng;

use crate::error::{Error, Result};
use crate::gym::{BoxSpace, Env, Reset, Step};

const GRAVITY: f64 = 9.8;
const MASS_CART: f64 = 1.0;
const MASS_POLE: f64 = 0.1;
const TOTAL_MASS: f64 = MASS_CART + MASS_POLE;
const HALF_LENGTH: f64 = 0.5;
const POLE_MASS_LENGTH: f64 = MASS_POLE * HALF_LENGTH;
const FORCE: f64 = 10.0;
const TAU: f64 = 0.02;
const THETA_LIMIT: f64 = 12.0 * 2.0 * std::f64::consts::PI / 360.0;
const X_LIMIT: f64 = 2.4;
/// Gymnasium's `max_episode_steps` for CartPole-v1.
pub const MAX_STEPS: u32 = 500;

/// The cart-pole env.
#[derive(Debug, Clone)]
pub struct CartPole {
    state: [f64; 4],
    obs: [f32; 4],
    steps: u32,
    done: bool,
    rng: Rng,
    mask: [bool; 2],
}

impl Default for CartPole {
    fn default() -> Self {
        Self::new()
    }
}

impl CartPole {
    /// A cart-pole, reset with seed 0.
    pub fn new() -> Self {
        let mut env =
            Self { state: [0.0; 4], obs: [0.0; 4], steps: 0, done: false, rng: Rng::new(0), mask: [true; 2] };
        env.reset(0);
        env
    }

    fn sync_obs(&mut self) {
        for (o, s) in self.obs.iter_mut().zip(self.state) {
            *o = s as f32;
        }
    }
}

impl Env for CartPole {
    type Info = ();

    fn observation_space(&self) -> BoxSpace {
        let high = [X_LIMIT as f32 * 2.0, f32::MAX, THETA_LIMIT as f32 * 2.0, f32::MAX];
        BoxSpace { low: high.iter().map(|h| -h).collect(), high: high.to_vec() }
    }

    fn action_count(&self) -> usize {
        2
    }

    fn reset(&mut self, seed: u64) -> Reset<'_, ()> {
        self.rng = Rng::new(seed);
        for s in &mut self.state {
            *s = self.rng.next_f64() * 0.1 - 0.05;
        }
        self.steps = 0;
        self.done = false;
        self.sync_obs();
        Reset { obs: &self.obs, info: () }
    }

    fn step(&mut self, action: usize) -> Result<Step<'_, ()>> {
        if self.done {
            return Err(Error::EpisodeOver);
        }
        if action >= 2 {
            return Err(Error::ActionOutOfRange { action, actions: 2 });
        }
        let [x, x_dot, theta, theta_dot] = self.state;
        let force = if action == 1 { FORCE } else { -FORCE };
        let (sin, cos) = theta.sin_cos();
        let temp = (force + POLE_MASS_LENGTH * theta_dot * theta_dot * sin) / TOTAL_MASS;
        let theta_acc =
            (GRAVITY * sin - cos * temp) / (HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos * cos / TOTAL_MASS));
        let x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos / TOTAL_MASS;
        self.state =
            [x + TAU * x_dot, x_dot + TAU * x_acc, theta + TAU * theta_dot, theta_dot + TAU * theta_acc];
        self.steps += 1;
        let terminated = self.state[0].abs() > X_LIMIT || self.state[2].abs() > THETA_LIMIT;
        let truncated = !terminated && self.steps >= MAX_STEPS;
        self.done = terminated || truncated;
        self.sync_obs();
        Ok(Step { obs: &self.obs, reward: 1.0, terminated, truncated, info: () })
    }

    fn action_mask(&self) -> &[bool] {
        &self.mask
    }

    fn observation(&self) -> &[f32] {
        &self.obs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushing_one_way_ends_the_episode_early_with_termination() {
        let mut env = CartPole::new();
        env.reset(3);
        let mut steps = 0;
        loop {
            let s = env.step(1).unwrap();
            steps += 1;
            if s.terminated || s.truncated {
                assert!(s.terminated && !s.truncated);
                break;
            }
        }
        assert!((5..60).contains(&steps), "{steps}");
        assert!(matches!(env.step(0), Err(Error::EpisodeOver)));
    }

    #[test]
    fn a_balancing_controller_is_truncated_at_500() {
        let mut env = CartPole::new();
        let mut obs = env.reset(1).obs.to_vec();
        for t in 1..=MAX_STEPS {
            // Push toward the side the pole falls to.
            let action = usize::from(obs[2] + 0.5 * obs[3] > 0.0);
            let s = env.step(action).unwrap();
            obs = s.obs.to_vec();
            assert!(!s.terminated, "fell at step {t}");
            assert_eq!(s.truncated, t == MAX_STEPS);
        }
    }
}
