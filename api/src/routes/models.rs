//! `/api/v1/models`: trained models, their evaluation and their weights.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use berth_agents::AgentKind;
use serde_json::{Value, json};

use super::training::time_json;
use super::{ApiQuery, AppState, Caller, Paging, bad_query, page_json, parse_id};
use crate::auth::Role;
use crate::http_error::ApiError;
use crate::store::ModelDoc;

/// `GET /models?agent=&limit=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: ApiQuery<Paging>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let paging = query?.0;
    let kind = paging
        .status
        .as_deref()
        .map(|a| {
            serde_json::from_value::<AgentKind>(Value::String(a.into()))
                .map_err(|_| bad_query("agent", format!("`{a}` is not an agent (qlearning, dqn, ppo)")))
        })
        .transpose()?;
    let page = state.store.models(kind, paging.cursor()?, paging.limit()?).await?;
    Ok(Json(page_json(page, model_json)))
}

async fn find(state: &AppState, id: &str) -> Result<ModelDoc, ApiError> {
    let oid = parse_id("model", id)?;
    state.store.model(oid).await?.ok_or_else(|| ApiError::not_found("model", id))
}

/// `GET /models/{id}`: the model with its evaluation against the baselines and the oracle.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(model_json(find(&state, &id).await?)))
}

/// `GET /models/{id}/weights`: the saved model file, as `berth eval --policy` reads it.
pub async fn weights(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let model = find(&state, &id).await?;
    let bytes = state.store.file(model.weights_file).await?;
    let disposition = format!("attachment; filename=\"{}-{id}.bin\"", model.kind);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    ))
}

/// `DELETE /models/{id}` (admin): the model and its weights.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin)?;
    let oid = parse_id("model", &id)?;
    if state.store.delete_model(oid).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("model", &id))
    }
}

/// A model as the API shows it.
fn model_json(model: ModelDoc) -> Value {
    json!({
        "id": model.id.to_hex(),
        "agent": model.kind,
        "status": model.status,
        "task_id": model.task_id.to_hex(),
        "scenario": {"name": model.scenario.name, "fingerprint": model.scenario.fingerprint},
        "trained_steps": model.trained_steps,
        "seed": model.seed,
        "hyperparameters": model.hyperparameters,
        "observation_len": model.observation_len,
        "action_count": model.action_count,
        "evaluation": model.evaluation,
        "weights_bytes": model.weights_bytes,
        "created_at": time_json(Some(model.created_at)),
    })
}
