//! Where each training episode of the entity agents starts: the next day of the scenario as
//! given, or with `vary_shapes` a variation the curriculum draws ([`berth_env::shapes`]); and,
//! with `outage_drills`, a share of the days on the scenario with one node down for some
//! hours ([`berth_env::shapes::node_outage_drill`]), so a policy learns what to do when a
//! node it relied on is gone.

use std::sync::Arc;

use berth_core::{Rng, Scenario};
use berth_env::PlacementEnv;
use berth_env::gym::Env;
use berth_env::shapes::{Condition, Curriculum, node_outage_drill};

use crate::error::{Error, Result};

/// The episodes of one training run.
pub(crate) struct Episodes {
    /// The scenario as given, which every episode but the drills runs on.
    base: Arc<Scenario>,
    curriculum: Option<Curriculum>,
    days: Rng,
    /// Share of the days (0 to 1) that are failure drills.
    drills: f64,
    drill_rng: Rng,
}

impl Episodes {
    /// Episodes on `env`'s scenario, days drawn from `days`; `drills` of them failure drills,
    /// drawn from `seed`. Drills need the simulator (a recorded trace's failures are the
    /// ones recorded) and are not drawn on top of a curriculum's variations (their returns
    /// are weighed against `greedy`'s on the variation as drawn).
    pub(crate) fn new(
        env: &PlacementEnv,
        curriculum: Option<Curriculum>,
        days: Rng,
        drills: f64,
        seed: u64,
    ) -> Result<Self> {
        let refuse =
            |reason: &str| Err(Error::Config { name: "outage_drills".into(), reason: reason.into() });
        if drills > 0.0 && env.backend_name() != "sim" {
            return refuse("needs the simulator: a recorded trace's failures are the ones it recorded");
        }
        if drills > 0.0 && curriculum.is_some() {
            return refuse("needs vary_shapes = false: the variations take whole zones down themselves");
        }
        let base = env.scenario().clone();
        Ok(Self { base, curriculum, days, drills, drill_rng: Rng::derive(seed, 0xd7) })
    }

    /// Starts `env`'s next episode; the condition where the curriculum drew it.
    pub(crate) fn next(&mut self, env: &mut PlacementEnv) -> Result<Option<Condition>> {
        if let Some(c) = self.curriculum.as_mut() {
            let (condition, varied) = c.draw()?;
            *env = varied;
            return Ok(Some(condition));
        }
        let day = self.days.next_u64();
        // Drawn only when drills are on, so runs without them keep their days.
        if self.drills > 0.0 && self.drill_rng.next_f64() < self.drills {
            *env = PlacementEnv::new(Arc::new(node_outage_drill(&self.base, &mut self.drill_rng)))?;
        } else if !Arc::ptr_eq(env.scenario(), &self.base) {
            *env = PlacementEnv::new(self.base.clone())?;
        }
        env.reset(day);
        Ok(None)
    }

    /// Records the return of the episode `condition` ended with (see [`Curriculum::record`]).
    pub(crate) fn record(&mut self, condition: Option<Condition>, episode_return: f64) -> Result<()> {
        if let (Some(c), Some(condition)) = (self.curriculum.as_mut(), condition) {
            c.record(condition, episode_return)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use berth_env::shapes::ShapeRanges;
    use berth_env::shipped;

    use super::*;

    fn gpu_small() -> PlacementEnv {
        PlacementEnv::new(shipped::shipped("gpu-small").unwrap()).unwrap()
    }

    #[test]
    fn a_share_of_the_days_are_drills_and_the_others_run_on_the_scenario_as_given() {
        let mut env = gpu_small();
        let base = env.scenario().clone();
        let mut episodes = Episodes::new(&env, None, Rng::new(1), 0.5, 2).unwrap();
        let mut drills = 0;
        for _ in 0..40 {
            assert_eq!(episodes.next(&mut env).unwrap(), None);
            let events = env.scenario().failures.events.len();
            if Arc::ptr_eq(env.scenario(), &base) {
                assert_eq!(events, base.failures.events.len());
            } else {
                assert_eq!(events, base.failures.events.len() + 2, "one node fails and recovers");
                drills += 1;
            }
            assert_eq!(env.tick(), 0, "each episode starts at the day's first tick");
        }
        assert!((10..30).contains(&drills), "{drills} drills in 40 days");
        // Without drills the days are the ones drawn before drills existed.
        let (mut plain, mut days) = (gpu_small(), Rng::new(1));
        let mut without = Episodes::new(&plain, None, Rng::new(1), 0.0, 2).unwrap();
        let mut same = gpu_small();
        for _ in 0..3 {
            without.next(&mut plain).unwrap();
            same.reset(days.next_u64());
            assert_eq!(plain.current_rates(), same.current_rates());
        }
    }

    #[test]
    fn drills_are_refused_over_varied_shapes() {
        let env = gpu_small();
        let curriculum = Curriculum::new((**env.scenario()).clone(), ShapeRanges::default(), 1, 0.0);
        let err =
            Episodes::new(&env, Some(curriculum), Rng::new(1), 0.2, 2).err().expect("refused").to_string();
        assert!(err.contains("outage_drills") && err.contains("vary_shapes"), "{err}");
    }
}
