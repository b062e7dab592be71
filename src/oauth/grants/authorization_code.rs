//! `grant_type=authorization_code`: RFC 6749 §4.1.3, RFC 7636 §4.5–§4.6.
//!
//! Checks run in one fixed order (presence, consume, client, expiry, redirect_uri, PKCE,
//! user), so a request with two faults always gets the same answer. The code is consumed
//! first, in one statement: of concurrent redemptions at most one gets it, and a code that
//! fails a later check stays spent, so a thief who guesses wrong cannot try again.

use super::Issued;
use crate::app::AppState;
use crate::audit::{AuditEvent, AuditKind};
use crate::crypto::token::{Digest, PlainSecret, ACCESS_TOKEN_PREFIX};
use crate::oauth::error::OAuthError;
use crate::oauth::id_token::IdToken;
use crate::oauth::params::Params;
use crate::oauth::pkce;
use crate::store::{ClientRecord, TokenKind, TokenRecord};

pub async fn redeem(
    app: &AppState,
    client: &ClientRecord,
    params: &Params,
    now: i64,
) -> Result<Issued, OAuthError> {
    let store = app.store.as_ref();
    let policy = &app.config.tokens;
    let code = params.required("code")?;
    let digest = Digest::of(code);
    let Some(record) = store.consume_code(&digest, now).await? else {
        // RFC 6749 §4.1.2: "If an authorization code is used more than once, the
        // authorization server MUST deny the request and SHOULD revoke (when possible) all
        // tokens previously issued based on that authorization code."
        if let Some(grant_id) = store.code_grant_id(&digest).await? {
            let audit = AuditEvent::new(AuditKind::CodeReuse, format!("client:{}", client.id), now)
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
    let usable = store
        .account(&record.account_id)
        .await?
        .is_some_and(|a| !a.disabled);
    if !usable {
        return Err(OAuthError::invalid_grant(
            "user deleted or disabled since authorization",
        ));
    }

    let access_token = PlainSecret::generate(ACCESS_TOKEN_PREFIX);
    let expires_at = now + policy.access_token_ttl;
    let token = TokenRecord {
        digest: access_token.digest(),
        kind: TokenKind::Access,
        grant_id: Some(record.grant_id.clone()),
        client_id: Some(client.id.clone()),
        account_id: Some(record.account_id.clone()),
        scope: record.scope.clone(),
        label: None,
        previous_digest: None,
        created_at: now,
        expires_at: Some(expires_at),
        used_at: None,
        revoked_at: None,
    };
    let audit = AuditEvent::new(AuditKind::TokenIssued, format!("client:{}", client.id), now)
        .client(&client.id)
        .account(&record.account_id)
        .details(serde_json::json!({
            "grant_type": "authorization_code",
            "grant_id": record.grant_id,
            "scope": record.scope,
        }));
    // OIDC Core §3.1.3.3: an ID token when the grant has the openid scope. Signed before
    // the token row is written, so a signing failure leaves no half-issued grant behind.
    let id_token = if record.scope.split(' ').any(|s| s == "openid") {
        let keys = app
            .keys
            .current(store, now)
            .await
            .map_err(OAuthError::server)?;
        let claims = IdToken {
            issuer: app.config.issuer_str(),
            client_id: &client.id,
            subject: &record.account_id,
            auth_time: record.auth_time,
            nonce: record.nonce.as_deref(),
            amr: &record.amr,
            access_token: access_token.expose(),
            now,
            ttl: policy.id_token_ttl,
        };
        Some(
            claims
                .sign(keys, &client.id_token_signed_response_alg)
                .await?,
        )
    } else {
        None
    };
    store.insert_token(&token, &audit).await?;
    Ok(Issued {
        access_token,
        expires_in: policy.access_token_ttl,
        scope: record.scope,
        refresh_token: None,
        id_token,
    })
}
