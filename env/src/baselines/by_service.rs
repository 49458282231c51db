//! `planner` where the joint search is too large: one service at a time. On `gpu-medium` the
//! oracle's placement classes number 13.6 million, but per service they are few (924 for six
//! embedding replicas over six seats). So each tick this planner runs the planner's dynamic
//! programming ([`super::planner`]) for each service alone, over the classes of that service's
//! replicas with every other replica held where it stands, and takes the first move of the
//! path that saves most against keeping, over all services. A class counts only where its
//! seats have room on the Ready nodes beside the replicas held. This is one round of
//! coordinate descent: it misses a path that pays only when two services move (the chain
//! moved to another zone together, or one freeing room for the other), which the joint
//! planner finds; so where the oracle searches, [`super::planner::build`] plans jointly.
//!
//! Replicas of a service in one seat cost the same on any of its nodes, so the node a move
//! takes is free to choose: it is the one with the fewest replicas of that service, and the
//! replica moved is one from the node with the most. That spreads a service over the nodes
//! of a seat at no cost in the model, which cannot price what a node failure would cost.

use std::sync::Arc;

use berth_core::Scenario;

use super::planner::{cheapest_to_go, forecast, moved_seats, refuse_shared_gpus, spreading_move};
pub use super::service_classes::MAX_SERVICE_CLASSES;
use super::service_classes::ServiceClasses;
use super::{GreedyPolicy, Policy};
use crate::PlacementEnv;
use crate::cost::{CostModel, ReplicaView, RoutingTable, Scratch};
use crate::error::Result;
use crate::gym::Env;
use crate::placement_env::Move;

/// What one placement of the cluster (node states and where every replica stands) fixes for
/// planning: per service, which of its classes fit beside the others, and their prices.
struct Context {
    placement: Vec<usize>,
    ready: Vec<bool>,
    services: Vec<Priced>,
}

/// One service's classes as priced with the others held. A class's price depends only on the
/// Ready nodes and the other services' classes, so a move of the service itself, or of a
/// replica within its seat, keeps its prices (what makes the planner a bearable teacher: the
/// student moves often).
struct Priced {
    /// The class the service is in now.
    here: usize,
    /// The other services' classes (`usize::MAX` in this service's place) and the Ready
    /// nodes the prices hold for, with the classes that fit.
    others: Vec<usize>,
    ready: Vec<bool>,
    fits: Vec<bool>,
    tables: Vec<Option<RoutingTable>>,
    /// Per forecast tick, each class's steady cost (empty until first asked).
    prices: Vec<Vec<f64>>,
}

/// The planner's dynamic programming for one service at a time, the others held.
pub struct ServicePlannerPolicy {
    name: String,
    horizon: u32,
    model: CostModel,
    services: Vec<ServiceClasses>,
    forecast: Vec<f64>,
    groups: usize,
    context: Option<Context>,
    cost_scratch: Scratch,
    scratch: PlacementEnv,
}

impl ServicePlannerPolicy {
    /// A per-service planner over `horizon` ticks (clamped as the planner's) named `name`,
    /// for `scenario`; refused, saying why, where its GPUs are shared or a service has more
    /// than [`MAX_SERVICE_CLASSES`] classes.
    pub fn new(scenario: Arc<Scenario>, name: String, horizon: u32) -> Result<Self> {
        refuse_shared_gpus(&scenario)?;
        Ok(Self {
            name,
            horizon: horizon.clamp(1, super::lookahead::MAX_HORIZON_TICKS),
            model: CostModel::new(&scenario),
            services: ServiceClasses::all(&scenario)?,
            forecast: Vec::new(),
            groups: 0,
            context: None,
            cost_scratch: Scratch::default(),
            scratch: PlacementEnv::new(scenario)?,
        })
    }

    /// The planning context of `env`'s placement, built again when it changed, with each
    /// service's prices kept where its key (Ready nodes, other classes, fitting classes) holds.
    fn refresh(&mut self, env: &PlacementEnv) {
        let same = self
            .context
            .as_ref()
            .is_some_and(|c| c.placement == env.placement() && c.ready == env.node_ready());
        if same {
            return;
        }
        let ticks = self.forecast.len() / self.groups.max(1);
        let heres: Vec<usize> = self.services.iter().map(|svc| svc.class_of(env)).collect();
        let mut before = self.context.take().map(|c| c.services).unwrap_or_default().into_iter();
        let services = heres
            .iter()
            .enumerate()
            .map(|(s, &here)| {
                let mut others = heres.clone();
                others[s] = usize::MAX;
                let fits = self.services[s].fitting(env, here);
                match before.next() {
                    Some(p) if p.others == others && p.ready == env.node_ready() && p.fits == fits => {
                        Priced { here, ..p }
                    }
                    _ => Priced {
                        here,
                        others,
                        ready: env.node_ready().to_vec(),
                        fits,
                        tables: vec![None; self.services[s].classes.len()],
                        prices: vec![Vec::new(); ticks],
                    },
                }
            })
            .collect();
        self.context =
            Some(Context { placement: env.placement().to_vec(), ready: env.node_ready().to_vec(), services });
    }

    /// Service `s`'s cost to go from each class over ticks `first..=last`, pricing each class
    /// with the other replicas as `views` has them.
    fn costs_to_go(
        &mut self,
        views: &[ReplicaView],
        s: usize,
        first: u32,
        last: u32,
        move_cost: f64,
    ) -> Vec<f64> {
        let svc = &self.services[s];
        let priced = &mut self.context.as_mut().expect("refreshed").services[s];
        // Copied once, and only where a tick is still to be priced.
        let mut copy: Option<Vec<ReplicaView>> = None;
        for t in first..=last {
            if !priced.prices[t as usize].is_empty() {
                continue;
            }
            let views = copy.get_or_insert_with(|| views.to_vec());
            let start = t as usize * self.groups;
            let rates = &self.forecast[start..start + self.groups];
            let mut prices = vec![f64::INFINITY; svc.classes.len()];
            for c in (0..svc.classes.len()).filter(|&c| priced.fits[c]) {
                svc.place_views(views, c);
                let table = priced.tables[c].get_or_insert_with(|| {
                    let mut table = RoutingTable::default();
                    self.model.route(views, &mut table);
                    table
                });
                prices[c] = self.model.evaluate(views, table, rates, &mut self.cost_scratch).cost;
            }
            priced.prices[t as usize] = prices;
        }
        cheapest_to_go(&svc.next, &priced.prices, first, last, move_cost)
    }

    /// The action that moves a replica of `s` from the seat class `from` has more of to the
    /// seat `to` has more of: from the node holding most of `s`'s replicas in that seat, to
    /// the allowed node of the other seat holding fewest (then fewest replicas at all).
    fn action_between(&self, env: &PlacementEnv, s: usize, from: usize, to: usize) -> Option<usize> {
        let svc = &self.services[s];
        let (a, b) = (&svc.classes[from], &svc.classes[to]);
        let (leaves, gains) = moved_seats(a, b)?;
        let (placement, mask) = (env.placement(), env.action_mask());
        let moves = svc
            .replicas()
            .filter(|&r| svc.seat_on(env, placement[r]) == leaves)
            .flat_map(|r| (0..env.node_count()).map(move |n| (r, n)))
            .filter(|&(r, n)| {
                svc.node_seat[n] == Some(gains) && mask[env.encode(Move { replica: r, node: n })]
            });
        spreading_move(env, svc.replicas(), moves)
    }
}

impl Policy for ServicePlannerPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn reset(&mut self, seed: u64) {
        (self.forecast, self.groups) = forecast(&mut self.scratch, seed);
        self.context = None;
    }

    fn act(&mut self, env: &PlacementEnv) -> usize {
        let (theirs, mine) = (env.scenario(), self.scratch.scenario());
        if !Arc::ptr_eq(theirs, mine) && theirs != mine {
            return GreedyPolicy.act(env);
        }
        let last = (env.tick() + self.horizon).min(env.scenario().episode_ticks);
        if self.forecast.is_empty() || env.tick() >= last {
            return GreedyPolicy.act(env);
        }
        let must_move = !env.action_mask()[0];
        let move_cost = env.scenario().reward.move_cost;
        self.refresh(env);
        let views = env.steady_views();
        // Every service's moves that its plan prefers to keeping, by what they save.
        let mut better = Vec::new();
        for s in 0..self.services.len() {
            let to_go = self.costs_to_go(&views, s, env.tick() + 1, last, move_cost);
            let here = self.context.as_ref().expect("refreshed").services[s].here;
            let keep = if must_move { f64::INFINITY } else { to_go[here] };
            for &to in &self.services[s].next[here] {
                let value = to_go[to] + move_cost;
                if value < keep - 1e-12 {
                    // Where keeping is ruled out, by what the path costs; else by what it saves.
                    better.push((if keep.is_finite() { value - keep } else { value }, s, here, to));
                }
            }
        }
        better.sort_by(|a, b| a.0.total_cmp(&b.0));
        better
            .iter()
            .find_map(|&(_, s, from, to)| self.action_between(env, s, from, to))
            .unwrap_or_else(|| if must_move { GreedyPolicy.act(env) } else { 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shipped;

    /// A move between two seats takes a replica from the node holding most of its service in
    /// the seat it leaves, to a node of the seat it gains holding none of that service.
    #[test]
    fn a_move_spreads_the_service_over_the_nodes_of_a_seat() {
        let scenario = shipped::load("gpu-medium").unwrap();
        let mut env = PlacementEnv::new(scenario.clone()).unwrap();
        let node = |name: &str| scenario.nodes.iter().position(|n| n.name == name).unwrap();
        let planner = ServicePlannerPolicy::new(scenario.clone(), "planner".into(), 48).unwrap();
        let rerank = 2;
        let svc = &planner.services[rerank];
        let (eu_a, eu_b) =
            (svc.node_seat[node("cpu-eu-a-1")].unwrap(), svc.node_seat[node("cpu-eu-b-1")].unwrap());
        // The first node of the eu-b seat, in node order: a move in order would go there.
        let first_eu_b = (0..scenario.nodes.len()).find(|&n| svc.node_seat[n] == Some(eu_b)).unwrap();
        // Routers on CPU nodes, embeddings on GPUs; the first reranker alone on `cpu-eu-a-2`,
        // the next two on `cpu-eu-a-1`, the fourth on the first eu-b node.
        let mut placement: Vec<usize> = [
            "cpu-eu-a-3",
            "cpu-eu-a-4",
            "cpu-us-a-2",
            "cpu-us-b-2",
            "h100-eu-a-1",
            "h100-eu-a-1",
            "l4-eu-a-1",
            "h100-us-a-1",
            "l4-us-a-1",
            "l4-us-b-1",
            "cpu-eu-a-2",
            "cpu-eu-a-1",
            "cpu-eu-a-1",
            "cpu-eu-b-1",
            "cpu-us-a-1",
            "cpu-us-b-1",
        ]
        .iter()
        .map(|n| node(n))
        .collect();
        placement[13] = first_eu_b;
        env.reset_placed(1, &placement).unwrap();
        let from = svc.class_of(&env);
        let mut seats = svc.classes[from].clone();
        *seats.iter_mut().find(|s| **s == eu_a).unwrap() = eu_b;
        seats.sort_unstable();
        let action = planner.action_between(&env, rerank, from, svc.index[&seats]).expect("a move");
        let Move { replica, node: to } = env.decode(action).unwrap();
        assert_eq!(
            placement[replica],
            node("cpu-eu-a-1"),
            "moved from {}",
            scenario.nodes[placement[replica]].name
        );
        assert_eq!(svc.node_seat[to], Some(eu_b));
        assert_ne!(to, first_eu_b, "onto the eu-b node that already holds a reranker");
    }
}
