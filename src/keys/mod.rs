//! Signing keys as the running server uses them: loaded from the store, cached, and used to
//! sign on the blocking pool. The cryptography itself (generation, encryption at rest,
//! verification) is in `crypto::keys`, which never touches the store.

mod cache;
pub mod kek;
mod signer;

use crate::crypto::kek::Kek;
use crate::crypto::keys::{generate, ALGS};
use crate::store::{SigningKeyRecord, Store};

pub use cache::{KeyCache, CACHE_SECS};
pub use signer::Signer;

/// On first start (no keys at all), one active key per algorithm, so every algorithm
/// discovery advertises can sign at once. RSA generation runs on the blocking pool.
pub async fn ensure_initial(store: &dyn Store, kek: &Kek, now: i64) -> anyhow::Result<()> {
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
    store: &dyn Store,
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
