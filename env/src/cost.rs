//! The cost model: where each user group's requests go, how long they wait, how many miss
//! the SLO, and the reward.
//!
//! Requests of a user group enter the first service of its chain from the group's zone and
//! travel the chain; at each hop the routing policy splits the caller zone's flow over the
//! available replicas. Each replica is an M/M/1 queue: with arrival rate λ and mean service
//! time S its utilisation is ρ = λS and its mean sojourn time W = S / (1 - ρ). A replica
//! with ρ ≥ 1 (or W beyond the timeout) is saturated: requests through it time out.
//!
//! The work is split in two so a step stays cheap on large clusters:
//! [`CostModel::route`] depends only on which replicas are available where (it changes on
//! moves, failures and cold starts), and [`CostModel::evaluate`] applies one tick's rates to
//! a [`RoutingTable`] in O(replicas + groups·services·zones).
//!
//! Routing is kept at zone level: every policy sends a caller zone's flow to replicas in
//! proportion to a per-replica weight ω (1, or the replica's speed for `least_latency`)
//! times a factor that depends only on the caller and replica zones. So the visits of a
//! group's requests to a replica are `ω_r · visit[g][s][zone(r)]`.
//!
//! Latency of a request of group g is modelled as `rtt_g + Exp(mean Q_g)` where `rtt_g` is
//! the expected network time of its path and `Q_g` the expected time in the queues it
//! visits (exact for one M/M/1 hop). Requests that meet a saturated replica, or a service
//! with no available replica, take `timeout_ms` and miss the SLO.

use berth_core::{Routing, Scenario};

/// Target of the p95 estimate.
const TAIL: f64 = 0.05;
/// `ln(1 / TAIL)`: the p95 of an exponential in units of its mean.
const LN_INV_TAIL: f64 = 2.995_732_273_553_991;

/// One replica as the cost model sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaView {
    /// Service index.
    pub service: usize,
    /// Zone of the node it runs on.
    pub zone: usize,
    /// Mean service time on that node's hardware, ms.
    pub service_time_ms: f64,
    /// Whether it serves requests this tick.
    pub up: bool,
}

/// Metrics of one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TickMetrics {
    /// Mean end-to-end latency of a request, ms.
    pub mean_latency_ms: f64,
    /// Rate-weighted mean over user groups of each group's 95th-percentile latency, ms.
    pub p95_latency_ms: f64,
    /// Fraction of requests over the SLO (including timeouts).
    pub slo_miss: f64,
    /// Requests per second offered by all user groups.
    pub offered_rps: f64,
    /// `mean latency / SLO + violation weight * SLO miss`: the reward's cost, before moves.
    pub cost: f64,
}

impl TickMetrics {
    /// `a * (1 - f) + b * f`, field by field: a tick where some replicas were ready for
    /// part of it.
    pub fn blend(a: &Self, b: &Self, f: f64) -> Self {
        let mix = |x: f64, y: f64| x * (1.0 - f) + y * f;
        Self {
            mean_latency_ms: mix(a.mean_latency_ms, b.mean_latency_ms),
            p95_latency_ms: mix(a.p95_latency_ms, b.p95_latency_ms),
            slo_miss: mix(a.slo_miss, b.slo_miss),
            offered_rps: mix(a.offered_rps, b.offered_rps),
            cost: mix(a.cost, b.cost),
        }
    }
}

/// Where requests go for one set of available replicas (independent of the rates).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutingTable {
    /// Per replica routing weight ω (0 when not up).
    pub weight: Vec<f64>,
    /// `visit[(g * S + s) * Z + z]`: expected visits per request of group g to each unit of
    /// weight of service s in zone z.
    pub visit: Vec<f64>,
    /// Expected network round-trip time of a request of each group, ms.
    pub rtt_ms: Vec<f64>,
    /// Fraction of each group's requests that reach a service with no available replica.
    pub unserved: Vec<f64>,
    /// Working memory of `route`: weight per (service, zone), and zone flows.
    present: Vec<f64>,
    flow: Vec<f64>,
    next: Vec<f64>,
}

/// Per-tick working memory, reused between ticks.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    load: Vec<f64>,
    mean_wait: Vec<f64>,
    queue_wait: Vec<f64>,
    saturated: Vec<f64>,
    /// Utilisation ρ of each replica in the last evaluation (0 when not up), clamped to 1.
    pub utilisation: Vec<f64>,
}

/// The static part of the model: zones, RTTs, chains, routing policy, SLO and weights.
#[derive(Debug, Clone)]
pub struct CostModel {
    zones: usize,
    services: usize,
    rtt: Vec<f64>,
    routing: Routing,
    group_zone: Vec<usize>,
    chains: Vec<Vec<usize>>,
    slo_ms: f64,
    timeout_ms: f64,
    violation_weight: f64,
}

impl CostModel {
    /// The model of a scenario.
    pub fn new(scenario: &Scenario) -> Self {
        let zones = scenario.zones.len();
        Self {
            zones,
            services: scenario.services.len(),
            rtt: scenario.rtt_ms.iter().flatten().copied().collect(),
            routing: scenario.routing,
            group_zone: scenario.user_groups.iter().map(|g| g.zone).collect(),
            chains: scenario.user_groups.iter().map(|g| g.chain.clone()).collect(),
            slo_ms: scenario.slo_ms,
            timeout_ms: scenario.timeout_ms,
            violation_weight: scenario.reward.violation,
        }
    }

    fn groups(&self) -> usize {
        self.group_zone.len()
    }

    /// Computes where requests go with these replicas; `table` is overwritten.
    pub fn route(&self, replicas: &[ReplicaView], table: &mut RoutingTable) {
        let (zn, sn, gn) = (self.zones, self.services, self.groups());
        table.weight.clear();
        table.weight.extend(replicas.iter().map(|r| match (r.up, self.routing) {
            (false, _) => 0.0,
            (true, Routing::LeastLatency) => 1.0 / r.service_time_ms,
            (true, _) => 1.0,
        }));
        // Available weight per service and zone.
        let mut present = std::mem::take(&mut table.present);
        present.clear();
        present.resize(sn * zn, 0.0);
        for (r, w) in replicas.iter().zip(&table.weight) {
            present[r.service * zn + r.zone] += w;
        }
        table.visit.clear();
        table.visit.resize(gn * sn * zn, 0.0);
        table.rtt_ms.clear();
        table.rtt_ms.resize(gn, 0.0);
        table.unserved.clear();
        table.unserved.resize(gn, 0.0);
        let (mut flow, mut next) = (std::mem::take(&mut table.flow), std::mem::take(&mut table.next));
        flow.resize(zn, 0.0);
        next.resize(zn, 0.0);
        for g in 0..gn {
            flow.fill(0.0);
            flow[self.group_zone[g]] = 1.0;
            for &s in &self.chains[g] {
                let here = &present[s * zn..(s + 1) * zn];
                let total: f64 = here.iter().sum();
                if total <= 0.0 {
                    table.unserved[g] += flow.iter().sum::<f64>();
                    break;
                }
                next.fill(0.0);
                let visit = &mut table.visit[(g * sn + s) * zn..(g * sn + s + 1) * zn];
                for caller in 0..zn {
                    let f = flow[caller];
                    if f <= 0.0 {
                        continue;
                    }
                    let target = match self.routing {
                        Routing::Uniform => None,
                        Routing::TopologyAware => (here[caller] > 0.0).then_some(caller),
                        Routing::LeastLatency => (0..zn)
                            .filter(|&z| here[z] > 0.0)
                            .min_by(|&a, &b| self.rtt[caller * zn + a].total_cmp(&self.rtt[caller * zn + b])),
                    };
                    match target {
                        Some(z) => {
                            visit[z] += f / here[z];
                            next[z] += f;
                            table.rtt_ms[g] += f * self.rtt[caller * zn + z];
                        }
                        None => {
                            for z in 0..zn {
                                if here[z] > 0.0 {
                                    let share = f / total;
                                    visit[z] += share;
                                    let to_zone = share * here[z];
                                    next[z] += to_zone;
                                    table.rtt_ms[g] += to_zone * self.rtt[caller * zn + z];
                                }
                            }
                        }
                    }
                }
                std::mem::swap(&mut flow, &mut next);
            }
        }
        (table.present, table.flow, table.next) = (present, flow, next);
    }

    /// Scores one tick: `rates_rps[g]` is the request rate of each user group.
    pub fn evaluate(
        &self,
        replicas: &[ReplicaView],
        table: &RoutingTable,
        rates_rps: &[f64],
        scratch: &mut Scratch,
    ) -> TickMetrics {
        let (zn, sn) = (self.zones, self.services);
        let cells = sn * zn;
        for buf in
            [&mut scratch.load, &mut scratch.mean_wait, &mut scratch.queue_wait, &mut scratch.saturated]
        {
            buf.clear();
            buf.resize(cells, 0.0);
        }
        // Arrivals per unit of weight, per service and zone (requests per ms).
        for (g, &rate) in rates_rps.iter().enumerate() {
            let per_ms = rate / 1000.0;
            if per_ms == 0.0 {
                continue;
            }
            let visits = &table.visit[g * cells..(g + 1) * cells];
            for (load, v) in scratch.load.iter_mut().zip(visits) {
                *load += per_ms * v;
            }
        }
        scratch.utilisation.clear();
        scratch.utilisation.resize(replicas.len(), 0.0);
        for (r, rep) in replicas.iter().enumerate() {
            let w = table.weight[r];
            if w == 0.0 {
                continue;
            }
            let cell = rep.service * zn + rep.zone;
            let rho = w * scratch.load[cell] * rep.service_time_ms;
            scratch.utilisation[r] = rho.min(1.0);
            let sojourn = if rho < 1.0 { rep.service_time_ms / (1.0 - rho) } else { f64::INFINITY };
            if sojourn < self.timeout_ms {
                scratch.mean_wait[cell] += w * sojourn;
                scratch.queue_wait[cell] += w * sojourn;
            } else {
                scratch.mean_wait[cell] += w * self.timeout_ms;
                scratch.saturated[cell] += w;
            }
        }
        let (mut offered, mut latency, mut miss, mut p95) = (0.0, 0.0, 0.0, 0.0);
        for (g, &rate) in rates_rps.iter().enumerate() {
            if rate <= 0.0 {
                continue;
            }
            let visits = &table.visit[g * cells..(g + 1) * cells];
            let (mut wait, mut queue, mut sat_visits) = (0.0, 0.0, 0.0);
            let cellwise = scratch.mean_wait.iter().zip(&scratch.queue_wait).zip(&scratch.saturated);
            for (&v, ((&w, &q), &x)) in visits.iter().zip(cellwise) {
                if v != 0.0 {
                    wait += v * w;
                    queue += v * q;
                    sat_visits += v * x;
                }
            }
            let rtt = table.rtt_ms[g];
            let unserved = table.unserved[g];
            let mean = (rtt + wait + unserved * self.timeout_ms).min(self.timeout_ms);
            let bad = 1.0 - (1.0 - unserved) * (1.0 - sat_visits.min(1.0));
            let group_miss = bad + (1.0 - bad) * self.tail(rtt, queue, self.slo_ms);
            let group_p95 = if bad >= TAIL {
                self.timeout_ms
            } else {
                // ln(1 / TAIL) when nothing times out, the common case: no logarithm needed.
                let quantile = if bad == 0.0 { LN_INV_TAIL } else { ((1.0 - bad) / (TAIL - bad)).ln() };
                (rtt + queue * quantile).min(self.timeout_ms)
            };
            offered += rate;
            latency += rate * mean;
            miss += rate * group_miss;
            p95 += rate * group_p95;
        }
        if offered == 0.0 {
            return TickMetrics::default();
        }
        let mean_latency_ms = latency / offered;
        let slo_miss = (miss / offered).clamp(0.0, 1.0);
        TickMetrics {
            mean_latency_ms,
            p95_latency_ms: p95 / offered,
            slo_miss,
            offered_rps: offered,
            cost: mean_latency_ms / self.slo_ms + self.violation_weight * slo_miss,
        }
    }

    /// P(rtt + Exp(mean queue) > limit).
    fn tail(&self, rtt: f64, queue: f64, limit: f64) -> f64 {
        if limit <= rtt {
            1.0
        } else if queue <= 0.0 {
            0.0
        } else {
            (-(limit - rtt) / queue).exp()
        }
    }

    /// Routes and evaluates in one call, allocating its own buffers: for what-if questions
    /// (baselines, the oracle), not for the step loop.
    pub fn score(&self, replicas: &[ReplicaView], rates_rps: &[f64]) -> TickMetrics {
        let mut table = RoutingTable::default();
        self.route(replicas, &mut table);
        self.evaluate(replicas, &table, rates_rps, &mut Scratch::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One zone pair, one service, one group in zone 0 calling it.
    fn scenario(routing: &str, rtt_cross: f64) -> Scenario {
        let yaml = format!(
            r#"
name: t
tick_s: 60
episode_ticks: 10
slo_ms: 100
timeout_ms: 1000
routing: {routing}
reward: {{violation: 2.0, move: 0.1}}
zones: [a, b]
rtt_ms: [[1.0, {rtt_cross}], [{rtt_cross}, 1.0]]
nodes:
  - {{name: n1, zone: a, cpu_millicores: 8000, memory_mib: 8192}}
  - {{name: n2, zone: b, cpu_millicores: 8000, memory_mib: 8192}}
services:
  - {{name: s, replicas: 2, requests: {{cpu_millicores: 1000, memory_mib: 1024}}, service_time_ms: {{cpu: 10}}, cold_start_s: 30}}
user_groups:
  - {{name: u, zone: a, rate: {{base_rps: 50}}, chain: [s]}}
"#
        );
        Scenario::from_yaml(&yaml).unwrap()
    }

    fn view(zone: usize, ms: f64, up: bool) -> ReplicaView {
        ReplicaView { service: 0, zone, service_time_ms: ms, up }
    }

    #[test]
    fn one_replica_is_an_mm1_queue() {
        let model = CostModel::new(&scenario("uniform", 20.0));
        // λ = 50/s = 0.05/ms, S = 10 ms: ρ = 0.5, W = S/(1-ρ) = 20 ms, + 1 ms RTT.
        let m = model.score(&[view(0, 10.0, true), view(0, 10.0, false)], &[50.0]);
        assert!((m.mean_latency_ms - 21.0).abs() < 1e-9, "{m:?}");
        // P(1 + Exp(20) > 100) = exp(-99/20).
        assert!((m.slo_miss - (-99.0f64 / 20.0).exp()).abs() < 1e-12);
        // p95 of 1 + Exp(20) = 1 + 20 ln 20.
        assert!((m.p95_latency_ms - (1.0 + 20.0 * 20f64.ln())).abs() < 1e-9);
        assert!((m.cost - (0.21 + 2.0 * m.slo_miss)).abs() < 1e-12);
    }

    #[test]
    fn uniform_routing_splits_evenly_across_zones() {
        let model = CostModel::new(&scenario("uniform", 20.0));
        // Each replica gets 25/s: ρ = 0.25, W = 13.333 ms. Half the requests cross zones.
        let m = model.score(&[view(0, 10.0, true), view(1, 10.0, true)], &[50.0]);
        let expected = 0.5 * 1.0 + 0.5 * 20.0 + 10.0 / 0.75;
        assert!((m.mean_latency_ms - expected).abs() < 1e-9, "{m:?}");
    }

    #[test]
    fn topology_aware_routing_keeps_traffic_in_zone() {
        let model = CostModel::new(&scenario("topology_aware", 20.0));
        // All 50/s to the zone-a replica: ρ = 0.5, W = 20, RTT 1.
        let m = model.score(&[view(0, 10.0, true), view(1, 10.0, true)], &[50.0]);
        assert!((m.mean_latency_ms - 21.0).abs() < 1e-9, "{m:?}");
        // No replica in the caller's zone: spread over all.
        let m = model.score(&[view(1, 10.0, true), view(1, 10.0, true)], &[50.0]);
        assert!((m.mean_latency_ms - (20.0 + 10.0 / 0.75)).abs() < 1e-9, "{m:?}");
    }

    #[test]
    fn least_latency_splits_by_speed_in_the_nearest_zone() {
        let model = CostModel::new(&scenario("least_latency", 20.0));
        // Both in zone a, speeds 1/10 and 1/30 per ms: shares 3/4 and 1/4 of 50/s.
        let m = model.score(&[view(0, 10.0, true), view(0, 30.0, true)], &[50.0]);
        let (l1, l2) = (0.0375, 0.0125);
        let w1 = 10.0 / (1.0 - l1 * 10.0);
        let w2 = 30.0 / (1.0 - l2 * 30.0);
        let expected = 1.0 + 0.75 * w1 + 0.25 * w2;
        assert!((m.mean_latency_ms - expected).abs() < 1e-9, "{m:?} vs {expected}");
    }

    #[test]
    fn unavailable_replica_shifts_its_share_to_the_others() {
        let model = CostModel::new(&scenario("uniform", 0.0));
        let both = model.score(&[view(0, 10.0, true), view(0, 10.0, true)], &[50.0]);
        let one = model.score(&[view(0, 10.0, true), view(0, 10.0, false)], &[50.0]);
        assert!((both.mean_latency_ms - (1.0 + 10.0 / 0.75)).abs() < 1e-9);
        assert!((one.mean_latency_ms - 21.0).abs() < 1e-9, "the survivor takes all 50/s");
    }

    #[test]
    fn saturated_replica_counts_as_an_slo_miss() {
        let model = CostModel::new(&scenario("uniform", 0.0));
        // 150/s on one 10 ms replica: ρ = 1.5, every request times out.
        let m = model.score(&[view(0, 10.0, true), view(0, 10.0, false)], &[150.0]);
        assert_eq!(m.slo_miss, 1.0);
        assert_eq!(m.mean_latency_ms, 1000.0);
        assert_eq!(m.p95_latency_ms, 1000.0);
        // Two replicas: ρ = 0.75 each, no timeouts.
        let m = model.score(&[view(0, 10.0, true), view(0, 10.0, true)], &[150.0]);
        assert!(m.slo_miss < 0.1 && m.mean_latency_ms < 50.0, "{m:?}");
    }

    #[test]
    fn no_replica_at_all_means_every_request_times_out() {
        let model = CostModel::new(&scenario("uniform", 0.0));
        let m = model.score(&[view(0, 10.0, false), view(1, 10.0, false)], &[50.0]);
        assert_eq!((m.slo_miss, m.mean_latency_ms), (1.0, 1000.0));
    }

    #[test]
    fn no_traffic_costs_nothing() {
        let model = CostModel::new(&scenario("uniform", 0.0));
        assert_eq!(model.score(&[view(0, 10.0, true), view(1, 10.0, true)], &[0.0]), TickMetrics::default());
    }
}
