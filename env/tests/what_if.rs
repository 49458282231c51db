//! Moves priced once per kind of replica and (zone, class) ([`berth_env::what_if`]): every
//! price is what the cost model says of that replica's own move, and fewer routings are run
//! than questions asked where replicas are alike.

mod common;

use berth_env::shipped::shipped;
use berth_env::what_if::WhatIf;
use berth_env::{Env, Move, PlacementEnv};

/// Within rounding: a price may come from another replica of the kind, summed in another order.
fn assert_close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{what}: {got} against {want}");
}

#[test]
fn every_price_is_the_replicas_own_move_or_removal() {
    let mut checked = 0;
    for sharing in [false, true] {
        let shape = common::Shape { nodes: 8, services: 3, max_replicas: 4, failures: true, sharing };
        common::random_walks(0..30, &shape, 12, |seed, env| {
            let mut what_if = WhatIf::new(env);
            let nodes = env.node_count();
            for r in 0..env.placement().len() {
                let removed = env.steady_cost_without(r).cost;
                assert_close(what_if.removed(r), removed, &format!("seed {seed}: replica {r} removed"));
                // The first allowed node of each (zone, class), as `greedy` asks.
                let mut asked = Vec::new();
                for n in (0..nodes).filter(|&n| env.action_mask()[1 + r * nodes + n]) {
                    let s = env.replica_service()[r];
                    let pair = (env.scenario().nodes[n].zone, env.scenario().class_on(s, n));
                    if asked.contains(&pair) {
                        continue;
                    }
                    asked.push(pair);
                    let own = env.steady_cost(Some(Move { replica: r, node: n })).cost;
                    assert_close(what_if.moved(r, n), own, &format!("seed {seed}: replica {r} to {n}"));
                    checked += 1;
                }
            }
        });
    }
    assert!(checked > 1_000, "only {checked} moves checked");
}

#[test]
fn alike_replicas_share_one_routing() {
    // gpu-large: 200 replicas of a few services on a few kinds of node.
    let mut env = PlacementEnv::new(shipped("gpu-large").unwrap()).unwrap();
    env.reset(1);
    let mut what_if = WhatIf::new(&env);
    let (replicas, nodes) = (env.placement().len(), env.node_count());
    for r in 0..replicas {
        if let Some(n) = (0..nodes).find(|&n| env.action_mask()[1 + r * nodes + n]) {
            what_if.moved(r, n);
        }
        what_if.removed(r);
    }
    assert!(
        what_if.routings() * 4 < 2 * replicas,
        "{} routings for {} questions",
        what_if.routings(),
        2 * replicas
    );
}
