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

/// Readiness: the store answers and at least one signing key can sign. An algorithm without
/// a usable key is reported in the body (`degraded`) but does not fail the probe: the keys
/// live in the shared store, so every instance would fail it at once, and the load balancer
/// would take the whole service down for the clients of one algorithm.
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    match readiness(&app).await {
        Ready::Yes => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Ready::Degraded(why) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "degraded": why })),
        ),
        Ready::No(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "reason": reason })),
        ),
    }
}

enum Ready {
    Yes,
    Degraded(String),
    No(String),
}

/// How ready this instance is, in words safe to show anyone; the details go to the log.
async fn readiness(app: &AppState) -> Ready {
    if let Err(e) = app.store.ping().await {
        crate::metrics::store_error(e.kind());
        tracing::warn!(error = %e, "not ready: the store does not answer");
        return Ready::No("store unavailable".to_owned());
    }
    let keys = match app.signer.keys(app.clock.now()).await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(error = %e, "not ready: cannot load signing keys");
            return Ready::No("signing keys cannot be loaded".to_owned());
        }
    };
    let missing = keys.algs_without_signer();
    if missing.is_empty() {
        return Ready::Yes;
    }
    tracing::warn!(algs = ?missing, unusable = ?keys.unusable, "no usable signing key");
    let why = format!("no usable signing key for {}", missing.join(", "));
    if keys.active.is_empty() {
        Ready::No(why)
    } else {
        Ready::Degraded(why)
    }
}
