//! The API's errors: a status and a JSON body that names the problem, never internals.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use berth_env::live::LiveError;

use crate::service::deploy::DeployError;
use crate::store::StoreError;

/// An error answer: `{"error": {"code", "message", "field"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    retry_after_s: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ApiError {
    /// An error of any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, retry_after_s: None }
    }

    /// 422: a field's value is not acceptable.
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        let field = field.into();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field",
            message: format!("`{field}`: {reason}"),
            field: Some(field),
            retry_after_s: None,
        }
    }

    /// The same error answered with another status and code (a bad query parameter is a
    /// 400, a bad body field a 422).
    pub fn with_status(mut self, status: StatusCode, code: &'static str) -> Self {
        self.status = status;
        self.code = code;
        self
    }

    /// 404 for a thing of `kind` with `id`.
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no {kind} with id `{id}`"))
    }

    /// 401: no valid token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 429: over the rate limit; try again after `wait`.
    pub fn too_many(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests for this token; try again in {seconds} s"),
        );
        error.retry_after_s = Some(seconds);
        error
    }

    /// 500: something failed on the service's side (a panic, a failed blocking task). The
    /// answer names the request's id, under which the log has the detail.
    pub fn internal() -> Self {
        let id = crate::http::request_guard::current().unwrap_or_else(|| "unknown".into());
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the service failed to answer this request; its log names it as request `{id}`"),
        )
    }

    /// The same error with another message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// 409: the thing is not in a state that allows this.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
                request_id: crate::http::request_guard::current(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert("www-authenticate", "Bearer".parse().expect("static header"));
        }
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert("retry-after", seconds.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        // The cause goes to the log, not to the caller.
        let request = crate::http::request_guard::current().unwrap_or_default();
        tracing::warn!(request_id = %request, "store error: {error}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the database did not answer; try again",
        )
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => {
                let text = e.body_text();
                let (field, reason) = field_and_reason(&text, "body");
                Self::invalid(if field == "." { "body" } else { field }, reason)
            }
            JsonRejection::JsonSyntaxError(e) => Self::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {}", e.body_text()),
            ),
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the body is larger than this service accepts",
            ),
            other => Self::new(other.status(), "bad_request", other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let text = rejection.body_text();
        let (field, reason) = field_and_reason(&text, "query");
        Self::invalid(field, reason).with_status(StatusCode::BAD_REQUEST, "invalid_query")
    }
}

/// The field and reason of an axum rejection text, `"<what failed>: <path>: <reason>"`
/// (serde_path_to_error's path); `whole` names the field when there is no path.
fn field_and_reason<'a>(text: &'a str, whole: &'a str) -> (&'a str, &'a str) {
    let detail = text.split_once(": ").map_or(text, |(_, d)| d);
    detail.split_once(": ").unwrap_or((whole, detail))
}

/// A deploy's errors: a model that cannot act here or a plan berth cannot apply yet 422, a cluster that does not match the
/// model or a lost deploy lock 409, Kubernetes' refusals and failures 502 with its message.
impl From<DeployError> for ApiError {
    fn from(error: DeployError) -> Self {
        match error {
            DeployError::Store(e) => e.into(),
            DeployError::Model(reason) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "model_unusable", reason)
            }
            DeployError::Live(e @ LiveError::Mismatch { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "cluster_mismatch", e.to_string())
            }
            // Kubernetes' own message names the missing right; the operator needs it.
            DeployError::Live(e @ LiveError::Forbidden { .. }) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "cluster_forbidden", e.to_string())
            }
            DeployError::Live(e) => ApiError::new(StatusCode::BAD_GATEWAY, "cluster_error", e.to_string()),
            DeployError::Lost(_) => ApiError::conflict(error.to_string()),
        }
    }
}
