//! The entity observation: the placement gym's state as sets of nodes, replicas and user
//! groups, each a row of features of fixed width, plus the relations between them (which
//! node a replica runs on, which zone a node or group is in). Nothing in a row depends on how
//! many nodes, replicas, groups or zones there are: every feature is a fraction, a flag or a
//! ratio, with no node-index one-hots and no absolute counts, so a network that reads rows
//! with shared weights acts on any cluster of the services it knows.
//!
//! The only per-scenario widths are per service (a one-hot of the replica's service, a
//! group's chain, whether a node can take each service): a model knows its services by name.
//! The flat vector of [`crate::PlacementEnv`] stays, for Q-learning and the flat networks.

use crate::PlacementEnv;
use crate::candidates::candidate_nodes;
use crate::gains::Gains;
use crate::gym::Env;
use crate::what_if::WhatIf;

/// Node features before the per-service block, in order.
pub const NODE_FEATURES: [&str; 9] = [
    "cpu_requested",    // CPU requested on the node (replicas and background) / allocatable
    "memory_requested", // memory requested / allocatable
    "gpus_taken",       // GPUs taken (whole or partly; shared: slots taken) / GPUs; 0 without
    "has_gpus",         // flag
    "gpu_free",         // flag: at least one whole GPU (or shared slot) free
    "ready",            // flag: the node is Ready
    "load",             // the highest utilisation ρ of the replicas on it, in [0, 1]
    "zone_demand",      // requests/s of the user groups in its zone / all requests/s
    "demand_rtt",       // mean RTT from the requests' zones to its zone / the SLO, capped at 1
];
/// Node features per service, after [`NODE_FEATURES`]: `fits` (flag: one more replica of
/// the service could move here now) and `time` (the service's time per request here, in the
/// slot it would take on shared GPUs, / the SLO, capped at 1; 0 where it cannot run).
pub const NODE_SERVICE_FEATURES: [&str; 2] = ["fits", "time"];

/// Replica features after the one-hot of its service, in order.
pub const REPLICA_FEATURES: [&str; 7] = [
    "cold_starting",  // flag: still starting at the end of the tick
    "node_not_ready", // flag: its node is NotReady (it is down)
    "utilisation",    // ρ of the replica in the tick, in [0, 1]
    "time",           // its time per request where it stands (its slot's) / the SLO, capped at 1
    "zone_demand",    // requests/s of the user groups in its node's zone / all requests/s
    "demand_rtt",     // mean RTT from the requests' zones to its node's zone / the SLO, capped at 1
    "zone_share",     // replicas of its service in its zone / replicas of its service
];

/// User-group features before the per-service chain flags, in order.
pub const GROUP_FEATURES: [&str; 2] = [
    "rate",       // requests/s now / the group's peak rate
    "rate_share", // requests/s now / all groups' requests/s
];

/// Global features, in order.
pub const GLOBAL_FEATURES: [&str; 5] = [
    "time_sin",             // (sin(2π t / day) + 1) / 2
    "time_cos",             // (cos(2π t / day) + 1) / 2
    "nodes_not_ready",      // NotReady nodes / nodes
    "replicas_unavailable", // replicas not serving / replicas
    "demand",               // requests/s now / the sum of the groups' peak rates
];

/// With gains ([`EntityObs::gains`]): node features per service after every service's
/// [`NODE_SERVICE_FEATURES`] ([`crate::gains`]; changes of the tick's steady cost, as
/// fractions of it, in [-1, 1]).
pub const NODE_GAIN_FEATURES: [&str; 1] = [
    "addition", // the change from one more replica of the service here (0 where none may move)
];
/// With gains: replica features after [`REPLICA_FEATURES`].
pub const REPLICA_GAIN_FEATURES: [&str; 3] = [
    "removal",            // the change from taking it away
    "best_move",          // removal plus the lowest addition over the nodes it may move to (1: none)
    "best_move_in_moves", // best_move's change of cost / a move's cost, in [-4, 4], / 4 (1: none)
];
/// With gains: global features after [`GLOBAL_FEATURES`].
pub const GLOBAL_GAIN_FEATURES: [&str; 3] = [
    "best_move",          // the lowest best_move of any replica
    "move_cost",          // the cost of a move / the tick's steady cost, capped at 1
    "best_move_in_moves", // the lowest best_move_in_moves of any replica
];

/// With spreading ([`EntityObs::spread`]): node features per service after the gain block.
/// Nodes of one zone and hardware score alike, so no cost change says which of them to use;
/// the planner spreads a service over them ([`crate::baselines::planner`]), and a policy that
/// learns from it must see where the service already stands.
pub const NODE_SPREAD_FEATURES: [&str; 1] = [
    "service_share", // replicas of the service on the node / replicas of the service
];
/// With spreading: replica features after the gain block.
pub const REPLICA_SPREAD_FEATURES: [&str; 1] = [
    "node_share", // replicas of its service on its node / replicas of its service
];

/// Features of one candidate move (replica, node), computed on demand by [`pair_features`].
pub const PAIR_FEATURES: [&str; 4] = [
    "allowed",     // flag: the mask allows the move now
    "same_zone",   // flag: the node is in the replica's current zone
    "speed",       // t_here / (t_here + t_there): 0.5 for alike hardware, above for faster
    "cost_change", // greedy's steady-state cost after the move / before, minus 1, in [-1, 1]
];

/// The entity observation of one state; row-major blocks, reused between calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityObs {
    /// Number of services (the per-service widths).
    pub services: usize,
    /// Whether rows carry the gain features ([`NODE_GAIN_FEATURES`] and the others): set by
    /// the caller before observing, as the model reading them was built.
    pub gains: bool,
    /// Whether rows carry the spreading features ([`NODE_SPREAD_FEATURES`],
    /// [`REPLICA_SPREAD_FEATURES`]): set by the caller, as the model was built.
    pub spread: bool,
    /// `nodes × node_width()`.
    pub nodes: Vec<f32>,
    /// `replicas × replica_width()`.
    pub replicas: Vec<f32>,
    /// `groups × group_width()`.
    pub groups: Vec<f32>,
    /// [`GLOBAL_FEATURES`].
    pub global: Vec<f32>,
    /// The node row each replica runs on: the edges of message passing.
    pub replica_node: Vec<u32>,
    /// The env's node of each node row, ascending: every node, or the candidates of
    /// [`observe_candidates`].
    pub node_ids: Vec<u32>,
    /// The zone of each node (zones are relations, not features).
    pub node_zone: Vec<u32>,
    /// The zone of each user group.
    pub group_zone: Vec<u32>,
    /// With gains, the action `greedy` takes in this state ([`crate::gains::Gains::greedy`]).
    pub greedy: Option<usize>,
}

impl EntityObs {
    /// Features per node.
    pub fn node_width(&self) -> usize {
        node_width(self.services, self.gains, self.spread)
    }

    /// Features per replica.
    pub fn replica_width(&self) -> usize {
        replica_width(self.services, self.gains, self.spread)
    }

    /// Features per user group.
    pub fn group_width(&self) -> usize {
        group_width(self.services)
    }

    /// Global features.
    pub fn global_width(&self) -> usize {
        global_width(self.gains)
    }
}

/// Features per node for `services` services, with or without the gain and spreading
/// features.
pub fn node_width(services: usize, gains: bool, spread: bool) -> usize {
    let per_service = NODE_SERVICE_FEATURES.len()
        + if gains { NODE_GAIN_FEATURES.len() } else { 0 }
        + if spread { NODE_SPREAD_FEATURES.len() } else { 0 };
    NODE_FEATURES.len() + per_service * services
}

/// Features per replica for `services` services, with or without the gain and spreading
/// features.
pub fn replica_width(services: usize, gains: bool, spread: bool) -> usize {
    services
        + REPLICA_FEATURES.len()
        + if gains { REPLICA_GAIN_FEATURES.len() } else { 0 }
        + if spread { REPLICA_SPREAD_FEATURES.len() } else { 0 }
}

/// Global features, with or without the gain features.
pub fn global_width(gains: bool) -> usize {
    GLOBAL_FEATURES.len() + if gains { GLOBAL_GAIN_FEATURES.len() } else { 0 }
}

/// Features per user group for `services` services.
pub fn group_width(services: usize) -> usize {
    GROUP_FEATURES.len() + services
}

/// Fills `out` with the entity observation of `env`'s current state, a row for every node.
pub fn observe(env: &PlacementEnv, out: &mut EntityObs) {
    observe_in(env, None, out);
}

/// Fills `out` with the entity observation of `env`'s current state with node rows for the
/// candidate nodes only ([`crate::candidates`]): the nodes replicas run on and, per service,
/// the `per_service` best places to move one to. The global features still count every node.
pub fn observe_candidates(env: &PlacementEnv, per_service: usize, out: &mut EntityObs) {
    observe_in(env, Some(per_service), out);
}

/// [`observe`] with every node, [`observe_candidates`] with `Some(per_service)`.
pub fn observe_in(env: &PlacementEnv, candidates: Option<usize>, out: &mut EntityObs) {
    observe_with(&mut WhatIf::new(env), candidates, out);
}

/// [`observe_in`] of the state `what_if` asks about; the moves its gains priced stay priced
/// for the caller's own questions.
pub fn observe_with(what_if: &mut WhatIf<'_>, candidates: Option<usize>, out: &mut EntityObs) {
    let env = what_if.env();
    let scenario = env.scenario();
    let (services, zones) = (scenario.services.len(), scenario.zones.len());
    let slo = scenario.slo_ms;
    let rates = env.current_rates();
    let total_rate: f64 = rates.iter().sum();
    let mut zone_demand = vec![0.0; zones];
    for (g, &rate) in scenario.user_groups.iter().zip(rates) {
        zone_demand[g.zone] += if total_rate > 0.0 { rate / total_rate } else { 0.0 };
    }
    // How far, on average over the requests now, each zone is from where they come from.
    let demand_rtt: Vec<f32> = (0..zones)
        .map(|z| {
            let rtt: f64 = scenario
                .user_groups
                .iter()
                .zip(rates)
                .map(|(g, &rate)| rate * scenario.rtt_ms[g.zone][z])
                .sum();
            if total_rate > 0.0 { ratio(rtt / total_rate, slo) } else { 0.0 }
        })
        .collect();
    let placement = env.placement();
    let utilisation = env.replica_utilisation();
    let load = env.node_load();
    let mut gains = Gains::default();
    if out.gains {
        crate::gains::gains_of(what_if, &mut gains);
    }
    out.greedy = out.gains.then_some(gains.greedy);
    out.services = services;
    match candidates {
        Some(per_service) => {
            candidate_nodes(env, per_service, &demand_rtt, &mut out.node_ids);
            if !leaves_an_action_open(env, &out.node_ids) {
                out.node_ids.clear();
                out.node_ids.extend(0..scenario.nodes.len() as u32);
            }
        }
        None => {
            out.node_ids.clear();
            out.node_ids.extend(0..scenario.nodes.len() as u32);
        }
    }
    let mut row_of = vec![u32::MAX; scenario.nodes.len()];
    for (row, &n) in out.node_ids.iter().enumerate() {
        row_of[n as usize] = row as u32;
    }
    out.node_zone.clear();
    out.node_zone.extend(out.node_ids.iter().map(|&n| scenario.nodes[n as usize].zone as u32));
    out.group_zone.clear();
    out.group_zone.extend(scenario.user_groups.iter().map(|g| g.zone as u32));
    out.replica_node.clear();
    out.replica_node.extend(placement.iter().map(|&n| row_of[n]));

    let services_of = env.replica_service();
    let share_of = |s: usize, count: u32| ratio(f64::from(count), f64::from(scenario.services[s].replicas));
    // Replicas of each service on each node (`n × services + s`), for the spreading features.
    let mut on_node = Vec::new();
    if out.spread {
        on_node.resize(scenario.nodes.len() * services, 0u32);
        for (r, &n) in placement.iter().enumerate() {
            on_node[n * services + services_of[r]] += 1;
        }
    }

    out.nodes.clear();
    let view = env.cluster_view();
    for &n in &out.node_ids {
        let n = n as usize;
        let node = &scenario.nodes[n];
        let u = &env.usage()[n];
        let taken = u.gpu_fraction(node.gpu.as_ref());
        let has_gpus = node.gpu.is_some();
        out.nodes.extend([
            ratio(u.cpu_millicores as f64, node.allocatable.cpu_millicores as f64),
            ratio(u.memory_mib as f64, node.allocatable.memory_mib as f64),
            taken.clamp(0.0, 1.0) as f32,
            flag(has_gpus),
            flag(has_gpus && taken < 1.0),
            flag(env.node_ready()[n]),
            load[n].clamp(0.0, 1.0) as f32,
            zone_demand[node.zone] as f32,
            demand_rtt[node.zone],
        ]);
        for s in 0..services {
            let time = env.time_if_placed(s, n);
            out.nodes.extend([flag(view.fits(s, n)), time.map_or(0.0, |t| ratio(t, slo))]);
        }
        if out.gains {
            out.nodes.extend((0..services).map(|s| gains.addition[s * scenario.nodes.len() + n]));
        }
        if out.spread {
            out.nodes.extend((0..services).map(|s| share_of(s, on_node[n * services + s])));
        }
    }

    out.replicas.clear();
    let mut in_zone = vec![0u32; services * zones];
    for (r, &n) in placement.iter().enumerate() {
        in_zone[services_of[r] * zones + scenario.nodes[n].zone] += 1;
    }
    let times: Vec<f64> = env.service_times_ms().collect();
    for ((r, &n), cold) in placement.iter().enumerate().zip(env.cold_starting()) {
        let s = services_of[r];
        let zone = scenario.nodes[n].zone;
        out.replicas.extend((0..services).map(|i| flag(i == s)));
        out.replicas.extend([
            flag(cold),
            flag(!env.node_ready()[n]),
            utilisation.get(r).copied().unwrap_or(0.0).clamp(0.0, 1.0) as f32,
            ratio(times[r], slo),
            zone_demand[zone] as f32,
            demand_rtt[zone],
            share_of(s, in_zone[s * zones + zone]),
        ]);
        if out.gains {
            out.replicas.extend([gains.removal[r], gains.best_move[r], gains.best_move_in_moves[r]]);
        }
        if out.spread {
            out.replicas.push(share_of(s, on_node[n * services + s]));
        }
    }

    out.groups.clear();
    let mut peak_total = 0.0;
    for (g, &rate) in scenario.user_groups.iter().zip(rates) {
        let peak = g.rate.peak();
        peak_total += peak;
        out.groups.extend([ratio(rate, peak), ratio(rate, total_rate)]);
        out.groups.extend((0..services).map(|s| flag(g.chain.contains(&s))));
    }

    let [sin, cos] = env.time_of_day();
    let info = env.info();
    out.global.clear();
    out.global.extend([
        sin,
        cos,
        ratio(f64::from(info.nodes_not_ready), scenario.nodes.len() as f64),
        ratio(f64::from(info.unavailable_replicas), placement.len() as f64),
        ratio(total_rate, peak_total),
    ]);
    if out.gains {
        out.global.extend([gains.best(), gains.move_cost, gains.best_in_moves()]);
    }
}

/// Whether keeping, or moving some replica to one of `rows`, is allowed now: a network that
/// sees only those nodes must have something to choose (evacuating a failed node forbids
/// keeping, and the candidates need not hold an open target; then every node is a row).
fn leaves_an_action_open(env: &PlacementEnv, rows: &[u32]) -> bool {
    let mask = env.action_mask();
    let nodes = env.node_count();
    mask[0] || (0..env.placement().len()).any(|r| rows.iter().any(|&n| mask[1 + r * nodes + n as usize]))
}

/// [`PAIR_FEATURES`] of moving replica `r` to node `n`. The cost change is what `greedy`
/// scores (one routing of the cluster), so a caller asks for a few candidates per replica.
pub fn pair_features(env: &PlacementEnv, r: usize, n: usize) -> [f32; 4] {
    let scenario = env.scenario();
    let s = env.replica_service()[r];
    let here = env.placement()[r];
    let action = env.encode(crate::Move { replica: r, node: n });
    let allowed = env.action_mask().get(action).copied().unwrap_or(false);
    let t_here = env.service_times_ms().nth(r).filter(|t| t.is_finite());
    let speed = match (t_here, env.time_if_placed(s, n)) {
        (Some(t_here), Some(t_there)) => (t_here / (t_here + t_there)) as f32,
        _ => 0.0,
    };
    let cost_change = if allowed {
        let before = env.steady_cost(None).cost;
        crate::gains::relative(before, env.steady_cost(Some(crate::Move { replica: r, node: n })).cost)
    } else {
        0.0
    };
    [flag(allowed), flag(scenario.nodes[n].zone == scenario.nodes[here].zone), speed, cost_change]
}

/// `a / b` in [0, 1] as f32; 0 when `b` is 0.
fn ratio(a: f64, b: f64) -> f32 {
    if b > 0.0 { (a / b).clamp(0.0, 1.0) as f32 } else { 0.0 }
}

fn flag(on: bool) -> f32 {
    if on { 1.0 } else { 0.0 }
}
