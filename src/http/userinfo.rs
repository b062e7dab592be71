//! `/userinfo`, OIDC Core §5.3: a Bearer access token (RFC 6750 §2.1 header, or §2.2 form
//! body on POST) with the `openid` scope gets `sub` and the claims its scopes release.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::is_form;
use super::rate_limit::Exceeded;
use super::{client_ip, respond};
use crate::app::AppState;
use crate::oauth::error::ErrorCode;
use crate::oauth::params::Params;
use crate::oauth::{claims, credential};
use crate::store::TokenKind;

/// RFC 6750 §3: errors in `WWW-Authenticate: Bearer …`; no error attributes when the
/// request carried no token at all (§3.1).
pub enum BearerError {
    NoToken,
    InvalidRequest(&'static str),
    InvalidToken,
    InsufficientScope,
    RateLimited(Exceeded),
    Server(anyhow::Error),
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        let (status, challenge) = match &self {
            BearerError::NoToken => (StatusCode::UNAUTHORIZED, "Bearer realm=\"tessera\"".to_owned()),
            BearerError::InvalidRequest(d) => (
                StatusCode::BAD_REQUEST,
                format!("Bearer realm=\"tessera\", error=\"invalid_request\", error_description=\"{d}\""),
            ),
            BearerError::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"tessera\", error=\"invalid_token\", error_description=\"the access token is invalid, expired or revoked\"".to_owned(),
            ),
            BearerError::InsufficientScope => (
                StatusCode::FORBIDDEN,
                "Bearer realm=\"tessera\", error=\"insufficient_scope\", scope=\"openid\"".to_owned(),
            ),
            BearerError::RateLimited(exceeded) => {
                let mut response = respond::json_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::TemporarilyUnavailable,
                    "too many requests",
                );
                exceeded.apply(response.headers_mut());
                return response;
            }
            BearerError::Server(e) => {
                crate::store::count_failure(e);
                if crate::store::StoreError::unavailable_in(e) {
                    tracing::warn!(error = %e, "userinfo failed: the store is unavailable");
                    let mut response = respond::json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorCode::TemporarilyUnavailable,
                        crate::oauth::error::UNAVAILABLE,
                    );
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, super::error::RETRY_AFTER);
                    return response;
                }
                tracing::error!(error = %e, "userinfo failed");
                return respond::json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::ServerError,
                    "the server could not complete the request",
                );
            }
        };
        let mut response = status.into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        respond::no_store(response)
    }
}

/// The bearer token from the header or, for a form POST, the body; never both (§2).
fn presented(headers: &HeaderMap, body: Option<&[u8]>) -> Result<String, BearerError> {
    let from_header = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| BearerError::InvalidRequest("malformed Authorization header"))?;
            match value.split_once(' ') {
                Some((scheme, token))
                    if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
                {
                    Some(token.trim().to_owned())
                }
                _ => return Err(BearerError::InvalidRequest("use the Bearer scheme")),
            }
        }
    };
    let from_body = match body {
        Some(body) if is_form(headers) => {
            let params = Params::parse(body, &["access_token"]);
            if params.is_rejected("access_token") {
                return Err(BearerError::InvalidRequest(
                    "access_token sent more than once or malformed",
                ));
            }
            params.get("access_token").map(str::to_owned)
        }
        _ => None,
    };
    match (from_header, from_body) {
        (Some(_), Some(_)) => Err(BearerError::InvalidRequest(
            "send the token in one place only",
        )),
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (None, None) => Err(BearerError::NoToken),
    }
}

pub async fn get(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, BearerError> {
    let token = presented(&headers, None)?;
    limited_when_invalid(&app, &headers, peer, userinfo(&app, token).await)
}

pub async fn post(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, BearerError> {
    let body = match body {
        Ok(body) => body,
        // Over the limit: the client API's 413, as for every endpoint (`http::router`).
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Ok(e.into_response()),
        // RFC 6750 §3.1: a malformed request is `invalid_request`, in the challenge.
        Err(_) => {
            return Err(BearerError::InvalidRequest(
                "the request body could not be read",
            ))
        }
    };
    let token = presented(&headers, Some(&body))?;
    limited_when_invalid(&app, &headers, peer, userinfo(&app, token).await)
}

/// A token that is not valid counts against the caller's address, so guessing tokens is
/// rate limited too.
fn limited_when_invalid(
    app: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    answer: Result<Response, BearerError>,
) -> Result<Response, BearerError> {
    if let Err(BearerError::InvalidToken) = &answer {
        let addr = client_ip::client_ip(&app.config.trusted_proxies, headers, peer);
        app.rate_limits
            .check_address(addr)
            .map_err(BearerError::RateLimited)?;
    }
    answer
}

async fn userinfo(app: &AppState, token: String) -> Result<Response, BearerError> {
    let now = app.clock.now();
    let credential = credential::resolve(app.store.as_ref(), &token, now)
        .await
        .map_err(|e| BearerError::Server(e.into()))?
        .active()
        .filter(|c| c.token.kind == TokenKind::Access)
        .ok_or(BearerError::InvalidToken)?;
    // Per client, at the default rate (its own override would cost a client lookup here);
    // counted apart from the client's calls to the other endpoints.
    let client = credential.token.client_id.as_deref().unwrap_or_default();
    app.rate_limits
        .check_client(&format!("userinfo:{client}"), None)
        .map_err(BearerError::RateLimited)?;
    let scope: Vec<&str> = credential.token.scope.split(' ').collect();
    if !scope.contains(&"openid") {
        return Err(BearerError::InsufficientScope);
    }
    let account = credential
        .account
        .as_ref()
        .ok_or(BearerError::InsufficientScope)?;
    let requested = credential.grant.as_ref().map(|g| &g.claims);
    let body = claims::for_userinfo(account, &scope, requested.unwrap_or(&Default::default()));
    Ok(respond::no_store(Json(body).into_response()))
}
