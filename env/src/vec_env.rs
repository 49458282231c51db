//! N copies of an env stepped together, with auto-reset and a seed per copy, for agents
//! that learn from batches (PPO).
//!
//! When a copy's episode ends, its final observation is kept in [`VecEnv::final_observation`]
//! (to bootstrap a truncated episode) and the copy is reset at once with its next seed, so
//! [`VecEnv::observations`] always holds observations to act on.

use berth_core::Rng;

use crate::error::{Error, Result};
use crate::gym::Env;

/// A batch of envs.
#[derive(Debug)]
pub struct VecEnv<E: Env> {
    envs: Vec<E>,
    seeds: Vec<Rng>,
    obs_len: usize,
    obs: Vec<f32>,
    final_obs: Vec<f32>,
    rewards: Vec<f64>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    infos: Vec<E::Info>,
}

impl<E: Env> VecEnv<E> {
    /// Wraps `envs` (at least one, all with the same spaces) and resets copy `i` with a seed
    /// drawn from the stream `(seed, i)`.
    pub fn new(envs: Vec<E>, seed: u64) -> Result<Self> {
        let first = envs
            .first()
            .ok_or(Error::InvalidArgument { name: "envs", reason: "need at least one env".into() })?;
        let obs_len = first.observation_space().len();
        let actions = first.action_count();
        if envs.iter().any(|e| e.observation_space().len() != obs_len || e.action_count() != actions) {
            return Err(Error::InvalidArgument {
                name: "envs",
                reason: "all copies must have the same spaces".into(),
            });
        }
        let n = envs.len();
        let mut v = Self {
            seeds: (0..n as u64).map(|i| Rng::derive(seed, i)).collect(),
            envs,
            obs_len,
            obs: vec![0.0; n * obs_len],
            final_obs: vec![0.0; n * obs_len],
            rewards: vec![0.0; n],
            terminated: vec![false; n],
            truncated: vec![false; n],
            infos: vec![E::Info::default(); n],
        };
        for i in 0..n {
            let s = v.seeds[i].next_u64();
            let reset = v.envs[i].reset(s);
            v.obs[i * obs_len..(i + 1) * obs_len].copy_from_slice(reset.obs);
            v.infos[i] = reset.info;
        }
        Ok(v)
    }

    /// Number of copies.
    pub fn len(&self) -> usize {
        self.envs.len()
    }

    /// Whether there are no copies (never true: `new` refuses that).
    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
    }

    /// Length of one observation.
    pub fn observation_len(&self) -> usize {
        self.obs_len
    }

    /// Steps every copy with its action; copies whose episode ends are reset.
    pub fn step(&mut self, actions: &[usize]) -> Result<()> {
        if actions.len() != self.envs.len() {
            return Err(Error::InvalidArgument {
                name: "actions",
                reason: format!("expected {} actions, got {}", self.envs.len(), actions.len()),
            });
        }
        let len = self.obs_len;
        for (i, env) in self.envs.iter_mut().enumerate() {
            let step = env.step(actions[i])?;
            let done = step.terminated || step.truncated;
            self.rewards[i] = step.reward;
            self.terminated[i] = step.terminated;
            self.truncated[i] = step.truncated;
            self.infos[i] = step.info;
            let slot = i * len..(i + 1) * len;
            if done {
                self.final_obs[slot.clone()].copy_from_slice(step.obs);
                let reset = env.reset(self.seeds[i].next_u64());
                self.obs[slot].copy_from_slice(reset.obs);
            } else {
                self.obs[slot].copy_from_slice(step.obs);
            }
        }
        Ok(())
    }

    /// Observations to act on, copy after copy (`len() * observation_len()` values).
    pub fn observations(&self) -> &[f32] {
        &self.obs
    }

    /// The last observation of copy `i`'s finished episode (valid when it just ended).
    pub fn final_observation(&self, i: usize) -> &[f32] {
        &self.final_obs[i * self.obs_len..(i + 1) * self.obs_len]
    }

    /// Rewards of the last step.
    pub fn rewards(&self) -> &[f64] {
        &self.rewards
    }

    /// Which copies reached a terminal state in the last step.
    pub fn terminated(&self) -> &[bool] {
        &self.terminated
    }

    /// Which copies hit their time limit in the last step.
    pub fn truncated(&self) -> &[bool] {
        &self.truncated
    }

    /// Diagnostics of the last step.
    pub fn infos(&self) -> &[E::Info] {
        &self.infos
    }

    /// The action mask of copy `i` (borrowed: masks of large clusters are big).
    pub fn action_mask(&self, i: usize) -> &[bool] {
        self.envs[i].action_mask()
    }

    /// The copies themselves.
    pub fn envs(&self) -> &[E] {
        &self.envs
    }
}
