//! `planner`: the best sequence of single moves over the next hours, planned on a forecast.
//! The oracle re-places every replica every tick for free; a policy moves one replica a tick
//! and pays for it. On a small cluster the oracle's placement classes (per service, a multiset
//! of (zone, service time) seats) are few enough, about a thousand on `gpu-small`, to plan over
//! all of them: each tick the planner runs dynamic programming backwards over the horizon on
//! the graph whose edges are one move (a replica to another seat), each edge charged the move
//! cost and each class its steady cost at the forecast's rates, and takes the first move of
//! the cheapest path. This is model-predictive control (receding-horizon planning) on the
//! oracle's model. `lookahead` weighs one candidate, `greedy`'s best move; the planner weighs
//! every path of single moves, so it makes a move that pays only with the next one, which
//! `lookahead` never sees.
//!
//! Like `lookahead`'s, the forecast is another draw of the scenario's traffic than the day
//! scored, and it holds the nodes as they are: the planner does not price what a node failure
//! would cost the placement it chooses, and it has no guard against crowding a service onto
//! one node (on `gpu-small`'s tuning days `lookahead`'s guard cost more than it saved). Where
//! it must evacuate it takes the cheapest planned evacuation. A class says which seats hold
//! replicas, not which nodes: a move spreads the service over the nodes of its seat
//! ([`spreading_move`]). It plans jointly where the
//! oracle searches (`tiny`, `gpu-small`), on whole GPUs; [`build`] plans one service at a
//! time on larger clusters ([`super::by_service`]).

use std::collections::HashMap;
use std::sync::Arc;

use berth_core::{Rng, Scenario};

use super::by_service::ServicePlannerPolicy;
use super::{GreedyPolicy, Policy};
use crate::PlacementEnv;
use crate::cost::ReplicaView;
use crate::error::{Error, Result};
use crate::gym::Env;
use crate::oracle::{Config, Oracle};
use crate::placement_env::Move;

/// Ticks planned ahead by default: four hours of 5-minute ticks, as `lookahead`'s.
pub const HORIZON_TICKS: u32 = super::lookahead::HORIZON_TICKS;

/// The placement classes of one set of Ready nodes and the single moves between them.
struct Graph {
    configs: Arc<Vec<Config>>,
    /// Per class, the classes one move away (a replica to another seat that serves).
    next: Vec<Vec<usize>>,
    index: HashMap<Vec<usize>, usize>,
}

/// Plans the cheapest path of single moves over a horizon and takes its first move, on the
/// cluster it was built for (on another, `greedy`'s move).
pub struct PlannerPolicy {
    name: String,
    horizon: u32,
    oracle: Oracle,
    graphs: HashMap<Vec<bool>, Arc<Graph>>,
    /// The forecast's rates, as [`crate::backend::Trace::rates_rps`] lays them out.
    forecast: Vec<f64>,
    groups: usize,
    /// Per set of Ready nodes, each class's steady cost at each forecast tick, priced on first
    /// use: the forecast is fixed for the episode, so a (class, tick) is priced once, not once
    /// for every tick that plans over it.
    prices: HashMap<Vec<bool>, Vec<Vec<f64>>>,
    scratch: PlacementEnv,
}

impl PlannerPolicy {
    /// A planner over `horizon` ticks (clamped to 1..=[`super::lookahead::MAX_HORIZON_TICKS`])
    /// for `scenario`; refused, saying why, where the oracle cannot search it or its GPUs are
    /// shared.
    pub fn new(scenario: Arc<Scenario>, horizon: u32) -> Result<Self> {
        refuse_shared_gpus(&scenario)?;
        let horizon = horizon.clamp(1, super::lookahead::MAX_HORIZON_TICKS);
        let name = name(horizon);
        let scratch = PlacementEnv::new(scenario.clone())?;
        let oracle = Oracle::new(scenario)?;
        Ok(Self {
            name,
            horizon,
            oracle,
            graphs: HashMap::new(),
            forecast: Vec::new(),
            groups: 0,
            prices: HashMap::new(),
            scratch,
        })
    }

    /// The graph of the classes that can be packed onto the `ready` nodes, built once per set.
    fn graph(&mut self, ready: &[bool]) -> Arc<Graph> {
        if let Some(graph) = self.graphs.get(ready) {
            return graph.clone();
        }
        let configs = self.oracle.configs(ready);
        let index: HashMap<Vec<usize>, usize> =
            configs.iter().enumerate().map(|(i, c)| (c.slots.clone(), i)).collect();
        let services: Vec<(usize, bool, usize)> = self.oracle.service_slots().collect();
        let mut next = vec![Vec::new(); configs.len()];
        for (i, config) in configs.iter().enumerate() {
            let mut start = 0;
            for &(slots, can_fail, k) in &services {
                for p in start..start + k {
                    // A replica goes to a seat that serves: "nowhere" is where a failure puts it.
                    for to in (0..slots).filter(|&to| to != config.slots[p] && !(can_fail && to == slots - 1))
                    {
                        let mut moved = config.slots.clone();
                        moved[p] = to;
                        moved[start..start + k].sort_unstable();
                        if let Some(&j) = index.get(&moved)
                            && !next[i].contains(&j)
                        {
                            next[i].push(j);
                        }
                    }
                }
                start += k;
            }
        }
        let graph = Arc::new(Graph { configs, next, index });
        self.graphs.insert(ready.to_vec(), graph.clone());
        graph
    }

    /// The cost of the cheapest path from each class over the forecast's ticks `first..=last`
    /// (being in the class during `first`), each move on the way charged `move_cost`. `graph`
    /// is the graph of the `ready` nodes; each tick's class prices are filled on first use.
    fn costs_to_go(
        &mut self,
        graph: &Graph,
        ready: &[bool],
        first: u32,
        last: u32,
        move_cost: f64,
    ) -> Vec<f64> {
        let ticks = self.forecast.len() / self.groups.max(1);
        let prices = self.prices.entry(ready.to_vec()).or_insert_with(|| vec![Vec::new(); ticks]);
        for t in first..=last {
            let priced = &mut prices[t as usize];
            if priced.is_empty() {
                let start = t as usize * self.groups;
                let rates = &self.forecast[start..start + self.groups];
                *priced = graph.configs.iter().map(|config| self.oracle.cost_of(config, rates)).collect();
            }
        }
        cheapest_to_go(&graph.next, prices, first, last, move_cost)
    }

    /// The action that takes one replica of `env` from class `from` to class `to` (one move
    /// apart): a replica in the seat `from` has and `to` has not, onto an allowed node of the
    /// seat `to` gains, chosen to spread the service ([`spreading_move`]). `views` are `env`'s
    /// steady views.
    fn action_between(
        &self,
        env: &PlacementEnv,
        views: &[ReplicaView],
        from: &[usize],
        to: &[usize],
    ) -> Option<usize> {
        let mut start = 0;
        for (s, (_, _, k)) in self.oracle.service_slots().enumerate() {
            let (a, b) = (&from[start..start + k], &to[start..start + k]);
            if a == b {
                start += k;
                continue;
            }
            let (leaves, gains) = moved_seats(a, b)?;
            let (zone, time) = self.oracle.seat(s, gains)?;
            let replicas = (start..start + k).filter(|&r| self.oracle.slot_of(s, &views[r]) == Some(leaves));
            let moves =
                replicas.flat_map(|r| (0..env.node_count()).map(move |n| (r, n))).filter(|&(r, n)| {
                    let view = env.view_on(r, n);
                    let seat = view.up && view.zone == zone && view.service_time_ms == time;
                    seat && env.action_mask()[env.encode(Move { replica: r, node: n })]
                });
            return spreading_move(env, start..start + k, moves);
        }
        None
    }
}

/// The planner over `horizon` ticks for `scenario`: over the joint placement classes where
/// the oracle searches them ([`PlannerPolicy`]), else one service at a time
/// ([`ServicePlannerPolicy`]); refused, saying why, where GPUs are shared or even one
/// service's classes are too many.
pub fn build(scenario: Arc<Scenario>, horizon: u32) -> Result<Box<dyn Policy>> {
    refuse_shared_gpus(&scenario)?;
    match PlannerPolicy::new(scenario.clone(), horizon) {
        Ok(joint) => Ok(Box::new(joint)),
        Err(Error::OracleRefused(_)) => {
            let horizon = horizon.clamp(1, super::lookahead::MAX_HORIZON_TICKS);
            Ok(Box::new(ServicePlannerPolicy::new(scenario, name(horizon), horizon)?))
        }
        Err(e) => Err(e),
    }
}

/// `planner`, or `planner:<ticks>` where the horizon is not the default.
fn name(horizon: u32) -> String {
    match horizon {
        HORIZON_TICKS => "planner".to_string(),
        _ => format!("planner:{horizon}"),
    }
}

/// [`Error::OracleRefused`] where `scenario` shares GPUs: the planners price whole GPUs only.
pub(crate) fn refuse_shared_gpus(scenario: &Scenario) -> Result<()> {
    match scenario.nodes.iter().any(|n| n.gpu.as_ref().is_some_and(|g| g.sharing.is_shared())) {
        true => Err(Error::OracleRefused(format!(
            "`{}` shares GPUs; the planner plans on whole GPUs only",
            scenario.name
        ))),
        false => Ok(()),
    }
}

/// The forecast a planner plans on for the day of `seed`: another draw of the scenario's
/// traffic than the day scored, as rates laid out like [`crate::backend::Trace::rates_rps`],
/// with the number of user groups.
pub(super) fn forecast(scratch: &mut PlacementEnv, seed: u64) -> (Vec<f64>, usize) {
    scratch.reset(Rng::derive(seed, 0x706c_616e).next_u64());
    (scratch.trace().rates_rps.clone(), scratch.trace().groups)
}

/// The seat a one-move change of a service's class leaves and the seat it gains: the seat
/// `from` holds more replicas in than `to`, and the reverse (`None` where the two are equal).
pub(super) fn moved_seats(from: &[usize], to: &[usize]) -> Option<(usize, usize)> {
    let count = |x: &[usize], v: usize| x.iter().filter(|&&w| w == v).count();
    let surplus = |x: &[usize], y: &[usize]| x.iter().copied().find(|&v| count(x, v) > count(y, v));
    Some((surplus(from, to)?, surplus(to, from)?))
}

/// Of `moves` ((replica, node) pairs of one service, whose replicas are `mine`, all between
/// the same two seats), the action that spreads the service most: onto the node holding
/// fewest of its replicas, from the node holding most, then onto the node holding fewest
/// replicas at all. Replicas in one seat cost the same on any of its nodes, so the choice is
/// free in the planners' model, which cannot price a node failure; the first in node order
/// would pile a service, and on days that carry over the whole chain, onto one node.
pub(super) fn spreading_move(
    env: &PlacementEnv,
    mine: std::ops::Range<usize>,
    moves: impl Iterator<Item = (usize, usize)>,
) -> Option<usize> {
    let placement = env.placement();
    let (mut ours, mut all) = (vec![0usize; env.node_count()], vec![0usize; env.node_count()]);
    for (r, &n) in placement.iter().enumerate() {
        ours[n] += usize::from(mine.contains(&r));
        all[n] += 1;
    }
    moves
        .min_by_key(|&(r, n)| (ours[n], std::cmp::Reverse(ours[placement[r]]), all[n]))
        .map(|(r, n)| env.encode(Move { replica: r, node: n }))
}

/// Dynamic programming backwards over ticks `first..=last`: the cost of the cheapest path of
/// single moves from each class (being in it during `first`), where `next[i]` are the classes
/// one move from `i`, each move costs `move_cost`, and `prices[t][i]` (filled for those ticks)
/// is class `i`'s steady cost at tick `t` (infinite where it cannot be packed).
pub(super) fn cheapest_to_go(
    next: &[Vec<usize>],
    prices: &[Vec<f64>],
    first: u32,
    last: u32,
    move_cost: f64,
) -> Vec<f64> {
    let mut to_go = vec![0.0_f64; next.len()];
    let mut best_next = vec![0.0_f64; next.len()];
    for t in (first..=last).rev() {
        if t < last {
            for (i, next) in next.iter().enumerate() {
                best_next[i] = next.iter().fold(to_go[i], |best, &j| best.min(to_go[j] + move_cost));
            }
        }
        for (i, price) in prices[t as usize].iter().enumerate() {
            to_go[i] = price + if t < last { best_next[i] } else { 0.0 };
        }
    }
    to_go
}

impl Policy for PlannerPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn reset(&mut self, seed: u64) {
        (self.forecast, self.groups) = forecast(&mut self.scratch, seed);
        self.prices.clear();
    }

    fn act(&mut self, env: &PlacementEnv) -> usize {
        // It plans for the cluster it was built for; on another it has no classes to plan over.
        let (theirs, mine) = (env.scenario(), self.scratch.scenario());
        if !Arc::ptr_eq(theirs, mine) && theirs != mine {
            return GreedyPolicy.act(env);
        }
        let must_move = !env.action_mask()[0];
        let graph = self.graph(env.node_ready());
        let views = env.steady_views();
        let here = self.oracle.slots_of(&views).and_then(|slots| graph.index.get(&slots).copied());
        let last = (env.tick() + self.horizon).min(env.scenario().episode_ticks);
        let (Some(here), false) = (here, self.forecast.is_empty() || env.tick() >= last) else {
            return GreedyPolicy.act(env);
        };
        let move_cost = env.scenario().reward.move_cost;
        let to_go = self.costs_to_go(&graph, env.node_ready(), env.tick() + 1, last, move_cost);
        let keep = if must_move { f64::INFINITY } else { to_go[here] };
        let mut better: Vec<usize> =
            graph.next[here].iter().copied().filter(|&to| to_go[to] + move_cost < keep - 1e-12).collect();
        better.sort_by(|&a, &b| to_go[a].total_cmp(&to_go[b]));
        let from = &graph.configs[here].slots;
        better
            .iter()
            .find_map(|&to| self.action_between(env, &views, from, &graph.configs[to].slots))
            .unwrap_or_else(|| if must_move { GreedyPolicy.act(env) } else { 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::LookaheadPolicy;
    use crate::evaluate::run_policy;
    use crate::shipped;
    use crate::test_cluster::{busiest_node_fails_at_noon, random_states};

    fn planner(name: &str) -> PlannerPolicy {
        PlannerPolicy::new(shipped::load(name).unwrap(), HORIZON_TICKS).unwrap()
    }

    /// On a `gpu-small` tuning day without failures, the planner's paths of moves cost less
    /// than `lookahead`'s single weighed move, and both less than `greedy`.
    #[test]
    fn the_planner_costs_less_than_lookahead_on_a_gpu_small_day() {
        let mut env = PlacementEnv::new(shipped::load("gpu-small").unwrap()).unwrap();
        let days = [1_000_001];
        let greedy = run_policy(&mut env, &mut GreedyPolicy, &days, &mut |_, _| {}).unwrap();
        let lookahead =
            run_policy(&mut env, &mut LookaheadPolicy::new(HORIZON_TICKS), &days, &mut |_, _| {}).unwrap();
        let mut planner = planner("gpu-small");
        let row = run_policy(&mut env, &mut planner, &days, &mut |_, _| {}).unwrap();
        assert_eq!(row.policy, "planner");
        // Rewards are negative costs.
        assert!(
            row.reward > lookahead.reward && lookahead.reward > greedy.reward,
            "{row:?} {lookahead:?} {greedy:?}"
        );
        assert!(row.moves > lookahead.moves, "{row:?} against {lookahead:?}");
    }

    /// From random placements, and over a tuning day on which the node with the most replicas
    /// at the start fails at noon and replicas must be evacuated (stepping a masked action is
    /// an error), the planner only names allowed actions, and moves where a move is due:
    /// jointly on `gpu-small`, by service on `gpu-medium`.
    #[test]
    fn the_planner_stays_in_the_mask() {
        for name in ["gpu-small", "gpu-medium"] {
            let scenario = busiest_node_fails_at_noon(name);
            let mut env = PlacementEnv::new(scenario.clone()).unwrap();
            let mut planner = build(scenario, HORIZON_TICKS).unwrap();
            let row = run_policy(&mut env, planner.as_mut(), &[1_000_000], &mut |_, _| {}).unwrap();
            assert!(row.moves > 0.0, "{name}: {row:?}");
            let (mut states, mut moved) = (0, 0);
            random_states(&mut env, 0..40, |env, seed| {
                planner.reset(seed);
                let action = planner.act(env);
                assert!(env.action_mask()[action], "{name}, seed {seed}: action {action}");
                states += 1;
                moved += usize::from(action != 0);
            });
            assert!(states >= 30 && moved > 0, "{name}: {moved} moves of {states}");
        }
    }

    /// A move into a seat with two nodes goes to the one without a replica of the service,
    /// not the first in node order: carried over from day to day, taking the first piled the
    /// whole `gpu-small` chain onto `h100-a-1` until it failed (docs/results.md).
    #[test]
    fn a_move_spreads_the_service_over_the_nodes_of_a_seat() {
        let scenario = shipped::load("gpu-small").unwrap();
        let node = |name: &str| scenario.nodes.iter().position(|n| n.name == name).unwrap();
        let (h100_a, cpu_a) = (node("h100-a-1"), node("cpu-a-1"));
        assert!(h100_a < cpu_a, "the test needs the router's node first in node order");
        // Routers on `h100-a-1` and `cpu-b-1`, embeddings on `h100-a-1` and `l4-b-1`,
        // rerankers on `cpu-a-1` and `cpu-b-1`.
        let placement: Vec<usize> = ["h100-a-1", "cpu-b-1", "h100-a-1", "l4-b-1", "cpu-a-1", "cpu-b-1"]
            .iter()
            .map(|n| node(n))
            .collect();
        let mut env = PlacementEnv::new(scenario.clone()).unwrap();
        env.reset_placed(1, &placement).unwrap();
        let planner = planner("gpu-small");
        let views = env.steady_views();
        let from = planner.oracle.slots_of(&views).unwrap();
        // The second router joins the first in zone `eu-a`: its CPU seat has both nodes.
        let mut to = from.clone();
        to[..2].fill(planner.oracle.slot_of(0, &views[0]).unwrap());
        let action = planner.action_between(&env, &views, &from, &to).expect("a move");
        assert_eq!(env.decode(action).unwrap(), Move { replica: 1, node: cpu_a });
    }

    #[test]
    fn the_planner_refuses_clusters_the_oracle_cannot_search_or_shared_gpus() {
        for (name, why) in [("gpu-medium", "placement classes"), ("gpu-mig", "shares GPUs")] {
            match PlannerPolicy::new(shipped::load(name).unwrap(), HORIZON_TICKS) {
                Err(Error::OracleRefused(reason)) => assert!(reason.contains(why), "{name}: {reason}"),
                Err(e) => panic!("{name}: {e}"),
                Ok(_) => panic!("{name}: planned"),
            }
        }
        assert_eq!(planner("tiny").name(), "planner");
        assert_eq!(PlannerPolicy::new(shipped::load("tiny").unwrap(), 12).unwrap().name(), "planner:12");
    }

    /// `build` plans jointly where the oracle searches and one service at a time up to
    /// `gpu-medium`'s size; it refuses shared GPUs and a service with too many classes, naming
    /// the service.
    #[test]
    fn the_built_planner_plans_by_service_where_the_joint_search_is_too_large() {
        let medium = shipped::load("gpu-medium").unwrap();
        let mut env = PlacementEnv::new(medium.clone()).unwrap();
        let days = [1_000_000];
        let greedy = run_policy(&mut env, &mut GreedyPolicy, &days, &mut |_, _| {}).unwrap();
        let mut planner = build(medium, 24).unwrap();
        let row = run_policy(&mut env, planner.as_mut(), &days, &mut |_, _| {}).unwrap();
        assert_eq!(row.policy, "planner:24");
        assert!(row.reward > greedy.reward, "{row:?} against {greedy:?}");
        for (name, why) in [("gpu-large", "placement classes for service `"), ("gpu-mig", "shares GPUs")] {
            match build(shipped::load(name).unwrap(), HORIZON_TICKS) {
                Err(Error::OracleRefused(reason)) => assert!(reason.contains(why), "{name}: {reason}"),
                Err(e) => panic!("{name}: {e}"),
                Ok(_) => panic!("{name}: planned"),
            }
        }
        assert_eq!(build(shipped::load("tiny").unwrap(), HORIZON_TICKS).unwrap().name(), "planner");
    }
}
