//! Tabular Q-learning over a discretised observation, epsilon-greedy under the action mask.
//!
//! Each observation value is cut into `bins` levels (values are in about [0, 1]) and the
//! levels are hashed into a state key. Updates are one-step:
//! `Q(s,a) += α (r + γ · max_{a' allowed} Q(s',a') · [not terminated] - Q(s,a))`;
//! a truncated episode (the time limit) is bootstrapped, a terminated one is not.
//!
//! Untried actions are kept apart (NaN in the table). While training they count as 0, an
//! optimistic value under negative rewards that draws exploration to them; when acting
//! greedily only tried actions count, and a state with none tried keeps the placement. A
//! trained table otherwise sends the policy towards whatever it never tried.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Instant;

use berth_core::Rng;
use berth_env::gym::Env;
use serde::{Deserialize, Serialize};

use crate::agent::{ActMode, Agent, AgentKind, random_allowed};
use crate::error::{Error, Result};
use crate::progress::{Flow, Progress};
use crate::run_log::{LogRow, REPORT_EVERY, RunLog, Window};
use crate::schedule::Linear;

/// Hyperparameters of Q-learning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QLearningConfig {
    /// Step size α of the update.
    pub learning_rate: f64,
    /// Discount factor γ.
    pub gamma: f64,
    /// Exploration rate ε over the run.
    pub epsilon: Linear,
    /// Levels each observation value is cut into.
    pub bins: u32,
}

impl Default for QLearningConfig {
    fn default() -> Self {
        Self {
            learning_rate: 0.1,
            gamma: 0.95,
            epsilon: Linear { start: 1.0, end: 0.02, fraction: 0.6 },
            bins: 4,
        }
    }
}

impl QLearningConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, reason: &str| Err(Error::Config { name: name.into(), reason: reason.into() });
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad("learning_rate", "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.gamma) {
            return bad("gamma", "must be in [0, 1]");
        }
        for (name, v) in [("epsilon.start", self.epsilon.start), ("epsilon.end", self.epsilon.end)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(name, "must be in [0, 1]");
            }
        }
        if !(self.epsilon.fraction > 0.0 && self.epsilon.fraction <= 1.0) {
            return bad("epsilon.fraction", "must be in (0, 1]");
        }
        if !(2..=64).contains(&self.bins) {
            return bad("bins", "must be between 2 and 64");
        }
        Ok(())
    }
}

/// The Q-table and how to key it.
#[derive(Debug, Clone, PartialEq)]
pub struct QLearningAgent {
    actions: usize,
    bins: u32,
    table: HashMap<u64, Vec<f32>>,
    epsilon: f64,
    rng: Rng,
}

impl QLearningAgent {
    /// An empty table for `actions` actions.
    pub fn new(actions: usize, bins: u32, seed: u64) -> Self {
        Self { actions, bins, table: HashMap::new(), epsilon: 0.0, rng: Rng::derive(seed, 0x51) }
    }

    /// The state key of an observation.
    pub fn key(&self, obs: &[f32]) -> u64 {
        let mut h = DefaultHasher::new();
        let bins = self.bins as f32;
        for &x in obs {
            ((x.clamp(0.0, 1.0) * bins) as u32).min(self.bins - 1).hash(&mut h);
        }
        h.finish()
    }

    fn values(&mut self, key: u64) -> &mut Vec<f32> {
        let actions = self.actions;
        self.table.entry(key).or_insert_with(|| vec![f32::NAN; actions])
    }

    /// Actions each state's values cover.
    pub fn action_count(&self) -> usize {
        self.actions
    }

    /// States seen so far.
    pub fn states(&self) -> usize {
        self.table.len()
    }

    /// Reads weights written by [`Agent::weights`].
    pub fn from_weights(bytes: &[u8], seed: u64) -> Result<Self> {
        let bad = || Error::BadModel("truncated Q-table".into());
        let mut at = 0;
        let mut take = |n: usize| -> Result<&[u8]> {
            let s = bytes.get(at..at + n).ok_or_else(bad)?;
            at += n;
            Ok(s)
        };
        let actions = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let bins = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
        let states = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
        let mut agent = Self::new(actions, bins, seed);
        for _ in 0..states {
            let key = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
            let values = take(4 * actions)?
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                .collect();
            agent.table.insert(key, values);
        }
        Ok(agent)
    }
}

impl Agent for QLearningAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Qlearning
    }

    fn act(&mut self, obs: &[f32], mask: &[bool], mode: ActMode) -> usize {
        if mode == ActMode::Explore && self.rng.next_f64() < self.epsilon {
            return random_allowed(mask, &mut self.rng);
        }
        let key = self.key(obs);
        let untried = (mode == ActMode::Explore).then_some(0.0);
        match self.table.get(&key).and_then(|values| best_action(values, mask, untried)) {
            Some(a) => a,
            // Nothing known here: keep (action 0) when allowed, as the safest default.
            None if mask.first() == Some(&true) => 0,
            None => random_allowed(mask, &mut self.rng),
        }
    }

    fn weights(&self) -> Vec<u8> {
        let mut keys: Vec<&u64> = self.table.keys().collect();
        keys.sort_unstable();
        let mut out = Vec::with_capacity(16 + keys.len() * (8 + 4 * self.actions));
        out.extend_from_slice(&(self.actions as u32).to_le_bytes());
        out.extend_from_slice(&self.bins.to_le_bytes());
        out.extend_from_slice(&(keys.len() as u64).to_le_bytes());
        for key in keys {
            out.extend_from_slice(&key.to_le_bytes());
            for v in &self.table[key] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }
}

/// The allowed action of highest value, untried ones (NaN) valued `untried` or skipped.
fn best_action(values: &[f32], mask: &[bool], untried: Option<f32>) -> Option<usize> {
    best(values, mask, untried).map(|(a, _)| a)
}

/// [`best_action`] with the value it was chosen on.
fn best(values: &[f32], mask: &[bool], untried: Option<f32>) -> Option<(usize, f32)> {
    let mut best: Option<(usize, f32)> = None;
    for (a, (&v, &ok)) in values.iter().zip(mask).enumerate() {
        let Some(v) = (if v.is_nan() { untried } else { Some(v) }) else { continue };
        if ok && best.is_none_or(|(_, b)| v > b) {
            best = Some((a, v));
        }
    }
    best
}

/// Trains Q-learning on `env` for `steps` steps; logs a row every `log_every` steps.
pub fn train<E: Env>(
    env: &mut E,
    config: &QLearningConfig,
    steps: u64,
    seed: u64,
    log: &mut RunLog,
    progress: &mut dyn FnMut(Progress) -> Flow,
) -> Result<QLearningAgent> {
    config.validate()?;
    let actions = env.action_count();
    let mut agent = QLearningAgent::new(actions, config.bins, seed);
    let mut episode_seeds = Rng::derive(seed, 0xe9);
    let mut obs = env.reset(episode_seeds.next_u64()).obs.to_vec();
    let log_every = (steps / 200).max(1);
    let mut window = Window::default();
    let start = Instant::now();
    for step in 1..=steps {
        agent.epsilon = config.epsilon.at(step, steps);
        let mask = env.action_mask().to_vec();
        let action = agent.act(&obs, &mask, ActMode::Explore);
        let (next, reward, terminated, truncated) = {
            let s = env.step(action)?;
            (s.obs.to_vec(), s.reward, s.terminated, s.truncated)
        };
        let key = agent.key(&obs);
        let next_key = agent.key(&next);
        let bootstrap = if terminated {
            0.0
        } else {
            let next_mask = env.action_mask();
            agent
                .table
                .get(&next_key)
                .and_then(|v| best(v, next_mask, Some(0.0)))
                .map_or(0.0, |(_, q)| q as f64)
        };
        let q = &mut agent.values(key)[action];
        if q.is_nan() {
            *q = 0.0;
        }
        let td = reward + config.gamma * bootstrap - *q as f64;
        *q += (config.learning_rate * td) as f32;
        window.learned(td * td, *q as f64);
        window.step(reward, terminated || truncated);
        obs = next;
        if terminated || truncated {
            obs = env.reset(episode_seeds.next_u64()).obs.to_vec();
        }
        if step % log_every == 0 || step == steps {
            let epsilon = agent.epsilon;
            window.close((step, steps), start, log, progress, |row| LogRow {
                learning_rate: Some(config.learning_rate),
                epsilon: Some(epsilon),
                ..row
            })?;
        } else if step % REPORT_EVERY == 0 {
            window.report((step, steps), start, progress)?;
        }
    }
    agent.epsilon = 0.0;
    Ok(agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_round_trip_gives_identical_actions() {
        let mut agent = QLearningAgent::new(3, 4, 1);
        let obs = [0.1, 0.9];
        let key = agent.key(&obs);
        agent.values(key).copy_from_slice(&[0.5, f32::NAN, -1.0]);
        let mut loaded = QLearningAgent::from_weights(&agent.weights(), 1).unwrap();
        assert_eq!(loaded.weights(), agent.weights());
        for mask in [[true, true, true], [true, false, true], [false, false, true]] {
            assert_eq!(loaded.act(&obs, &mask, ActMode::Greedy), agent.act(&obs, &mask, ActMode::Greedy));
        }
        assert!(QLearningAgent::from_weights(&agent.weights()[..10], 1).is_err());
    }

    #[test]
    fn greedy_acting_ignores_untried_actions_and_exploring_favours_them() {
        let values = [-1.0, f32::NAN, -3.0];
        assert_eq!(best_action(&values, &[true; 3], None), Some(0));
        assert_eq!(best_action(&values, &[true; 3], Some(0.0)), Some(1));
        assert_eq!(best_action(&values, &[false, true, false], None), None);
    }

    #[test]
    fn bad_hyperparameters_are_named() {
        let c = QLearningConfig { gamma: 1.5, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("`gamma`"));
    }
}
