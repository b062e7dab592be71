//! Signing keys as the running server uses them: loaded from the store, cached, and used to
//! sign on the blocking pool. The cryptography itself (generation, encryption at rest,
//! verification) is in `crypto::keys`, which never touches the store.

mod cache;
pub mod kek;
pub mod signer;

use crate::audit::{AuditEvent, AuditKind};
use crate::crypto::kek::Kek;
use crate::crypto::keys::{generate, ALGS};
use crate::store::{SigningKeyRecord, Store};

pub use cache::{KeyCache, CACHE_SECS};
pub use signer::Signer;

/// One active key for every algorithm that has none (on first start: for all of them), so
/// every algorithm discovery advertises can sign. Safe when several instances start together
/// on one store: keys are generated here (RSA on the blocking pool), and the store adds only
/// those whose algorithm is still missing, under a lock.
pub async fn ensure_initial(store: &dyn Store, kek: &Kek, now: i64) -> anyhow::Result<()> {
    let existing = store.signing_keys().await?;
    let missing: Vec<&str> = ALGS
        .iter()
        .copied()
        .filter(|alg| !existing.iter().any(|k| k.alg == *alg))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let kek = kek.clone();
    let owned: Vec<String> = missing.iter().map(|a| (*a).to_owned()).collect();
    let generated = tokio::task::spawn_blocking(move || {
        owned
            .iter()
            .map(|alg| generate(alg, &kek, now, now))
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    let with_audit: Vec<(SigningKeyRecord, AuditEvent)> = generated
        .into_iter()
        .map(|record| {
            let audit = created_event(&record, "server", now);
            (record, audit)
        })
        .collect();
    let added = store.insert_first_signing_keys(&with_audit).await?;
    for (record, _) in with_audit.iter().filter(|(r, _)| added.contains(&r.kid)) {
        tracing::info!(kid = %record.kid, alg = %record.alg, "created the first signing key");
    }
    Ok(())
}

fn created_event(record: &SigningKeyRecord, actor: &str, now: i64) -> AuditEvent {
    AuditEvent::new(AuditKind::KeyCreated, actor, now).details(serde_json::json!({
        "kid": record.kid,
        "alg": record.alg,
        "activates_at": record.activates_at,
    }))
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
    store
        .insert_signing_key(&record, &created_event(&record, actor, now))
        .await?;
    Ok(record)
}
