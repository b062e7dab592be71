//! `/.well-known/openid-configuration` (OIDC Discovery 1.0 §4) and
//! `/.well-known/oauth-authorization-server` (RFC 8414 §3): the same metadata.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use crate::app::AppState;
use crate::oauth::discovery;

pub async fn metadata(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(discovery::metadata(app.config.issuer_str())),
    )
}
