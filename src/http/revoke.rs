//! `/revoke`: RFC 7009. The client authenticates as at `/token`; it may revoke only tokens
//! issued to it. Revoking a refresh token revokes its grant, and so every access token
//! from it (§2.1 "SHOULD"); revoking an access token revokes that token. Unknown, invalid or
//! already revoked tokens still get `200` (§2.2).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::client_auth;
use super::error::TokenError;
use crate::app::AppState;
use crate::audit::{AuditEvent, AuditKind};
use crate::crypto::token::Digest;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::store::TokenKind;

const PARAMS: &[&str] = &["token", "token_type_hint", "client_id", "client_secret"];

pub async fn revoke(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    let (params, client) = client_auth::authenticated_form(&app, &headers, &body, PARAMS).await?;
    let token = params.required("token")?;
    let digest = Digest::of(token);
    let now = app.clock.now();
    // The hint is advisory (§2.1): one lookup by digest finds any kind.
    if let Some(record) = app.store.token(&digest).await? {
        // §2.1: the server "verifies whether the token was issued to the client making the
        // revocation request. If this validation fails, the request is refused".
        if record.client_id.as_deref() != Some(client.id.as_str()) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the token was not issued to this client",
            )
            .into());
        }
        let audit = AuditEvent::new(
            AuditKind::TokenRevoked,
            format!("client:{}", client.id),
            now,
        )
        .client(&client.id)
        .details(serde_json::json!({ "jti": record.jti, "kind": record.kind.as_str() }));
        match (record.kind, &record.grant_id) {
            (TokenKind::ApiKey, _) => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedTokenType,
                    "API keys are revoked by their owner, not here",
                )
                .into())
            }
            (TokenKind::Refresh, Some(grant_id)) => {
                app.store.revoke_grant(grant_id, now, &audit).await?
            }
            _ => app.store.revoke_token(&digest, now, &audit).await?,
        }
    }
    let mut response = StatusCode::OK.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
