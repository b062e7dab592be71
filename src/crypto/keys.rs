//! Signing keys: RS256 (2048-bit), ES256 and EdDSA (Ed25519), made and used with josekit.
//!
//! - Private keys are stored as a compact JWE (`dir` + `A256GCM`) under the key-encryption
//!   key, with the `kid` in the authenticated header, so a row cannot be swapped for another.
//! - A key's state follows from time, not from a job that must run: a key signs from its
//!   `activates_at` until a newer key of the same algorithm activates; it is published from
//!   creation (so a `next` key is in every JWKS before it signs anything) until every token
//!   it signed has expired. Instances sharing a store therefore always agree.

use std::collections::BTreeMap;

use base64::Engine;
use josekit::jwe::{self, JweHeader};
use josekit::jwk::alg::ed::EdCurve;
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{self, JwsHeader, JwsSigner, JwsVerifier};
use josekit::jwt::{self, JwtPayload};
use rand::RngCore;

use super::kek::Kek;
use crate::store::SigningKeyRecord;

/// Algorithms Tessera signs with, in the order discovery lists them.
pub const ALGS: &[&str] = &["RS256", "ES256", "EdDSA"];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unsupported signing algorithm `{0}`")]
    Unsupported(String),
    #[error("JOSE: {0}")]
    Jose(#[from] josekit::JoseError),
    #[error("stored key {0} does not decrypt under this key-encryption key")]
    Decrypt(String),
    #[error("stored key {0} is malformed: {1}")]
    Malformed(String, String),
}

/// A freshly generated key, ready to store.
pub fn generate(
    alg: &str,
    kek: &Kek,
    now: i64,
    activates_at: i64,
) -> Result<SigningKeyRecord, KeyError> {
    let mut pair = match alg {
        "RS256" => jws::RS256.generate_key_pair(2048)?.to_jwk_key_pair(),
        "ES256" => jws::ES256.generate_key_pair()?.to_jwk_key_pair(),
        "EdDSA" => jws::EdDSA
            .generate_key_pair(EdCurve::Ed25519)?
            .to_jwk_key_pair(),
        other => return Err(KeyError::Unsupported(other.to_owned())),
    };
    let mut id = [0u8; 12];
    rand::rng().fill_bytes(&mut id);
    let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id);
    pair.set_key_id(&kid);
    pair.set_algorithm(alg);
    pair.set_key_use("sig");
    let public = public_of(&pair)?;
    Ok(SigningKeyRecord {
        private_jwk_encrypted: encrypt(&pair, &kid, kek)?,
        public_jwk: public.to_string(),
        kid,
        alg: alg.to_owned(),
        state: if activates_at <= now {
            "active"
        } else {
            "next"
        }
        .to_owned(),
        created_at: now,
        activates_at,
    })
}

/// The public half with `kid`, `alg` and `use`, and nothing private.
fn public_of(pair: &Jwk) -> Result<Jwk, KeyError> {
    let mut public = match pair.key_type() {
        "RSA" => josekit::jwk::alg::rsa::RsaKeyPair::from_jwk(pair)?.to_jwk_public_key(),
        "EC" => josekit::jwk::alg::ec::EcKeyPair::from_jwk(pair)?.to_jwk_public_key(),
        "OKP" => josekit::jwk::alg::ed::EdKeyPair::from_jwk(pair)?.to_jwk_public_key(),
        other => return Err(KeyError::Unsupported(other.to_owned())),
    };
    if let Some(kid) = pair.key_id() {
        public.set_key_id(kid);
    }
    if let Some(alg) = pair.algorithm() {
        public.set_algorithm(alg);
    }
    public.set_key_use("sig");
    Ok(public)
}

fn encrypt(pair: &Jwk, kid: &str, kek: &Kek) -> Result<Vec<u8>, KeyError> {
    let mut header = JweHeader::new();
    header.set_content_encryption("A256GCM");
    header.set_key_id(kid);
    let encrypter = jwe::Dir.encrypter_from_bytes(kek.0)?;
    let compact = jwe::serialize_compact(pair.to_string().as_bytes(), &header, &encrypter)?;
    Ok(compact.into_bytes())
}

fn decrypt(record: &SigningKeyRecord, kek: &Kek) -> Result<Jwk, KeyError> {
    let compact = std::str::from_utf8(&record.private_jwk_encrypted)
        .map_err(|e| KeyError::Malformed(record.kid.clone(), e.to_string()))?;
    let decrypter = jwe::Dir.decrypter_from_bytes(kek.0)?;
    let (plain, header) = jwe::deserialize_compact(compact, &decrypter)
        .map_err(|_| KeyError::Decrypt(record.kid.clone()))?;
    // The header is authenticated: a row whose ciphertext belongs to another kid is refused.
    if header.key_id() != Some(record.kid.as_str()) {
        return Err(KeyError::Decrypt(record.kid.clone()));
    }
    Jwk::from_bytes(&plain).map_err(|e| KeyError::Malformed(record.kid.clone(), e.to_string()))
}

fn signer(alg: &str, jwk: &Jwk) -> Result<Box<dyn JwsSigner>, KeyError> {
    Ok(match alg {
        "RS256" => Box::new(jws::RS256.signer_from_jwk(jwk)?),
        "ES256" => Box::new(jws::ES256.signer_from_jwk(jwk)?),
        "EdDSA" => Box::new(jws::EdDSA.signer_from_jwk(jwk)?),
        other => return Err(KeyError::Unsupported(other.to_owned())),
    })
}

/// A verifier for a public JWK (tests, and introspection of our own JWTs later).
pub fn verifier(jwk: &Jwk) -> Result<Box<dyn JwsVerifier>, KeyError> {
    let alg = jwk.algorithm().unwrap_or("");
    Ok(match alg {
        "RS256" => Box::new(jws::RS256.verifier_from_jwk(jwk)?),
        "ES256" => Box::new(jws::ES256.verifier_from_jwk(jwk)?),
        "EdDSA" => Box::new(jws::EdDSA.verifier_from_jwk(jwk)?),
        other => return Err(KeyError::Unsupported(other.to_owned())),
    })
}

/// A key that signs: its kid, algorithm and josekit signer.
pub struct ActiveKey {
    pub kid: String,
    pub alg: String,
    signer: Box<dyn JwsSigner>,
}

impl std::fmt::Debug for ActiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ActiveKey({} {})", self.alg, self.kid)
    }
}

impl ActiveKey {
    /// A compact JWS of `payload` with `typ` (and this key's `kid`) in the header.
    pub fn sign(&self, payload: &JwtPayload, typ: &str) -> Result<String, KeyError> {
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(&self.kid);
        Ok(jwt::encode_with_signer(
            payload,
            &header,
            self.signer.as_ref(),
        )?)
    }
}

/// The keys as they stand at one moment: what signs, and what is published.
#[derive(Debug)]
pub struct KeySet {
    /// The signing key per algorithm.
    pub active: BTreeMap<String, ActiveKey>,
    /// Public JWKs to publish.
    pub published: Vec<serde_json::Value>,
}

impl KeySet {
    /// `max_token_ttl`: the longest lifetime of anything signed, so a superseded key stays
    /// published until its last signature has expired.
    pub fn at(
        records: &[SigningKeyRecord],
        kek: &Kek,
        now: i64,
        max_token_ttl: i64,
    ) -> Result<KeySet, KeyError> {
        let mut active = BTreeMap::new();
        let mut published = Vec::new();
        for alg in ALGS {
            let of_alg: Vec<&SigningKeyRecord> = records.iter().filter(|r| r.alg == *alg).collect();
            for (i, record) in of_alg.iter().enumerate() {
                // Superseded when the next key of this algorithm activated.
                let superseded_at = of_alg[i + 1..]
                    .iter()
                    .map(|n| n.activates_at)
                    .find(|t| *t <= now);
                if superseded_at.is_some_and(|t| t + max_token_ttl <= now) {
                    continue;
                }
                let jwk: serde_json::Value = serde_json::from_str(&record.public_jwk)
                    .map_err(|e| KeyError::Malformed(record.kid.clone(), e.to_string()))?;
                published.push(jwk);
            }
        }
        // The signing key per algorithm is the one `states` calls active, so `keys list`
        // and the server can never disagree.
        for (record, state) in states(records, now) {
            if state == "active" {
                let private = decrypt(record, kek)?;
                active.insert(
                    record.alg.clone(),
                    ActiveKey {
                        kid: record.kid.clone(),
                        alg: record.alg.clone(),
                        signer: signer(&record.alg, &private)?,
                    },
                );
            }
        }
        Ok(KeySet { active, published })
    }
}

impl KeySet {
    /// The payload of a JWT signed by one of the published keys (found by `kid`); `None` for
    /// anything else. Time claims are not checked here: callers decide what they need.
    pub fn verify(&self, token: &str) -> Option<JwtPayload> {
        let header = jwt::decode_header(token).ok()?;
        let kid = header.claim("kid")?.as_str()?;
        let alg = header.claim("alg")?.as_str()?;
        let jwk = self
            .published
            .iter()
            .find(|k| k["kid"].as_str() == Some(kid) && k["alg"].as_str() == Some(alg))?;
        let jwk = Jwk::from_bytes(jwk.to_string().as_bytes()).ok()?;
        let verifier = verifier(&jwk).ok()?;
        jwt::decode_with_verifier(token, verifier.as_ref())
            .ok()
            .map(|(payload, _)| payload)
    }
}

/// The state each key is in at `now`: `next` (published, not signing yet), `active`
/// (signing for its algorithm) or `retired` (superseded; published until its tokens expire).
pub fn states(records: &[SigningKeyRecord], now: i64) -> Vec<(&SigningKeyRecord, &'static str)> {
    records
        .iter()
        .map(|r| {
            let newest_active = records
                .iter()
                .filter(|o| o.alg == r.alg && o.activates_at <= now)
                .max_by_key(|o| (o.activates_at, o.created_at));
            let state = if r.activates_at > now {
                "next"
            } else if newest_active.is_some_and(|a| a.kid == r.kid) {
                "active"
            } else {
                "retired"
            };
            (r, state)
        })
        .collect()
}

/// How long an instance reuses a loaded key set. Keys are published long before they sign
/// (`key_rotation_lead_secs`), so a slightly stale set never signs with an unpublished key.
pub const CACHE_SECS: i64 = 30;

/// A key set and when it was loaded.
type Loaded = (i64, std::sync::Arc<KeySet>);

/// The key set, loaded from the store at most every `CACHE_SECS`.
#[derive(Clone)]
pub struct KeyCache {
    kek: Kek,
    max_token_ttl: i64,
    cached: std::sync::Arc<std::sync::Mutex<Option<Loaded>>>,
}

impl KeyCache {
    pub fn new(kek: Kek, max_token_ttl: i64) -> KeyCache {
        KeyCache {
            kek,
            max_token_ttl,
            cached: Default::default(),
        }
    }

    /// The keys as of `now`.
    pub async fn current(
        &self,
        store: &dyn crate::store::Store,
        now: i64,
    ) -> anyhow::Result<std::sync::Arc<KeySet>> {
        if let Ok(guard) = self.cached.lock() {
            if let Some((loaded_at, set)) = guard.as_ref() {
                if (now - loaded_at).abs() < CACHE_SECS {
                    return Ok(set.clone());
                }
            }
        }
        let records = store.signing_keys().await?;
        let set = std::sync::Arc::new(KeySet::at(&records, &self.kek, now, self.max_token_ttl)?);
        if let Ok(mut guard) = self.cached.lock() {
            *guard = Some((now, set.clone()));
        }
        Ok(set)
    }

    /// Forgets the loaded set (after a rotation in this process, and in tests).
    pub fn invalidate(&self) {
        if let Ok(mut guard) = self.cached.lock() {
            *guard = None;
        }
    }
}

/// On first start (no keys at all), one active key per algorithm, so every algorithm
/// discovery advertises can sign at once. RSA generation runs on the blocking pool.
pub async fn ensure_initial(
    store: &dyn crate::store::Store,
    kek: &Kek,
    now: i64,
) -> anyhow::Result<()> {
    if !store.signing_keys().await?.is_empty() {
        return Ok(());
    }
    for alg in ALGS {
        let record = create(store, kek, alg, now, now, "server").await?;
        tracing::info!(kid = %record.kid, alg, "created the first signing key");
    }
    Ok(())
}

/// Generates a key off the async runtime and stores it with an audit event.
pub async fn create(
    store: &dyn crate::store::Store,
    kek: &Kek,
    alg: &str,
    now: i64,
    activates_at: i64,
    actor: &str,
) -> anyhow::Result<SigningKeyRecord> {
    let (kek, alg_owned) = (kek.clone(), alg.to_owned());
    let record = tokio::task::spawn_blocking(move || generate(&alg_owned, &kek, now, activates_at))
        .await??;
    let audit = crate::audit::AuditEvent::new(crate::audit::AuditKind::KeyCreated, actor, now)
        .details(serde_json::json!({ "kid": record.kid, "alg": record.alg, "activates_at": activates_at }));
    store.insert_signing_key(&record, &audit).await?;
    Ok(record)
}

/// The left half of the hash of `token` that OIDC Core §3.1.3.6 (`at_hash`) asks for, with
/// the hash the signing algorithm uses: SHA-256 for RS256 and ES256, SHA-512 for Ed25519.
pub fn half_hash(alg: &str, token: &str) -> String {
    use sha2::Digest as _;
    let digest: Vec<u8> = if alg == "EdDSA" {
        sha2::Sha512::digest(token.as_bytes()).to_vec()
    } else {
        sha2::Sha256::digest(token.as_bytes()).to_vec()
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek() -> Kek {
        Kek([9u8; 32])
    }

    #[test]
    fn every_alg_generates_signs_and_verifies_against_its_published_jwk() {
        for alg in ALGS {
            let record = generate(alg, &kek(), 100, 100).unwrap();
            assert!(!String::from_utf8_lossy(&record.private_jwk_encrypted).contains("\"d\""));
            let set = KeySet::at(std::slice::from_ref(&record), &kek(), 100, 3600).unwrap();
            let mut payload = JwtPayload::new();
            payload.set_subject("ada");
            let jwt = set.active[*alg].sign(&payload, "JWT").unwrap();
            let public: Jwk = Jwk::from_bytes(record.public_jwk.as_bytes()).unwrap();
            assert_eq!(public.key_use(), Some("sig"));
            assert!(
                public.parameter("d").is_none(),
                "{alg}: no private part published"
            );
            let (decoded, header) =
                jwt::decode_with_verifier(&jwt, verifier(&public).unwrap().as_ref()).unwrap();
            assert_eq!(decoded.subject(), Some("ada"));
            assert_eq!(header.key_id(), Some(record.kid.as_str()));
        }
    }

    #[test]
    fn private_key_does_not_decrypt_under_another_kek_or_another_kid() {
        let mut record = generate("ES256", &kek(), 0, 0).unwrap();
        assert!(matches!(
            KeySet::at(&[record.clone()], &Kek([1u8; 32]), 0, 60),
            Err(KeyError::Decrypt(_))
        ));
        record.kid = "swapped".into();
        assert!(matches!(
            KeySet::at(&[record], &kek(), 0, 60),
            Err(KeyError::Decrypt(_))
        ));
    }

    #[test]
    fn rotation_publishes_next_early_and_retired_until_its_tokens_expire() {
        let old = generate("ES256", &kek(), 0, 0).unwrap();
        let new = generate("ES256", &kek(), 1000, 2000).unwrap();
        let records = [old.clone(), new.clone()];
        let kids = |now| {
            let set = KeySet::at(&records, &kek(), now, 600).unwrap();
            let published: Vec<String> = set
                .published
                .iter()
                .map(|j| j["kid"].as_str().unwrap().to_owned())
                .collect();
            (set.active["ES256"].kid.clone(), published)
        };
        // Before activation: old signs, both are published.
        assert_eq!(
            kids(1500),
            (old.kid.clone(), vec![old.kid.clone(), new.kid.clone()])
        );
        // After activation: new signs, old stays published for the token lifetime.
        assert_eq!(
            kids(2100),
            (new.kid.clone(), vec![old.kid.clone(), new.kid.clone()])
        );
        // Once everything old signed has expired, old leaves the JWKS.
        assert_eq!(kids(2600), (new.kid.clone(), vec![new.kid.clone()]));
    }

    #[test]
    fn at_hash_is_the_left_half_of_the_algorithms_hash() {
        // OIDC Core §3.1.3.6 example values are not published; check length and determinism.
        assert_eq!(half_hash("RS256", "tsa_x").len(), 22);
        assert_eq!(half_hash("EdDSA", "tsa_x").len(), 43);
        assert_eq!(half_hash("ES256", "a"), half_hash("RS256", "a"));
    }
}
