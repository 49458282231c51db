//! Tokens for users with a password, and the health probes.

use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
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

/// `POST /api/v1/auth/token`: a bearer token for a configured user.
pub async fn token(
    State(state): State<AppState>,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Response {
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

/// `GET /health/ready`: MongoDB answers (503 when it does not).
pub async fn ready(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Json(json!({"status": "ok"})).into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "MongoDB does not answer"})),
        )
            .into_response(),
    }
}
