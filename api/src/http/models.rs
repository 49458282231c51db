//! `/api/v1/models`: trained models, their evaluation and their weights.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use berth_agents::AgentKind;
use serde_json::{Value, json};

use super::training::scenario_ref;
use super::training::time_json;
use super::{
    ApiQuery, AppState, Caller, ModelPaging, PageArgs, bad_query, blocking, find_by_id, page_json, parse_id,
};
use crate::http::error::ApiError;
use crate::infra::auth::Role;
use crate::service::training::task::evaluate_agent;
use crate::store::ModelDoc;
use berth_agents::{SavedModel, load_agent};
use berth_env::PlacementEnv;
use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;

/// `GET /models?agent=&limit=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: ApiQuery<ModelPaging>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let paging = query?.0;
    let kind = paging
        .agent
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
    find_by_id("model", id, |oid| state.store.model(oid)).await
}

/// How long an upload refused for want of an evaluation slot is told to wait.
const EVALUATION_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// `POST /models` (operator): a model file from `berth train --out` (its `model.bin`, as the
/// body), e.g. one trained on a live cluster's recording; checked against its scenario,
/// evaluated like a trained task's model, and stored (201), ready to deploy.
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Operator)?;
    if body.is_empty() {
        return Err(ApiError::invalid(
            "body",
            "empty: send the bytes of a model.bin from `berth train --out`",
        ));
    }
    // Each evaluation is seconds of a blocking thread: a bounded number run at once.
    let Ok(_slot) = state.costly.evaluations.clone().try_acquire_owned() else {
        return Err(ApiError::too_many(EVALUATION_RETRY)
            .with_message("too many models are being evaluated; try again shortly"));
    };
    let (saved, reference, evaluation) = blocking({
        let body = body.clone();
        move || {
            let saved = SavedModel::from_bytes(&body)
                .map_err(|e| ApiError::invalid("body", format!("not a berth model file: {e}")))?;
            // Its scenario as a task naming it would store it (same fingerprint).
            let (reference, scenario) = scenario_ref(&Value::String(saved.header.scenario.clone()))?;
            let env = PlacementEnv::new(scenario.clone()).map_err(|e| ApiError::invalid("scenario", e))?;
            // The header is checked, and the weights' size against it, before a network is built.
            let agent = load_agent(&saved, &env).map_err(|e| ApiError::invalid("body", e))?;
            let evaluation = evaluate_agent(&scenario, agent).map_err(|e| ApiError::invalid("body", e))?;
            Ok((saved, reference, evaluation))
        }
    })
    .await?;
    let weights_file = state.store.put_file("uploaded/model.bin", &body).await?;
    let header = &saved.header;
    let model = ModelDoc {
        id: ObjectId::new(),
        kind: header.agent,
        status: "ready".into(),
        task_id: None,
        scenario: reference,
        trained_steps: header.trained_steps,
        seed: header.seed,
        hyperparameters: header.config.clone(),
        observation_len: header.observation_len as u64,
        action_count: header.action_count as u64,
        evaluation,
        weights_file,
        weights_bytes: body.len() as u64,
        created_at: DateTime::now(),
        log_file: None,
    };
    state.store.insert_model(&model).await?;
    Ok((StatusCode::CREATED, Json(model_json(model))))
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
        "task_id": model.task_id.map(|t| t.to_hex()),
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
