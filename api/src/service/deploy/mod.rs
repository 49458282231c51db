//! Deploys a trained model to the live cluster: read the cluster, plan on a simulated copy
//! (nothing is touched while planning), then make the moves one at a time, waiting for each;
//! on any failure or timeout, move back what was moved. Every step goes to the deployment's
//! document as it happens.

use std::sync::Arc;
use std::time::Duration;

use berth_agents::{AgentPolicy, SavedModel, fits_any_cluster, load_agent};
use berth_core::Scenario;
use berth_env::live::{LiveError, Mover, Snapshot, sharing, workload};
use berth_env::plan::{PlanLimits, plan};
use berth_env::shield::shield;
use berth_env::{PlacementEnv, StartState};
use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;

use crate::service::cluster::LiveCluster;
use crate::service::cluster::observe::time_of_day;
use crate::service::scenario::resolve_scenario;
use crate::store::{
    DeployStepDoc, DeploymentDoc, DeploymentStatus, LoneServicesDoc, ModelDoc, PlannedMoveDoc, ShieldDoc,
    Store, StoreError,
};
use lock::{DeployLock, lock_name};

pub mod continuous;
pub mod lock;

impl LiveCluster {
    /// The turn to change the cluster for `deployment`, if no deploy or rollback of any
    /// replica is changing it now.
    pub async fn turn(&self, store: &Store, deployment: ObjectId) -> Result<Option<DeployLock>, StoreError> {
        DeployLock::take(store, &self.namespace, &self.owner, deployment, self.lease).await
    }
}

/// Why a deploy could not be planned or run.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The cluster could not be read or changed.
    #[error(transparent)]
    Live(#[from] LiveError),
    /// The model cannot act on this scenario.
    #[error("the model cannot be used: {0}")]
    Model(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This replica's deploy lock lapsed mid-deploy; another replica takes the deployment over.
    #[error("lost the deploy lock during deployment {0}: another replica takes it over")]
    Lost(ObjectId),
}

/// The cluster's time of day (the emulator's clock where it publishes one) as the scenario's tick.
async fn tick_now(live: &LiveCluster, scenario: &Scenario) -> u32 {
    let seconds_today = time_of_day(&live.client).await;
    ((seconds_today / scenario.tick_s) as u32).min(scenario.episode_ticks - 1)
}

fn deployment_of(scenario: &Scenario, replica: usize) -> (String, String, u32) {
    let (s, index) = scenario.replica_keys()[replica];
    let name = &scenario.services[s].name;
    (workload::deployment_name(name, index), name.clone(), index)
}

/// Mean latency the cost model gives the cluster's placement now, on its node list as it is.
pub async fn measured_latency(live: &LiveCluster, scenario: &Arc<Scenario>) -> Result<f64, DeployError> {
    let snapshot = Snapshot::read(&live.client, &live.namespace).await?;
    let shaped = snapshot.shape(scenario).scenario;
    let placement = snapshot.placement(&shaped)?;
    let start = StartState {
        placement: placement.nodes,
        node_ready: placement.node_ready,
        tick: tick_now(live, scenario).await,
        held: placement.held,
    };
    let mut env = PlacementEnv::new(Arc::new(shaped)).map_err(|e| DeployError::Model(e.to_string()))?;
    env.reset_at(scenario.seed, &start).map_err(|e| DeployError::Model(e.to_string()))?;
    Ok(env.steady_cost(None).mean_latency_ms)
}

/// How a deploy plans.
#[derive(Debug, Clone, Copy)]
pub struct Planning {
    /// How far the policy is rolled forward, and how many moves at most.
    pub limits: PlanLimits,
    /// Put the model's plan behind the shield (`greedy`'s plan or no moves where the simulator
    /// scores them cheaper); off, the model's plan is taken as it is.
    pub shield: bool,
}

/// Reads the cluster and plans the model's moves: a new deployment document, not stored.
#[tracing::instrument(name = "deploy.plan", skip_all, fields(model = %model.id, namespace = %live.namespace, dry_run, trace_id = tracing::field::Empty))]
pub async fn plan_deploy(
    live: &LiveCluster,
    scenario: Arc<Scenario>,
    model: &ModelDoc,
    weights: Vec<u8>,
    planning: Planning,
    dry_run: bool,
    requested_by: &str,
) -> Result<DeploymentDoc, DeployError> {
    crate::infra::telemetry::record_trace_id(&tracing::Span::current());
    let snapshot = Snapshot::read(&live.client, &live.namespace).await?;
    let saved = SavedModel::from_bytes(&weights).map_err(|e| DeployError::Model(e.to_string()))?;
    // A model that fits any cluster plans on the cluster's node list as it is today; one
    // bound to its training shape plans on the stored scenario, where its size matches.
    let (scenario, nodes_added, left_out) = if fits_any_cluster(&saved) {
        let shape = snapshot.shape(&scenario);
        let left_out = shape.left_out.iter().map(|l| format!("{}: {}", l.node, l.reason)).collect();
        (Arc::new(shape.scenario), shape.added, left_out)
    } else {
        (scenario, Vec::new(), Vec::new())
    };
    let placement = snapshot.placement(&scenario)?;
    let start = StartState {
        placement: placement.nodes,
        node_ready: placement.node_ready,
        tick: tick_now(live, &scenario).await,
        held: placement.held,
    };
    let planned = tokio::task::spawn_blocking({
        let scenario = scenario.clone();
        move || {
            let mut env = PlacementEnv::new(scenario.clone()).map_err(|e| e.to_string())?;
            let agent = load_agent(&saved, &env).map_err(|e| e.to_string())?;
            let mut policy = AgentPolicy::new(agent);
            let (seed, limits) = (scenario.seed, planning.limits);
            if planning.shield {
                shield(&mut env, &mut policy, &start, seed, limits).map(|s| {
                    let doc = ShieldDoc {
                        applied: s.choice.name().into(),
                        policy_cost: s.policy_cost,
                        greedy_cost: s.greedy_cost,
                        lookahead_cost: Some(s.lookahead_cost),
                        keep_cost: s.keep_cost,
                        lone_services: LoneServicesDoc::from(s.lone_services),
                    };
                    (Some(doc), s.plan)
                })
            } else {
                plan(&mut env, &mut policy, &start, seed, limits).map(|p| (None, p))
            }
            .map_err(|e| e.to_string())
        }
    })
    .await
    .map_err(|e| DeployError::Model(e.to_string()))?
    .map_err(DeployError::Model)?;
    let (shield, planned) = planned;
    let moves = planned
        .moves
        .iter()
        .map(|m| {
            let (deployment, service, replica) = deployment_of(&scenario, m.replica);
            let (s, _) = scenario.replica_keys()[m.replica];
            let gpu_to = sharing::replica_resource(&scenario, s, m.to, m.seat);
            let gpu_from = snapshot.replica(&service, replica).and_then(|r| r.gpu_resource.clone());
            PlannedMoveDoc {
                deployment,
                service,
                replica,
                from: scenario.nodes[m.from].name.clone(),
                to: scenario.nodes[m.to].name.clone(),
                gpu_from,
                gpu_to,
            }
        })
        .collect();
    Ok(DeploymentDoc {
        id: ObjectId::new(),
        model_id: model.id,
        namespace: live.namespace.clone(),
        dry_run,
        status: if dry_run { DeploymentStatus::Planned } else { DeploymentStatus::Running },
        plan: moves,
        steps: Vec::new(),
        latency_before_ms: planned.before.mean_latency_ms,
        latency_planned_ms: planned.after.mean_latency_ms,
        latency_after_ms: None,
        error: None,
        requested_by: requested_by.into(),
        created_at: DateTime::now(),
        finished_at: None,
        continuous: None,
        stop_requested: false,
        plan_first_step: 0,
        shield,
        nodes_added,
        nodes_left_out: left_out,
    })
}

/// A move that failed, and whether its patch had landed (then the Deployment changed).
struct Failed {
    error: String,
    patched: bool,
}

/// Makes one move (to node `to`, asking for GPU resource `gpu` there where given) and records it.
async fn step(
    mover: &Mover,
    store: &Store,
    doc: &mut DeploymentDoc,
    action: &str,
    deployment: &str,
    to: &str,
    gpu: Option<&str>,
) -> Result<Option<Failed>, DeployError> {
    let started = std::time::Instant::now();
    let failed = match mover.pin(deployment, to, gpu).await {
        Err(e) => Some(Failed { error: e.to_string(), patched: false }),
        Ok(generation) => mover
            .wait_ready(deployment, to, generation, started)
            .await
            .err()
            .map(|e| Failed { error: e.to_string(), patched: true }),
    };
    doc.steps.push(DeployStepDoc {
        action: action.into(),
        deployment: deployment.into(),
        to: to.into(),
        gpu: gpu.map(String::from),
        ok: failed.is_none(),
        took_s: started.elapsed().as_secs_f64(),
        error: failed.as_ref().map(|f| f.error.clone()),
        at: DateTime::now(),
    });
    store.save_deployment(doc).await?;
    Ok(failed)
}

/// Moves `moves` back to where they came from, asking for the GPU resource they asked for
/// before, newest first; `true` if all went back.
async fn undo(
    mover: &Mover,
    store: &Store,
    doc: &mut DeploymentDoc,
    moves: &[PlannedMoveDoc],
) -> Result<bool, DeployError> {
    let mut all_back = true;
    for m in moves.iter().rev() {
        let back = step(mover, store, doc, "rollback", &m.deployment, &m.from, m.gpu_from.as_deref()).await?;
        all_back &= back.is_none();
    }
    Ok(all_back)
}

/// Ends a deployment with `status`, measuring the latency the cluster is left with.
pub async fn finish(
    live: &LiveCluster,
    store: &Store,
    scenario: &Arc<Scenario>,
    doc: &mut DeploymentDoc,
    status: DeploymentStatus,
) -> Result<(), DeployError> {
    doc.status = status;
    doc.latency_after_ms = measured_latency(live, scenario).await.ok();
    doc.finished_at = Some(DateTime::now());
    store.save_deployment(doc).await?;
    Ok(())
}

/// Applies a planned deployment (status `running`): one move at a time, each waited for; on
/// the first failure the moves made so far go back, newest first.
#[tracing::instrument(name = "deploy", skip_all, fields(deployment = %doc.id, model = %doc.model_id, moves = doc.plan.len(), trace_id = tracing::field::Empty))]
pub async fn execute(
    live: LiveCluster,
    turn: DeployLock,
    store: Store,
    scenario: Arc<Scenario>,
    mut doc: DeploymentDoc,
) -> Result<(), DeployError> {
    crate::infra::telemetry::record_trace_id(&tracing::Span::current());
    let status = match apply_plan(&live.mover(), &turn, &store, &mut doc).await? {
        Applied::All => DeploymentStatus::Succeeded,
        Applied::Undone => DeploymentStatus::RolledBack,
        Applied::Stuck => DeploymentStatus::Failed,
    };
    finish(&live, &store, &scenario, &mut doc, status).await
}

/// How applying a plan ended.
pub enum Applied {
    /// Every move made.
    All,
    /// A move failed; the ones made went back.
    Undone,
    /// A move failed, and a move back failed too: the cluster needs a look.
    Stuck,
}

/// Makes the moves of `doc.plan` one at a time, each waited for; on the first failure the
/// moves it made go back, newest first, and `doc.error` says what failed.
pub async fn apply_plan(
    mover: &Mover,
    turn: &DeployLock,
    store: &Store,
    doc: &mut DeploymentDoc,
) -> Result<Applied, DeployError> {
    let plan = doc.plan.clone();
    for (i, m) in plan.iter().enumerate() {
        if turn.lost() {
            // Another replica took over this deployment and undoes it; do not race it.
            return Err(DeployError::Lost(doc.id));
        }
        if let Some(failed) =
            step(mover, store, doc, "move", &m.deployment, &m.to, m.gpu_to.as_deref()).await?
        {
            doc.error = Some(format!("move {} of {} failed: {}", i + 1, plan.len(), failed.error));
            // A move patched but never Ready is undone too; a refused patch changed nothing.
            let made = if failed.patched { i + 1 } else { i };
            if undo(mover, store, doc, &plan[..made]).await? {
                return Ok(Applied::Undone);
            }
            doc.error = doc.error.take().map(|e| format!("{e}; and a move back failed: see the steps"));
            return Ok(Applied::Stuck);
        }
    }
    Ok(Applied::All)
}

/// Undoes a succeeded deployment: every move back, newest first.
#[tracing::instrument(name = "deploy.rollback", skip_all, fields(deployment = %doc.id, model = %doc.model_id, trace_id = tracing::field::Empty))]
pub async fn rollback(
    live: LiveCluster,
    _turn: DeployLock,
    store: Store,
    scenario: Arc<Scenario>,
    mut doc: DeploymentDoc,
) -> Result<(), DeployError> {
    crate::infra::telemetry::record_trace_id(&tracing::Span::current());
    let mover = live.mover();
    let plan = doc.plan.clone();
    let back = undo(&mover, &store, &mut doc, &plan).await?;
    if !back {
        doc.error = Some("a move back failed; see the steps".into());
    }
    finish(
        &live,
        &store,
        &scenario,
        &mut doc,
        if back { DeploymentStatus::RolledBack } else { DeploymentStatus::Failed },
    )
    .await
}

/// Deployments left `running` by a replica that stopped (its deploy lock lapsed): this
/// replica takes the lock, moves back every replica the deployment may have moved (the
/// recorded moves and the one that may have been in flight, newest first), and records it
/// as `rolled_back`, or `failed` if a move back fails. Returns how many it took over.
#[tracing::instrument(name = "deploy.recover", skip_all, fields(namespace = %live.namespace, trace_id = tracing::field::Empty))]
pub async fn recover_interrupted(live: &LiveCluster, store: &Store) -> Result<usize, DeployError> {
    crate::infra::telemetry::record_trace_id(&tracing::Span::current());
    let mut recovered = 0;
    for mut doc in store.running_deployments().await? {
        if doc.namespace != live.namespace {
            continue;
        }
        let lock = store.lock(&lock_name(&live.namespace)).await?;
        if lock.is_some_and(|l| l.deployment == doc.id && l.lease_until > DateTime::now()) {
            continue; // In progress.
        }
        let Some(_turn) = live.turn(store, doc.id).await? else {
            continue; // Another deploy holds the cluster; next round.
        };
        let this_plan = doc.steps.get(doc.plan_first_step as usize..).unwrap_or_default();
        let moved = this_plan.iter().filter(|s| s.action == "move").count();
        let may_have_moved = (moved + 1).min(doc.plan.len());
        let plan = doc.plan.clone();
        let back = undo(&live.mover(), store, &mut doc, &plan[..may_have_moved]).await?;
        let mut error =
            "interrupted: the replica running it stopped; what it may have moved was moved back".to_string();
        if !back {
            error.push_str("; and a move back failed: see the steps");
        }
        doc.error = Some(error);
        let scenario = match store.model(doc.model_id).await? {
            Some(model) => resolve_scenario(&model.scenario).map_err(DeployError::Model)?,
            None => return Err(DeployError::Model(format!("model {} is gone", doc.model_id))),
        };
        finish(
            live,
            store,
            &scenario,
            &mut doc,
            if back { DeploymentStatus::RolledBack } else { DeploymentStatus::Failed },
        )
        .await?;
        recovered += 1;
    }
    Ok(recovered)
}

/// Runs [`recover_interrupted`] every `every`, for the life of the service.
pub async fn watch_interrupted(live: LiveCluster, store: Store, every: Duration) {
    loop {
        match recover_interrupted(&live, &store).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!("took over and undid {n} interrupted deployment(s)"),
            Err(e) => tracing::warn!("recovering interrupted deployments: {e}"),
        }
        tokio::time::sleep(every).await;
    }
}
