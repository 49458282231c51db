//! GPU sharing in the gym (issue 30): a replica on a MIG instance serves at its profile's
//! share, time-sliced tenants slow each other as the cost model states, greedy weighs a move
//! onto a shared GPU with the slot it would really take, and over random clusters with shared
//! GPUs the mask never allows a layout a GPU cannot hold.

mod common;

use berth_core::mig::MigProfile;
use berth_core::sharing::{GpuSharing, TIME_SLICING_OVERHEAD};
use berth_core::{Resources, Scenario};
use berth_env::{Env, Move, PlacementEnv};

/// gpu-mig's replicas: routers 0-1, embedding 2-5, rerankers 6-7; its nodes: h100-a-1 (MIG
/// 3g/2g/1g/1g) 0, cpu-a-1 1, l4-b-1 and l4-b-2 (time-sliced two ways) 2 and 3, cpu-b-1 4,
/// h100-c-1 (MIG 4g/2g/1g) 5, cpu-c-1 6.
fn gpu_mig_at(placement: &[usize]) -> PlacementEnv {
    let mut env = PlacementEnv::new(berth_env::shipped::shipped("gpu-mig").unwrap()).unwrap();
    env.reset_placed(3, placement).unwrap();
    env
}

const H100_MS: f64 = 9.0;
const L4_MS: f64 = 30.0;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[test]
fn a_replica_serves_at_its_instance_share_and_time_sliced_tenants_at_theirs() {
    // Two embedding replicas on h100-a-1 (the two 1g.10gb instances), two on l4-b-1.
    let mut env = gpu_mig_at(&[1, 4, 0, 0, 2, 2, 4, 6]);
    let times: Vec<f64> = env.service_times_ms().collect();
    let two_tenants = L4_MS * 2.0 / (1.0 - TIME_SLICING_OVERHEAD);
    for (r, want) in [(2, 7.0 * H100_MS), (3, 7.0 * H100_MS), (4, two_tenants), (5, two_tenants)] {
        assert!(close(times[r], want), "replica {r}: {} ms, expected {want}", times[r]);
    }
    assert_eq!(env.seats()[2..6].iter().filter(|s| s.is_some()).count(), 4);
    // A third replica on h100-a-1 gets the next smallest instance, 2g.20gb (7/2 as long).
    env.step(env.encode(Move { replica: 5, node: 0 })).unwrap();
    let times: Vec<f64> = env.service_times_ms().collect();
    assert!(close(times[5], 3.5 * H100_MS), "{}", times[5]);
    // The tenant left behind on l4-b-1 has the GPU to itself again.
    assert!(close(times[4], L4_MS), "{}", times[4]);
    // A fourth takes the 3g.40gb; then the H100 is full for a fifth.
    env.step(env.encode(Move { replica: 4, node: 0 })).unwrap();
    assert!(close(env.service_times_ms().nth(4).unwrap(), 7.0 / 3.0 * H100_MS));
    let h100_a = &env.scenario().nodes[0];
    let fifth = Resources { gpus: 1, gpu_memory_mib: 8192, ..env.scenario().services[1].requests };
    assert!(
        !env.usage()[0].fits(&h100_a.allocatable, h100_a.gpu.as_ref(), &fifth),
        "four instances, four taken"
    );
}

#[test]
fn greedy_weighs_a_move_with_the_slot_it_would_take() {
    // steady_cost of a move, before it, is the cost of the cluster after it (same day, tick 0).
    let before = gpu_mig_at(&[1, 4, 0, 0, 2, 2, 4, 6]);
    for (mv, after) in [
        (Move { replica: 5, node: 3 }, [1, 4, 0, 0, 2, 3, 4, 6]),
        (Move { replica: 5, node: 5 }, [1, 4, 0, 0, 2, 5, 4, 6]),
        (Move { replica: 2, node: 2 }, [1, 4, 2, 0, 2, 2, 4, 6]),
    ] {
        if !before.action_mask()[before.encode(mv)] {
            assert_eq!(mv.node, 2, "only the third tenant on a two-way L4 is refused");
            continue;
        }
        let predicted = before.steady_cost(Some(mv)).cost;
        let observed = gpu_mig_at(&after).steady_cost(None).cost;
        assert!(close(predicted, observed), "{mv:?}: predicted {predicted}, then {observed}");
    }
}

#[test]
fn the_entity_observation_sees_the_slot_a_replica_holds_and_would_take() {
    use berth_env::entity::{self, EntityObs, NODE_FEATURES};
    let env = gpu_mig_at(&[1, 4, 0, 0, 2, 2, 4, 6]);
    let mut obs = EntityObs::default();
    entity::observe(&env, &mut obs);
    let slo = env.scenario().slo_ms;
    let width = obs.node_width();
    let col = |name: &str| NODE_FEATURES.iter().position(|f| *f == name).unwrap();
    // h100-a-1 has 2 of its 4 instances taken; the next embedding replica would get the
    // 2g.20gb (31.5 ms); l4-b-1 is full (two shares of two), l4-b-2 is idle (30 ms alone).
    assert_eq!(obs.nodes[col("gpus_taken")], 0.5);
    assert_eq!(obs.nodes[col("gpu_free")], 1.0);
    assert_eq!(obs.nodes[2 * width + col("gpu_free")], 0.0);
    let embed_time = |n: usize| obs.nodes[n * width + NODE_FEATURES.len() + 2 + 1];
    assert_eq!(embed_time(0), (3.5 * H100_MS / slo) as f32);
    assert_eq!(embed_time(3), (L4_MS / slo) as f32);
    // The replica on a 1g.10gb instance sees its own time: 63 ms.
    let features = obs.replica_width() - entity::REPLICA_FEATURES.len();
    let time = obs.replicas[2 * obs.replica_width() + features + 3];
    assert_eq!(time, (7.0 * H100_MS / slo) as f32);
    // Moving it to the idle L4 is faster: speed above one half.
    let [allowed, _, speed, _] = entity::pair_features(&env, 2, 3);
    assert_eq!(allowed, 1.0);
    assert!(speed > 0.6, "{speed}");
}

/// Whether a replica of `r`'s service could go on node `n` now, found from the replicas' slots
/// by trying each one: Ready, hardware it runs on, CPU and memory left, and a slot it accepts
/// that no replica holds (on a time-sliced GPU, with memory left beside its tenants').
fn fits_by_trying_each_slot(env: &PlacementEnv, r: usize, n: usize) -> bool {
    let sc = env.scenario();
    let (node, s) = (&sc.nodes[n], env.replica_service()[r]);
    let want = &sc.services[s].requests;
    let here: Vec<usize> = (0..env.placement().len()).filter(|&o| env.placement()[o] == n).collect();
    let req = |o: usize| &sc.services[env.replica_service()[o]].requests;
    let cpu: u64 = here.iter().map(|&o| req(o).cpu_millicores).sum::<u64>() + want.cpu_millicores;
    let memory: u64 = here.iter().map(|&o| req(o).memory_mib).sum::<u64>() + want.memory_mib;
    if env.placement()[r] == n
        || !env.node_ready()[n]
        || !sc.can_host(s, n)
        || cpu > node.allocatable.cpu_millicores
        || memory > node.allocatable.memory_mib
    {
        return false;
    }
    let Some(gpu) = node.gpu.as_ref().filter(|_| want.gpus > 0) else { return true };
    let per_gpu = gpu.sharing.slots_per_gpu();
    let held: Vec<usize> = here.iter().filter_map(|&o| env.seats()[o].map(usize::from)).collect();
    (0..gpu.count as usize * per_gpu).filter(|i| !held.contains(i)).any(|i| match &gpu.sharing {
        GpuSharing::Mig(layout) => {
            let profile = layout.instances()[i % per_gpu].profile;
            want.gpus == 1
                && want.accepts.takes_instance(profile)
                && profile.memory_mib(gpu.memory_mib) >= want.gpu_memory_mib
        }
        _ => {
            let g = i / per_gpu;
            let tenants: u64 = here
                .iter()
                .filter(|&&o| env.seats()[o].is_some_and(|h| usize::from(h) / per_gpu == g))
                .map(|&o| req(o).gpu_memory_mib)
                .sum();
            want.gpus == 1 && want.accepts.time_sliced && tenants + want.gpu_memory_mib <= gpu.memory_mib
        }
    })
}

/// Checks, from the scenario alone, that every node holds what it can: CPU and memory within
/// allocatable, whole GPUs within the count, each slot of shared GPUs held once, by a replica
/// that accepts it, and a time-sliced GPU's tenants within its shares and its memory.
fn assert_layouts_hold(env: &PlacementEnv, context: &str) {
    let sc = env.scenario();
    for (n, node) in sc.nodes.iter().enumerate() {
        let here: Vec<usize> = (0..env.placement().len()).filter(|&r| env.placement()[r] == n).collect();
        let req = |r: usize| &sc.services[env.replica_service()[r]].requests;
        let cpu: u64 = here.iter().map(|&r| req(r).cpu_millicores).sum();
        let memory: u64 = here.iter().map(|&r| req(r).memory_mib).sum();
        assert!(cpu <= node.allocatable.cpu_millicores && memory <= node.allocatable.memory_mib, "{context}");
        let Some(gpu) = &node.gpu else { continue };
        let gpu_replicas: Vec<usize> = here.iter().copied().filter(|&r| req(r).gpus > 0).collect();
        match &gpu.sharing {
            GpuSharing::Whole => {
                let gpus: u32 = gpu_replicas.iter().map(|&r| req(r).gpus).sum();
                assert!(gpus <= gpu.count, "{context}: node {n} has {gpus} GPUs taken of {}", gpu.count);
            }
            sharing => {
                let per_gpu = sharing.slots_per_gpu();
                let mut held = vec![None; gpu.count as usize * per_gpu];
                for &r in &gpu_replicas {
                    let slot = usize::from(
                        env.seats()[r].unwrap_or_else(|| panic!("{context}: replica {r} has no slot")),
                    );
                    assert!(held[slot].replace(r).is_none(), "{context}: slot {slot} of node {n} held twice");
                    if let GpuSharing::Mig(layout) = sharing {
                        let profile: MigProfile = layout.instances()[slot % per_gpu].profile;
                        assert!(
                            req(r).accepts.takes_instance(profile),
                            "{context}: {profile:?} not accepted"
                        );
                        assert!(profile.memory_mib(gpu.memory_mib) >= req(r).gpu_memory_mib, "{context}");
                    } else {
                        assert!(req(r).accepts.time_sliced, "{context}: replica {r} does not accept a share");
                    }
                }
                if matches!(sharing, GpuSharing::TimeSliced { .. }) {
                    for g in 0..gpu.count as usize {
                        let memory: u64 = held[g * per_gpu..(g + 1) * per_gpu]
                            .iter()
                            .flatten()
                            .map(|&r| req(r).gpu_memory_mib)
                            .sum();
                        assert!(
                            memory <= gpu.memory_mib,
                            "{context}: GPU {g} of node {n} holds {memory} MiB"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn masks_never_allow_a_layout_a_gpu_cannot_hold() {
    // Without failures the mask is the moves that fit (no evacuation rule narrows it).
    let shape = common::Shape { nodes: 5, services: 3, max_replicas: 4, failures: false, sharing: true };
    let (mut scenarios, mut shared_moves) = (0, 0);
    for seed in 0..120u64 {
        let Some(scenario) = common::random_scenario(7000 + seed, &shape) else { continue };
        let shared =
            |sc: &Scenario| sc.nodes.iter().any(|n| n.gpu.as_ref().is_some_and(|g| g.sharing.is_shared()));
        if !shared(&scenario) {
            continue;
        }
        let Ok(mut env) = PlacementEnv::new(scenario) else { continue };
        scenarios += 1;
        env.reset(seed);
        let mut rng = berth_core::Rng::new(seed);
        loop {
            let context = format!("scenario {seed}, tick {}", env.tick());
            assert_layouts_hold(&env, &context);
            for a in 1..env.action_mask().len() {
                let mv = env.decode(a).unwrap();
                let shared =
                    env.scenario().nodes[mv.node].gpu.as_ref().is_some_and(|g| g.sharing.is_shared());
                if shared {
                    let expected = fits_by_trying_each_slot(&env, mv.replica, mv.node);
                    assert_eq!(env.action_mask()[a], expected, "{context}: {mv:?}");
                }
            }
            let allowed: Vec<usize> =
                (0..env.action_mask().len()).filter(|&a| env.action_mask()[a]).collect();
            let action = allowed[rng.below(allowed.len())];
            if let Some(mv) = env.decode(action) {
                let gpu = env.scenario().nodes[mv.node].gpu.as_ref();
                shared_moves += usize::from(gpu.is_some_and(|g| g.sharing.is_shared()));
            }
            if env.step(action).unwrap().truncated {
                break;
            }
        }
    }
    assert!(scenarios >= 20, "only {scenarios} scenarios with shared GPUs were placeable");
    assert!(shared_moves >= 50, "only {shared_moves} moves onto shared GPUs were tried");
}

#[test]
fn gpus_in_use_count_a_shared_gpu_once_and_a_whole_one_per_replica() {
    // The four embedding replicas on h100-a-1's four instances: one GPU.
    assert_eq!(gpu_mig_at(&[1, 1, 0, 0, 0, 0, 1, 4]).gpus_in_use(), 1);
    // Two tenants on each time-sliced L4: two GPUs.
    assert_eq!(gpu_mig_at(&[1, 1, 2, 2, 3, 3, 1, 4]).gpus_in_use(), 2);
    // One on each GPU node: four.
    assert_eq!(gpu_mig_at(&[1, 1, 0, 2, 3, 5, 1, 4]).gpus_in_use(), 4);
    // The same cluster with whole GPUs holds one replica per GPU: four, however placed.
    let whole = berth_env::shipped::load("../experiments/gpu-mig-whole.yaml").unwrap();
    assert!(whole.nodes.iter().filter_map(|n| n.gpu.as_ref()).all(|g| !g.sharing.is_shared()));
    let mut env = PlacementEnv::new(whole).unwrap();
    env.reset_placed(3, &[1, 1, 0, 2, 3, 5, 1, 4]).unwrap();
    assert_eq!(env.gpus_in_use(), 4);
}

#[test]
fn a_replica_the_cluster_shows_in_an_instance_is_seated_there_and_a_plan_fills_what_is_left() {
    let mut env = PlacementEnv::new(berth_env::shipped::shipped("gpu-mig").unwrap()).unwrap();
    // Embedding replicas 2 and 3 on h100-c-1 (4g.40gb, 2g.20gb, 1g.10gb), 4 and 5 on the L4s.
    let placement = vec![1, 1, 5, 5, 2, 3, 1, 4];
    let (big, small, absent) =
        (MigProfile::parse("4g.40gb"), MigProfile::parse("1g.10gb"), MigProfile::parse("3g.40gb"));
    let start = |held: Vec<Option<MigProfile>>| berth_env::StartState {
        placement: placement.clone(),
        node_ready: vec![true; 7],
        tick: 100,
        held,
    };
    // Unknown: the rule, smallest first, replica 3 (on h100-c-1 from the start) before
    // replica 2 moves in: 1g.10gb (slot 2) to 3, then 2g.20gb (slot 1) to 2.
    env.reset_at(3, &start(Vec::new())).unwrap();
    assert_eq!(&env.seats()[2..4], &[Some(1), Some(2)]);
    // Held as the cluster says: 4g.40gb and 1g.10gb; a move in would take the 2g.20gb.
    let mut held = vec![None; 8];
    (held[2], held[3]) = (big, small);
    env.reset_at(3, &start(held.clone())).unwrap();
    assert_eq!(&env.seats()[2..4], &[Some(0), Some(2)]);
    assert_eq!(env.held(), held);
    assert_eq!(env.seat_if_placed(1, 5), Some(1));
    // A profile the node has no free instance of: the rule again.
    held[2] = absent;
    env.reset_at(3, &start(held)).unwrap();
    assert_eq!(&env.seats()[2..4], &[Some(1), Some(2)], "1g.10gb held first, then the smallest left");
    assert!(env.reset_at(3, &start(vec![None; 3])).unwrap_err().to_string().contains("held"));
}
