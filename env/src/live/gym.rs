//! The gym on the live cluster itself: a [`PlacementEnv`] whose state is read from the cluster
//! at every reset and after every step, and whose moves are made on the cluster (the replica's
//! Deployment re-pinned, waited for until its pod is Ready on the target). Rewards come from the
//! scenario's cost model at the placement the cluster actually has, so a step is one decision
//! interval, however long the move took. For training, recordings (`replay`) are the cheap way;
//! this is for evaluating a policy, or fine-tuning it, where it will run.

use std::path::Path;

use berth_core::Scenario;
use std::sync::Arc;

use super::{LiveError, LiveResult, Mover, Snapshot, sharing, workload};
use crate::gym::{BoxSpace, Env, Reset, Step};
use crate::{Error, PlacementEnv, Result, StartState, TickInfo};

/// The placement gym stepping a live cluster.
pub struct LiveEnv {
    sim: PlacementEnv,
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    mover: Mover,
    namespace: String,
    start_tick: u32,
    seed: u64,
}

impl std::fmt::Debug for LiveEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveEnv").field("namespace", &self.namespace).field("tick", &self.sim.tick()).finish()
    }
}

fn live_error(e: LiveError) -> Error {
    Error::InvalidArgument { name: "cluster", reason: e.to_string() }
}

impl LiveEnv {
    /// Connects (with `kubeconfig`, else what kube infers) to the cluster running `scenario`'s
    /// services in `namespace`. Episodes start at the scenario's tick `start_tick` (the time
    /// of day the caller knows the cluster is at).
    pub fn connect(
        scenario: Arc<Scenario>,
        kubeconfig: Option<&Path>,
        namespace: &str,
        start_tick: u32,
    ) -> LiveResult<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
            LiveError::Mismatch { scenario: scenario.name.clone(), reason: format!("no async runtime: {e}") }
        })?;
        // The client lives on this env's runtime: kube's background tasks run where it was made.
        let client = runtime.block_on(super::connect(kubeconfig))?;
        let sim = PlacementEnv::new(scenario.clone())
            .map_err(|e| LiveError::Mismatch { scenario: scenario.name.clone(), reason: e.to_string() })?;
        let mover = Mover::new(client.clone(), namespace);
        Ok(Self { sim, runtime, client, mover, namespace: namespace.into(), start_tick, seed: 0 })
    }

    /// How long a move may take before the step fails.
    pub fn set_move_timeout(&mut self, timeout: std::time::Duration) {
        self.mover.timeout = timeout;
    }

    /// The cost model's copy of the cluster (placement, node readiness, tick).
    pub fn model(&self) -> &PlacementEnv {
        &self.sim
    }

    /// The cluster's state now, at `tick`.
    fn observe(&self, tick: u32) -> LiveResult<StartState> {
        let snapshot = self.runtime.block_on(Snapshot::read(&self.client, &self.namespace))?;
        let placement = snapshot.placement(self.sim.scenario())?;
        Ok(StartState {
            placement: placement.nodes,
            node_ready: placement.node_ready,
            tick,
            held: placement.held,
        })
    }

    /// Brings the model in line with the cluster if something else changed it (a node
    /// failed, someone moved a replica), keeping the episode's tick.
    fn sync(&mut self) -> Result<()> {
        let tick = self.sim.tick().min(self.sim.scenario().episode_ticks - 1);
        let seen = self.observe(tick).map_err(live_error)?;
        if seen.placement != self.sim.placement() || seen.node_ready != self.sim.node_ready() {
            self.sim.reset_at(self.seed, &seen)?;
        }
        Ok(())
    }
}

impl Env for LiveEnv {
    type Info = TickInfo;

    fn observation_space(&self) -> BoxSpace {
        self.sim.observation_space()
    }

    fn action_count(&self) -> usize {
        self.sim.action_count()
    }

    /// Reads the cluster and starts an episode from where it is. A cluster that does not
    /// match the scenario panics with the reason, as a misconfigured env would: use
    /// [`LiveEnv::try_reset`] to get it as an error.
    fn reset(&mut self, seed: u64) -> Reset<'_, TickInfo> {
        self.try_reset(seed).expect("the live cluster matches the scenario")
    }

    /// Makes the move on the cluster (patch, asking for the GPU slot the replica takes there,
    /// then wait until its pod is Ready on the target),
    /// steps the cost model, and re-reads the cluster. A move that fails or times out is an
    /// error naming it; the cluster may then have changed, and the next step re-reads it.
    fn step(&mut self, action: usize) -> Result<Step<'_, TickInfo>> {
        self.sim.check_action(action)?;
        if let Some(m) = self.sim.decode(action) {
            let (s, index) = self.sim.scenario().replica_keys()[m.replica];
            let deployment = workload::deployment_name(&self.sim.scenario().services[s].name, index);
            let gpu =
                sharing::replica_resource(self.sim.scenario(), s, m.node, self.sim.seat_if_placed(s, m.node));
            let node = self.sim.scenario().nodes[m.node].name.clone();
            let moved = self.mover.move_replica(&deployment, &node, gpu.as_deref());
            self.runtime.block_on(moved).map_err(live_error)?;
        }
        let step = self.sim.step(action)?;
        let (reward, terminated, truncated, info) = (step.reward, step.terminated, step.truncated, step.info);
        self.sync()?;
        Ok(Step { obs: self.sim.observation(), reward, terminated, truncated, info })
    }

    fn action_mask(&self) -> &[bool] {
        self.sim.action_mask()
    }

    fn observation(&self) -> &[f32] {
        self.sim.observation()
    }

    fn keep_action(&self) -> Option<usize> {
        self.sim.keep_action()
    }
}

impl LiveEnv {
    /// [`Env::reset`], with a cluster that does not match the scenario as an error.
    pub fn try_reset(&mut self, seed: u64) -> Result<Reset<'_, TickInfo>> {
        self.seed = seed;
        let start = self.observe(self.start_tick).map_err(live_error)?;
        self.sim.reset_at(seed, &start)
    }
}
