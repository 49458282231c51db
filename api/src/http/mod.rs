//! The HTTP API: the router, its shared state, and the bearer-token check every `/api/v1`
//! route but the token endpoint goes through; the console's page at `/`.

mod cluster_metrics;
mod console;
mod deployments;
pub mod error;
#[cfg(test)]
mod fuzz;
mod models;
mod observability;
pub mod request_guard;
mod session;
mod training;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Router, middleware};
use mongodb::bson::oid::ObjectId;
use serde::Deserialize;

use crate::http::error::ApiError;
use crate::infra::auth::{Claims, Jwt, Role, Users};
use crate::infra::metrics::Metrics;
use crate::infra::rate_limit::{CostlyWork, RateLimiter};
use crate::service::cluster::ClusterSource;
use crate::service::training::runner::Runner;
use crate::store::{Page, Store};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Token signing and checks.
    pub jwt: Arc<Jwt>,
    /// Who may log in with a password.
    pub users: Arc<Users>,
    /// The training pool.
    pub runner: Arc<Runner>,
    /// Lifetime of tokens from the token endpoint, seconds.
    pub token_ttl_s: u64,
    /// Request and training figures for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The cluster `/api/v1/metrics` reports on.
    pub cluster: Arc<ClusterSource>,
    /// Requests per token subject.
    pub limiter: Arc<RateLimiter>,
    /// Password attempts, Argon2 checks and model evaluations.
    pub costly: Arc<CostlyWork>,
    /// The store's counts and health, cached for `/metrics` and `/health/ready`.
    pub figures: Arc<crate::infra::figures::StoreFigures>,
    /// The cluster deploys go to (`--live`), if any.
    pub live: Option<crate::service::cluster::LiveCluster>,
}

/// The whole API.
pub fn router(state: AppState, max_body_bytes: usize, request_timeout: Duration) -> Router {
    let api = Router::new()
        .route("/auth/token", post(session::token))
        .route("/training", post(training::create).get(training::list))
        .route("/training/{id}", get(training::get))
        .route("/training/{id}/cancel", post(training::cancel))
        .route("/training/{id}/log", get(training::log))
        .route("/models", get(models::list).post(models::upload))
        .route("/models/{id}", get(models::get).delete(models::delete))
        .route("/models/{id}/weights", get(models::weights))
        .route("/models/{id}/deploy", post(deployments::deploy))
        .route("/deployments", get(deployments::list))
        .route("/deployments/{id}", get(deployments::get))
        .route("/deployments/{id}/rollback", post(deployments::rollback))
        .route("/deployments/{id}/stop", post(deployments::stop))
        .route("/metrics", get(cluster_metrics::current))
        .route("/metrics/history", get(cluster_metrics::history))
        .route("/openapi.json", get(openapi));
    Router::new()
        .nest("/api/v1", api)
        .merge(console::routes())
        .route("/health/live", get(session::live))
        .route("/health/ready", get(session::ready))
        .route("/metrics", get(observability::scrape))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(middleware::from_fn(move |request, next| time_limit(request, next, request_timeout)))
        .layer(middleware::from_fn_with_state(state.clone(), observability::track))
        .layer(middleware::from_fn(crate::http::request_guard::guard))
        .layer(middleware::from_fn(crate::infra::telemetry::trace_request))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Answers 503 for a request that takes longer than `limit` (a database that hangs), rather
/// than holding the connection forever. Training runs in the task runner, not in requests.
async fn time_limit(
    request: axum::extract::Request,
    next: middleware::Next,
    limit: Duration,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", "the request took too long; try again")
                .into_response()
        }
    }
}

/// The OpenAPI document of these routes (kept beside them; a test checks that every
/// operation it lists is routed).
const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /api/v1/openapi.json` (viewer).
async fn openapi(caller: Caller) -> Result<impl axum::response::IntoResponse, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI))
}

/// Runs a request's CPU work (parsing and checking a large scenario, evaluating a model)
/// on a blocking thread, so the async workers keep answering; if it panics, the request
/// gets a generic 500 and the log the detail.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|failed| {
        let request = crate::http::request_guard::current().unwrap_or_default();
        tracing::error!(request_id = %request, "a request's blocking work failed: {failed}");
        Err(ApiError::internal())
    })
}

/// The caller of a route, from a valid bearer token.
pub struct Caller(pub Claims);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("this route needs `Authorization: Bearer <token>`"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .ok_or_else(|| ApiError::unauthorized("the Authorization header is not `Bearer <token>`"))?;
        let claims = state.jwt.verify(token.trim()).map_err(|e| ApiError::unauthorized(e.to_string()))?;
        state.limiter.check(&claims.sub).map_err(ApiError::too_many)?;
        Ok(Caller(claims))
    }
}

impl Caller {
    /// Refuses (403) a caller below `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.0.role >= role {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this needs the `{role}` role; the token has `{}`", self.0.role),
            ))
        }
    }
}

/// The document of `kind` a path id names, looked up with `lookup`; 404 naming the kind and
/// the id when the id is malformed or names nothing.
pub async fn find_by_id<T, F, R>(kind: &str, id: &str, lookup: F) -> Result<T, ApiError>
where
    F: FnOnce(ObjectId) -> R,
    R: std::future::Future<Output = crate::store::StoreResult<Option<T>>>,
{
    let oid = parse_id(kind, id)?;
    lookup(oid).await?.ok_or_else(|| ApiError::not_found(kind, id))
}

/// A path id: a 24-digit hex ObjectId, else 404 (it names nothing).
pub fn parse_id(kind: &str, id: &str) -> Result<ObjectId, ApiError> {
    ObjectId::parse_str(id).map_err(|_| ApiError::not_found(kind, id))
}

/// `?limit=&cursor=&status=` of the listings filtered by status (tasks, deployments).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    /// Items per page, 1 to 100 (default 20).
    limit: Option<u32>,
    /// The `next` of the previous page.
    cursor: Option<String>,
    /// Only items of this status.
    pub(super) status: Option<String>,
}

/// `?limit=&cursor=&agent=` of the model listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPaging {
    /// Items per page, 1 to 100 (default 20).
    limit: Option<u32>,
    /// The `next` of the previous page.
    cursor: Option<String>,
    /// Only models of this agent.
    pub(super) agent: Option<String>,
}

/// The page size and position every listing's query carries.
pub(super) trait PageArgs {
    /// `limit` and `cursor` as sent.
    fn sent(&self) -> (Option<u32>, Option<&str>);

    /// Items per page: 1 to 100, 20 by default.
    fn limit(&self) -> Result<u32, ApiError> {
        match self.sent().0 {
            None => Ok(20),
            Some(n @ 1..=100) => Ok(n),
            Some(n) => Err(bad_query("limit", format!("must be 1 to 100, got {n}"))),
        }
    }

    /// Where the page starts: the `next` of the previous page.
    fn cursor(&self) -> Result<Option<ObjectId>, ApiError> {
        self.sent()
            .1
            .map(|c| {
                ObjectId::parse_str(c).map_err(|_| bad_query("cursor", "not a cursor this API gave out"))
            })
            .transpose()
    }
}

impl PageArgs for Paging {
    fn sent(&self) -> (Option<u32>, Option<&str>) {
        (self.limit, self.cursor.as_deref())
    }
}

impl PageArgs for ModelPaging {
    fn sent(&self) -> (Option<u32>, Option<&str>) {
        (self.limit, self.cursor.as_deref())
    }
}

fn bad_query(field: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(field, reason).with_status(StatusCode::BAD_REQUEST, "invalid_query")
}

/// `{"items": [...], "next": cursor or null}`.
pub fn page_json<T>(page: Page<T>, view: impl Fn(T) -> serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "items": page.items.into_iter().map(view).collect::<Vec<_>>(),
        "next": page.next.map(|id| id.to_hex()),
    })
}

/// Query strings, with errors in the API's shape.
pub type ApiQuery<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every operation lists what any route can answer: 500 (a panic, generically) and 503
    /// (the time limit, a database that does not answer); a secured one 401 and 429; one
    /// with a JSON or binary body 400, 413, 415 and 422; one that needs more than a viewer,
    /// 403. Schemathesis (`scripts/schemathesis.sh`) checks the document against the running
    /// service; this keeps a new route from forgetting the statuses every route shares.
    #[test]
    fn every_operation_documents_the_statuses_it_can_answer() {
        let document: Value = serde_json::from_str(super::OPENAPI).unwrap();
        let global_security = &document["security"];
        let mut checked = 0;
        for (path, operations) in document["paths"].as_object().unwrap() {
            for (method, operation) in operations.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                let secured = operation.get("security").unwrap_or(global_security) != &Value::Array(vec![]);
                let summary = operation["summary"].as_str().unwrap_or_default();
                let mut expected = vec!["500", "503"];
                if secured {
                    expected.extend(["401", "429"]);
                    if operation.get("requestBody").is_some() {
                        expected.extend(["400", "413", "415", "422"]);
                    }
                }
                if summary.contains("(operator)") || summary.contains("(admin)") {
                    expected.push("403");
                }
                for status in expected {
                    assert!(responses.contains_key(status), "{method} {path} does not list {status}");
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 22);
    }

    /// The document names every shipped scenario a task may train on (the console's form
    /// offers the names it reads there), and no other.
    #[test]
    fn the_task_schema_names_every_shipped_scenario() {
        let document: Value = serde_json::from_str(super::OPENAPI).unwrap();
        let named =
            &document["components"]["schemas"]["CreateTask"]["properties"]["scenario"]["oneOf"][0]["enum"];
        let shipped: Vec<&str> = berth_env::shipped::names().collect();
        assert_eq!(named, &serde_json::json!(shipped));
    }
}
