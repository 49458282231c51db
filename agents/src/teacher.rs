//! The policy a kickstarted entity PPO run imitates early on ([`crate::ppo::PpoConfig`]'s
//! `teacher`). `greedy` moves where one tick's saving pays the move; `lookahead` makes the
//! same best move or keeps, whichever costs less over four hours played out on a forecast
//! ([`berth_env::baselines::LookaheadPolicy`]), 4-5% below `greedy` on the medium and large
//! clusters; `planner` plans paths of moves over placement classes
//! ([`berth_env::baselines::planner::build`]), on clusters up to about `gpu-medium`'s size. Each
//! env copy gets its own, as each keeps a scratch cluster and the episode's forecast.

use std::sync::Arc;

use berth_core::{Rng, Scenario};
use berth_env::PlacementEnv;
use berth_env::baselines::lookahead::HORIZON_TICKS;
use berth_env::baselines::{LookaheadPolicy, Policy, planner};
use berth_env::gym::Env;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which baseline a kickstarted run imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Teacher {
    /// The env's teacher action: `greedy`'s move ([`Env::teacher_action`]).
    #[default]
    Greedy,
    /// `lookahead`'s move: `greedy`'s best move where it pays back within four hours.
    Lookahead,
    /// The planner's move: the first of the cheapest path of moves over four hours, on
    /// clusters the oracle can search.
    Planner,
}

impl Teacher {
    /// Whether it plans on a scratch copy of the cluster of its own (entity network only).
    pub fn simulates(self) -> bool {
        self != Self::Greedy
    }
}

/// A copy's simulating teacher (none where `greedy` teaches, or where no planner could be
/// built for the episode's cluster), and the cluster it was built for.
type CopyTeacher = (Option<Box<dyn Policy>>, Arc<Scenario>);

/// The teacher of each env copy a run steps.
pub(crate) struct Teachers {
    kind: Teacher,
    copies: Vec<CopyTeacher>,
    forecasts: Rng,
}

/// A simulating teacher of `kind` for `scenario`; `None` for `greedy`.
fn teacher_for(kind: Teacher, scenario: &Arc<Scenario>) -> Result<Option<Box<dyn Policy>>> {
    Ok(match kind {
        Teacher::Greedy => None,
        Teacher::Lookahead => Some(Box::new(LookaheadPolicy::new(HORIZON_TICKS))),
        Teacher::Planner => Some(
            planner::build(scenario.clone(), HORIZON_TICKS)
                .map_err(|e| Error::Config { name: "teacher".into(), reason: format!("\"planner\": {e}") })?,
        ),
    })
}

impl Teachers {
    /// Teachers of `kind` for env copies on `clusters` (each copy's first episode's); their
    /// forecasts drawn from `seed`. A planner is refused where the oracle cannot search a
    /// cluster.
    pub(crate) fn new<'a>(
        kind: Teacher,
        seed: u64,
        clusters: impl IntoIterator<Item = &'a Arc<Scenario>>,
    ) -> Result<Self> {
        let copies = clusters
            .into_iter()
            .map(|scenario| Ok((teacher_for(kind, scenario)?, scenario.clone())))
            .collect::<Result<Vec<_>>>()?;
        let mut teachers = Self { kind, copies, forecasts: Rng::derive(seed, 0x7eac) };
        for copy in 0..teachers.copies.len() {
            let scenario = teachers.copies[copy].1.clone();
            teachers.new_episode(copy, &scenario);
        }
        Ok(teachers)
    }

    /// Copy `copy` started an episode on `scenario` (another each episode where shapes
    /// vary): a planner is built again for a new cluster, or leaves the episode untaught
    /// where it cannot be; the teacher draws a new forecast.
    pub(crate) fn new_episode(&mut self, copy: usize, scenario: &Arc<Scenario>) {
        let Some((teacher, built_for)) = self.copies.get_mut(copy) else { return };
        if self.kind == Teacher::Planner && !Arc::ptr_eq(built_for, scenario) {
            *teacher = teacher_for(self.kind, scenario).ok().flatten();
            *built_for = scenario.clone();
        }
        if let Some(teacher) = teacher {
            teacher.reset(self.forecasts.next_u64());
        }
    }

    /// The teacher's allowed action on copy `copy` standing at `env`; `greedy` is `greedy`'s
    /// action where the observation found it already.
    pub(crate) fn action(&mut self, copy: usize, env: &PlacementEnv, greedy: Option<usize>) -> Option<usize> {
        let action = match (self.kind, self.copies.get_mut(copy)) {
            (Teacher::Greedy, _) => greedy.or_else(|| env.teacher_action()),
            (_, Some((Some(teacher), _))) => Some(teacher.act(env)),
            _ => None,
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
        let mut greedy = Teachers::new(Teacher::Greedy, 1, [env.scenario()]).unwrap();
        let mut lookahead = Teachers::new(Teacher::Lookahead, 1, [env.scenario()]).unwrap();
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

    /// A planner teacher follows the copy onto each episode's cluster: on a `gpu-small`
    /// without its first node (shapes vary per episode) it names allowed actions there, and
    /// the planner it was built with would not have fitted that cluster's actions.
    #[test]
    fn a_planner_teacher_is_built_again_for_each_episodes_cluster() {
        let small = shipped::load("gpu-small").unwrap();
        let mut teachers = Teachers::new(Teacher::Planner, 1, [&small]).unwrap();
        let mut fewer = (*small).clone();
        fewer.nodes.remove(0);
        let fewer = Arc::new(fewer);
        let mut env = PlacementEnv::new(fewer.clone()).unwrap();
        env.reset(6003);
        teachers.new_episode(0, &fewer);
        assert!(Arc::ptr_eq(&teachers.copies[0].1, &fewer));
        for _ in 0..48 {
            let action = teachers.action(0, &env, None).expect("the planner names an allowed action");
            env.step(action).unwrap();
        }
        // `gpu-medium` is planned one service at a time; `gpu-large` is past even that.
        assert!(Teachers::new(Teacher::Planner, 1, [&shipped::load("gpu-medium").unwrap()]).is_ok());
        assert!(Teachers::new(Teacher::Planner, 1, [&shipped::load("gpu-large").unwrap()]).is_err());

        // Each copy's first teacher is built for that copy's own first cluster.
        let teachers = Teachers::new(Teacher::Planner, 1, [&small, &fewer]).unwrap();
        for (copy, cluster) in teachers.copies.iter().zip([&small, &fewer]) {
            assert!(copy.0.is_some() && Arc::ptr_eq(&copy.1, cluster));
        }
    }
}
