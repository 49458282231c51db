//! Gymnasium's env checker, ported: the contract every berth env must keep.
//!
//! It checks that observations match the declared space and stay finite and in bounds,
//! that the action mask has the right length and allows something, that the same seed
//! gives the same trajectory (reset really resets), that masked and out-of-range actions are
//! refused without changing the state, that rewards are finite, and, where the caller
//! knows it, that episodes are truncated at the right length and not terminated.

use berth_core::Rng;

use crate::gym::{Env, random_allowed};

/// One step of a recorded trajectory.
type Record = (Vec<f32>, f64, bool, bool);

fn check_obs<E: Env>(env: &E, obs: &[f32], when: &str) -> Result<(), String> {
    let space = env.observation_space();
    if obs.len() != space.len() {
        return Err(format!("{when}: observation has {} values, the space {}", obs.len(), space.len()));
    }
    if let Some(i) = space.violation(obs) {
        return Err(format!(
            "{when}: observation[{i}] = {} is outside [{}, {}] or not finite",
            obs[i], space.low[i], space.high[i]
        ));
    }
    Ok(())
}

fn rollout<E: Env>(env: &mut E, seed: u64, max_steps: usize) -> Result<Vec<Record>, String> {
    let first = env.reset(seed).obs.to_vec();
    check_obs(env, &first, "reset")?;
    let mut rng = Rng::derive(seed, 0xc4ec);
    let mut out = vec![(first, 0.0, false, false)];
    for t in 1..=max_steps {
        let mask = env.action_mask();
        if mask.len() != env.action_count() {
            return Err(format!(
                "step {t}: mask has {} entries, the action space {}",
                mask.len(),
                env.action_count()
            ));
        }
        if !mask.iter().any(|&m| m) {
            return Err(format!("step {t}: the mask allows no action"));
        }
        let action = random_allowed(mask, &mut rng);
        let step = env.step(action).map_err(|e| format!("step {t}: allowed action {action} failed: {e}"))?;
        let record = (step.obs.to_vec(), step.reward, step.terminated, step.truncated);
        if !record.1.is_finite() {
            return Err(format!("step {t}: reward {} is not finite", record.1));
        }
        let done = record.2 || record.3;
        check_obs(env, &record.0, &format!("step {t}"))?;
        out.push(record);
        if done {
            break;
        }
    }
    Ok(out)
}

/// Checks `env` over up to `max_steps` steps from `seed`. `episode_len`, when given, is the
/// step at which the episode must be truncated.
pub fn check_env<E: Env>(
    env: &mut E,
    seed: u64,
    max_steps: usize,
    episode_len: Option<usize>,
) -> Result<(), String> {
    let a = rollout(env, seed, max_steps)?;
    let b = rollout(env, seed, max_steps)?;
    if let Some(t) = a.iter().zip(&b).position(|(x, y)| x != y) {
        return Err(format!("the same seed gave different trajectories from step {t}"));
    }
    if a.len() != b.len() {
        return Err("the same seed gave trajectories of different lengths".into());
    }
    if let Some(len) = episode_len {
        if a.len() - 1 != len.min(max_steps) {
            return Err(format!(
                "episode ended after {} steps, expected {}",
                a.len() - 1,
                len.min(max_steps)
            ));
        }
        if len <= max_steps {
            let (_, _, terminated, truncated) = a.last().expect("non-empty");
            if !*truncated || *terminated {
                return Err(format!("step {len} should be truncated (and not terminated)"));
            }
            if env.step(0).is_ok() {
                return Err("a step after the end of the episode was accepted".into());
            }
        }
        if a[1..a.len() - 1].iter().any(|r| r.2 || r.3) {
            return Err("an episode ended before its length".into());
        }
    }
    // Refusals must not change the state.
    env.reset(seed);
    let before = env.observation().to_vec();
    if env.step(env.action_count()).is_ok() {
        return Err("an out-of-range action was accepted".into());
    }
    if let Some(masked) = env.action_mask().iter().position(|&m| !m)
        && env.step(masked).is_ok()
    {
        return Err(format!("masked action {masked} was accepted"));
    }
    if env.observation() != before.as_slice() {
        return Err("a refused action changed the observation".into());
    }
    Ok(())
}
