//! Keeps the best greedy policy a run has seen, scored on a few validation episodes.
//!
//! A value-based learner's greedy policy can get worse late in a run: when two actions' values
//! are within the network's error of each other, the argmax may settle on a worse one, or flip
//! between them every tick. Scoring the greedy policy every so often on the same episodes and
//! keeping the best (Stable-Baselines3's `EvalCallback` keeps its `best_model` the same way)
//! makes the run's result the best policy it reached, not wherever its last update left it.
//! The episodes come from their own seed stream, so they are neither the training episodes nor
//! the ones `berth eval` scores.

use berth_core::Rng;
use berth_env::gym::Env;

use crate::error::Result;

/// Stream of the validation episodes' seeds, derived from the run's seed.
const SEED_STREAM: u64 = 0x7a1;

/// Scores greedy policies on fixed episodes and keeps the best one offered.
pub struct Validation<E, P> {
    env: E,
    seeds: Vec<u64>,
    best: Option<Best<P>>,
}

/// The best policy so far, its score and when it was offered.
pub struct Best<P> {
    /// Mean return over the validation episodes.
    pub score: f64,
    /// Training step at which it was offered.
    pub step: u64,
    /// The policy.
    pub policy: P,
}

impl<E: Env, P> Validation<E, P> {
    /// Validation on `episodes` episodes of `env` (a copy, apart from the training env),
    /// drawn from the run's `seed`.
    pub fn new(env: E, episodes: usize, seed: u64) -> Self {
        let mut rng = Rng::derive(seed, SEED_STREAM);
        Self { env, seeds: (0..episodes).map(|_| rng.next_u64()).collect(), best: None }
    }

    /// Scores the greedy policy `act` (which reads the env: its observation and mask, or the
    /// whole state as the entity network does) and keeps `policy()` if it scores at least as
    /// well as the best so far (a tie goes to the later, longer-trained one). Returns the score.
    pub fn offer(
        &mut self,
        step: u64,
        mut act: impl FnMut(&E) -> usize,
        policy: impl FnOnce() -> P,
    ) -> Result<f64> {
        let mut total = 0.0;
        for &seed in &self.seeds {
            self.env.reset(seed);
            loop {
                let action = act(&self.env);
                let s = self.env.step(action)?;
                total += s.reward;
                if s.terminated || s.truncated {
                    break;
                }
            }
        }
        let score = total / self.seeds.len().max(1) as f64;
        if self.best.as_ref().is_none_or(|best| score >= best.score) {
            self.best = Some(Best { score, step, policy: policy() });
        }
        Ok(score)
    }

    /// The best policy offered, if any was.
    pub fn into_best(self) -> Option<Best<P>> {
        self.best
    }
}

#[cfg(test)]
mod tests {
    use berth_env::CartPole;

    use super::*;

    /// Pushes the cart toward the side the pole leans to: keeps it up for hundreds of steps.
    fn balance(env: &CartPole) -> usize {
        let obs = env.observation();
        usize::from(obs[2] + obs[3] > 0.0)
    }

    #[test]
    fn keeps_the_best_policy_offered_and_scores_each_on_the_same_episodes() {
        let mut validation = Validation::new(CartPole::new(), 3, 7);
        let left = validation.offer(1, |_| 0, || "left").unwrap();
        let balanced = validation.offer(2, balance, || "balance").unwrap();
        assert!(balanced > 10.0 * left, "balancing {balanced} vs pushing left {left}");
        let right = validation.offer(3, |_| 1, || "right").unwrap();
        assert!(right < balanced);
        // The same policy scores the same: the episodes do not change between offers.
        assert_eq!(validation.offer(4, balance, || "balance again").unwrap(), balanced);
        let best = validation.into_best().unwrap();
        assert_eq!((best.policy, best.step, best.score), ("balance again", 4, balanced));
    }

    #[test]
    fn without_offers_there_is_no_best() {
        assert!(Validation::<CartPole, ()>::new(CartPole::new(), 2, 1).into_best().is_none());
    }
}
