//! Criterion bench: one simulated `gpu-small` day (288 ticks) played by each baseline that
//! plans ahead, beside `greedy`, so a change to a planning policy's hot path shows here.
//! `cargo bench -p berth-env --bench baselines`.

use std::hint::black_box;

use berth_env::PlacementEnv;
use berth_env::baselines::{GreedyPolicy, LookaheadPolicy, PlannerPolicy, Policy, lookahead};
use berth_env::evaluate::run_policy;
use berth_env::shipped::shipped;
use criterion::{Criterion, criterion_group, criterion_main};

fn one_day(c: &mut Criterion) {
    let scenario = shipped("gpu-small").unwrap();
    let mut env = PlacementEnv::new(scenario.clone()).unwrap();
    let horizon = lookahead::HORIZON_TICKS;
    let policies: Vec<Box<dyn Policy>> = vec![
        Box::new(GreedyPolicy),
        Box::new(LookaheadPolicy::new(horizon)),
        Box::new(PlannerPolicy::new(scenario, horizon).unwrap()),
    ];
    let mut group = c.benchmark_group("baseline_day");
    group.sample_size(10);
    for mut policy in policies {
        let name = policy.name().to_string();
        let mut day = 1_000_000;
        group.bench_function(format!("gpu-small/{name}"), |b| {
            b.iter(|| {
                day += 1;
                black_box(run_policy(&mut env, policy.as_mut(), &[day], &mut |_, _| {}).unwrap().reward)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, one_day);
criterion_main!(benches);
