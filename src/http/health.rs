//! Liveness and readiness probes for orchestrators and load balancers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;

/// Liveness: the process answers. Never touches the store, so a store outage does not get
/// healthy instances restarted.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the store answers and every advertised algorithm has a signing key this
/// instance can use, so it can serve every request, ID tokens included.
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    match not_ready_because(&app).await {
        None => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "reason": reason })),
        ),
    }
}

/// Why this instance cannot serve, in words safe to show anyone; the details go to the log.
async fn not_ready_because(app: &AppState) -> Option<String> {
    if let Err(e) = app.store.ping().await {
        tracing::warn!(error = %e, "not ready: the store does not answer");
        return Some("store unavailable".to_owned());
    }
    let keys = match app.signer.keys(app.clock.now()).await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(error = %e, "not ready: cannot load signing keys");
            return Some("signing keys cannot be loaded".to_owned());
        }
    };
    // An instance that cannot sign for an algorithm answers 500 to every client registered
    // with it; better the load balancer sends those requests to an instance that can.
    let missing = keys.algs_without_signer();
    if missing.is_empty() {
        return None;
    }
    tracing::warn!(algs = ?missing, unusable = ?keys.unusable, "not ready: no usable signing key");
    Some(format!("no usable signing key for {}", missing.join(", ")))
}
