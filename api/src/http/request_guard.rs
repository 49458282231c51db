//! Every request gets an id (`x-request-id`, the client's if it sent a short printable one),
//! and a handler that panics answers a generic 500 naming that id instead of dropping the
//! connection; the panic's detail goes to the log under the same id, never to the client.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use mongodb::bson::oid::ObjectId;

use crate::http::error::ApiError;

tokio::task_local! {
    /// The id of the request this task is answering.
    static REQUEST_ID: String;
}

/// The header that carries the id both ways.
pub const HEADER: &str = "x-request-id";

/// The id of the request being answered, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The client's id when it is 1 to 64 visible ASCII characters, else a fresh one.
fn id_for(request: &Request) -> String {
    request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| ObjectId::new().to_hex(), str::to_string)
}

/// The middleware.
pub async fn guard(request: Request, next: Next) -> Response {
    let id = id_for(&request);
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let answered = REQUEST_ID
        .scope(id.clone(), async move {
            match std::panic::AssertUnwindSafe(next.run(request)).catch_unwind().await {
                Ok(response) => response,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(request_id = %current().unwrap_or_default(), "{method} {path} panicked: {what}");
                    ApiError::internal().into_response()
                }
            }
        })
        .await;
    let mut response = answered;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
