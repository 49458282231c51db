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
//! it must evacuate it takes the cheapest planned evacuation. It plans where the oracle
//! searches (`tiny`, `gpu-small`), on whole GPUs.

use std::collections::HashMap;
use std::sync::Arc;

use berth_core::{Rng, Scenario};

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
        if scenario.nodes.iter().any(|n| n.gpu.as_ref().is_some_and(|g| g.sharing.is_shared())) {
            return Err(Error::OracleRefused(format!(
                "`{}` shares GPUs; the planner plans on whole GPUs only",
                scenario.name
            )));
        }
        let horizon = horizon.clamp(1, super::lookahead::MAX_HORIZON_TICKS);
        let name = match horizon {
            HORIZON_TICKS => "planner".to_string(),
            _ => format!("planner:{horizon}"),
        };
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
        let mut to_go = vec![0.0_f64; graph.configs.len()];
        let mut best_next = vec![0.0_f64; graph.configs.len()];
        for t in (first..=last).rev() {
            if t < last {
                for (i, next) in graph.next.iter().enumerate() {
                    best_next[i] = next.iter().fold(to_go[i], |best, &j| best.min(to_go[j] + move_cost));
                }
            }
            let priced = &mut prices[t as usize];
            if priced.is_empty() {
                let start = t as usize * self.groups;
                let rates = &self.forecast[start..start + self.groups];
                *priced = graph.configs.iter().map(|config| self.oracle.cost_of(config, rates)).collect();
            }
            for (i, price) in priced.iter().enumerate() {
                to_go[i] = price + if t < last { best_next[i] } else { 0.0 };
            }
        }
        to_go
    }

    /// The action that takes one replica of `env` from class `from` to class `to` (one move
    /// apart): a replica in the seat `from` has and `to` has not, onto an allowed node of the
    /// seat `to` gains, the first such in replica and node order. `views` are `env`'s steady
    /// views.
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
            let count = |x: &[usize], v: usize| x.iter().filter(|&&w| w == v).count();
            let surplus = |x: &[usize], y: &[usize]| x.iter().copied().find(|&v| count(x, v) > count(y, v));
            let (leaves, gains) = (surplus(a, b)?, surplus(b, a)?);
            let (zone, time) = self.oracle.seat(s, gains)?;
            let replicas = (start..start + k).filter(|&r| self.oracle.slot_of(s, &views[r]) == Some(leaves));
            return replicas.flat_map(|r| (0..env.node_count()).map(move |n| (r, n))).find_map(|(r, n)| {
                let action = env.encode(Move { replica: r, node: n });
                let view = env.view_on(r, n);
                let seat = view.up && view.zone == zone && view.service_time_ms == time;
                (seat && env.action_mask()[action]).then_some(action)
            });
        }
        None
    }
}

impl Policy for PlannerPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn reset(&mut self, seed: u64) {
        // The forecast: another draw of the scenario's traffic than the day scored.
        self.scratch.reset(Rng::derive(seed, 0x706c_616e).next_u64());
        self.forecast.clone_from(&self.scratch.trace().rates_rps);
        self.groups = self.scratch.trace().groups;
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
    use crate::test_cluster::random_states;

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

    /// From random `gpu-small` placements, and over a tuning day on which nodes fail and
    /// replicas must be evacuated (stepping a masked action is an error), the planner only
    /// names allowed actions, and moves where a move is due.
    #[test]
    fn the_planner_stays_in_the_mask() {
        let mut env = PlacementEnv::new(shipped::load("gpu-small").unwrap()).unwrap();
        let mut planner = planner("gpu-small");
        let row = run_policy(&mut env, &mut planner, &[1_000_000], &mut |_, _| {}).unwrap();
        assert!(row.moves > 0.0, "{row:?}");
        let (mut states, mut moved) = (0, 0);
        random_states(&mut env, 0..40, |env, seed| {
            planner.reset(seed);
            let action = planner.act(env);
            assert!(env.action_mask()[action], "seed {seed}: action {action}");
            states += 1;
            moved += usize::from(action != 0);
        });
        assert!(states >= 30 && moved > 0, "{moved} moves of {states}");
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
}
