//! `greedy`'s counterfactual of a day ([`berth_env::regret`]) and the shield's budget: the
//! copy replays the day the episode lives through, the tally counts the episode's own cost,
//! and behind a budget a policy strays from `greedy` only while the day so far is within it.

use berth_env::baselines::{GreedyPolicy, Policy, RandomPolicy};
use berth_env::regret::Regret;
use berth_env::shield::{ShieldSettings, ShieldedPolicy, Vote};
use berth_env::shipped::load;
use berth_env::{Env, PlacementEnv};

/// Plays one day of `seed` with `policy`, calling `each` before every action with the tally
/// so far and the action the policy took.
fn play(
    env: &mut PlacementEnv,
    policy: &mut dyn Policy,
    seed: u64,
    mut each: impl FnMut(&PlacementEnv, usize),
) -> f64 {
    policy.reset(seed);
    env.reset(seed);
    let mut cost = 0.0;
    loop {
        let action = policy.act(env);
        each(env, action);
        let step = env.step(action).unwrap();
        cost -= step.reward;
        if step.terminated || step.truncated {
            return cost;
        }
    }
}

#[test]
fn greedys_own_day_is_its_counterfactual_tick_for_tick() {
    let mut env = PlacementEnv::new(load("gpu-small").unwrap()).unwrap();
    let mut regret = Regret::new();
    regret.reset(21);
    let mut last = None;
    play(&mut env, &mut GreedyPolicy, 21, |env, _| {
        let tally = regret.update(env).expect("the copy follows the episode");
        assert_eq!(tally.ticks, env.tick());
        assert_eq!(tally.own, tally.greedy, "tick {}", env.tick());
        last = Some(tally);
    });
    assert!(last.unwrap().greedy > 0.0);
}

#[test]
fn the_tally_counts_the_episodes_cost_and_greedys_on_the_same_day() {
    let mut env = PlacementEnv::new(load("gpu-small").unwrap()).unwrap();
    let greedy_day = play(&mut env, &mut GreedyPolicy, 22, |_, _| {});
    let mut regret = Regret::new();
    regret.reset(22);
    let mut counted = 0.0;
    let mut last = None;
    let random_day = play(&mut env, &mut RandomPolicy::new(), 22, |env, _| {
        let tally = regret.update(env).unwrap();
        counted = tally.own;
        last = Some(tally);
    });
    let last = last.unwrap();
    // Counted before each action: every tick but the last.
    let ticks = env.scenario().episode_ticks;
    assert_eq!(last.ticks, ticks - 1);
    assert!(counted < random_day && counted > 0.0);
    assert!(last.greedy < greedy_day && last.greedy > 0.9 * greedy_day, "{last:?} against {greedy_day}");
    assert!(last.trails_by_more_than(0.0), "a random day trails greedy's: {last:?}");
}

#[test]
fn a_tally_that_misses_a_tick_is_lost_for_the_episode() {
    let mut env = PlacementEnv::new(load("tiny").unwrap()).unwrap();
    let mut regret = Regret::new();
    env.reset(5);
    regret.reset(5);
    assert!(regret.update(&env).is_some());
    env.step(0).unwrap();
    env.step(0).unwrap();
    assert!(regret.update(&env).is_none());
    env.step(0).unwrap();
    assert!(regret.update(&env).is_none(), "stays lost");
    env.reset(6);
    regret.reset(6);
    assert!(regret.update(&env).is_some(), "a new episode counts again");
}

/// Plays day `seed` of `tiny` with random moves for its first `forced` ticks, so that the day
/// trails `greedy`'s, then with `shielded`'s actions; counts the later ticks where the shield
/// strayed from `greedy` while the day so far trailed `greedy`'s by more than `budget`.
fn strays_while_trailing(shielded: &mut ShieldedPolicy, seed: u64, forced: u32, budget: f64) -> usize {
    let mut env = PlacementEnv::new(load("tiny").unwrap()).unwrap();
    let mut random = RandomPolicy::new();
    random.reset(seed);
    let mut regret = Regret::new();
    regret.reset(seed);
    let mut trailing = 0;
    shielded.reset(seed);
    env.reset(seed);
    loop {
        let tally = regret.update(&env).unwrap();
        let own = shielded.act(&env);
        let action = if env.tick() < forced { random.act(&env) } else { own };
        if env.tick() >= forced && own != GreedyPolicy.act(&env) && tally.trails_by_more_than(budget) {
            trailing += 1;
        }
        let step = env.step(action).unwrap();
        if step.terminated || step.truncated {
            return trailing;
        }
    }
}

/// Behind a budget a policy strays from `greedy` only on ticks where the day so far trails
/// `greedy`'s counterfactual by no more than it; without one, the same policy strays on days
/// that trail. The forecasts vote in sum, so that a random policy strays at all.
#[test]
fn behind_a_budget_a_policy_strays_only_while_the_day_is_within_it() {
    let random = || Box::new(RandomPolicy::new()) as Box<dyn Policy>;
    let budget = 0.001;
    let mut unbudgeted = 0;
    for seed in 1..6 {
        let mut free = ShieldedPolicy::with(
            random(),
            ShieldSettings { margin: 0.0, budget: None, vote: Vote::Sum, ..ShieldSettings::default() },
        );
        unbudgeted += strays_while_trailing(&mut free, seed, 24, budget);
        let mut held = ShieldedPolicy::with(
            random(),
            ShieldSettings {
                margin: 0.0,
                budget: Some(budget),
                vote: Vote::Sum,
                ..ShieldSettings::default()
            },
        );
        assert_eq!(
            strays_while_trailing(&mut held, seed, 24, budget),
            0,
            "seed {seed}: strayed while over budget"
        );
    }
    assert!(unbudgeted > 0, "without a budget the shield strays on days that trail");
}
