//! The HTTP side of the metrics registry: the middleware that counts and times every request,
//! and `GET /metrics`, which renders the registry with the store's cached figures.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Middleware: counts and times every request under its route template (`/training/{id}`,
/// not each id, so the label set stays small).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.record_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<AppState>) -> Response {
    let figures = state.figures.get(&state.store).await;
    let text = state.metrics.render(&figures.tasks, &figures.deployments);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
