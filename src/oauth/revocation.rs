//! Token revocation, RFC 7009. A client may revoke only tokens issued to it (§2.1).
//! Revoking a refresh token revokes its grant, and so every access token from it (§2.1
//! "SHOULD"); revoking an access token revokes that token. Unknown, invalid or already revoked
//! tokens are not an error (§2.2): the caller answers 200 all the same.

use super::credential;
use super::error::{ErrorCode, OAuthError};
use crate::audit::{AuditEvent, AuditKind};
use crate::crypto::api_key;
use crate::store::{ClientRecord, Store, TokenKind};

/// Revokes `token` for `client`. The token type hint is advisory (§2.1) and not needed: one
/// lookup by digest finds any kind.
pub async fn revoke(
    store: &dyn Store,
    client: &ClientRecord,
    token: &str,
    now: i64,
) -> Result<(), OAuthError> {
    // §2.2.1: not a kind this endpoint revokes, whoever asks — decided by the prefix, before
    // any lookup, so the answer says nothing about whether such a key exists.
    if api_key::looks_like(token) {
        return Err(OAuthError::new(
            ErrorCode::UnsupportedTokenType,
            "API keys are revoked by their owner or an operator, not here",
        ));
    }
    let resolution = credential::resolve(store, token, now).await?;
    let Some(record) = resolution.record() else {
        return Ok(());
    };
    // §2.1: the server "verifies whether the token was issued to the client making the
    // revocation request. If this validation fails, the request is refused".
    if record.client_id.as_deref() != Some(client.id.as_str()) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the token was not issued to this client",
        ));
    }
    let audit = AuditEvent::new(
        AuditKind::TokenRevoked,
        format!("client:{}", client.id),
        now,
    )
    .client(&client.id)
    .details(serde_json::json!({ "jti": record.jti, "kind": record.kind.as_str() }));
    match (record.kind, &record.grant_id) {
        (TokenKind::Refresh, Some(grant_id)) => {
            Ok(store.revoke_grant(grant_id, now, &audit).await?)
        }
        _ => Ok(store.revoke_token(&record.digest, now, &audit).await?),
    }
}
