//! n-step returns for DQN (Sutton 1988; one of Rainbow's parts): the last `n` transitions are
//! folded into one whose reward is their discounted sum and whose bootstrap is discounted by
//! `γ^k`, `k` the steps folded. A placement move pays its cost at once and earns over many
//! later ticks; with one-step targets that credit reaches the move only through `n` rounds
//! of bootstrapping on a network whose error is larger than the gain.

use std::collections::VecDeque;

/// A transition waiting for the rewards after it.
struct Pending<S> {
    state: S,
    action: usize,
    reward: f64,
}

/// A folded transition, to be stored with the state and termination of the step that
/// completed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded<S> {
    /// The state the first folded step was taken in, as the learner stores it (the flat
    /// network's observation and mask; the entity network's rows and candidate moves).
    pub state: S,
    /// The action taken there.
    pub action: usize,
    /// `Σ_{i<k} γ^i r_i` over the folded steps.
    pub reward: f64,
    /// `γ^k`: what the bootstrap value is discounted by.
    pub discount: f64,
}

/// Folds transitions into n-step ones.
pub struct NStep<S> {
    n: usize,
    gamma: f64,
    pending: VecDeque<Pending<S>>,
}

impl<S> NStep<S> {
    /// An accumulator of `n` ≥ 1 steps (1 gives the plain one-step transitions).
    pub fn new(n: usize, gamma: f64) -> Self {
        Self { n: n.max(1), gamma, pending: VecDeque::with_capacity(n) }
    }

    /// Adds a step; returns the transitions it completes: the oldest once `n` are waiting,
    /// or all of them when the episode ended (terminated or truncated) at this step.
    pub fn push(&mut self, state: S, action: usize, reward: f64, episode_ended: bool) -> Vec<Folded<S>> {
        self.pending.push_back(Pending { state, action, reward });
        let mut done = Vec::new();
        if episode_ended {
            while !self.pending.is_empty() {
                done.push(self.fold_front());
            }
        } else if self.pending.len() == self.n {
            done.push(self.fold_front());
        }
        done
    }

    /// Removes the oldest pending step, folded with every reward after it.
    fn fold_front(&mut self) -> Folded<S> {
        let (mut reward, mut discount) = (0.0, 1.0);
        for p in &self.pending {
            reward += discount * p.reward;
            discount *= self.gamma;
        }
        let first = self.pending.pop_front().expect("fold_front is called with steps pending");
        Folded { state: first.state, action: first.action, reward, discount }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(acc: &mut NStep<usize>, t: usize, reward: f64, ended: bool) -> Vec<(usize, f64, f64)> {
        acc.push(t, t, reward, ended)
            .into_iter()
            .map(|f| {
                assert_eq!(f.state, f.action, "a folded step keeps its own state");
                (f.action, f.reward, f.discount)
            })
            .collect()
    }

    #[test]
    fn three_steps_fold_into_the_discounted_sum() {
        let mut acc = NStep::new(3, 0.5);
        assert!(step(&mut acc, 0, 1.0, false).is_empty());
        assert!(step(&mut acc, 1, 2.0, false).is_empty());
        // 1 + 0.5·2 + 0.25·4 = 3, bootstrap discounted by 0.5³.
        assert_eq!(step(&mut acc, 2, 4.0, false), vec![(0, 3.0, 0.125)]);
        // The window slides: 2 + 0.5·4 + 0.25·8 = 6.
        assert_eq!(step(&mut acc, 3, 8.0, false), vec![(1, 6.0, 0.125)]);
    }

    #[test]
    fn an_episode_end_flushes_every_pending_step_with_shorter_folds() {
        let mut acc = NStep::new(3, 0.5);
        step(&mut acc, 0, 1.0, false);
        step(&mut acc, 1, 2.0, false);
        let flushed = step(&mut acc, 2, 4.0, true);
        assert_eq!(flushed, vec![(0, 3.0, 0.125), (1, 4.0, 0.25), (2, 4.0, 0.5)]);
        // The next episode starts with nothing pending.
        assert!(step(&mut acc, 9, 1.0, false).is_empty());
    }

    #[test]
    fn one_step_passes_transitions_through() {
        let mut acc = NStep::new(1, 0.9);
        assert_eq!(step(&mut acc, 0, 2.0, false), vec![(0, 2.0, 0.9)]);
        assert_eq!(step(&mut acc, 1, 3.0, true), vec![(1, 3.0, 0.9)]);
    }
}
