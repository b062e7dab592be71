//! CPU ceilings for the benchmark, printed as one JSON object:
//! - argon2id hashes/s at Tessera's default parameters (m=19456 KiB, t=2, p=1), on one
//!   thread and on as many threads as there are cores;
//! - RS256 (2048-bit RSA) and ES256 (P-256) signatures/s of a JWT the size of an ID token,
//!   with josekit as Tessera signs, on one thread and on every core.
//!
//! Usage: `ceilings [SECONDS_PER_MEASUREMENT]` (default 3).

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use josekit::jws::{JwsHeader, JwsSigner, ES256, RS256};
use josekit::jwt::{self, JwtPayload};

const M_KIB: u32 = 19456;
const T: u32 = 2;
const P: u32 = 1;

/// Runs `op` on `threads` threads for `secs` seconds; operations per second in total.
fn rate(threads: usize, secs: f64, op: Arc<dyn Fn() + Send + Sync>) -> f64 {
    let deadline = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let op = op.clone();
            thread::spawn(move || {
                let mut n = 0u64;
                while start.elapsed() < deadline {
                    op();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let cores = thread::available_parallelism().map_or(1, |n| n.get());

    let params = Params::new(M_KIB, T, P, None).map_err(|e| e.to_string())?;
    let argon2 = Arc::new(Argon2::new(Algorithm::Argon2id, Version::V0x13, params));
    let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0c2FsdA").map_err(|e| e.to_string())?;
    let hash: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let _ = argon2.hash_password(b"correct horse battery staple", &salt);
    });
    let argon2_1 = rate(1, secs, hash.clone());
    let argon2_n = rate(cores, secs, hash);

    let key = RS256.generate_key_pair(2048)?;
    let signer = Arc::new(RS256.signer_from_der(key.to_der_private_key())?);
    let mut payload = JwtPayload::new();
    payload.set_issuer("http://127.0.0.1:8080");
    payload.set_subject("7d6f1f5e-3c1a-4a59-9b3e-0f6f7c1d2e3f");
    payload.set_audience(vec!["bench-code"]);
    payload.set_claim("nonce", Some("n-0S6_WzA2Mj".into()))?;
    payload.set_claim("auth_time", Some(1_700_000_000.into()))?;
    payload.set_claim("exp", Some(1_700_003_600.into()))?;
    payload.set_claim("iat", Some(1_700_000_000.into()))?;
    let payload = Arc::new(payload);
    let signing = |signer: Arc<dyn JwsSigner>| -> Arc<dyn Fn() + Send + Sync> {
        let payload = Arc::clone(&payload);
        Arc::new(move || {
            let mut header = JwsHeader::new();
            header.set_token_type("JWT");
            header.set_key_id("bench");
            let _ = jwt::encode_with_signer(&payload, &header, signer.as_ref());
        })
    };
    let sign = signing(signer);
    let rs256_1 = rate(1, secs, sign.clone());
    let rs256_n = rate(cores, secs, sign);
    // The ID tokens of a client registered with `id_token_signed_response_alg=ES256`.
    let key = ES256.generate_key_pair()?;
    let sign = signing(Arc::new(ES256.signer_from_der(key.to_der_private_key())?));
    let es256_1 = rate(1, secs, sign.clone());
    let es256_n = rate(cores, secs, sign);

    println!(
        "{{\"cores\":{cores},\"seconds_each\":{secs},\
         \"argon2id\":{{\"m_kib\":{M_KIB},\"t\":{T},\"p\":{P},\"per_s_1_thread\":{argon2_1:.1},\"per_s_all_cores\":{argon2_n:.1}}},\
         \"rs256\":{{\"bits\":2048,\"per_s_1_thread\":{rs256_1:.1},\"per_s_all_cores\":{rs256_n:.1}}},\
         \"es256\":{{\"per_s_1_thread\":{es256_1:.1},\"per_s_all_cores\":{es256_n:.1}}}}}"
    );
    Ok(())
}
