//! Signing keys: RS256 (2048-bit), ES256 and EdDSA (Ed25519), made and used with josekit.
//!
//! - Private keys are stored as a compact JWE (`dir` + `A256GCM`) under the key-encryption
//!   key, with the `kid` in the authenticated header, so a row cannot be swapped for another.
//! - A key's state follows from time, not from a job that must run: a key signs from its
//!   `activates_at` until a newer key of the same algorithm activates; it is published from
//!   creation (so a `next` key is in every JWKS before it signs anything) until every token
//!   it signed has expired. Instances sharing a store therefore always agree.
//! - One key that cannot be used (its private part does not decrypt, or a stored JWK is
//!   malformed) is skipped and logged; it never stops the other keys from signing. `/readyz`
//!   reports an algorithm left without a signing key.
//! - Each private key is decrypted once per process ([`Signers`]): a running instance keeps
//!   signing with the keys it loaded even after `tessera kek rotate` re-encrypted them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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

/// Whether the record's private key decrypts under `kek` (the start-up check of the KEK).
pub fn decrypts(record: &SigningKeyRecord, kek: &Kek) -> bool {
    decrypt(record, kek).is_ok()
}

/// The record's private key encrypted under `to` instead of `from`, bound to the same kid.
pub fn reencrypt(record: &SigningKeyRecord, from: &Kek, to: &Kek) -> Result<Vec<u8>, KeyError> {
    encrypt(&decrypt(record, from)?, &record.kid, to)
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
    /// The signing key per algorithm. An algorithm whose key cannot be used is absent.
    pub active: BTreeMap<String, Arc<ActiveKey>>,
    /// Public JWKs to publish.
    pub published: Vec<serde_json::Value>,
    /// Kids skipped because their private key does not decrypt or a stored JWK is malformed.
    pub unusable: Vec<String>,
}

impl KeySet {
    /// `max_token_ttl`: the longest lifetime of anything signed, so a superseded key stays
    /// published until its last signature has expired. Never fails: a key that cannot be
    /// used is logged and listed in `unusable`, and every other key still signs.
    pub fn at(
        records: &[SigningKeyRecord],
        signers: &mut Signers,
        now: i64,
        max_token_ttl: i64,
    ) -> KeySet {
        let mut active = BTreeMap::new();
        let mut published = Vec::new();
        let mut unusable = Vec::new();
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
                match Jwk::from_bytes(record.public_jwk.as_bytes()) {
                    Ok(jwk) => published.push(serde_json::Value::Object(jwk.as_ref().clone())),
                    Err(e) => {
                        tracing::error!(kid = %record.kid, alg = %record.alg, error = %e,
                            "signing key skipped: its stored public JWK is malformed");
                        unusable.push(record.kid.clone());
                    }
                }
            }
        }
        // The signing key per algorithm is the one `states` calls active, so `keys list`
        // and the server can never disagree.
        for (record, state) in states(records, now) {
            // A key whose public half is not published must not sign: nobody could verify it.
            if state != "active" || unusable.contains(&record.kid) {
                continue;
            }
            match signers.get(record) {
                Ok(key) => {
                    active.insert(record.alg.clone(), key);
                }
                Err(e) => {
                    tracing::error!(kid = %record.kid, alg = %record.alg, error = %e,
                        "signing key skipped: its private key cannot be used");
                    unusable.push(record.kid.clone());
                }
            }
        }
        signers.keep_only(active.values().map(|k| k.kid.as_str()));
        KeySet {
            active,
            published,
            unusable,
        }
    }

    /// Algorithms discovery advertises that have no usable signing key now.
    pub fn algs_without_signer(&self) -> Vec<&'static str> {
        ALGS.iter()
            .copied()
            .filter(|alg| !self.active.contains_key(*alg))
            .collect()
    }
}

/// Signers already built, by kid, under one key-encryption key. A private key is decrypted
/// once per process, so a running instance does not depend on the stored ciphertext (or the
/// KEK) staying the same once it has loaded a key.
pub struct Signers {
    kek: Kek,
    by_kid: HashMap<String, Arc<ActiveKey>>,
}

impl Signers {
    pub fn new(kek: Kek) -> Signers {
        Signers {
            kek,
            by_kid: HashMap::new(),
        }
    }

    fn get(&mut self, record: &SigningKeyRecord) -> Result<Arc<ActiveKey>, KeyError> {
        if let Some(key) = self.by_kid.get(&record.kid) {
            return Ok(key.clone());
        }
        let private = decrypt(record, &self.kek)?;
        let key = Arc::new(ActiveKey {
            kid: record.kid.clone(),
            alg: record.alg.clone(),
            signer: signer(&record.alg, &private)?,
        });
        self.by_kid.insert(record.kid.clone(), key.clone());
        Ok(key)
    }

    /// Forgets superseded keys: a key never signs again once a newer one has activated.
    fn keep_only<'a>(&mut self, kids: impl Iterator<Item = &'a str>) {
        let kids: Vec<&str> = kids.collect();
        self.by_kid.retain(|kid, _| kids.contains(&kid.as_str()));
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

    fn set_at(records: &[SigningKeyRecord], now: i64, max_token_ttl: i64) -> KeySet {
        KeySet::at(records, &mut Signers::new(kek()), now, max_token_ttl)
    }

    fn sign_as(set: &KeySet, alg: &str) -> String {
        let mut payload = JwtPayload::new();
        payload.set_subject("ada");
        set.active[alg].sign(&payload, "JWT").unwrap()
    }

    #[test]
    fn every_alg_generates_signs_and_verifies_against_its_published_jwk() {
        for alg in ALGS {
            let record = generate(alg, &kek(), 100, 100).unwrap();
            assert!(!String::from_utf8_lossy(&record.private_jwk_encrypted).contains("\"d\""));
            let set = set_at(std::slice::from_ref(&record), 100, 3600);
            let jwt = sign_as(&set, alg);
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
    fn key_under_another_kek_or_another_kid_is_skipped_not_an_error() {
        let mut record = generate("ES256", &kek(), 0, 0).unwrap();
        assert!(decrypts(&record, &kek()));
        assert!(!decrypts(&record, &Kek([1u8; 32])));
        let set = KeySet::at(
            std::slice::from_ref(&record),
            &mut Signers::new(Kek([1u8; 32])),
            0,
            60,
        );
        assert!(set.active.is_empty());
        assert_eq!(set.unusable, [record.kid.as_str()]);
        assert_eq!(set.published.len(), 1, "its public half stays published");
        // The kid is in the authenticated header: a row swapped for another kid is refused.
        record.kid = "swapped".into();
        let set = set_at(&[record], 0, 60);
        assert!(set.active.is_empty());
        assert_eq!(set.unusable, ["swapped"]);
    }

    #[test]
    fn undecryptable_key_is_skipped_and_other_algs_still_sign() {
        let rs = generate("RS256", &kek(), 0, 0).unwrap();
        let es = generate("ES256", &Kek([1u8; 32]), 0, 0).unwrap();
        let ed = generate("EdDSA", &kek(), 0, 0).unwrap();
        let set = set_at(&[rs.clone(), es.clone(), ed.clone()], 10, 60);
        assert_eq!(set.unusable, [es.kid.as_str()]);
        assert_eq!(set.algs_without_signer(), ["ES256"]);
        assert_eq!(set.published.len(), 3);
        for (alg, record) in [("RS256", &rs), ("EdDSA", &ed)] {
            let jwt = sign_as(&set, alg);
            let payload = set.verify(&jwt).unwrap();
            assert_eq!(payload.subject(), Some("ada"), "{alg}");
            assert_eq!(set.active[alg].kid, record.kid);
        }
    }

    #[test]
    fn malformed_public_jwk_is_neither_published_nor_used_to_sign() {
        let mut bad = generate("EdDSA", &kek(), 0, 0).unwrap();
        bad.public_jwk = "{not json".into();
        let good = generate("ES256", &kek(), 0, 0).unwrap();
        let set = set_at(&[bad.clone(), good.clone()], 10, 60);
        assert_eq!(set.unusable, [bad.kid.as_str()]);
        assert!(!set.active.contains_key("EdDSA"), "nobody could verify it");
        assert_eq!(set.published.len(), 1);
        assert_eq!(set.published[0]["kid"], good.kid.as_str());
        assert_eq!(set.active["ES256"].kid, good.kid);
    }

    #[test]
    fn each_private_key_is_decrypted_once_per_process() {
        let mut record = generate("ES256", &kek(), 0, 0).unwrap();
        let mut signers = Signers::new(kek());
        let first = KeySet::at(std::slice::from_ref(&record), &mut signers, 10, 60);
        assert_eq!(first.active["ES256"].kid, record.kid);
        // Once loaded, the stored ciphertext no longer matters (a `kek rotate` elsewhere).
        record.private_jwk_encrypted = b"re-encrypted under a key this process lacks".to_vec();
        let again = KeySet::at(std::slice::from_ref(&record), &mut signers, 20, 60);
        assert!(Arc::ptr_eq(&first.active["ES256"], &again.active["ES256"]));
        assert!(again.unusable.is_empty());
        let fresh = set_at(std::slice::from_ref(&record), 20, 60);
        assert_eq!(fresh.unusable, [record.kid.as_str()]);
    }

    #[test]
    fn reencrypt_moves_a_key_to_the_new_kek_under_the_same_kid() {
        let mut record = generate("RS256", &kek(), 0, 0).unwrap();
        let new = Kek([2u8; 32]);
        record.private_jwk_encrypted = reencrypt(&record, &kek(), &new).unwrap();
        assert!(decrypts(&record, &new));
        assert!(!decrypts(&record, &kek()));
        assert!(matches!(
            reencrypt(&record, &kek(), &new),
            Err(KeyError::Decrypt(_))
        ));
        let set = KeySet::at(std::slice::from_ref(&record), &mut Signers::new(new), 0, 60);
        assert_eq!(set.active["RS256"].kid, record.kid);
    }

    #[test]
    fn rotation_publishes_next_early_and_retired_until_its_tokens_expire() {
        let old = generate("ES256", &kek(), 0, 0).unwrap();
        let new = generate("ES256", &kek(), 1000, 2000).unwrap();
        let records = [old.clone(), new.clone()];
        let kids = |now| {
            let set = set_at(&records, now, 600);
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
