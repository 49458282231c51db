//! Continuous deploys: the model's plan is applied, then every `interval_s` the live state is
//! read again, re-planned and applied, until someone stops it (`POST
//! /deployments/{id}/stop`, from any replica: a flag in the store) or a round fails. The
//! deployment holds the namespace's deploy lock all along, so no other deploy interleaves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::Scenario;

use crate::service::deploy::lock::DeployLock;
use crate::service::deploy::{Applied, DeployError, LiveCluster, Planning, apply_plan, finish, plan_deploy};
use crate::store::{DeploymentDoc, DeploymentStatus, ModelDoc, Store};

/// What a continuous deployment re-plans with.
pub struct Replan {
    /// The model.
    pub model: ModelDoc,
    /// Its weights.
    pub weights: Vec<u8>,
    /// How each round plans.
    pub planning: Planning,
}

/// Runs a continuous deployment whose first plan is `doc.plan` (status `running`).
#[tracing::instrument(name = "deploy.continuous", skip_all, fields(deployment = %doc.id, model = %doc.model_id))]
pub async fn run(
    live: LiveCluster,
    turn: DeployLock,
    store: Store,
    scenario: Arc<Scenario>,
    replan: Replan,
    mut doc: DeploymentDoc,
) -> Result<(), DeployError> {
    let interval = Duration::from_secs_f64(doc.continuous.as_ref().map_or(60.0, |c| c.interval_s));
    let mover = live.mover();
    loop {
        let round = doc.continuous.as_ref().map_or(1, |c| c.rounds);
        let ended = match apply_plan(&mover, &turn, &store, &mut doc).await? {
            Applied::All => None,
            Applied::Undone => Some(DeploymentStatus::RolledBack),
            Applied::Stuck => Some(DeploymentStatus::Failed),
        };
        if let Some(status) = ended {
            doc.error = doc.error.take().map(|e| format!("round {round}: {e}"));
            return finish(&live, &store, &scenario, &mut doc, status).await;
        }
        if stop_requested_within(&store, &doc, interval, &turn).await? {
            return finish(&live, &store, &scenario, &mut doc, DeploymentStatus::Stopped).await;
        }
        let requested_by = doc.requested_by.clone();
        let next = plan_deploy(
            &live,
            scenario.clone(),
            &replan.model,
            replan.weights.clone(),
            replan.planning,
            false,
            &requested_by,
        )
        .await;
        let next = match next {
            Ok(next) => next,
            Err(e) => {
                doc.error = Some(format!("round {}: planning: {e}", round + 1));
                return finish(&live, &store, &scenario, &mut doc, DeploymentStatus::Stopped).await;
            }
        };
        doc.plan = next.plan;
        doc.latency_before_ms = next.latency_before_ms;
        doc.latency_planned_ms = next.latency_planned_ms;
        doc.shield = next.shield;
        (doc.nodes_added, doc.nodes_left_out) = (next.nodes_added, next.nodes_left_out);
        doc.plan_first_step = doc.steps.len() as u32;
        if let Some(c) = doc.continuous.as_mut() {
            c.rounds += 1;
        }
        store.save_deployment(&doc).await?;
    }
}

/// Waits `interval`, looking every second whether a stop was asked for; `true` if it was.
async fn stop_requested_within(
    store: &Store,
    doc: &DeploymentDoc,
    interval: Duration,
    turn: &DeployLock,
) -> Result<bool, DeployError> {
    let deadline = Instant::now() + interval;
    loop {
        if turn.lost() {
            return Err(DeployError::Lost(doc.id));
        }
        if store.deployment(doc.id).await?.is_some_and(|d| d.stop_requested) {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
}
