//! `POST /apikeys/revoke-leaked`: anyone who finds a Tessera API key where it should not be
//! (a secret scanner, a person) reports it here and it stops working. No authentication, as
//! scanners expect: the key is its own proof. The answer is the same whether or not the
//! value was a live key, so the endpoint cannot be used to test guesses; values that fail
//! the checksum cost no lookup, and each source address is rate-limited.
//!
//! Body: a form with `token`, a JSON object `{"token": "…"}`, or a JSON array of such objects
//! (the shape secret-scanning services send), at most [`MAX_REPORTED`] values.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::TokenError;
use super::forms::request_meta;
use super::{client_ip, error, respond};
use crate::app::AppState;
use crate::oauth::api_keys::{self, Actor};
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;

/// Most values read from one report.
pub const MAX_REPORTED: usize = 100;

#[derive(Deserialize)]
#[serde(untagged)]
enum Report {
    One(Reported),
    Many(Vec<Reported>),
}

#[derive(Deserialize)]
struct Reported {
    token: String,
}

pub async fn revoke_leaked(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    let addr = client_ip::client_ip(&app.config.trusted_proxies, &headers, peer);
    app.rate_limits
        .check_address(addr)
        .map_err(TokenError::rate_limited)?;
    let values = reported_values(&headers, &body)?;
    let (source_ip, user_agent) = request_meta(&app, &headers, peer);
    let actor = Actor {
        actor: "anonymous".to_owned(),
        source_ip,
        user_agent,
    };
    let now = app.clock.now();
    for value in &values {
        api_keys::report_leaked(app.store.as_ref(), value, &actor, now).await?;
    }
    Ok(respond::no_store(
        Json(json!({ "received": values.len() })).into_response(),
    ))
}

/// The reported values, from a form or JSON body. Public only for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn reported_values(headers: &HeaderMap, body: &[u8]) -> Result<Vec<String>, OAuthError> {
    if error::is_form(headers) {
        let form = Params::parse(body, &["token"]);
        form.reject_malformed()?;
        return Ok(vec![form.required("token")?.to_owned()]);
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(OAuthError::invalid_request(
            "send a form with `token`, or JSON: {\"token\": \"…\"} or a list of them",
        ));
    }
    let values: Vec<String> = match serde_json::from_slice::<Report>(body) {
        Ok(Report::One(r)) => vec![r.token],
        Ok(Report::Many(list)) => list.into_iter().map(|r| r.token).collect(),
        Err(_) => {
            return Err(OAuthError::invalid_request(
                "the body must be {\"token\": \"…\"} or a list of such objects",
            ))
        }
    };
    if values.is_empty() || values.len() > MAX_REPORTED {
        return Err(OAuthError::invalid_request(format!(
            "report between 1 and {MAX_REPORTED} values at once"
        )));
    }
    Ok(values)
}
