//! What every JSON endpoint's answers share: one shape for error bodies, and one cache rule
//! for anything that carries a token, a code or a verdict on one.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::oauth::error::ErrorCode;

/// RFC 6749 §5.1 (tokens), RFC 7662 §4 (introspection answers), OIDC Core §5.3.2 (userinfo):
/// nobody on the way may keep a copy.
pub fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An error body as RFC 6749 §5.2 shapes it: `error` and `error_description`, never cached.
pub fn json_error(status: StatusCode, code: ErrorCode, description: &str) -> Response {
    let body = Json(json!({
        "error": code.as_str(),
        "error_description": description,
    }));
    no_store((status, body).into_response())
}
