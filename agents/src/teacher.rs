//! The policy a kickstarted entity PPO run imitates early on ([`crate::ppo::PpoConfig`]'s
//! `teacher`). `greedy` moves where one tick's saving pays the move; `lookahead` makes the
//! same best move or keeps, whichever costs less over four hours played out on a forecast
//! ([`berth_env::baselines::LookaheadPolicy`]), 4-5% below `greedy` on the medium and large
//! clusters. Each env copy gets its own lookahead, as it keeps a scratch cluster and the
//! episode's forecast.

use berth_core::Rng;
use berth_env::PlacementEnv;
use berth_env::baselines::lookahead::HORIZON_TICKS;
use berth_env::baselines::{LookaheadPolicy, Policy};
use berth_env::gym::Env;
use serde::{Deserialize, Serialize};

/// Which baseline a kickstarted run imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Teacher {
    /// The env's teacher action: `greedy`'s move ([`Env::teacher_action`]).
    #[default]
    Greedy,
    /// `lookahead`'s move: `greedy`'s best move where it pays back within four hours.
    Lookahead,
}

/// The teacher of each env copy a run steps.
pub(crate) struct Teachers {
    lookahead: Vec<LookaheadPolicy>,
    forecasts: Rng,
}

impl Teachers {
    /// Teachers of `kind` for `copies` env copies; the lookaheads' forecasts drawn from `seed`.
    pub(crate) fn new(kind: Teacher, copies: usize, seed: u64) -> Self {
        let lookahead = match kind {
            Teacher::Greedy => Vec::new(),
            Teacher::Lookahead => (0..copies).map(|_| LookaheadPolicy::new(HORIZON_TICKS)).collect(),
        };
        let mut teachers = Self { lookahead, forecasts: Rng::derive(seed, 0x7eac) };
        (0..copies).for_each(|copy| teachers.new_episode(copy));
        teachers
    }

    /// Copy `copy` started an episode: its lookahead draws a new forecast.
    pub(crate) fn new_episode(&mut self, copy: usize) {
        if let Some(lookahead) = self.lookahead.get_mut(copy) {
            lookahead.reset(self.forecasts.next_u64());
        }
    }

    /// The teacher's allowed action on copy `copy` standing at `env`; `greedy` is `greedy`'s
    /// action where the observation found it already.
    pub(crate) fn action(&mut self, copy: usize, env: &PlacementEnv, greedy: Option<usize>) -> Option<usize> {
        let action = match self.lookahead.get_mut(copy) {
            Some(lookahead) => Some(lookahead.act(env)),
            None => greedy.or_else(|| env.teacher_action()),
        };
        action.filter(|&a| env.action_mask().get(a) == Some(&true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_env::baselines::GreedyPolicy;
    use berth_env::shipped;

    /// Over a `gpu-medium` morning the lookahead teacher keeps where `greedy` moves, or moves
    /// where it keeps, at some tick, and both teachers only name allowed actions.
    #[test]
    fn the_lookahead_teacher_differs_from_greedy_and_stays_in_the_mask() {
        let mut env = PlacementEnv::new(shipped::load("gpu-medium").unwrap()).unwrap();
        env.reset(6003);
        let mut greedy = Teachers::new(Teacher::Greedy, 1, 1);
        let mut lookahead = Teachers::new(Teacher::Lookahead, 1, 1);
        let mut differ = 0;
        for _ in 0..144 {
            let g = greedy.action(0, &env, None).expect("greedy names an allowed action");
            assert_eq!(g, GreedyPolicy.act(&env));
            let l = lookahead.action(0, &env, None).expect("lookahead names an allowed action");
            differ += usize::from(g != l);
            env.step(l).unwrap();
        }
        assert!(differ > 0, "the lookahead taught greedy's every action");
    }
}
