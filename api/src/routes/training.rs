//! `/api/v1/training`: queue, list, follow and cancel training tasks, and read their logs.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use berth_agents::AgentKind;
use berth_agents::train::check_hyperparameters;
use berth_env::shipped;
use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiQuery, AppState, Caller, Paging, bad_query, page_json, parse_id};
use crate::auth::Role;
use crate::http_error::ApiError;
use crate::runner::resolve_scenario;
use crate::store::{ScenarioRef, Status, TaskDevice, TaskDoc, fingerprint};

/// Largest step budget a task may ask for: about a day of PPO on two cores.
const MAX_STEPS: u64 = 500_000_000;

/// The body of `POST /training`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    agent: AgentKind,
    /// A shipped scenario's name, or a scenario object (the YAML schema, as JSON).
    scenario: Value,
    steps: Option<u64>,
    seed: Option<u64>,
    #[serde(default)]
    hyperparameters: serde_json::Map<String, Value>,
    /// `cpu` (default) or `cuda`.
    #[serde(default)]
    device: TaskDevice,
}

/// The scenario a request names, checked.
pub(super) fn scenario_ref(value: &Value) -> Result<(ScenarioRef, u64), ApiError> {
    let (spec, name_only) = match value {
        Value::String(name) => {
            let yaml =
                shipped::SHIPPED.iter().find(|(n, _)| n == name).map(|(_, y)| *y).ok_or_else(|| {
                    let names: Vec<&str> = shipped::SHIPPED.iter().map(|(n, _)| *n).collect();
                    ApiError::invalid(
                        "scenario",
                        format!("`{name}` is not a shipped scenario ({})", names.join(", ")),
                    )
                })?;
            (yaml.to_string(), true)
        }
        Value::Object(_) => (value.to_string(), false),
        _ => {
            return Err(ApiError::invalid(
                "scenario",
                "must be a shipped scenario's name or a scenario object",
            ));
        }
    };
    let fingerprint = fingerprint(&spec);
    let mut reference = ScenarioRef { name: String::new(), spec: Some(spec), fingerprint };
    let scenario = resolve_scenario(&reference).map_err(|e| ApiError::invalid("scenario", e))?;
    reference.name = scenario.name.clone();
    if name_only {
        reference.spec = None;
    }
    Ok((reference, scenario.seed))
}

/// `POST /training` (operator): checks everything, then queues the task.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateTask>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Operator)?;
    let Json(body) = body?;
    if let Some(steps) = body.steps
        && !(1..=MAX_STEPS).contains(&steps)
    {
        return Err(ApiError::invalid("steps", format!("must be 1 to {MAX_STEPS}, got {steps}")));
    }
    if let Some(seed) = body.seed
        && seed > i64::MAX as u64
    {
        return Err(ApiError::invalid("seed", format!("must be at most {}", i64::MAX)));
    }
    let (scenario, scenario_seed) = scenario_ref(&body.scenario)?;
    let hyperparameters = Value::Object(body.hyperparameters);
    check_hyperparameters(body.agent, &hyperparameters).map_err(|e| match e {
        berth_agents::Error::Config { name, reason } => {
            ApiError::invalid(format!("hyperparameters.{name}"), reason)
        }
        other => ApiError::invalid("hyperparameters", other),
    })?;
    state.runner.can_train_on(body.device).map_err(|reason| ApiError::invalid("device", reason))?;
    let task = TaskDoc {
        id: ObjectId::new(),
        agent: body.agent,
        scenario,
        steps: body.steps,
        seed: body.seed.unwrap_or(scenario_seed),
        hyperparameters,
        status: Status::Pending,
        created_by: caller.0.sub.clone(),
        created_at: DateTime::now(),
        started_at: None,
        finished_at: None,
        progress: None,
        model_id: None,
        error: None,
        note: None,
        owner: None,
        lease_until: None,
        attempts: 0,
        cancel_requested: false,
        log_file: None,
        device: body.device,
    };
    state.store.insert_task(&task).await?;
    state.runner.wake();
    let location = format!("/api/v1/training/{}", task.id.to_hex());
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(task_json(task))))
}

/// `GET /training?status=&limit=&cursor=`.
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
            Status::parse(s).ok_or_else(|| {
                let names: Vec<&str> = Status::ALL.iter().map(|s| s.name()).collect();
                bad_query("status", format!("`{s}` is not a status ({})", names.join(", ")))
            })
        })
        .transpose()?;
    let page = state.store.tasks(status, paging.cursor()?, paging.limit()?).await?;
    Ok(Json(page_json(page, task_json)))
}

async fn find(state: &AppState, id: &str) -> Result<TaskDoc, ApiError> {
    let oid = parse_id("training task", id)?;
    state.store.task(oid).await?.ok_or_else(|| ApiError::not_found("training task", id))
}

/// `GET /training/{id}`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(task_json(find(&state, &id).await?)))
}

/// `POST /training/{id}/cancel` (operator): a queued task is cancelled at once, a running
/// one stops within a second; a finished one is a conflict.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operator)?;
    let task = find(&state, &id).await?;
    if task.status.is_final() {
        return Err(ApiError::conflict(format!("task `{id}` is already {}", task.status.name())));
    }
    state.runner.stop_local(task.id);
    let task = state
        .store
        .request_cancel(task.id)
        .await?
        .ok_or_else(|| ApiError::not_found("training task", &id))?;
    Ok(Json(task_json(task)))
}

/// `GET /training/{id}/log`: the CSV log (one row per update), once the task completed.
pub async fn log(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let task = find(&state, &id).await?;
    let file = task.log_file.ok_or_else(|| {
        ApiError::conflict(format!(
            "task `{id}` is {}; its log is stored when it completes",
            task.status.name()
        ))
    })?;
    let csv = state.store.file(file).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv))
}

/// A time as RFC 3339.
pub fn time_json(t: Option<DateTime>) -> Value {
    t.and_then(|t| t.try_to_rfc3339_string().ok()).map_or(Value::Null, Value::String)
}

/// A task as the API shows it.
fn task_json(task: TaskDoc) -> Value {
    let progress = task.progress.as_ref().map(|p| {
        json!({
            "step": p.step,
            "total": p.total,
            "fraction": if p.total > 0 { p.step as f64 / p.total as f64 } else { 0.0 },
        })
    });
    let metrics = task.progress.as_ref().map(|p| json!({"episodic_return": p.recent_return, "sps": p.sps}));
    json!({
        "id": task.id.to_hex(),
        "agent": task.agent,
        "scenario": {"name": task.scenario.name, "fingerprint": task.scenario.fingerprint},
        "steps": task.steps,
        "seed": task.seed,
        "hyperparameters": task.hyperparameters,
        "device": task.device,
        "status": task.status,
        "created_by": task.created_by,
        "created_at": time_json(Some(task.created_at)),
        "started_at": time_json(task.started_at),
        "finished_at": time_json(task.finished_at),
        "progress": progress,
        "latest_metrics": metrics,
        "model_id": task.model_id.map(|m| m.to_hex()),
        "error": task.error,
        "note": task.note,
        "attempts": task.attempts,
        "cancel_requested": task.cancel_requested,
    })
}
