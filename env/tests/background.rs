//! Background pods on a shared cluster: GPU shares block a GPU for whole-GPU replicas, and
//! on a time-sliced GPU are tenants that slow the replicas beside them; pods that fit nowhere
//! stay pending, ended pods give their room back, and nothing ever puts more on a node than
//! it has.

use std::sync::Arc;

use berth_core::sharing::TIME_SLICING_OVERHEAD;
use berth_core::{Rng, Scenario};
use berth_env::{Env, PlacementEnv, StartState};

const TINY: &str = include_str!("../../scenarios/tiny.yaml");

fn tiny_with(background: &str) -> PlacementEnv {
    let yaml = format!("{TINY}\nbackground:\n{background}");
    PlacementEnv::new(Arc::new(Scenario::from_yaml(&yaml).unwrap())).unwrap()
}

#[test]
fn gpu_shares_take_the_free_gpu_and_give_it_back_when_they_end() {
    // Tiny: two replicas on three single-GPU nodes, so one GPU is free at the start.
    let mut env = tiny_with(concat!(
        "  - {cpu_milli: 1000, memory_mib: 1024, num_gpu: 1, gpu_milli: 300, from_s: -10, to_s: 1800}\n",
        "  - {cpu_milli: 1000, memory_mib: 1024, num_gpu: 1, gpu_milli: 300, from_s: 0, to_s: 1800}\n",
        "  - {cpu_milli: 1000, memory_mib: 1024, num_gpu: 1, gpu_milli: 500, from_s: 0, to_s: 1800}\n",
    ));
    env.reset(1);
    let free = (0..3).find(|n| !env.placement().contains(n)).unwrap();
    assert_eq!(env.background_pods(), (2, 1), "the 500 share fits beside neither 600 nor a replica");
    assert_eq!(env.usage()[free].gpus, 1, "both shares pack onto the one free GPU");
    assert_eq!(env.usage()[free].cpu_millicores, 2000);
    assert!(env.action_mask()[1..].iter().all(|&open| !open), "a shared GPU is not free for a replica");
    env.step(0).unwrap();
    assert_eq!(env.background_pods(), (2, 1));
    env.step(0).unwrap();
    assert_eq!(env.background_pods(), (0, 1), "both ended at 1800 s");
    assert_eq!(env.usage()[free], Default::default());
    for r in 0..2 {
        let to_free = env.encode(berth_env::Move { replica: r, node: free });
        assert!(env.action_mask()[to_free], "replica {r} may move to the freed GPU again");
    }
}

const GPU_MIG: &str = include_str!("../../scenarios/gpu-mig.yaml");

/// gpu-mig with `background`, its replicas at `placement` (embedding replicas 2-5; nodes:
/// h100-a-1 0, l4-b-1 2 and l4-b-2 3, both time-sliced two ways with 24 GiB, h100-c-1 5).
fn gpu_mig_with(background: &str, placement: &[usize]) -> PlacementEnv {
    let yaml = format!("{GPU_MIG}\nbackground:\n{background}");
    let mut env = PlacementEnv::new(Arc::new(Scenario::from_yaml(&yaml).unwrap())).unwrap();
    env.reset_placed(3, placement).unwrap();
    env
}

/// Background pods asking for `(num_gpu, gpu_milli)`, running from before the start to 600 s.
fn gpu_pods(claims: &[(u32, u32)]) -> String {
    claims
        .iter()
        .map(|(gpus, milli)| {
            format!(
                "  - {{cpu_milli: 1000, memory_mib: 1024, num_gpu: {gpus}, gpu_milli: {milli}, from_s: -10, to_s: 600}}\n"
            )
        })
        .collect()
}

#[test]
fn a_share_on_a_time_sliced_gpu_is_a_tenant_that_slows_the_replica_beside_it() {
    // Half the L4 (12 GiB) beside an 8 GiB replica: fits. 80% (19.2 GiB) does not.
    let mut env = gpu_mig_with(&gpu_pods(&[(1, 500), (1, 800)]), &[1, 4, 0, 0, 2, 3, 4, 6]);
    assert_eq!(env.background_pods(), (1, 1), "the 800 share fits beside no replica");
    // Both L4s hold one replica; best fit ties and takes the lower, l4-b-1.
    assert_eq!(env.usage()[2].slots.iter().filter(|&&m| m > 0).count(), 2);
    assert_eq!(env.usage()[2].slots.iter().sum::<u64>(), 8_192 + 12_288);
    let times: Vec<f64> = env.service_times_ms().collect();
    let shared = 30.0 * 2.0 / (1.0 - TIME_SLICING_OVERHEAD);
    assert!((times[4] - shared).abs() < 1e-9, "replica 4 shares l4-b-1: {} ms, expected {shared}", times[4]);
    assert!((times[5] - 30.0).abs() < 1e-9, "replica 5 is alone on l4-b-2");
    let onto_shared = env.encode(berth_env::Move { replica: 2, node: 2 });
    assert!(!env.action_mask()[onto_shared], "l4-b-1's two shares are held");
    assert_eq!(env.gpus_in_use(), 3, "the pod shares a GPU a replica uses: h100-a-1 and two L4s");
    env.step(0).unwrap();
    env.step(0).unwrap();
    assert_eq!(env.background_pods(), (0, 1), "it ended at 600 s");
    assert!((env.service_times_ms().nth(4).unwrap() - 30.0).abs() < 1e-9, "alone again");
    assert!(env.action_mask()[onto_shared]);
}

#[test]
fn a_whole_gpu_pod_on_a_shared_node_holds_every_slot_of_an_idle_gpu() {
    let mut env = gpu_mig_with(&gpu_pods(&[(1, 1000), (2, 1000)]), &[1, 4, 0, 0, 5, 5, 4, 6]);
    assert_eq!(env.background_pods(), (1, 1), "no node has two idle GPUs");
    assert_eq!(env.usage()[2].slots, vec![12_288, 12_288], "both shares of l4-b-1 held");
    assert_eq!(env.gpus_in_use(), 3);
    for r in 2..6 {
        assert!(!env.action_mask()[env.encode(berth_env::Move { replica: r, node: 2 })]);
        assert!(env.action_mask()[env.encode(berth_env::Move { replica: r, node: 3 })]);
    }
    env.step(0).unwrap();
    env.step(0).unwrap();
    assert_eq!(env.usage()[2].slots, vec![0, 0], "given back");
    assert_eq!(env.usage()[2].cpu_millicores, 0);
    assert_eq!(env.gpus_in_use(), 2);
}

#[test]
fn cpu_pods_prefer_nodes_without_gpus_and_whole_gpu_pods_need_free_gpus() {
    let yaml = TINY.replace(
        "services:",
        "  - {name: cpu-a, zone: zone-a, cpu_millicores: 8000, memory_mib: 16384}\nservices:",
    );
    let yaml = format!(
        "{yaml}\nbackground:\n{}{}",
        "  - {cpu_milli: 6000, memory_mib: 1024, from_s: 0, to_s: 900}\n",
        "  - {cpu_milli: 1000, memory_mib: 1024, num_gpu: 2, gpu_milli: 1000, from_s: 0, to_s: 900}\n",
    );
    let mut env = PlacementEnv::new(Arc::new(Scenario::from_yaml(&yaml).unwrap())).unwrap();
    env.reset(1);
    assert_eq!(env.usage()[3].cpu_millicores, 6000, "the CPU-only pod goes to the node without GPUs");
    assert_eq!(env.background_pods(), (1, 1), "no node has two GPUs: the 2-GPU pod stays pending");
}

#[test]
fn nothing_is_ever_overcommitted_on_openb() {
    for name in ["openb", "openb-shared"] {
        let scenario = berth_env::shipped::shipped(name).unwrap();
        let mut env = PlacementEnv::new(scenario.clone()).unwrap();
        let mut rng = Rng::new(3);
        env.reset(3);
        let (running, pending) = env.background_pods();
        assert!(running > 5500 && pending < 10, "{name}: {running} running, {pending} pending at the start");
        for _ in 0..48 {
            for (n, (node, u)) in scenario.nodes.iter().zip(env.usage()).enumerate() {
                assert!(u.cpu_millicores <= node.allocatable.cpu_millicores, "{name}: node {n} cpu");
                assert!(u.memory_mib <= node.allocatable.memory_mib, "{name}: node {n} memory");
                assert!(u.gpus <= node.gpu.as_ref().map_or(0, |g| g.count), "{name}: node {n} GPUs");
                if let Some(g) = node.gpu.as_ref().filter(|g| g.sharing.is_shared()) {
                    // Replicas and pods together: each GPU's tenants within its memory.
                    for (i, shares) in u.slots.chunks(g.sharing.slots_per_gpu()).enumerate() {
                        let memory: u64 = shares.iter().sum();
                        assert!(memory <= g.memory_mib, "{name}: GPU {i} of node {n} holds {memory} MiB");
                    }
                }
            }
            for (r, seat) in env.seats().iter().enumerate() {
                if let Some(slot) = seat {
                    let held = env.usage()[env.placement()[r]].slots[usize::from(*slot)];
                    assert!(held > 0, "{name}: replica {r}'s share is not held");
                }
            }
            let open: Vec<usize> = (0..env.action_count()).filter(|&a| env.action_mask()[a]).collect();
            let action =
                if rng.below(2) == 0 && env.action_mask()[0] { 0 } else { open[rng.below(open.len())] };
            env.step(action).unwrap();
        }
    }
}

#[test]
fn a_second_reset_restores_the_background_as_the_first_placed_it() {
    for name in ["openb", "openb-shared"] {
        let scenario = berth_env::shipped::shipped(name).unwrap();
        let mut fresh = PlacementEnv::new(scenario.clone()).unwrap();
        let mut env = PlacementEnv::new(scenario).unwrap();
        env.reset(1);
        random_steps(&mut env, &mut Rng::new(5), 20);
        env.reset(9);
        // A fresh copy places the background afresh.
        let start = env.placement().to_vec();
        fresh.reset_placed(9, &start).unwrap();
        assert_alike(name, &fresh, &env);
    }
}

/// The shield resets one copy to a start state many times, and the copy keeps the background
/// it placed on the last such state: a reset to it again, or to another state after it (the
/// clock, a node's readiness or a replica's node changed), is what placing afresh gives.
#[test]
fn resets_from_start_states_restore_the_background_as_placing_it_afresh() {
    for name in ["openb", "openb-shared"] {
        let scenario = berth_env::shipped::shipped(name).unwrap();
        let mut env = PlacementEnv::new(scenario.clone()).unwrap();
        let mut rng = Rng::new(7);
        env.reset(2);
        random_steps(&mut env, &mut rng, 30);
        let here = env.start_state();
        let later = StartState { tick: here.tick + 40, ..here.clone() };
        let mut one_down = here.clone();
        let empty = (0..env.node_count()).find(|n| !here.placement.contains(n)).unwrap();
        one_down.node_ready[empty] = false;
        random_steps(&mut env, &mut rng, 10);
        let moved = StartState { placement: env.placement().to_vec(), ..here.clone() };
        assert_ne!(moved.placement, here.placement, "{name}: the walk moved a replica");
        for (seed, start) in
            [(3, &here), (4, &here), (5, &later), (6, &here), (7, &one_down), (8, &moved), (9, &here)]
        {
            env.reset_at(seed, start).unwrap();
            let mut fresh = PlacementEnv::new(scenario.clone()).unwrap();
            fresh.reset_at(seed, start).unwrap();
            assert_alike(name, &fresh, &env);
        }
    }
}

/// `steps` random allowed actions.
fn random_steps(env: &mut PlacementEnv, rng: &mut Rng, steps: usize) {
    for _ in 0..steps {
        let open: Vec<usize> = (0..env.action_count()).filter(|&a| env.action_mask()[a]).collect();
        env.step(open[rng.below(open.len())]).unwrap();
    }
}

/// `env` stands where `fresh` does: its observation, node usage, mask, background pods and
/// the service times of replicas beside them.
fn assert_alike(name: &str, fresh: &PlacementEnv, env: &PlacementEnv) {
    let obs = |e: &PlacementEnv| e.observation().to_vec();
    assert_eq!(obs(fresh), obs(env), "{name}");
    assert_eq!(fresh.usage(), env.usage(), "{name}");
    assert_eq!(fresh.action_mask(), env.action_mask(), "{name}");
    assert_eq!(fresh.background_pods(), env.background_pods(), "{name}");
    // Replicas that share a GPU with the restored pods serve at their share of it.
    let times = |e: &PlacementEnv| e.service_times_ms().collect::<Vec<_>>();
    assert_eq!(times(fresh), times(env), "{name}");
}
