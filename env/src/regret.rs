//! How far an episode so far trails what `greedy` would have paid on the same day.
//!
//! A copy of the env is reset to the episode's day and stepped by `greedy` up to the tick the
//! episode has reached, never beyond it, so it reads only the traffic and failures the
//! episode has already lived through (on a live cluster: what its metrics recorded). The
//! per-tick shield lets a policy stray from `greedy` only while the day so far trails this
//! counterfactual by no more than a budget: conservative improvement over a baseline, as
//! conservative bandits keep their reward above a fraction of the baseline's (Wu, Shariff,
//! Lattimore and Szepesvári, "Conservative Bandits", ICML 2016).

use crate::PlacementEnv;
use crate::baselines::{GreedyPolicy, Policy};
use crate::gym::Env;

/// The episode's cost so far and `greedy`'s over the same ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Ticks counted.
    pub ticks: u32,
    /// The episode's cost (minus its summed reward) over them.
    pub own: f64,
    /// `greedy`'s cost over the same ticks of the same day.
    pub greedy: f64,
}

impl Tally {
    /// Whether the episode's cost exceeds `greedy`'s by more than `budget`, a fraction of
    /// `greedy`'s.
    pub fn trails_by_more_than(&self, budget: f64) -> bool {
        self.own > self.greedy + budget * self.greedy.abs() + 1e-9
    }
}

/// `greedy`'s counterfactual of the episode being played, kept in step with it.
#[derive(Default)]
pub struct Regret {
    copy: Option<PlacementEnv>,
    seed: u64,
    tally: Tally,
    /// The copy still has to be reset to the episode's day.
    fresh: bool,
    /// The episode skipped a tick or went back: the tally no longer describes it.
    lost: bool,
}

impl Regret {
    /// A counter with no episode yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts counting the episode of day `seed`, which the env starts as `reset(seed)` does.
    pub fn reset(&mut self, seed: u64) {
        *self = Self { copy: self.copy.take(), seed, fresh: true, ..Self::default() };
    }

    /// Counts the tick `env` played since the last call, steps the copy with `greedy` to the
    /// same tick, and returns the tally; `None` where it cannot follow the episode (a tick
    /// skipped, an episode not started with [`Regret::reset`], a copy that fails to step).
    /// Call it once a tick, before acting.
    pub fn update(&mut self, env: &PlacementEnv) -> Option<Tally> {
        if self.lost {
            return None;
        }
        let tally = self.follow(env);
        self.lost = tally.is_none();
        tally
    }

    fn follow(&mut self, env: &PlacementEnv) -> Option<Tally> {
        let copy = PlacementEnv::scratch_in(&mut self.copy, env)?;
        if self.fresh {
            copy.reset(self.seed);
            self.fresh = false;
        }
        let tick = env.tick();
        if tick == self.tally.ticks + 1 {
            self.tally.own += env.last_cost();
            self.tally.ticks = tick;
        } else if tick != self.tally.ticks {
            return None;
        }
        while copy.tick() < tick {
            let action = GreedyPolicy.act(copy);
            self.tally.greedy -= copy.step(action).ok()?.reward;
        }
        Some(self.tally)
    }
}
