//! `grant_type=refresh_token`: RFC 6749 §6, RFC 9700 §4.14 (rotation and reuse detection),
//! OIDC Core §12.
//!
//! Every use rotates: the response carries a new refresh token and the old one is spent.
//! Presenting a spent token again is treated as theft (RFC 9700 §4.14.2): the whole grant is
//! revoked and `refresh_token_reuse` is audited. Of concurrent uses of one token, at most one
//! rotates; the others count as reuse.

use super::authorization_code::refresh_expiry;
use super::{
    has_scope, mint, token_write_error, GrantType, IdTokenPlan, Issued, Plan, RefreshPlan,
};
use crate::audit::{AuditEvent, AuditKind};
use crate::crypto::token::Digest;
use crate::oauth::credential::{self, ActiveCredential};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::params::Params;
use crate::oauth::scope;
use crate::oauth::Context;
use crate::store::{ClientRecord, Store, TokenKind};

pub async fn rotate(
    ctx: Context<'_>,
    client: &ClientRecord,
    params: &Params,
    now: i64,
) -> Result<Issued, OAuthError> {
    let store = ctx.store;
    let presented = params.required("refresh_token")?;
    let digest = Digest::of(presented);
    let resolution = credential::resolve(store, presented, now).await?;
    let old = resolution
        .record()
        .filter(|t| t.kind == TokenKind::Refresh)
        .cloned()
        .ok_or_else(|| OAuthError::invalid_grant("unknown refresh token"))?;
    // RFC 6749 §10.4: a refresh token is bound to the client it was issued to.
    if old.client_id.as_deref() != Some(client.id.as_str()) {
        return Err(OAuthError::invalid_grant(
            "refresh token issued to another client",
        ));
    }
    let grant_id = old
        .grant_id
        .clone()
        .ok_or_else(|| OAuthError::invalid_grant("refresh token without a grant"))?;
    if old.used_at.is_some() {
        return Err(revoke_on_reuse(
            store,
            client,
            &grant_id,
            &old.jti,
            now,
            "refresh token reused; grant revoked",
        )
        .await);
    }
    if old.revoked_at.is_some() {
        return Err(OAuthError::invalid_grant("refresh token revoked"));
    }
    if !old.is_active(now) {
        return Err(OAuthError::invalid_grant("refresh token expired"));
    }
    let Some(ActiveCredential {
        account: Some(account),
        grant,
        ..
    }) = resolution.active()
    else {
        return Err(OAuthError::invalid_grant("user deleted or disabled"));
    };
    let grant = grant
        .filter(|g| g.revoked_at.is_none())
        .ok_or_else(|| OAuthError::invalid_grant("grant revoked"))?;
    // RFC 6749 §6: the scope may narrow, never widen.
    let access_scope = match params.get("scope") {
        None => old.scope.clone(),
        Some(requested) => {
            let granted = scope::parse(&old.scope).map_err(OAuthError::server)?;
            scope::check_within(requested, &granted)
                .map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?;
            requested.to_owned()
        }
    };
    let minted = mint(
        ctx,
        Plan {
            grant_type: GrantType::RefreshToken,
            client,
            account_id: Some(&account.id),
            grant_id: Some(&grant.id),
            scope: &access_scope,
            refresh: Some(RefreshPlan {
                scope: old.scope.clone(),
                expires_at: refresh_expiry(ctx.tokens, grant.created_at, now),
                previous: Some(digest),
            }),
            // OIDC Core §12.2: a new ID token, same auth_time, no nonce.
            id_token: has_scope(&old.scope, "openid").then_some(IdTokenPlan {
                auth_time: grant.auth_time.unwrap_or(grant.created_at),
                amr: &grant.amr,
                nonce: None,
                sid: grant.sid.as_deref(),
                claims: IdTokenPlan::requested(&account, &grant.claims),
            }),
        },
        now,
    )
    .await?;
    if !store
        .rotate_refresh(&digest, &minted.rows, now, &minted.audit)
        .await
        .map_err(token_write_error)?
    {
        // Another request spent it between our read and our write.
        return Err(revoke_on_reuse(
            store,
            client,
            &grant.id,
            &old.jti,
            now,
            "refresh token used concurrently; grant revoked",
        )
        .await);
    }
    Ok(minted.issued)
}

/// Revokes the grant of a reused refresh token, audits it, and returns the error to answer.
async fn revoke_on_reuse(
    store: &dyn Store,
    client: &ClientRecord,
    grant_id: &str,
    jti: &str,
    now: i64,
    why: &'static str,
) -> OAuthError {
    let audit = AuditEvent::new(
        AuditKind::RefreshTokenReuse,
        format!("client:{}", client.id),
        now,
    )
    .client(&client.id)
    .details(serde_json::json!({ "grant_id": grant_id, "jti": jti }));
    match store.revoke_grant(grant_id, now, &audit).await {
        Ok(()) => OAuthError::invalid_grant(why),
        Err(e) => e.into(),
    }
}
