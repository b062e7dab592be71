//! ID tokens, OIDC Core §2 and §3.1.3.6: `iss`, `sub`, `aud`, `exp`, `iat`, `auth_time`,
//! `nonce` (only when the request had one), `amr`, `acr`, and `at_hash`; signed with the client's
//! registered algorithm, `kid` and `typ: JWT` in the header. Claims that the `profile`,
//! `email`, `address` and `phone` scopes ask for come from `/userinfo` in the code flow
//! (Core §5.4), so they are not repeated here; only those the `claims` parameter asks for
//! in the ID token by name are (Core §5.5).

use std::sync::Arc;

use josekit::jwt::JwtPayload;
use serde_json::{json, Map, Value};

use super::error::OAuthError;
use crate::crypto::keys::{half_hash, KeySet};
use crate::keys::Signer;

/// What an ID token says.
pub struct IdToken<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub subject: &'a str,
    pub auth_time: i64,
    pub nonce: Option<&'a str>,
    pub amr: &'a [String],
    /// OIDC Front-Channel and Back-Channel Logout §2: the session, for the relying party to
    /// match logout requests against.
    pub sid: Option<&'a str>,
    /// User claims asked for by name with the `claims` parameter (Core §5.5).
    pub claims: &'a Map<String, Value>,
    pub access_token: &'a str,
    pub now: i64,
    pub ttl: i64,
}

impl IdToken<'_> {
    fn payload(&self, alg: &str) -> JwtPayload {
        let mut p = JwtPayload::new();
        // First, so that none of the protocol's claims below can be displaced by one.
        for (name, value) in self.claims {
            let _ = p.set_claim(name, Some(value.clone()));
        }
        p.set_issuer(self.issuer);
        p.set_subject(self.subject);
        p.set_audience(vec![self.client_id]);
        // Numeric dates, exactly as computed (josekit's SystemTime setters would round-trip).
        let claims = [
            ("iat", json!(self.now)),
            ("exp", json!(self.now + self.ttl)),
            ("auth_time", json!(self.auth_time)),
            ("at_hash", json!(half_hash(alg, self.access_token))),
        ];
        for (name, value) in claims {
            let _ = p.set_claim(name, Some(value));
        }
        if !self.amr.is_empty() {
            let _ = p.set_claim("amr", Some(json!(self.amr)));
        }
        if let Some(acr) = super::acr::of_session(self.amr) {
            let _ = p.set_claim("acr", Some(json!(acr)));
        }
        if let Some(sid) = self.sid {
            let _ = p.set_claim("sid", Some(json!(sid)));
        }
        if let Some(nonce) = self.nonce {
            let _ = p.set_claim("nonce", Some(json!(nonce)));
        }
        p
    }

    /// Signs with the active key in `keys` for the client's `alg` (see `keys::signer`).
    pub async fn sign(
        &self,
        signer: &Signer,
        keys: Arc<KeySet>,
        alg: &str,
    ) -> Result<String, OAuthError> {
        signer
            .sign_with(keys, self.payload(alg), alg, "JWT")
            .await
            .map_err(OAuthError::server)
    }
}

/// Who an `id_token_hint` names (OIDC Core §3.1.2.1, RP-Initiated Logout §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub subject: String,
    pub audience: Vec<String>,
}

/// Checks that `token` is an ID token this server issued: a published key's signature, our
/// `iss`, and the shape of an ID token — nothing else Tessera signs (RFC 9068 access tokens,
/// RFC 9701 introspection answers) may pass for one (RFC 8725 §3.11). An expired token is
/// still a good hint (RP-Initiated Logout §2: the OP "SHOULD accept ID Tokens ... even when
/// the exp time has passed").
pub fn verify_hint(keys: &KeySet, issuer: &str, token: &str) -> Option<Hint> {
    let payload = keys.verify(token)?;
    if payload.issuer() != Some(issuer) || !is_id_token(token, &payload) {
        return None;
    }
    Some(Hint {
        subject: payload.subject()?.to_owned(),
        audience: payload
            .audience()
            .map(|a| a.into_iter().map(str::to_owned).collect())
            .unwrap_or_default(),
    })
}

/// Explicit typing (RFC 8725 §3.11): our ID tokens are `typ: JWT` and carry `auth_time`
/// (always, Core §2) but none of the claims that mark an access token (`client_id`, `scope`,
/// RFC 9068 §2.2) or an introspection answer (`token_introspection`, RFC 9701 §5). The header
/// read here is the one `KeySet::verify` has just checked the signature over.
fn is_id_token(token: &str, payload: &JwtPayload) -> bool {
    let typ_ok = josekit::jwt::decode_header(token)
        .ok()
        .and_then(|h| h.claim("typ").and_then(|t| t.as_str()).map(str::to_owned))
        .is_some_and(|t| t.eq_ignore_ascii_case("JWT"));
    typ_ok
        && payload.claim("auth_time").is_some()
        && ["client_id", "scope", "token_introspection"]
            .iter()
            .all(|c| payload.claim(c).is_none())
}
