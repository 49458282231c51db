//! `/api/v1/models/{id}/deploy` and `/api/v1/deployments`: plan a model's moves on the live
//! cluster, make them (rolled back on any failure), follow and undo them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use berth_env::plan::PlanLimits;
use mongodb::bson::oid::ObjectId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::training::time_json;
use super::{ApiQuery, AppState, Caller, PageArgs, Paging, bad_query, find_by_id, page_json, parse_id};
use crate::http::error::ApiError;
use crate::infra::auth::Role;
use crate::service::cluster::LiveCluster;
use crate::service::deploy::continuous::{self, Replan};
use crate::service::deploy::{self, DeployError, Planning};
use crate::service::scenario::resolve_scenario;
use crate::store::{ContinuousDoc, DeploymentDoc, DeploymentStatus};
/// Most moves one deploy may make.
const MAX_MOVES: usize = 50;

/// The body of `POST /models/{id}/deploy` (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Plan only: return the moves, touch nothing.
    #[serde(default)]
    dry_run: bool,
    /// At most this many moves (1 to 50, default 10).
    max_moves: Option<usize>,
    /// Ticks the policy is rolled forward to plan (1 to the scenario's day, default 12).
    horizon_ticks: Option<u32>,
    /// Re-plan and apply every `interval_s` until stopped.
    #[serde(default)]
    continuous: bool,
    /// Seconds between rounds of a continuous deployment (1 to 86,400, default 60).
    interval_s: Option<f64>,
    /// Apply the model's plan only where the simulator scores it no worse than `greedy`'s and
    /// than keeping (default true).
    shield: Option<bool>,
}

fn live(state: &AppState) -> Result<LiveCluster, ApiError> {
    state.live.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_cluster",
            "this service has no live cluster: start it with --live (and --kubeconfig)",
        )
    })
}

fn busy() -> ApiError {
    ApiError::conflict("a deploy or rollback is changing the cluster now; try again when it has finished")
}

/// A deployment as the API shows it.
fn deployment_json(d: DeploymentDoc) -> Value {
    json!({
        "id": d.id.to_hex(),
        "model_id": d.model_id.to_hex(),
        "namespace": d.namespace,
        "dry_run": d.dry_run,
        "status": d.status,
        "plan": d.plan.iter().map(|m| json!({
            "deployment": m.deployment, "service": m.service, "replica": m.replica, "from": m.from, "to": m.to,
            "gpu_from": m.gpu_from, "gpu_to": m.gpu_to,
        })).collect::<Vec<_>>(),
        "steps": d.steps.iter().map(|s| json!({
            "action": s.action, "deployment": s.deployment, "to": s.to, "gpu": s.gpu, "ok": s.ok, "took_s": s.took_s,
            "error": s.error, "at": time_json(Some(s.at)),
        })).collect::<Vec<_>>(),
        "latency_before_ms": d.latency_before_ms,
        "latency_planned_ms": d.latency_planned_ms,
        "latency_after_ms": d.latency_after_ms,
        "error": d.error,
        "requested_by": d.requested_by,
        "created_at": time_json(Some(d.created_at)),
        "finished_at": time_json(d.finished_at),
        "continuous": d.continuous.map(|c| json!({"interval_s": c.interval_s, "rounds": c.rounds})),
        "stop_requested": d.stop_requested,
        "shield": d.shield.map(|s| json!({
            "applied": s.applied, "policy_cost": s.policy_cost, "greedy_cost": s.greedy_cost,
            "lookahead_cost": s.lookahead_cost, "keep_cost": s.keep_cost,
            "lone_services": {
                "policy": s.lone_services.policy, "greedy": s.lone_services.greedy,
                "lookahead": s.lone_services.lookahead, "keep": s.lone_services.keep,
            },
        })),
        "nodes_added": d.nodes_added,
        "nodes_left_out": d.nodes_left_out,
    })
}

/// `POST /models/{id}/deploy` (admin): plans on a copy of the live state; with `dry_run`
/// returns the plan (201), else starts making the moves and returns at once (202).
pub async fn deploy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Admin)?;
    // An empty body takes every default; otherwise a JSON object whose errors name the field.
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        DeployRequest::default()
    } else {
        let mut de = serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            ApiError::invalid(if path == "." { "body".into() } else { path }, e.into_inner())
        })?
    };
    let oid = parse_id("model", &id)?;
    let model = state.store.model(oid).await?.ok_or_else(|| ApiError::not_found("model", &id))?;
    let scenario = resolve_scenario(&model.scenario).map_err(|e| ApiError::invalid("scenario", e))?;
    let max_moves = request.max_moves.unwrap_or(10);
    if !(1..=MAX_MOVES).contains(&max_moves) {
        return Err(ApiError::invalid("max_moves", format!("must be 1 to {MAX_MOVES}, got {max_moves}")));
    }
    let horizon_ticks = request.horizon_ticks.unwrap_or(12);
    if !(1..=scenario.episode_ticks).contains(&horizon_ticks) {
        return Err(ApiError::invalid(
            "horizon_ticks",
            format!("must be 1 to {} (the scenario's day), got {horizon_ticks}", scenario.episode_ticks),
        ));
    }
    let interval_s = match (request.continuous, request.interval_s) {
        (true, _) if request.dry_run => {
            return Err(ApiError::invalid("continuous", "not with dry_run: a dry run plans once"));
        }
        (false, Some(_)) => return Err(ApiError::invalid("interval_s", "only with continuous: true")),
        (true, interval) => {
            let interval = interval.unwrap_or(60.0);
            if !(1.0..=86_400.0).contains(&interval) {
                return Err(ApiError::invalid(
                    "interval_s",
                    format!("must be 1 to 86400 seconds, got {interval}"),
                ));
            }
            Some(interval)
        }
        (false, None) => None,
    };
    let live = live(&state)?;
    // Plan and move under one turn, so no other deploy changes the state planned from.
    // (Every replica of the service, through a lock in the store; dropping it lets go.)
    let id = ObjectId::new();
    let turn =
        if request.dry_run { None } else { Some(live.turn(&state.store, id).await?.ok_or_else(busy)?) };
    let weights = state.store.file(model.weights_file).await?;
    let planning =
        Planning { limits: PlanLimits { horizon_ticks, max_moves }, shield: request.shield.unwrap_or(true) };
    let (dry_run, by) = (request.dry_run, &caller.0.sub);
    let mut doc =
        deploy::plan_deploy(&live, scenario.clone(), &model, weights.clone(), planning, dry_run, by).await?;
    doc.id = id; // The id the lock names.
    doc.continuous = interval_s.map(|interval_s| ContinuousDoc { interval_s, rounds: 1 });
    state.store.insert_deployment(&doc).await?;
    if request.dry_run {
        return Ok((StatusCode::CREATED, Json(deployment_json(doc))));
    }
    let view = deployment_json(doc.clone());
    let turn = turn.expect("taken above for a real deploy");
    let store = state.store.clone();
    if doc.continuous.is_some() {
        let replan = Replan { model, weights, planning };
        tokio::spawn(finish_in_background(continuous::run(live, turn, store, scenario, replan, doc)));
    } else {
        tokio::spawn(finish_in_background(deploy::execute(live, turn, store, scenario, doc)));
    }
    Ok((StatusCode::ACCEPTED, Json(view)))
}

async fn finish_in_background(work: impl std::future::Future<Output = Result<(), DeployError>>) {
    if let Err(e) = work.await {
        tracing::warn!("deploy: {e}");
    }
}

/// `GET /deployments?status=&limit=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: ApiQuery<Paging>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let paging = query?.0;
    let status = paging
        .status
        .as_deref()
        .map(|s| {
            DeploymentStatus::parse(s).ok_or_else(|| {
                let names: Vec<&str> = DeploymentStatus::ALL.iter().map(|s| s.name()).collect();
                bad_query("status", format!("`{s}` is not one of {}", names.join(", ")))
            })
        })
        .transpose()?;
    let page = state.store.deployments(status, paging.cursor()?, paging.limit()?).await?;
    Ok(Json(page_json(page, deployment_json)))
}

async fn find(state: &AppState, id: &str) -> Result<DeploymentDoc, ApiError> {
    find_by_id("deployment", id, |oid| state.store.deployment(oid)).await
}

/// `GET /deployments/{id}`: the plan, every step so far, the outcome.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(deployment_json(find(&state, &id).await?)))
}

/// `POST /deployments/{id}/rollback` (admin): moves a succeeded deployment's replicas back.
pub async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Admin)?;
    let mut doc = find(&state, &id).await?;
    if doc.status != DeploymentStatus::Succeeded {
        return Err(ApiError::conflict(format!(
            "only a succeeded deployment can be rolled back; this one is `{}`",
            doc.status.name()
        )));
    }
    let live = live(&state)?;
    let turn = live.turn(&state.store, doc.id).await?.ok_or_else(busy)?;
    let model = state
        .store
        .model(doc.model_id)
        .await?
        .ok_or_else(|| ApiError::not_found("model", &doc.model_id.to_hex()))?;
    let scenario = resolve_scenario(&model.scenario).map_err(|e| ApiError::invalid("scenario", e))?;
    doc.status = DeploymentStatus::Running;
    doc.finished_at = None;
    state.store.save_deployment(&doc).await?;
    let view = deployment_json(doc.clone());
    tokio::spawn(finish_in_background(deploy::rollback(live, turn, state.store.clone(), scenario, doc)));
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// `POST /deployments/{id}/stop` (admin): a running continuous deployment stops after its
/// current round (202); 409 for any other.
pub async fn stop(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Admin)?;
    let doc = find(&state, &id).await?;
    if doc.status != DeploymentStatus::Running || doc.continuous.is_none() {
        return Err(ApiError::conflict(format!(
            "only a running continuous deployment can be stopped; this one is {}{}",
            if doc.continuous.is_some() { "continuous and " } else { "" },
            doc.status.name()
        )));
    }
    let doc =
        state.store.request_stop(doc.id).await?.ok_or_else(|| ApiError::not_found("deployment", &id))?;
    Ok((StatusCode::ACCEPTED, Json(deployment_json(doc))))
}
