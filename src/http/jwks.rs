//! `/jwks`: the public signing keys, RFC 7517 §5. Cacheable for less than the rotation lead
//! time, so a relying party always has a new key before it signs anything.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::respond;
use crate::app::AppState;
use crate::oauth::error::ErrorCode;

/// Relying parties may cache the JWKS this long (seconds).
pub const MAX_AGE: i64 = 300;

pub async fn jwks(State(app): State<AppState>) -> Response {
    match app.signer.keys(app.clock.now()).await {
        Ok(set) => {
            let cache = format!(
                "public, max-age={}",
                MAX_AGE.min(app.config.tokens.key_rotation_lead / 2)
            );
            (
                [(header::CACHE_CONTROL, cache)],
                Json(json!({ "keys": set.published })),
            )
                .into_response()
        }
        Err(e) => {
            crate::store::count_failure(&e);
            tracing::error!(error = %e, "cannot load signing keys");
            respond::json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::TemporarilyUnavailable,
                "the signing keys cannot be loaded; try again later",
            )
        }
    }
}
