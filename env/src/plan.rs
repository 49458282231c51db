//! Plans a deploy: a policy rolled forward on a simulated copy of the cluster as it stands,
//! so that only the moves it settles on touch the real one.

use crate::baselines::Policy;
use crate::cost::TickMetrics;
use crate::gym::Env;
use crate::{Move, PlacementEnv, Result, StartState};

/// One move of a plan, in the scenario's indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedMove {
    /// The replica (scenario order).
    pub replica: usize,
    /// The node it runs on before the move.
    pub from: usize,
    /// The node it runs on after.
    pub to: usize,
    /// The slot of shared GPUs it takes there (`None`: whole GPUs or no GPU): which MIG
    /// instance's resource its pod must ask for.
    pub seat: Option<u8>,
}

/// What a policy would do from here, and what the model predicts of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The moves, in the order to make them; each is allowed after the ones before it.
    pub moves: Vec<PlannedMove>,
    /// The cost model's tick at the start placement with the traffic of the start tick.
    pub before: TickMetrics,
    /// The same at the placement after the moves, once every moved replica is serving.
    pub after: TickMetrics,
}

/// How far a plan looks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanLimits {
    /// Ticks rolled forward (fewer where the day ends first).
    pub horizon_ticks: u32,
    /// The plan stops at this many moves.
    pub max_moves: usize,
}

impl Default for PlanLimits {
    /// An hour of 5-minute ticks, at most 10 moves.
    fn default() -> Self {
        Self { horizon_ticks: 12, max_moves: 10 }
    }
}

/// Rolls `policy` forward from `start` (traffic of the episode `seed`) and collects its
/// moves. Consecutive moves of the same replica are merged (A→B→C is A→C, still allowed at
/// that point), and a move that ends where it began is dropped.
pub fn plan(
    env: &mut PlacementEnv,
    policy: &mut dyn Policy,
    start: &StartState,
    seed: u64,
    limits: PlanLimits,
) -> Result<Plan> {
    let (moves, before) = planned_moves(env, policy, start, seed, limits)?;
    let after = cost_after(env, start, seed, &moves)?;
    Ok(Plan { moves, before, after })
}

/// The cost model's tick at the placement `moves` lead to from `start`, every moved replica
/// serving, with the traffic of the start tick (episode `seed`): a plan's `after`.
pub fn cost_after(
    env: &mut PlacementEnv,
    start: &StartState,
    seed: u64,
    moves: &[PlannedMove],
) -> Result<TickMetrics> {
    let mut placement = start.placement.clone();
    let mut held = start.held.clone();
    for m in moves {
        placement[m.replica] = m.to;
        if let Some(h) = held.get_mut(m.replica) {
            let gpu = env.scenario().nodes[m.to].gpu.as_ref();
            *h = gpu.zip(m.seat).and_then(|(g, seat)| berth_core::sharing::mig_profile_of(g, seat));
        }
    }
    env.reset_at(seed, &StartState { placement, held, ..start.clone() })?;
    Ok(env.steady_cost(None))
}

/// [`plan`]'s moves and its `before`, without simulating the placement they lead to.
pub fn planned_moves(
    env: &mut PlacementEnv,
    policy: &mut dyn Policy,
    start: &StartState,
    seed: u64,
    limits: PlanLimits,
) -> Result<(Vec<PlannedMove>, TickMetrics)> {
    env.reset_at(seed, start)?;
    policy.reset(seed);
    let before = env.steady_cost(None);
    let mut moves: Vec<PlannedMove> = Vec::new();
    let mut taken = 0;
    let replica_services = env.scenario().replica_services();
    for _ in 0..limits.horizon_ticks {
        if taken >= limits.max_moves || env.tick() >= env.scenario().episode_ticks {
            break;
        }
        let action = policy.act(env);
        if let Some(Move { replica, node }) = env.decode(action) {
            let from = env.placement()[replica];
            let seat = env.seat_if_placed(replica_services[replica], node);
            match moves.last_mut() {
                Some(last) if last.replica == replica => (last.to, last.seat) = (node, seat),
                _ => moves.push(PlannedMove { replica, from, to: node, seat }),
            }
            taken += 1;
        }
        env.step(action)?;
    }
    moves.retain(|m| m.from != m.to);
    Ok((moves, before))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::{GreedyPolicy, SpreadPolicy};
    use crate::{scheduler, shipped};

    fn start(env: &PlacementEnv) -> StartState {
        let scenario = env.scenario();
        StartState {
            placement: scheduler::spread_placement(scenario).unwrap().nodes,
            node_ready: vec![true; scenario.nodes.len()],
            // Mid-morning, as the traffic climbs: greedy has a move to make.
            tick: 60,
            held: Vec::new(),
        }
    }

    #[test]
    fn greedy_plans_moves_that_the_model_says_help() {
        let mut env = PlacementEnv::new(shipped::load("gpu-small").unwrap()).unwrap();
        let from = start(&env);
        let plan = plan(&mut env, &mut GreedyPolicy, &from, 1, PlanLimits::default()).unwrap();
        assert!(!plan.moves.is_empty());
        assert!(plan.moves.len() <= 10);
        assert!(plan.after.cost < plan.before.cost, "{plan:?}");
        for m in &plan.moves {
            assert_ne!(m.from, m.to);
        }
        // The plan starts where the cluster is.
        assert_eq!(plan.moves[0].from, from.placement[plan.moves[0].replica]);
    }

    #[test]
    fn a_policy_that_holds_plans_nothing_and_limits_bound_the_plan() {
        let mut env = PlacementEnv::new(shipped::load("gpu-small").unwrap()).unwrap();
        let from = start(&env);
        let plan = plan(&mut env, &mut SpreadPolicy, &from, 1, PlanLimits::default()).unwrap();
        assert!(plan.moves.is_empty());
        assert_eq!(plan.before, plan.after);
        let limits = PlanLimits { horizon_ticks: 12, max_moves: 1 };
        let one = super::plan(&mut env, &mut GreedyPolicy, &from, 1, limits).unwrap();
        assert_eq!(one.moves.len(), 1);
    }

    #[test]
    fn replicas_on_a_failed_node_are_moved_away() {
        let mut env = PlacementEnv::new(shipped::load("gpu-small").unwrap()).unwrap();
        let mut from = start(&env);
        let down = from.placement[0];
        from.node_ready[down] = false;
        let plan = plan(&mut env, &mut SpreadPolicy, &from, 1, PlanLimits::default()).unwrap();
        assert!(plan.moves.iter().any(|m| m.replica == 0 && m.from == down && m.to != down), "{plan:?}");
    }

    #[test]
    fn a_start_state_that_does_not_fit_the_scenario_is_refused() {
        let mut env = PlacementEnv::new(shipped::load("gpu-small").unwrap()).unwrap();
        let mut from = start(&env);
        from.placement.pop();
        let error = plan(&mut env, &mut SpreadPolicy, &from, 1, PlanLimits::default()).unwrap_err();
        assert!(error.to_string().contains("placement"), "{error}");
        let mut from = start(&env);
        from.tick = 288;
        assert!(
            plan(&mut env, &mut SpreadPolicy, &from, 1, PlanLimits::default())
                .unwrap_err()
                .to_string()
                .contains("tick")
        );
    }
}
