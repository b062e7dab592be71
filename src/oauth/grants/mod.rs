//! One module per `grant_type` (STYLE.md §1), and `mint`, which issues what they grant.

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;

use std::sync::Arc;

use base64::Engine;
use josekit::jwt::JwtPayload;
use rand::RngCore;
use serde_json::{json, Map, Value};

use super::error::OAuthError;
use super::id_token::IdToken;
use super::Context;
use super::{claims, scope};
use crate::audit::{AuditEvent, AuditKind};
use crate::crypto::keys::KeySet;
use crate::crypto::token::{Digest, PlainSecret, ACCESS_TOKEN_PREFIX, REFRESH_TOKEN_PREFIX};
use crate::store::{
    AccessTokenFormat, AccountRecord, ClientRecord, RequestedClaims, StoreError, TokenKind,
    TokenRecord,
};

/// The grant types Tessera serves (RFC 6749 §4.1.3, §4.4, §6): one list for the token
/// endpoint, client registration and discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub const ALL: [GrantType; 3] = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ];

    /// The `grant_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }

    pub fn parse(value: &str) -> Option<GrantType> {
        GrantType::ALL.into_iter().find(|g| g.as_str() == value)
    }

    /// Whether `client` is registered for this grant type.
    pub fn allowed(self, client: &ClientRecord) -> bool {
        client.grant_types.iter().any(|g| g == self.as_str())
    }

    /// Every `grant_type` value, in the order above.
    pub fn names() -> [&'static str; 3] {
        GrantType::ALL.map(GrantType::as_str)
    }
}

/// What the token endpoint hands back.
#[derive(Debug)]
pub struct Issued {
    pub access_token: PlainSecret,
    pub expires_in: i64,
    pub scope: String,
    pub refresh_token: Option<PlainSecret>,
    pub id_token: Option<String>,
}

/// What to issue, for whom.
pub struct Plan<'a> {
    pub grant_type: GrantType,
    pub client: &'a ClientRecord,
    /// The user; `None` when the client acts for itself (client_credentials).
    pub account_id: Option<&'a str>,
    pub grant_id: Option<&'a str>,
    /// Scope of the access token.
    pub scope: &'a str,
    pub refresh: Option<RefreshPlan>,
    pub id_token: Option<IdTokenPlan<'a>>,
}

/// A refresh token to issue. RFC 6749 §6: its scope is that of the grant, even when the
/// access token issued with it is narrower.
pub struct RefreshPlan {
    pub scope: String,
    pub expires_at: i64,
    pub previous: Option<Digest>,
}

/// An ID token to issue (OIDC Core §3.1.3.3, §12.2).
pub struct IdTokenPlan<'a> {
    pub auth_time: i64,
    pub amr: &'a [String],
    pub nonce: Option<&'a str>,
    /// The browser session (Front-/Back-Channel Logout §2 `sid`), if known.
    pub sid: Option<&'a str>,
    /// User claims asked for by name for the ID token (OIDC Core §5.5).
    pub claims: Map<String, Value>,
}

impl IdTokenPlan<'_> {
    /// The values of the claims the request asked for in the ID token, as the user's
    /// account holds them now (Core §12.2: a refreshed ID token says what is current).
    pub fn requested(account: &AccountRecord, requested: &RequestedClaims) -> Map<String, Value> {
        let mut out = claims::named(account, requested.id_token.iter().map(String::as_str));
        out.remove("sub");
        out
    }
}

/// Tokens ready to store (in one transaction, by the caller) and to hand out.
pub struct Minted {
    pub issued: Issued,
    pub rows: Vec<TokenRecord>,
    pub audit: AuditEvent,
}

/// RFC 9068 access tokens are signed with RS256, which every resource server supports
/// (RFC 9068 §2.1 makes it the one algorithm they must accept).
pub const JWT_ACCESS_TOKEN_ALG: &str = "RS256";

/// A public identifier for a token: 128 random bits.
pub fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Makes the tokens of `plan`. Nothing is stored here: the grant decides how the rows are
/// written (a plain insert, or a rotation that must win a race).
pub async fn mint(ctx: Context<'_>, plan: Plan<'_>, now: i64) -> Result<Minted, OAuthError> {
    let policy = ctx.tokens;
    let client = plan.client;
    let subject = plan.account_id.unwrap_or(&client.id);
    let jti = new_jti();
    let expires_at = now + policy.access_token_ttl;
    let access_token = match client.access_token_format {
        AccessTokenFormat::Jwt => {
            // RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti, and scope.
            let mut p = JwtPayload::new();
            p.set_issuer(ctx.issuer);
            p.set_subject(subject);
            // RFC 9068 §3: the resource, never the client id an ID token carries as `aud`.
            p.set_audience(vec![ctx.default_resource]);
            p.set_jwt_id(&jti);
            for (name, value) in [
                ("client_id", json!(client.id)),
                ("iat", json!(now)),
                ("exp", json!(expires_at)),
                ("scope", json!(plan.scope)),
            ] {
                let _ = p.set_claim(name, Some(value));
            }
            if let Some(id) = &plan.id_token {
                let _ = p.set_claim("auth_time", Some(json!(id.auth_time)));
            }
            // RFC 9068 §2.2.3.1: the user's roles and groups, when the grant released them.
            if let (Some(account_id), true) =
                (plan.account_id, scope::contains(plan.scope, scope::ROLES))
            {
                if let Some(account) = ctx.store.account(account_id).await? {
                    for (name, value) in claims::roles(&account) {
                        let _ = p.set_claim(name, Some(value));
                    }
                }
            }
            let jwt = ctx
                .signer
                .sign(p, JWT_ACCESS_TOKEN_ALG, "at+jwt", now)
                .await
                .map_err(OAuthError::server)?;
            PlainSecret::new(jwt)
        }
        AccessTokenFormat::Opaque => PlainSecret::generate(ACCESS_TOKEN_PREFIX),
    };
    let row = |digest: Digest, kind, jti: String, scope: &str, expires_at, previous| TokenRecord {
        digest,
        kind,
        jti,
        grant_id: plan.grant_id.map(str::to_owned),
        client_id: Some(client.id.clone()),
        account_id: plan.account_id.map(str::to_owned),
        scope: scope.to_owned(),
        label: None,
        previous_digest: previous,
        created_at: now,
        expires_at: Some(expires_at),
        used_at: None,
        revoked_at: None,
    };
    let mut rows = vec![row(
        access_token.digest(),
        TokenKind::Access,
        jti.clone(),
        plan.scope,
        expires_at,
        None,
    )];
    let refresh_token = plan.refresh.as_ref().map(|r| {
        let secret = PlainSecret::generate(REFRESH_TOKEN_PREFIX);
        rows.push(row(
            secret.digest(),
            TokenKind::Refresh,
            new_jti(),
            &r.scope,
            r.expires_at,
            r.previous,
        ));
        secret
    });
    let id_token = match (&plan.id_token, plan.account_id) {
        (Some(id), Some(account_id)) => {
            let keys = ctx.signer.keys(now).await.map_err(key_read_error)?;
            Some(sign_id_token(ctx, client, account_id, id, &access_token, keys, now).await?)
        }
        _ => None,
    };
    let audit = issued_event(ctx, &plan, &jti, now);
    Ok(Minted {
        issued: Issued {
            access_token,
            expires_in: policy.access_token_ttl,
            scope: plan.scope.to_owned(),
            refresh_token,
            id_token,
        },
        rows,
        audit,
    })
}

/// The ID token of `plan` for `subject`, bound to `access_token` (`at_hash`), signed with
/// the active key in `keys`.
pub async fn sign_id_token(
    ctx: Context<'_>,
    client: &ClientRecord,
    subject: &str,
    plan: &IdTokenPlan<'_>,
    access_token: &PlainSecret,
    keys: Arc<KeySet>,
    now: i64,
) -> Result<String, OAuthError> {
    IdToken {
        issuer: ctx.issuer,
        client_id: &client.id,
        subject,
        auth_time: plan.auth_time,
        nonce: plan.nonce,
        amr: plan.amr,
        sid: plan.sid,
        claims: &plan.claims,
        access_token: access_token.expose(),
        now,
        ttl: ctx.tokens.id_token_ttl,
    }
    .sign(ctx.signer, keys, &client.id_token_signed_response_alg)
    .await
}

/// The key set to sign a client's ID token with after a one-statement write (decisions
/// 0043, 0047): what could stop that signature is settled before the write. The key set is
/// read now and signed with after (no second read of the store), and the client's algorithm
/// must have an active key. `None` otherwise: the usual steps run, and answer what went
/// wrong as they always have (a store outage: 503).
pub async fn keys_to_sign_after_the_write(
    ctx: Context<'_>,
    client: &ClientRecord,
    now: i64,
) -> Option<Arc<KeySet>> {
    let keys = ctx.signer.keys(now).await.ok()?;
    keys.active
        .contains_key(&client.id_token_signed_response_alg)
        .then_some(keys)
}

/// The `token_issued` event of `plan`, whose access token is `jti`.
pub fn issued_event(ctx: Context<'_>, plan: &Plan<'_>, jti: &str, now: i64) -> AuditEvent {
    let client = plan.client;
    let mut audit = ctx
        .audited(AuditEvent::new(
            AuditKind::TokenIssued,
            format!("client:{}", client.id),
            now,
        ))
        .client(&client.id)
        .details(json!({
            "grant_type": plan.grant_type.as_str(),
            "grant_id": plan.grant_id,
            "scope": plan.scope,
            "jti": jti,
            "refresh_token": plan.refresh.is_some(),
        }));
    audit.account_id = plan.account_id.map(str::to_owned);
    audit
}

/// The answer to a failed read of the signing keys: the store's own failure, so an outage
/// is 503 as for any other read (the key set is cached, and read again every 30 s).
fn key_read_error(e: anyhow::Error) -> OAuthError {
    match e.downcast::<StoreError>() {
        Ok(e) => e.into(),
        Err(e) => OAuthError::server(e),
    }
}

/// The answer to a failed token write. A missing referenced row is the client, deleted since
/// client authentication read it (clients are cached for up to a second,
/// `store::client_cache`; the token write looks it up afresh, decision 0033): it no longer
/// exists (RFC 6749 §5.2 `invalid_client`), not a server error.
pub fn token_write_error(e: StoreError) -> OAuthError {
    match e {
        StoreError::NotFound("referenced row") => OAuthError::invalid_client("unknown client"),
        e => e.into(),
    }
}

/// Whether a space-separated scope contains `name`.
pub fn has_scope(scope: &str, name: &str) -> bool {
    scope.split(' ').any(|s| s == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::error::ErrorCode;

    #[test]
    fn signing_keys_the_store_cannot_read_are_temporarily_unavailable() {
        let down = StoreError::Unavailable(sqlx::Error::PoolTimedOut);
        let err = key_read_error(anyhow::Error::from(down));
        assert_eq!(err.code, ErrorCode::TemporarilyUnavailable);
        let other = key_read_error(anyhow::anyhow!("no active RS256 signing key"));
        assert_eq!(other.code, ErrorCode::ServerError);
    }

    #[test]
    fn a_token_write_for_a_vanished_client_is_invalid_client_rfc6749_5_2() {
        let gone = token_write_error(StoreError::NotFound("referenced row"));
        assert_eq!(gone.code, ErrorCode::InvalidClient);
        let other = token_write_error(StoreError::Conflict("token"));
        assert_eq!(other.code, ErrorCode::ServerError);
    }
}
