//! Criterion bench: one simulated `gpu-small` and one `gpu-medium` day (288 ticks) played by
//! each baseline that plans ahead, beside `greedy`, so a change to a planning policy's hot path
//! shows here.
//! `cargo bench -p berth-env --bench baselines`.

use std::hint::black_box;

use berth_env::PlacementEnv;
use berth_env::baselines::{GreedyPolicy, LookaheadPolicy, Policy, lookahead, planner};
use berth_env::evaluate::run_policy;
use berth_env::shipped::shipped;
use criterion::{Criterion, criterion_group, criterion_main};

fn one_day(c: &mut Criterion) {
    let horizon = lookahead::HORIZON_TICKS;
    let mut group = c.benchmark_group("baseline_day");
    group.sample_size(10);
    for cluster in ["gpu-small", "gpu-medium"] {
        let scenario = shipped(cluster).unwrap();
        let mut env = PlacementEnv::new(scenario.clone()).unwrap();
        // On `gpu-small` the planner plans jointly, on `gpu-medium` one service at a time.
        let policies: Vec<Box<dyn Policy>> = vec![
            Box::new(GreedyPolicy),
            Box::new(LookaheadPolicy::new(horizon)),
            planner::build(scenario, horizon).unwrap(),
        ];
        for mut policy in policies {
            let name = policy.name().to_string();
            let mut day = 1_000_000;
            group.bench_function(format!("{cluster}/{name}"), |b| {
                b.iter(|| {
                    day += 1;
                    black_box(run_policy(&mut env, policy.as_mut(), &[day], &mut |_, _| {}).unwrap().reward)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, one_day);
criterion_main!(benches);
