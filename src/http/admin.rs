//! The admin listener (`admin_bind`): Prometheus metrics at `/metrics`, never on the public
//! listener (docs/decisions/0021-metrics.md). Metrics name routes, clients' traffic and
//! failure rates: useful to an attacker probing us, so they stay on loopback unless the
//! operator sets `metrics_bearer_token`, which every scrape must then present.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::timeout::TimeoutLayer;

use crate::app::AppState;
use crate::paths;

/// The exposition format `render` writes (Prometheus text format 0.0.4).
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The admin listener's routes; anything else is 404.
pub fn router(state: AppState) -> Router {
    let timeout = state.config.request_timeout;
    Router::new()
        .route(paths::METRICS, get(metrics))
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
}

/// GET /metrics: the gauges read now, then everything in Prometheus's text format.
async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &app.config.metrics_bearer_token {
        if let Some(challenge) = bearer_challenge(&headers, expected.expose_secret()) {
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
            return response;
        }
    }
    let Some(recorder) = crate::metrics::recorder() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    crate::metrics::pool(app.store.pool_status());
    let (running, waiting) = app.passwords.load();
    crate::metrics::password_hashing(running, waiting);
    crate::metrics::memory();
    (
        [
            (header::CONTENT_TYPE, TEXT_FORMAT),
            (header::CACHE_CONTROL, "no-store"),
        ],
        recorder.render(),
    )
        .into_response()
}

/// RFC 6750 §2.1 and §3: `None` when the request carries the token; otherwise the
/// `WWW-Authenticate` challenge of the 401: bare without credentials, `invalid_token` with
/// wrong ones.
fn bearer_challenge(headers: &HeaderMap, expected: &str) -> Option<&'static str> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match presented {
        None => Some("Bearer realm=\"tessera-metrics\""),
        Some(token) if same_secret(token, expected) => None,
        Some(_) => Some("Bearer realm=\"tessera-metrics\", error=\"invalid_token\""),
    }
}

/// Compared as SHA-256 digests in constant time: equal lengths whatever was sent, so neither
/// the comparison's time nor its length check tells how much of a guess was right.
fn same_secret(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_token_is_checked_rfc6750_3() {
        let token = "0123456789abcdef0123456789abcdef";
        let challenge = |value: &str| bearer_challenge(&with_authorization(value), token);
        assert_eq!(challenge(&format!("Bearer {token}")), None);
        assert_eq!(challenge(&format!("bearer {token}")), None);
        assert_eq!(
            bearer_challenge(&HeaderMap::new(), token),
            Some("Bearer realm=\"tessera-metrics\"")
        );
        assert_eq!(
            challenge(&format!("Basic {token}")),
            Some("Bearer realm=\"tessera-metrics\"")
        );
        for wrong in [format!("Bearer {token}x"), "Bearer nope".to_owned()] {
            let refused = challenge(&wrong).unwrap();
            assert!(refused.contains("error=\"invalid_token\""), "{wrong}");
        }
    }
}
