//! `grant_type=refresh_token`: RFC 6749 §6, RFC 9700 §4.14 (rotation and reuse detection),
//! OIDC Core §12.
//!
//! Every use rotates: the response carries a new refresh token and the old one is spent.
//! Presenting a spent token again is treated as theft (RFC 9700 §4.14.2): the whole grant is
//! revoked and `refresh_token_reuse` is audited. Of concurrent uses of one token, at most one
//! rotates; the others count as reuse.

use super::authorization_code::refresh_expiry;
use super::{
    has_scope, issued_event, keys_to_sign_after_the_write, mint, new_jti, sign_id_token,
    token_write_error, GrantType, IdTokenPlan, Issued, Plan, RefreshPlan,
};
use crate::audit::{AuditEvent, AuditKind};
use crate::crypto::token::{Digest, PlainSecret, ACCESS_TOKEN_PREFIX, REFRESH_TOKEN_PREFIX};
use crate::oauth::credential::{self, ActiveCredential};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::params::Params;
use crate::oauth::scope;
use crate::oauth::Context;
use crate::store::{
    AccessTokenFormat, AccountRecord, ClientRecord, GrantRecord, NewToken, RefreshAtOnce, Store,
    StoredCredential, TokenKind, FROM_OLD_GRANT_ID, FROM_OLD_SCOPE,
};

pub async fn rotate(
    ctx: Context<'_>,
    client: &ClientRecord,
    params: &Params,
    now: i64,
) -> Result<Issued, OAuthError> {
    let store = ctx.store;
    let presented = params.required("refresh_token")?;
    let digest = Digest::of(presented);
    // The common case in one write (decisions 0043, 0052); with a narrower scope, a JWT
    // access token (its claims come from the user), or anything that stops the write, the
    // steps below, which also tell what went wrong.
    if params.get("scope").is_none() && client.access_token_format == AccessTokenFormat::Opaque {
        if let Some(issued) = rotate_at_once(ctx, client, digest, now).await? {
            crate::metrics::refresh_rotated("at_once");
            return Ok(issued);
        }
    }
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
            id_token: has_scope(&old.scope, "openid").then(|| id_token_plan(&grant, &account)),
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
    crate::metrics::refresh_rotated("steps");
    Ok(minted.issued)
}

/// The rotation of an opaque access token's grant, without a `scope` parameter, as one write
/// that also reads the old token ([`crate::store::TokenStore::rotate_refresh_at_once`]): the
/// same tokens, rows and event as [`rotate`]'s steps. `None` when it wrote nothing. The ID
/// token is signed after the write; should that still fail, the grant's refresh token is
/// spent without a successor (decision 0043).
async fn rotate_at_once(
    ctx: Context<'_>,
    client: &ClientRecord,
    old: Digest,
    now: i64,
) -> Result<Option<Issued>, OAuthError> {
    let Some(keys) = keys_to_sign_after_the_write(ctx, client, now).await else {
        return Ok(None);
    };
    let access_token = PlainSecret::generate(ACCESS_TOKEN_PREFIX);
    let refresh_token = PlainSecret::generate(REFRESH_TOKEN_PREFIX);
    let jti = new_jti();
    // The plan only for its event: what comes from the old token is a placeholder the
    // store fills in, and of the refresh token only its presence counts.
    let plan = Plan {
        grant_type: GrantType::RefreshToken,
        client,
        account_id: None,
        grant_id: Some(FROM_OLD_GRANT_ID),
        scope: FROM_OLD_SCOPE,
        refresh: Some(RefreshPlan {
            scope: FROM_OLD_SCOPE.to_owned(),
            expires_at: 0,
            previous: Some(old),
        }),
        id_token: None,
    };
    let audit = issued_event(ctx, &plan, &jti, now);
    let rotation = RefreshAtOnce {
        old,
        client_id: &client.id,
        now,
        access: NewToken {
            digest: access_token.digest(),
            jti,
        },
        access_expires_at: now + ctx.tokens.access_token_ttl,
        refresh: NewToken {
            digest: refresh_token.digest(),
            jti: new_jti(),
        },
        refresh_idle_ttl: ctx.tokens.refresh_token_idle_ttl,
        refresh_absolute_ttl: ctx.tokens.refresh_token_absolute_ttl,
        audit: &audit,
    };
    let Some(spent) = ctx
        .store
        .rotate_refresh_at_once(&rotation)
        .await
        .map_err(token_write_error)?
    else {
        return Ok(None);
    };
    let StoredCredential {
        token,
        grant: Some(grant),
        account: Some(account),
    } = spent
    else {
        // The write joins both; it cannot have spent a token without them.
        return Err(OAuthError::server(anyhow::anyhow!(
            "refresh rotated without its grant or user"
        )));
    };
    let id_token = if has_scope(&token.scope, "openid") {
        let plan = id_token_plan(&grant, &account);
        let signed = sign_id_token(ctx, client, &account.id, &plan, &access_token, keys, now);
        Some(signed.await?)
    } else {
        None
    };
    Ok(Some(Issued {
        access_token,
        expires_in: ctx.tokens.access_token_ttl,
        scope: token.scope,
        refresh_token: Some(refresh_token),
        id_token,
    }))
}

/// OIDC Core §12.2: a refreshed ID token keeps the grant's `auth_time`, has no nonce, and
/// says what the user's account holds now.
fn id_token_plan<'a>(grant: &'a GrantRecord, account: &AccountRecord) -> IdTokenPlan<'a> {
    IdTokenPlan {
        auth_time: grant.auth_time.unwrap_or(grant.created_at),
        amr: &grant.amr,
        nonce: None,
        sid: grant.sid.as_deref(),
        claims: IdTokenPlan::requested(account, &grant.claims),
    }
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
