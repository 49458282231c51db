//! Criterion bench: one env step, single thread, on every shipped scenario, a step of an
//! 8-copy vector env on gpu-small, and the entity observation of `gpu-large` and `openb`.
//! `cargo bench -p berth-env`.

use std::hint::black_box;

use berth_core::Rng;
use berth_env::bench::driver_action;
use berth_env::shipped::{SHIPPED, shipped};
use berth_env::{Env, PlacementEnv, VecEnv};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn step_one(c: &mut Criterion) {
    let mut group = c.benchmark_group("env_step");
    group.throughput(Throughput::Elements(1));
    for (name, _) in SHIPPED {
        let mut env = PlacementEnv::new(shipped(name).unwrap()).unwrap();
        let mut rng = Rng::new(1);
        let mut seed = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let action = driver_action(env.action_mask(), &mut rng);
                let done = env.step(action).map(|s| s.truncated).unwrap();
                if done {
                    seed += 1;
                    env.reset(seed);
                }
                black_box(env.observation()[0])
            })
        });
    }
    group.finish();
}

fn step_vector(c: &mut Criterion) {
    let copies = 8;
    let env = PlacementEnv::new(shipped("gpu-small").unwrap()).unwrap();
    let mut venv = VecEnv::new(vec![env; copies], 0).unwrap();
    let mut rng = Rng::new(1);
    let mut actions = vec![0; copies];
    let mut group = c.benchmark_group("vec_env_step");
    group.throughput(Throughput::Elements(copies as u64));
    group.bench_function("gpu-small x8", |b| {
        b.iter(|| {
            for (i, a) in actions.iter_mut().enumerate() {
                *a = driver_action(venv.action_mask(i), &mut rng);
            }
            venv.step(&actions).unwrap();
            black_box(venv.rewards()[0])
        })
    });
    group.finish();
}

fn entity_observation(c: &mut Criterion) {
    let mut group = c.benchmark_group("entity_observe");
    for name in ["gpu-large", "openb"] {
        let env = PlacementEnv::new(shipped(name).unwrap()).unwrap();
        let mut obs = berth_env::entity::EntityObs::default();
        group.bench_function(name, |b| {
            b.iter(|| {
                berth_env::entity::observe(&env, &mut obs);
                black_box(obs.nodes[0])
            })
        });
        // With the gain rows, on candidate nodes, as a model with `gain_features` reads.
        let mut obs = berth_env::entity::EntityObs { gains: true, ..Default::default() };
        group.bench_function(format!("{name}-gains-candidates-8"), |b| {
            b.iter(|| {
                berth_env::entity::observe_candidates(&env, 8, &mut obs);
                black_box(obs.nodes[0])
            })
        });
    }
    group.finish();
}

criterion_group!(benches, step_one, step_vector, entity_observation);
criterion_main!(benches);
