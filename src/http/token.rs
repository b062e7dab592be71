//! Token endpoint: RFC 6749 §3.2, §4.1.3, §5.1, §5.2; RFC 7636 §4.5.

use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::TokenError;
use super::{client_auth, respond};
use crate::app::AppState;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::grants::{self, GrantType, Issued};

/// Parameters the token endpoint reads; anything else is ignored (RFC 6749 §3.2).
pub const TOKEN_PARAMS: &[&str] = &[
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "scope",
    "client_id",
    "client_secret",
];

/// RFC 6749 §5.1.
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

pub async fn token(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    // RFC 6749 §3.2: parameters come as application/x-www-form-urlencoded.
    let (params, client) =
        client_auth::authenticated_form(&app, &headers, peer, &body, TOKEN_PARAMS).await?;
    let name = params.required("grant_type")?;
    let grant_type = GrantType::parse(name).ok_or_else(|| {
        OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            format!("grant_type `{name}` is not supported"),
        )
    })?;
    if !grant_type.allowed(&client) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            format!("this client may not use grant_type `{name}`"),
        )
        .into());
    }
    let now = app.clock.now();
    let (source_ip, user_agent) = super::forms::request_meta(&app, &headers, peer);
    let ctx = crate::oauth::Context {
        source_ip: source_ip.as_deref(),
        user_agent: user_agent.as_deref(),
        ..app.oauth()
    };
    let issued = match grant_type {
        GrantType::AuthorizationCode => {
            grants::authorization_code::redeem(ctx, &client, &params, now).await?
        }
        GrantType::RefreshToken => {
            grants::refresh_token::rotate(ctx, &client, &params, now).await?
        }
        GrantType::ClientCredentials => {
            grants::client_credentials::issue(ctx, &client, &params, now).await?
        }
    };
    Ok(respond(issued))
}

/// RFC 6749 §5.1: the response must not be cached.
fn respond(issued: Issued) -> Response {
    let body = TokenResponse {
        access_token: issued.access_token.expose().to_owned(),
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token: issued.refresh_token.map(|t| t.expose().to_owned()),
        scope: issued.scope,
        id_token: issued.id_token,
    };
    respond::no_store(Json(body).into_response())
}
