//! `/api/v1/metrics`: the cluster now, and the snapshots recorded before.

use axum::Json;
use axum::extract::State;
use mongodb::bson::DateTime;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiQuery, AppState, Caller, bad_query};
use crate::http::error::ApiError;
use crate::infra::auth::Role;
use crate::service::cluster::snapshot_json;

/// `GET /metrics`: nodes, replicas, traffic and latency of the configured cluster source.
pub async fn current(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let snapshot = state.cluster.snapshot().await.map_err(|reason| {
        ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "cluster_error",
            format!("cannot read the cluster: {reason}"),
        )
    })?;
    Ok(Json(snapshot_json(&snapshot)))
}

/// `?from=&to=&limit=` of the history.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// RFC 3339; default an hour before `to`.
    from: Option<String>,
    /// RFC 3339; default now.
    to: Option<String>,
    /// At most this many snapshots, 1 to 1000 (default 500).
    limit: Option<u32>,
}

fn time(field: &str, text: &str) -> Result<DateTime, ApiError> {
    DateTime::parse_rfc3339_str(text)
        .map_err(|_| bad_query(field, format!("`{text}` is not an RFC 3339 time (2026-11-23T17:00:00Z)")))
}

/// `GET /metrics/history`: recorded snapshots in a time range, oldest first.
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    query: ApiQuery<Range>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let range = query?.0;
    let to = range.to.as_deref().map(|t| time("to", t)).transpose()?.unwrap_or_else(DateTime::now);
    let from = match range.from.as_deref() {
        Some(t) => time("from", t)?,
        None => DateTime::from_millis(to.timestamp_millis() - 3_600_000),
    };
    if from > to {
        return Err(bad_query("from", "must not be after `to`"));
    }
    let limit = match range.limit {
        None => 500,
        Some(n @ 1..=1000) => n,
        Some(n) => return Err(bad_query("limit", format!("must be 1 to 1000, got {n}"))),
    };
    let snapshots = state.store.snapshots(from, to, limit).await?;
    Ok(Json(json!({"items": snapshots.iter().map(snapshot_json).collect::<Vec<_>>()})))
}
