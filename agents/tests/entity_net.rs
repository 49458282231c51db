//! The size-agnostic network: its parameter count does not depend on the cluster's size,
//! both heads only ever choose what the masks allow, and an action's probability is the
//! product of the two heads' (so the probabilities of all allowed actions sum to one), on
//! every node or on the candidate nodes alone.

use std::sync::Arc;

use berth_agents::entity_net::{Decision, EntityBatch, EntityNet, EntityShape};
use berth_agents::nets::{Devices, values};
use berth_core::{Rng, Scenario};
use berth_env::entity::{EntityObs, observe, observe_in};
use berth_env::shipped::shipped;
use berth_env::{Env, PlacementEnv};
use proptest::prelude::*;

const TINY: &str = include_str!("../../scenarios/tiny.yaml");

fn net(services: usize) -> EntityNet {
    net_reading(services, false, false)
}

fn net_reading(services: usize, gains: bool, spread: bool) -> EntityNet {
    EntityNet::new(EntityShape { services, hidden: 32, gains, spread }, &Devices::cpu().plain)
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
    play_in(scenario, None, (false, false), seed, ticks, greedy);
}

fn play_in(
    scenario: Arc<Scenario>,
    candidates: Option<usize>,
    (gains, spread): (bool, bool),
    seed: u64,
    ticks: usize,
    greedy: bool,
) {
    let devices = Devices::cpu();
    let model = net_reading(scenario.services.len(), gains, spread);
    let mut env = PlacementEnv::new(scenario).unwrap();
    let mut rng = Rng::new(seed);
    env.reset(seed);
    for _ in 0..ticks {
        let (action, log_prob) = model.act(&env, candidates, &devices.plain, &mut rng, greedy);
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
    // On candidate rows alone, failures (evacuations) included.
    play_in(shipped("gpu-medium").unwrap(), Some(2), (false, false), 5, 288, false);
    play_in(shipped("openb").unwrap(), Some(8), (false, false), 1, 6, false);
    // Reading the gain rows as well, and the spreading rows.
    play_in(shipped("gpu-medium").unwrap(), Some(2), (true, false), 6, 288, false);
    play_in(shipped("gpu-mig").unwrap(), None, (true, false), 7, 96, false);
    play_in(shipped("gpu-small").unwrap(), None, (true, true), 8, 288, false);
    play_in(shipped("gpu-medium").unwrap(), Some(2), (false, true), 9, 96, false);
}

/// The log-probability of every allowed action of the env's flat space that the network's
/// node rows can express (every one, on every node), batched.
fn every_log_prob(model: &EntityNet, env: &PlacementEnv, candidates: Option<usize>) -> Vec<(usize, f32)> {
    let device = Devices::cpu().plain;
    let mut obs = model.observation();
    observe_in(env, candidates, &mut obs);
    let mask = env.action_mask();
    let decisions: Vec<(usize, Decision)> = (0..mask.len())
        .filter(|&a| mask[a])
        .filter_map(|a| Decision::in_rows(mask, env.placement().len(), &obs.node_ids, a).map(|d| (a, d)))
        .map(|(a, d)| (a, if obs.gains { d.with_moves(env, &obs.node_ids) } else { d }))
        .collect();
    if candidates.is_none() {
        assert_eq!(decisions.len(), mask.iter().filter(|&&m| m).count(), "every node has a row");
    }
    let states: Vec<&EntityObs> = decisions.iter().map(|_| &obs).collect();
    let batch = EntityBatch::new(&states, &device);
    let e = model.embed(&batch);
    let (actions, decisions): (Vec<usize>, Vec<Decision>) = decisions.into_iter().unzip();
    actions.into_iter().zip(values(model.log_prob(&batch, &e, &decisions))).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn allowed_actions_share_all_the_probability(
        seed in 0u64..1_000,
        steps in 0usize..40,
        candidates in prop_oneof![Just(None), Just(Some(1usize))],
        gains in any::<bool>(),
        spread in any::<bool>(),
    ) {
        let scenario = shipped("gpu-small").unwrap();
        let model = net_reading(scenario.services.len(), gains, spread);
        let mut env = PlacementEnv::new(scenario).unwrap();
        let mut rng = Rng::new(seed);
        env.reset(seed);
        for _ in 0..steps {
            let open: Vec<usize> = (0..env.action_count()).filter(|&a| env.action_mask()[a]).collect();
            env.step(open[rng.below(open.len())]).unwrap();
        }
        let all = every_log_prob(&model, &env, candidates);
        let total: f64 = all.iter().map(|&(_, lp)| f64::from(lp).exp()).sum();
        prop_assert!((total - 1.0).abs() < 1e-3, "probabilities of the allowed actions sum to {total}");
        // The batched sum of both heads is what acting computes for the same action.
        let (action, acted) = model.act(&env, candidates, &Devices::cpu().plain, &mut rng, true);
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
    // Reading gains, so the move features' layer is reached too.
    let model = EntityNet::new(
        EntityShape { services: scenario.services.len(), hidden: 16, gains: true, spread: false },
        &devices.train,
    );
    let mut env = PlacementEnv::new(scenario).unwrap();
    env.reset(3);
    let mut obs = model.observation();
    observe(&env, &mut obs);
    let mask = env.action_mask();
    let moves: Vec<usize> = (1..mask.len()).filter(|&a| mask[a]).take(3).collect();
    let decisions: Vec<Decision> = [0]
        .into_iter()
        .chain(moves)
        .map(|a| {
            Decision::from_action(mask, env.placement().len(), env.node_count(), a)
                .with_moves(&env, &obs.node_ids)
        })
        .collect();
    let batch = EntityBatch::new(&vec![&obs; decisions.len()], &devices.train);
    let e = model.embed(&batch);
    let loss = model.log_prob(&batch, &e, &decisions).sum().neg() + model.value(&e).sum();
    let grads = loss.backward();
    let mut visitor = NoGrad(&grads, 0);
    model.visit(&mut visitor);
    assert_eq!(visitor.1, 0, "{} parameters got no gradient", visitor.1);
}

#[test]
fn keeping_against_the_mean_divides_the_odds_of_moving_by_the_replicas_open() {
    let device = Devices::cpu().plain;
    let mut env = PlacementEnv::new(shipped("gpu-medium").unwrap()).unwrap();
    env.reset(6);
    let mut obs = EntityObs::default();
    observe(&env, &mut obs);
    let mask = env.action_mask();
    let keep = Decision::from_action(mask, env.placement().len(), env.node_count(), 0);
    let open = keep.open[..keep.open.len() - 1].iter().filter(|&&o| o).count();
    assert!(open > 1, "{open} replicas open");
    let batch = EntityBatch::new(&[&obs], &device);
    let p_keep = |model: &EntityNet| {
        let e = model.embed(&batch);
        f64::from(values(model.log_prob(&batch, &e, std::slice::from_ref(&keep)))[0]).exp()
    };
    let model = net(3);
    let against_sum = p_keep(&model);
    let against_mean = p_keep(&model.clone().with_keep_against_mean(true));
    // P = e^k / (e^k + S) against the sum S of the replicas' e^l, and against S / open.
    let odds = |p: f64| (1.0 - p) / p;
    let ratio = odds(against_sum) / odds(against_mean);
    assert!((ratio - open as f64).abs() < 1e-2 * open as f64, "odds ratio {ratio}, {open} replicas open");
}
