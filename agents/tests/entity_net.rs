//! The size-agnostic network: its parameter count does not depend on the cluster's size,
//! both heads only ever choose what the masks allow, and an action's probability is the
//! product of the two heads' (so the probabilities of all allowed actions sum to one).

use std::sync::Arc;

use berth_agents::entity_net::{Decision, EntityBatch, EntityNet, EntityShape};
use berth_agents::nets::{Devices, values};
use berth_core::{Rng, Scenario};
use berth_env::entity::{EntityObs, observe};
use berth_env::shipped::shipped;
use berth_env::{Env, PlacementEnv};
use proptest::prelude::*;

const TINY: &str = include_str!("../../scenarios/tiny.yaml");

fn net(services: usize) -> EntityNet {
    EntityNet::new(EntityShape { services, hidden: 32 }, &Devices::cpu().plain)
}

#[test]
fn the_parameter_count_does_not_depend_on_nodes_or_replicas() {
    let large = shipped("gpu-large").unwrap();
    let openb = shipped("openb").unwrap();
    assert_eq!(large.services.len(), openb.services.len());
    // Built from each scenario's own widths: 1,000 nodes and 1,523 give the same network.
    let widths = |s: &Scenario| {
        let env = PlacementEnv::new(Arc::new(s.clone())).unwrap();
        let mut obs = EntityObs::default();
        observe(&env, &mut obs);
        (obs.node_width(), obs.replica_width(), obs.group_width())
    };
    assert_eq!(widths(&large), widths(&openb));
    let params = net(3).parameters();
    assert!(params < 20_000, "{params} parameters at hidden 32");
    assert_eq!(params, net(openb.services.len()).parameters());
}

/// Actions an untrained network takes over a day with failures and background pods, each
/// checked against the env's mask before it is stepped.
fn play(scenario: Arc<Scenario>, seed: u64, ticks: usize, greedy: bool) {
    let devices = Devices::cpu();
    let model = net(scenario.services.len());
    let mut env = PlacementEnv::new(scenario).unwrap();
    let mut rng = Rng::new(seed);
    env.reset(seed);
    for _ in 0..ticks {
        let (action, log_prob) = model.act(&env, &devices.plain, &mut rng, greedy);
        assert!(env.action_mask()[action], "action {action} is masked");
        assert!(log_prob <= 1e-5 && log_prob > -1e6, "log-probability {log_prob}");
        env.step(action).unwrap();
    }
}

#[test]
fn the_network_acts_on_any_cluster_within_the_masks() {
    play(shipped("gpu-small").unwrap(), 4, 288, false);
    play(shipped("tiny").unwrap(), 2, 96, true);
    play(shipped("openb").unwrap(), 1, 6, false);
    let more = TINY.replace(
        "services:",
        "  - {name: l4-c, zone: zone-b, cpu_millicores: 16000, memory_mib: 65536, gpu: {count: 1, model: l4, memory_mib: 24576}}\nservices:",
    );
    play(Arc::new(Scenario::from_yaml(&more).unwrap()), 3, 96, false);
}

/// The log-probability of every action of the env's flat space under `model`, batched.
fn every_log_prob(model: &EntityNet, env: &PlacementEnv) -> Vec<(usize, f32)> {
    let device = Devices::cpu().plain;
    let mut obs = EntityObs::default();
    observe(env, &mut obs);
    let mask = env.action_mask();
    let allowed: Vec<usize> = (0..mask.len()).filter(|&a| mask[a]).collect();
    let states: Vec<&EntityObs> = allowed.iter().map(|_| &obs).collect();
    let batch = EntityBatch::new(&states, &device);
    let decisions: Vec<Decision> = allowed
        .iter()
        .map(|&a| Decision::from_action(mask, env.placement().len(), env.node_count(), a))
        .collect();
    let e = model.embed(&batch);
    allowed.into_iter().zip(values(model.log_prob(&batch, &e, &decisions))).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn allowed_actions_share_all_the_probability(seed in 0u64..1_000, steps in 0usize..40) {
        let scenario = shipped("gpu-small").unwrap();
        let model = net(scenario.services.len());
        let mut env = PlacementEnv::new(scenario).unwrap();
        let mut rng = Rng::new(seed);
        env.reset(seed);
        for _ in 0..steps {
            let open: Vec<usize> = (0..env.action_count()).filter(|&a| env.action_mask()[a]).collect();
            env.step(open[rng.below(open.len())]).unwrap();
        }
        let all = every_log_prob(&model, &env);
        let total: f64 = all.iter().map(|&(_, lp)| f64::from(lp).exp()).sum();
        prop_assert!((total - 1.0).abs() < 1e-3, "probabilities of the allowed actions sum to {total}");
        // The batched sum of both heads is what acting computes for the same action.
        let (action, acted) = model.act(&env, &Devices::cpu().plain, &mut rng, true);
        let batched = all.iter().find(|&&(a, _)| a == action).map(|&(_, lp)| lp).unwrap();
        prop_assert!((batched - acted).abs() < 1e-4, "batched {batched}, acting {acted}");
    }
}

#[test]
fn gradients_reach_every_layer_through_both_heads() {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::prelude::*;
    struct NoGrad<'a>(&'a burn::tensor::Gradients, usize);
    impl ModuleVisitor for NoGrad<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let grad = param.val().grad(self.0).map(|g| values(g.abs().sum())[0]).unwrap_or(0.0);
            if grad == 0.0 {
                self.1 += 1;
            }
        }
    }
    let devices = Devices::cpu();
    let scenario = shipped("gpu-small").unwrap();
    let model = EntityNet::new(EntityShape { services: scenario.services.len(), hidden: 16 }, &devices.train);
    let mut env = PlacementEnv::new(scenario).unwrap();
    env.reset(3);
    let mut obs = EntityObs::default();
    observe(&env, &mut obs);
    let mask = env.action_mask();
    let moves: Vec<usize> = (1..mask.len()).filter(|&a| mask[a]).take(3).collect();
    let decisions: Vec<Decision> = [0]
        .into_iter()
        .chain(moves)
        .map(|a| Decision::from_action(mask, env.placement().len(), env.node_count(), a))
        .collect();
    let batch = EntityBatch::new(&vec![&obs; decisions.len()], &devices.train);
    let e = model.embed(&batch);
    let loss = model.log_prob(&batch, &e, &decisions).sum().neg() + model.value(&e).sum();
    let grads = loss.backward();
    let mut visitor = NoGrad(&grads, 0);
    model.visit(&mut visitor);
    assert_eq!(visitor.1, 0, "{} parameters got no gradient", visitor.1);
}
