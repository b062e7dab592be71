//! `grant_type=authorization_code`: RFC 6749 §4.1.3, RFC 7636 §4.5–§4.6.
//!
//! Checks run in one fixed order (presence, consume, client, expiry, redirect_uri, PKCE,
//! user), so a request with two faults always gets the same answer. The code is consumed
//! first, in one statement: of concurrent redemptions at most one gets it, and a code that
//! fails a later check stays spent, so a thief who guesses wrong cannot try again (except
//! across a database crash within a second of the try: the spend commits lazily when no
//! token follows it, decision 0039).

use super::{
    has_scope, mint, token_write_error, GrantType, IdTokenPlan, Issued, Plan, RefreshPlan,
};
use crate::audit::{AuditEvent, AuditKind};
use crate::crypto::token::Digest;
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;
use crate::oauth::pkce;
use crate::oauth::Context;
use crate::store::ClientRecord;

pub async fn redeem(
    ctx: Context<'_>,
    client: &ClientRecord,
    params: &Params,
    now: i64,
) -> Result<Issued, OAuthError> {
    let store = ctx.store;
    let policy = ctx.tokens;
    let code = params.required("code")?;
    let digest = Digest::of(code);
    let Some((record, account)) = store.consume_code(&digest, now).await? else {
        // RFC 6749 §4.1.2: "If an authorization code is used more than once, the
        // authorization server MUST deny the request and SHOULD revoke (when possible) all
        // tokens previously issued based on that authorization code."
        if let Some(grant_id) = store.code_grant_id(&digest).await? {
            let audit = ctx
                .audited(AuditEvent::new(
                    AuditKind::CodeReuse,
                    format!("client:{}", client.id),
                    now,
                ))
                .client(&client.id)
                .details(serde_json::json!({ "grant_id": grant_id }));
            store.revoke_grant(&grant_id, now, &audit).await?;
            return Err(OAuthError::invalid_grant(
                "authorization code reused; grant revoked",
            ));
        }
        return Err(OAuthError::invalid_grant("unknown authorization code"));
    };
    // RFC 6749 §4.1.3: the code must have been issued to this client.
    if record.client_id != client.id {
        return Err(OAuthError::invalid_grant("code issued to another client"));
    }
    if now >= record.expires_at {
        return Err(OAuthError::invalid_grant("authorization code expired"));
    }
    // RFC 6749 §4.1.3: redirect_uri is required, and must be identical, if it was included
    // in the authorization request.
    if record.redirect_uri.as_deref() != params.get("redirect_uri") {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    pkce::verify(
        record.code_challenge.as_deref(),
        params.get("code_verifier"),
    )?;
    let Some(account) = account.filter(|a| !a.disabled) else {
        return Err(OAuthError::invalid_grant(
            "user deleted or disabled since authorization",
        ));
    };

    // OIDC Core §11: for OpenID requests a refresh token only with offline_access (granted
    // on Tessera's consent page, which lists it; decision 0006). Plain OAuth: whenever the
    // client may use the refresh_token grant.
    let may_refresh = GrantType::RefreshToken.allowed(client)
        && (!has_scope(&record.scope, "openid") || has_scope(&record.scope, "offline_access"));
    let refresh = may_refresh.then(|| RefreshPlan {
        scope: record.scope.clone(),
        expires_at: refresh_expiry(policy, record.created_at, now),
        previous: None,
    });
    let minted = mint(
        ctx,
        Plan {
            grant_type: GrantType::AuthorizationCode,
            client,
            account_id: Some(&record.account_id),
            grant_id: Some(&record.grant_id),
            scope: &record.scope,
            refresh,
            // OIDC Core §3.1.3.3: an ID token when the grant has the openid scope.
            id_token: has_scope(&record.scope, "openid").then_some(IdTokenPlan {
                auth_time: record.auth_time,
                amr: &record.amr,
                nonce: record.nonce.as_deref(),
                sid: record.sid.as_deref(),
                claims: IdTokenPlan::requested(&account, &record.claims),
            }),
        },
        now,
    )
    .await?;
    store
        .insert_tokens(&minted.rows, &minted.audit)
        .await
        .map_err(token_write_error)?;
    Ok(minted.issued)
}

/// A refresh token lives `refresh_token_idle_ttl` past its last use, and never beyond
/// `refresh_token_absolute_ttl` after the person authorized the grant.
pub fn refresh_expiry(policy: &crate::config::TokenPolicy, grant_created_at: i64, now: i64) -> i64 {
    (now + policy.refresh_token_idle_ttl).min(grant_created_at + policy.refresh_token_absolute_ttl)
}
