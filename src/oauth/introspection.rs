//! What introspection says about a token: RFC 7662 §2.2. Anything not active — unknown,
//! expired, revoked (itself or its grant), a spent refresh token, a token of a disabled or
//! deleted user — is exactly `{"active": false}`: no hint about why.
//!
//! RFC 7662 §4: the server decides whether the token may be used at the resource server that
//! asks. A refresh token is never a bearer credential for an API, so it is active only to the
//! client it was issued to (which may check its own token); to any other caller, such as a
//! gateway handed a stolen refresh token, it is `{"active": false}` (decision 0008). Every
//! active answer says what the token is in `token_type`.

use serde_json::{json, Map, Value};

use josekit::jwt::JwtPayload;

use super::credential::{self, ActiveCredential, Resolution};
use super::error::OAuthError;
use super::Context;
use super::{api_keys, claims, scope};
use crate::store::{StoreError, TokenKind};

/// The RFC 7662 answer for `token` as seen by the client `caller`.
pub async fn describe(
    ctx: Context<'_>,
    caller: &str,
    token: &str,
    now: i64,
) -> Result<Value, StoreError> {
    let inactive = || Ok(json!({ "active": false }));
    let ActiveCredential {
        token: record,
        account,
        ..
    } = match credential::resolve(ctx.store, token, now).await? {
        Resolution::Active(c) => *c,
        Resolution::Inactive(t) if t.kind == TokenKind::ApiKey => {
            if let Err(e) = api_keys::note_refused_use(ctx.store, &t, caller, now).await {
                crate::metrics::store_error(e.kind());
                // The answer stands; only the trail missed a line, which the log keeps.
                tracing::error!(error = %e, key_id = %t.jti, "could not audit a dead API key's use");
            }
            return inactive();
        }
        _ => return inactive(),
    };
    if record.kind == TokenKind::Refresh && record.client_id.as_deref() != Some(caller) {
        return inactive();
    }
    if record.kind == TokenKind::ApiKey {
        api_keys::note_use(ctx.store, &record, now).await;
    }
    let mut out = Map::new();
    out.insert("active".into(), json!(true));
    out.insert("scope".into(), json!(record.scope));
    // An API key belongs to a user, not to a client: no `client_id`, no `aud`.
    if let Some(client_id) = &record.client_id {
        out.insert("client_id".into(), json!(client_id));
    }
    if let Some(a) = &account {
        out.insert("username".into(), json!(a.username));
    }
    out.insert("token_type".into(), json!(token_type(record.kind)));
    if let Some(exp) = record.expires_at {
        out.insert("exp".into(), json!(exp));
    }
    out.insert("iat".into(), json!(record.created_at));
    out.insert("nbf".into(), json!(record.created_at));
    let subject = record.account_id.as_ref().or(record.client_id.as_ref());
    out.insert("sub".into(), json!(subject));
    if let Some(client_id) = &record.client_id {
        out.insert("aud".into(), json!(client_id));
    }
    out.insert("iss".into(), json!(ctx.issuer));
    // For an API key, its key id (as the CLI and the account page show it).
    out.insert("jti".into(), json!(record.jti));
    if let (Some(a), true) = (&account, scope::contains(&record.scope, scope::ROLES)) {
        for (name, value) in claims::roles(a) {
            out.insert(name.into(), value);
        }
    }
    Ok(Value::Object(out))
}

/// The `token_type` of an access token's answer.
pub const ACCESS_TOKEN_TYPE: &str = "Bearer";

/// RFC 7662 §2.2 `token_type`: `Bearer` for access tokens (RFC 6750); for the others the
/// names RFC 7009 §2.1 registered as token type hints.
fn token_type(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Access => ACCESS_TOKEN_TYPE,
        TokenKind::Refresh => "refresh_token",
        TokenKind::ApiKey => "api_key",
    }
}

/// RFC 9701 §5: the answer as a signed JWT (`typ: token-introspection+jwt`) with `iss`, `aud`
/// (the caller), `iat`, and the RFC 7662 answer in `token_introspection`.
pub async fn sign_answer(
    ctx: Context<'_>,
    caller: &str,
    answer: Value,
    now: i64,
) -> Result<String, OAuthError> {
    let mut payload = JwtPayload::new();
    payload.set_issuer(ctx.issuer);
    payload.set_audience(vec![caller]);
    let _ = payload.set_claim("iat", Some(json!(now)));
    let _ = payload.set_claim("token_introspection", Some(answer));
    ctx.signer
        .sign(payload, ANSWER_ALG, "token-introspection+jwt", now)
        .await
        .map_err(OAuthError::server)
}

/// The algorithm of RFC 9701 answers, as discovery advertises
/// (`introspection_signing_alg_values_supported`).
pub const ANSWER_ALG: &str = "RS256";
