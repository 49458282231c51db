//! The cluster `/api/v1/metrics` reports on: the live cluster with `--live`, read through
//! kube (nodes, replicas, the traffic fitted from observed usage, the cost model's latency
//! for that placement); otherwise a simulated cluster, the gym on a scenario, one tick per
//! `--cluster-tick-s` of wall time, with the replicas where the scenario starts them.
//! Snapshots are recorded in `metrics` at an interval for `/api/v1/metrics/history`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::Scenario;
use berth_env::cost::CostModel;
use berth_env::gym::Env;
use berth_env::{Error as EnvError, PlacementEnv};
use mongodb::bson::DateTime;

use crate::store::Store;
pub use crate::store::snapshot::{LatencySnapshot, NodeSnapshot, ReplicaSnapshot, Snapshot, TrafficSnapshot};
pub use live::LiveCluster;

pub mod live;
pub mod observe;

/// A simulated cluster that moves on with the wall clock.
pub struct SimCluster {
    scenario: Arc<Scenario>,
    state: Mutex<SimState>,
    tick_every: Duration,
}

struct SimState {
    env: PlacementEnv,
    started: Instant,
    ticks_done: u64,
    episode: u64,
}

impl SimCluster {
    /// The scenario's cluster, one tick per `tick_every`.
    pub fn new(scenario: Arc<Scenario>, tick_every: Duration) -> Result<Self, EnvError> {
        // A cluster left to itself: its replicas stay where they are, failed nodes or not.
        let mut held = (*scenario).clone();
        held.failures.evacuate = false;
        let mut env = PlacementEnv::new(Arc::new(held))?;
        env.reset(scenario.seed);
        let state = SimState { env, started: Instant::now(), ticks_done: 0, episode: 0 };
        Ok(Self { scenario, state: Mutex::new(state), tick_every })
    }

    /// The cluster now.
    pub fn snapshot(&self) -> Snapshot {
        let mut state = self.state.lock().expect("cluster lock");
        let due = (state.started.elapsed().as_secs_f64() / self.tick_every.as_secs_f64()) as u64;
        // A stopped clock (a suspended process) does not replay days of ticks at once.
        state.ticks_done = state.ticks_done.max(due.saturating_sub(u64::from(self.scenario.episode_ticks)));
        while state.ticks_done < due {
            if state.env.tick() >= self.scenario.episode_ticks {
                state.episode += 1;
                let seed = self.scenario.seed.wrapping_add(state.episode);
                state.env.reset(seed);
            }
            state.env.step(0).expect("keeping the placement is always allowed");
            state.ticks_done += 1;
        }
        self.describe(&state.env)
    }

    fn describe(&self, env: &PlacementEnv) -> Snapshot {
        let s = &self.scenario;
        let nodes = s
            .nodes
            .iter()
            .zip(env.usage())
            .zip(env.node_ready())
            .map(|((node, usage), &ready)| NodeSnapshot {
                name: node.name.clone(),
                zone: s.zones[node.zone].clone(),
                ready,
                cpu_requested_millicores: usage.cpu_millicores,
                cpu_allocatable_millicores: node.allocatable.cpu_millicores,
                memory_requested_mib: usage.memory_mib,
                memory_allocatable_mib: node.allocatable.memory_mib,
                gpus_requested: usage.gpus,
                gpus: node.gpu.as_ref().map_or(0, |g| g.count),
                gpu_model: node.gpu.as_ref().map(|g| g.model.clone()),
            })
            .collect();
        let mut index_in_service = vec![0u32; s.services.len()];
        let replicas = env
            .replica_service()
            .iter()
            .zip(env.placement())
            .map(|(&service, &node)| {
                let replica = index_in_service[service];
                index_in_service[service] += 1;
                ReplicaSnapshot {
                    service: s.services[service].name.clone(),
                    replica,
                    node: s.nodes[node].name.clone(),
                }
            })
            .collect();
        let traffic = s
            .user_groups
            .iter()
            .zip(env.current_rates())
            .map(|(g, &rps)| TrafficSnapshot { group: g.name.clone(), zone: s.zones[g.zone].clone(), rps })
            .collect();
        let m = env.info().metrics;
        Snapshot {
            timestamp: DateTime::now(),
            source: "simulator".into(),
            scenario: s.name.clone(),
            tick: env.tick(),
            nodes,
            replicas,
            traffic,
            latency: LatencySnapshot::from(m),
        }
    }
}

/// The live cluster, described in the terms of the scenario it runs.
pub struct LiveSource {
    /// The cluster.
    pub live: LiveCluster,
    /// The scenario it runs (`--cluster-scenario`).
    pub scenario: Arc<Scenario>,
}

impl LiveSource {
    /// The cluster now, on its node list as it is today (a node added since the scenario was
    /// written is shown, and a replica on it counted).
    async fn snapshot(&self) -> Result<Snapshot, String> {
        let (client, namespace) = (&self.live.client, &self.live.namespace);
        let read = berth_env::live::Snapshot::read(client, namespace).await.map_err(|e| e.to_string())?;
        let shaped = read.shape(&self.scenario).scenario;
        let s = &shaped;
        let seen = crate::service::cluster::observe::observe_snapshot(client, read, s)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let (placement, sample) = (&seen.placement, &seen.sample);
        let services = s.replica_services();
        let nodes = s
            .nodes
            .iter()
            .enumerate()
            .map(|(n, node)| {
                let here = services.iter().zip(&placement.nodes).filter(|&(_, &at)| at == n);
                let requested = |f: fn(&berth_core::Resources) -> u64| -> u64 {
                    here.clone().map(|(&svc, _)| f(&s.services[svc].requests)).sum()
                };
                NodeSnapshot {
                    name: node.name.clone(),
                    zone: s.zones[node.zone].clone(),
                    ready: placement.node_ready[n],
                    cpu_requested_millicores: requested(|r| r.cpu_millicores),
                    cpu_allocatable_millicores: node.allocatable.cpu_millicores,
                    memory_requested_mib: requested(|r| r.memory_mib),
                    memory_allocatable_mib: node.allocatable.memory_mib,
                    gpus_requested: requested(|r| u64::from(r.gpus)) as u32,
                    gpus: node.gpu.as_ref().map_or(0, |g| g.count),
                    gpu_model: node.gpu.as_ref().map(|g| g.model.clone()),
                }
            })
            .collect();
        let replicas = seen
            .snapshot
            .replicas
            .iter()
            .map(|r| ReplicaSnapshot {
                service: r.service.clone(),
                replica: r.replica,
                node: r.node.clone().or_else(|| r.pinned_to.clone()).unwrap_or_default(),
            })
            .collect();
        let rates: Vec<f64> =
            s.user_groups.iter().map(|g| g.rate.mean_at(sample.t_s) * sample.scale).collect();
        let traffic = s
            .user_groups
            .iter()
            .zip(&rates)
            .map(|(g, &rps)| TrafficSnapshot { group: g.name.clone(), zone: s.zones[g.zone].clone(), rps })
            .collect();
        let m = CostModel::new(s).score(&berth_env::live::views(s, placement), &rates);
        Ok(Snapshot {
            timestamp: DateTime::now(),
            source: "live".into(),
            scenario: s.name.clone(),
            tick: ((sample.t_s / s.tick_s) as u32).min(s.episode_ticks - 1),
            nodes,
            replicas,
            traffic,
            latency: LatencySnapshot::from(m),
        })
    }
}

/// Where `/api/v1/metrics` looks.
pub enum ClusterSource {
    /// The simulated cluster.
    Sim(Box<SimCluster>),
    /// The live cluster (`--live`).
    Live(LiveSource),
}

impl ClusterSource {
    /// The cluster now; the error says why the live cluster could not be read.
    pub async fn snapshot(self: &Arc<Self>) -> Result<Snapshot, String> {
        match &**self {
            Self::Sim(_) => {
                let me = self.clone();
                tokio::task::spawn_blocking(move || match &*me {
                    Self::Sim(sim) => sim.snapshot(),
                    Self::Live(_) => unreachable!("matched Sim above"),
                })
                .await
                .map_err(|e| e.to_string())
            }
            Self::Live(live) => live.snapshot().await,
        }
    }
}

/// Records a snapshot into `metrics` every `every`, for the history route.
pub async fn record(cluster: Arc<ClusterSource>, store: Store, every: Duration) {
    loop {
        match cluster.snapshot().await {
            Ok(snapshot) => {
                if let Err(e) = store.insert_snapshot(&snapshot).await {
                    tracing::warn!("recording cluster metrics: {e}");
                }
            }
            Err(e) => tracing::warn!("reading the cluster: {e}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// A snapshot as the API shows it: times in RFC 3339.
pub fn snapshot_json(snapshot: &Snapshot) -> serde_json::Value {
    let mut value = serde_json::to_value(snapshot).expect("snapshots serialise");
    value["timestamp"] =
        serde_json::Value::String(snapshot.timestamp.try_to_rfc3339_string().unwrap_or_default());
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulated_cluster_moves_on_with_the_clock_and_describes_every_part() {
        let scenario = berth_env::shipped::shipped("gpu-small").unwrap();
        let cluster = SimCluster::new(scenario.clone(), Duration::from_millis(5)).unwrap();
        let first = cluster.snapshot();
        std::thread::sleep(Duration::from_millis(30));
        let later = cluster.snapshot();
        assert!(later.tick > first.tick, "{} then {}", first.tick, later.tick);
        assert_eq!(later.nodes.len(), scenario.nodes.len());
        assert_eq!(later.replicas.len(), scenario.replica_count());
        assert_eq!(later.traffic.len(), scenario.user_groups.len());
        assert!(later.latency.mean_ms > 0.0 && later.latency.offered_rps > 0.0);
        let gpus: u32 = later.nodes.iter().map(|n| n.gpus_requested).sum();
        assert_eq!(gpus, 2, "the two infinity-embed replicas hold one GPU each");
        let json = snapshot_json(&later);
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
