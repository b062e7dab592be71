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
use axum::Json;

use super::error::TokenError;
use super::{client_auth, respond};
use crate::app::AppState;
use crate::oauth::error::ErrorCode;
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
        return Ok(respond::json_error(
            StatusCode::FORBIDDEN,
            ErrorCode::UnauthorizedClient,
            "this client may not introspect tokens",
        ));
    }
    let token = params.required("token")?;
    let now = app.clock.now();
    let answer = introspection::describe(app.oauth(), &client.id, token, now).await?;

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
        return Ok(respond::no_store(Json(answer).into_response()));
    }
    let jwt = introspection::sign_answer(app.oauth(), &client.id, answer, now).await?;
    let mut response = jwt.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JWT_MEDIA_TYPE),
    );
    Ok(respond::no_store(response))
}
