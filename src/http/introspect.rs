//! `/introspect`: RFC 7662, and RFC 9701 (a signed JWT answer) when the caller sends
//! `Accept: application/token-introspection+jwt` — the phantom-token pattern: the gateway
//! forwards a JWT to the APIs behind it while clients only ever hold opaque tokens.
//!
//! Only clients registered with `--introspect` may call it. A caller that fails client
//! authentication gets `401 invalid_client`; an authenticated client that is not allowed
//! gets `403` with `unauthorized_client` (decision 0007).

use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use std::sync::Arc;

use super::error::TokenError;
use super::{client_auth, respond};
use crate::app::AppState;
use crate::audit::{AuditEvent, AuditKind};
use crate::crypto::token::Digest;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::introspection;

const PARAMS: &[&str] = &["token", "token_type_hint", "client_id", "client_secret"];

const JWT_MEDIA_TYPE: &str = "application/token-introspection+jwt";

pub async fn introspect(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    let (params, client) =
        client_auth::authenticated_form(&app, &headers, peer, &body, PARAMS).await?;
    // RFC 7662 §2.1: the caller must be authorized, which a public client (no credentials)
    // never is, whatever its registration says (one made before registration refused it).
    if !client.may_introspect || client.is_public() {
        let now = app.clock.now();
        // Audited once a minute per client: a misconfigured gateway may call every second.
        if app
            .floods
            .due(&format!("introspection_refused:{}", client.id), now)
        {
            let origin = super::forms::request_meta(&app, &headers, peer);
            let event = AuditEvent::new(
                AuditKind::IntrospectionRefused,
                format!("client:{}", client.id),
                now,
            )
            .client(&client.id)
            .from_request(origin.0, origin.1);
            crate::audit::record_in_background(app.store.clone(), event);
        }
        return Ok(respond::json_error(
            StatusCode::FORBIDDEN,
            ErrorCode::UnauthorizedClient,
            "this client may not introspect tokens",
        ));
    }
    let token = params.required("token")?;
    let now = app.clock.now();
    let answer = cached_describe(&app, &client.id, token, now).await?;

    let wants_jwt = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',').any(|m| {
                m.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case(JWT_MEDIA_TYPE))
            })
        });
    if !wants_jwt {
        let json = [(header::CONTENT_TYPE, "application/json")];
        return Ok(respond::no_store(
            (json, answer.to_string()).into_response(),
        ));
    }
    let answer = serde_json::from_str(&answer).map_err(OAuthError::server)?;
    let jwt = introspection::sign_answer(app.oauth(), &client.id, answer, now).await?;
    let mut response = jwt.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JWT_MEDIA_TYPE),
    );
    Ok(respond::no_store(response))
}

/// The RFC 7662 answer as JSON text: from this instance's cache when it holds the token
/// (decision 0022), else from the store. Only access tokens' active answers are kept: they
/// do not depend on the caller, and change only by revocation or expiry.
async fn cached_describe(
    app: &AppState,
    caller: &str,
    token: &str,
    now: i64,
) -> Result<Arc<str>, TokenError> {
    let digest = Digest::of(token);
    if let Some(answer) = app.introspection.get(&digest, now) {
        return Ok(answer);
    }
    // Taken before the lookup: a revocation committed meanwhile keeps this answer out.
    let ticket = app.introspection.ticket();
    let answer = introspection::describe(app.oauth(), caller, token, now).await?;
    let text: Arc<str> = Arc::from(answer.to_string());
    if answer["active"] == true && answer["token_type"] == introspection::ACCESS_TOKEN_TYPE {
        let expires_at = answer["exp"].as_i64();
        app.introspection
            .put(ticket, digest, Arc::clone(&text), expires_at);
    }
    Ok(text)
}
