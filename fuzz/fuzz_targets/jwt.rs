//! JWTs and JWKs from outside: `id_token_hint` at `/authorize` and `/logout`
//! (`oauth::id_token::verify_hint`, over `crypto::keys::KeySet::verify`), and the public JWKs
//! that `KeySet::verify` builds a verifier from (`Jwk::from_bytes`, `crypto::keys::verifier`).
//!
//! One key per algorithm (RS256, ES256, EdDSA) is made at start-up. The first byte chooses:
//! - 0: the rest is a token, verified as a hint; nothing unsigned by us may pass.
//! - 1: the second byte picks an algorithm; the rest is `typ`, a newline and a JSON payload,
//!   which we sign; the hint check must then accept exactly what an ID token looks like.
//! - 2: the second byte picks an algorithm; the rest is a JSON JWK published in place of the
//!   real one (with the real `kid` and `alg` unless the JWK has its own); a token signed by
//!   the real key may verify only if that JWK holds the same public key.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use josekit::jwk::Jwk;
use josekit::jwt::JwtPayload;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tessera::crypto::kek::Kek;
use tessera::crypto::keys::{self, KeySet, Signers, ALGS};
use tessera::oauth::id_token::verify_hint;

const ISSUER: &str = "https://id.example.com";

struct World {
    keys: KeySet,
    /// A token signed by each algorithm's key, and that key's public JWK.
    signed: Vec<(String, Map<String, Value>)>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let kek = Kek([7u8; 32]);
        let records: Vec<_> = ALGS
            .iter()
            .map(|alg| keys::generate(alg, &kek, 0, 0).expect("key"))
            .collect();
        let keys = KeySet::at(&records, &mut Signers::new(kek), 10, 3600);
        assert_eq!(keys.active.len(), ALGS.len());
        let mut payload = JwtPayload::new();
        payload.set_issuer(ISSUER);
        payload.set_subject("ada");
        let signed = ALGS
            .iter()
            .zip(&records)
            .map(|(alg, record)| {
                let token = keys.active[*alg].sign(&payload, "JWT").expect("sign");
                let Value::Object(jwk) = serde_json::from_str(&record.public_jwk).expect("jwk")
                else {
                    panic!("a JWK is an object")
                };
                (token, jwk)
            })
            .collect();
        World { keys, signed }
    })
}

/// The public key material of a JWK, to compare two keys.
fn material(jwk: &Map<String, Value>) -> Vec<Option<&Value>> {
    ["kty", "crv", "n", "e", "x", "y"]
        .iter()
        .map(|p| jwk.get(*p))
        .collect()
}

/// Equal JSON, except that a number beyond the integers may come back a rounding apart:
/// serde_json (without its `float_roundtrip` feature) does not read every float back exactly
/// as it wrote it, e.g. `3e27` (found by this target; Tessera signs only integer dates).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(token) = std::str::from_utf8(rest) else {
                return;
            };
            if w.signed.iter().any(|(t, _)| t == token) {
                return;
            }
            assert!(w.keys.verify(token).is_none(), "forged: {token}");
            assert!(verify_hint(&w.keys, ISSUER, token).is_none());
        }
        1 => {
            let Some((&pick, rest)) = rest.split_first() else {
                return;
            };
            let alg = ALGS[usize::from(pick) % ALGS.len()];
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let (typ, json) = text.split_once('\n').unwrap_or(("JWT", text));
            let Ok(Value::Object(claims)) = serde_json::from_str::<Value>(json) else {
                return;
            };
            let Ok(payload) = JwtPayload::from_map(claims.clone()) else {
                return;
            };
            let Ok(token) = w.keys.active[alg].sign(&payload, typ) else {
                return;
            };
            let verified = w.keys.verify(&token).expect("what we sign verifies");
            assert!(
                same(
                    &Value::Object(verified.claims_set().clone()),
                    &Value::Object(payload.claims_set().clone())
                ),
                "{:?} became {:?}",
                payload.claims_set(),
                verified.claims_set()
            );
            let hint = verify_hint(&w.keys, ISSUER, &token);
            let looks_like_id_token = claims.get("iss").and_then(Value::as_str) == Some(ISSUER)
                && typ.eq_ignore_ascii_case("JWT")
                && claims.contains_key("auth_time")
                && ["client_id", "scope", "token_introspection"]
                    .iter()
                    .all(|c| !claims.contains_key(*c))
                && claims.get("sub").is_some_and(Value::is_string);
            assert_eq!(hint.is_some(), looks_like_id_token, "{typ} {json}");
            if let Some(hint) = hint {
                assert_eq!(Some(hint.subject.as_str()), claims["sub"].as_str());
            }
        }
        _ => {
            let Some((&pick, rest)) = rest.split_first() else {
                return;
            };
            let (token, real) = &w.signed[usize::from(pick) % w.signed.len()];
            let Ok(Value::Object(mut jwk)) = serde_json::from_slice::<Value>(rest) else {
                return;
            };
            for p in ["kid", "alg"] {
                if !jwk.contains_key(p) {
                    jwk.insert(p.to_owned(), real[p].clone());
                }
            }
            // As `KeySet::at` reads a stored public JWK, and `verify` builds its verifier.
            if let Ok(parsed) = Jwk::from_bytes(serde_json::to_vec(&jwk).expect("json")) {
                let _ = keys::verifier(&parsed);
            }
            let set = KeySet {
                active: BTreeMap::new(),
                published: vec![Value::Object(jwk.clone())],
                unusable: vec![],
            };
            if set.verify(token).is_some() {
                assert_eq!(material(&jwk), material(real), "another key verified");
            }
        }
    }
});
