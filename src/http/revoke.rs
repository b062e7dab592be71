//! `/revoke`: RFC 7009. The client authenticates as at `/token`; the rules are in
//! `oauth::revocation`. Unknown, invalid or already revoked tokens still get `200` (§2.2).

use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::TokenError;
use super::{client_auth, respond};
use crate::app::AppState;
use crate::oauth::revocation;

const PARAMS: &[&str] = &["token", "token_type_hint", "client_id", "client_secret"];

pub async fn revoke(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    let (params, client) =
        client_auth::authenticated_form(&app, &headers, peer, &body, PARAMS).await?;
    let token = params.required("token")?;
    revocation::revoke(app.store.as_ref(), &client, token, app.clock.now()).await?;
    Ok(respond::no_store(StatusCode::OK.into_response()))
}
