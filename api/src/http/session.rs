//! Tokens for users with a password, and the health probes.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;

use super::AppState;

/// An OAuth2 password-grant request (RFC 6749 §4.3), form-encoded.
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    grant_type: String,
    username: String,
    password: String,
}

/// An OAuth2 error answer (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({"error": error, "error_description": description}))).into_response()
}

/// How long a password check may wait for one of the bounded Argon2 slots.
const CHECK_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// A 429 of the token endpoint, in its OAuth2 shape, with `Retry-After`.
fn slow_down(wait: Duration, why: &str) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response =
        oauth_error(StatusCode::TOO_MANY_REQUESTS, "slow_down", &format!("{why}; try again in {seconds} s"));
    response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    response
}

/// `POST /api/v1/auth/token`: a bearer token for a configured user. Attempts are limited
/// per client address and per user name (429 with `Retry-After`), and the Argon2 checks
/// run a bounded number at once, so guessing is slow and cannot exhaust the blocking pool.
pub async fn token(
    State(state): State<AppState>,
    extensions: Extensions,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Response {
    let address = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if let Some(address) = address
        && let Err(wait) = state.costly.logins_by_address.check(&address.to_string())
    {
        return slow_down(wait, "too many password attempts from this address");
    }
    let Ok(Form(request)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send grant_type=password, username and password, form-encoded",
        );
    };
    if request.grant_type != "password" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only `password` is supported",
        );
    }
    if let Err(wait) = state.costly.logins_by_user.check(&request.username) {
        return slow_down(wait, "too many password attempts for this user");
    }
    let checks = state.costly.password_checks.clone();
    let Ok(Ok(_slot)) = tokio::time::timeout(CHECK_QUEUE_WAIT, checks.acquire_owned()).await else {
        return slow_down(CHECK_QUEUE_WAIT, "too many password checks at once");
    };
    let users = state.users.clone();
    let checked = tokio::task::spawn_blocking(move || {
        users.check(&request.username, &request.password).map(|u| (u.name.clone(), u.role))
    })
    .await
    .ok()
    .flatten();
    let Some((name, role)) = checked else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown user or wrong password");
    };
    match state.jwt.mint(&name, role, state.token_ttl_s) {
        Ok(token) => {
            Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": state.token_ttl_s}))
                .into_response()
        }
        Err(e) => oauth_error(StatusCode::NOT_IMPLEMENTED, "unsupported_grant_type", &e.to_string()),
    }
}

/// `GET /health/live`: the process answers.
pub async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /health/ready`: MongoDB answers (503 when it does not), as of the last second.
pub async fn ready(State(state): State<AppState>) -> Response {
    match state.figures.get(&state.store).await.reachable {
        true => Json(json!({"status": "ok"})).into_response(),
        false => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "MongoDB does not answer"})),
        )
            .into_response(),
    }
}
