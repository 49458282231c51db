//! `/api/v1/training`: queue, list, follow and cancel training tasks, and read their logs.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use berth_agents::AgentKind;
use berth_core::Scenario;
use berth_env::shipped;
use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiQuery, AppState, Caller, PageArgs, Paging, bad_query, blocking, find_by_id, page_json};
use crate::http::error::ApiError;
use crate::infra::auth::Role;
use crate::service::training::admission::{TaskShape, admit};
use crate::store::{IdempotencyDoc, ScenarioRef, Status, TaskDevice, TaskDoc, fingerprint};

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

/// The scenario a request names, checked, and loaded.
pub(super) fn scenario_ref(value: &Value) -> Result<(ScenarioRef, Arc<Scenario>), ApiError> {
    let (spec, name_only) = match value {
        Value::String(name) => {
            let yaml = shipped::SHIPPED
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, y)| *y)
                .ok_or_else(|| ApiError::invalid("scenario", shipped::not_shipped(name)))?;
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
    // The error names the scenario's own field: `scenario.nodes[0].count`.
    let scenario = Arc::new(Scenario::from_yaml(&spec).map_err(|e| match e {
        berth_core::Error::Invalid { path, reason } if path != "(document)" => {
            ApiError::invalid(format!("scenario.{path}"), reason)
        }
        other => ApiError::invalid("scenario", other),
    })?);
    let reference = ScenarioRef {
        name: scenario.name.clone(),
        fingerprint: fingerprint(&spec),
        spec: (!name_only).then_some(spec),
    };
    Ok((reference, scenario))
}

/// `POST /training` (operator): checks everything, then queues the task.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<CreateTask>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Operator)?;
    let key = idempotency_key(&headers)?;
    let Json(CreateTask { agent, scenario, steps, seed, hyperparameters, device }) = body?;
    if let Some(steps) = steps
        && !(1..=MAX_STEPS).contains(&steps)
    {
        return Err(ApiError::invalid("steps", format!("must be 1 to {MAX_STEPS}, got {steps}")));
    }
    if let Some(seed) = seed
        && seed > i64::MAX as u64
    {
        return Err(ApiError::invalid("seed", format!("must be at most {}", i64::MAX)));
    }
    state.runner.can_train_on(device).map_err(|reason| ApiError::invalid("device", reason))?;
    // Loading a scenario of thousands of nodes and estimating the run is CPU work: off the
    // async workers, so other requests are answered meanwhile.
    let budget = state.runner.task_memory_bytes();
    let hyperparameters = Value::Object(hyperparameters);
    let (scenario, scenario_seed, hyperparameters) = blocking(move || {
        let (reference, scenario) = scenario_ref(&scenario)?;
        let shape = TaskShape { agent, scenario: &scenario, steps, hyperparameters: &hyperparameters };
        admit(&shape, budget).map_err(|r| ApiError::invalid(r.field, r.reason))?;
        Ok((reference, scenario.seed, hyperparameters))
    })
    .await?;
    let mut task = TaskDoc {
        id: ObjectId::new(),
        agent,
        scenario,
        steps,
        seed: seed.unwrap_or(scenario_seed),
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
        device,
    };
    if let Some(key) = key {
        let record = IdempotencyDoc {
            key: format!("{}\n{key}", caller.0.sub),
            task_id: task.id,
            request: request_fingerprint(&task),
            created_at: task.created_at,
        };
        if let Some(earlier) = state.store.remember_key(&record).await? {
            if earlier.request != record.request {
                return Err(ApiError::invalid(
                    IDEMPOTENCY_HEADER,
                    "this key was used for a different request; use a new key for a new task",
                ));
            }
            // The same request again: its task, stored now if the first try stopped short.
            task.id = earlier.task_id;
        }
    }
    if !state.store.insert_task(&task).await? {
        // Stored by an earlier try of this request: answer as that try would have.
        task = state
            .store
            .task(task.id)
            .await?
            .ok_or_else(|| ApiError::not_found("training task", &task.id.to_hex()))?;
    }
    state.runner.wake();
    let location = format!("/api/v1/training/{}", task.id.to_hex());
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(task_json(task))))
}

/// The header that makes `POST /training` safe to retry.
const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The request's `Idempotency-Key`: 1 to 255 visible ASCII characters, if sent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else { return Ok(None) };
    value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(|k| Some(k.to_string()))
        .ok_or_else(|| {
            ApiError::invalid(IDEMPOTENCY_HEADER, "must be 1 to 255 visible ASCII characters")
                .with_status(StatusCode::BAD_REQUEST, "invalid_header")
        })
}

/// What makes two requests the same task: everything but the id and the times.
fn request_fingerprint(task: &TaskDoc) -> String {
    let request = json!({
        "agent": task.agent,
        "scenario": task.scenario.fingerprint,
        "steps": task.steps,
        "seed": task.seed,
        "hyperparameters": task.hyperparameters,
        "device": task.device,
    });
    fingerprint(&request.to_string())
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
    find_by_id("training task", id, |oid| state.store.task(oid)).await
}

/// `GET /training/{id}`: the task with the learning curve it kept while training.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let mut task = find(&state, &id).await?;
    let curve = task.progress.as_mut().map(|p| std::mem::take(&mut p.curve)).unwrap_or_default();
    let mut body = task_json(task);
    body["curve"] = json!(curve);
    Ok(Json(body))
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
