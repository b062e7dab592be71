//! The key set as one instance sees it: loaded from the store at most every [`CACHE_SECS`],
//! with decrypted signers kept per kid so a running instance decrypts each key once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::crypto::kek::Kek;
use crate::crypto::keys::{KeySet, Signers};

/// How long an instance reuses a loaded key set. Keys are published long before they sign
/// (`key_rotation_lead_secs`), so a slightly stale set never signs with an unpublished key.
pub const CACHE_SECS: i64 = 30;

/// A key set and when it was loaded.
type Loaded = (i64, Arc<KeySet>);

/// What the cache guards: the last set, and the signers it was built from.
struct Cached {
    loaded: Option<Loaded>,
    signers: Signers,
}

/// The key set, loaded from the store at most every `CACHE_SECS`.
#[derive(Clone)]
pub struct KeyCache {
    max_token_ttl: i64,
    cached: Arc<Mutex<Cached>>,
    unusable_total: Arc<AtomicU64>,
}

impl KeyCache {
    pub fn new(kek: Kek, max_token_ttl: i64) -> KeyCache {
        KeyCache {
            max_token_ttl,
            cached: Arc::new(Mutex::new(Cached {
                loaded: None,
                signers: Signers::new(kek),
            })),
            unusable_total: Default::default(),
        }
    }

    /// The keys as of `now`. Fails only when the store does.
    pub async fn current(
        &self,
        store: &dyn crate::store::Store,
        now: i64,
    ) -> anyhow::Result<Arc<KeySet>> {
        let fresh = match &self.lock().loaded {
            Some((loaded_at, set)) if (now - loaded_at).abs() < CACHE_SECS => Some(set.clone()),
            _ => None,
        };
        if let Some(set) = fresh {
            return Ok(set);
        }
        let records = store.signing_keys().await?;
        let mut cached = self.lock();
        let set = Arc::new(KeySet::at(
            &records,
            &mut cached.signers,
            now,
            self.max_token_ttl,
        ));
        cached.loaded = Some((now, set.clone()));
        self.unusable_total
            .fetch_add(set.unusable.len() as u64, Ordering::Relaxed);
        Ok(set)
    }

    /// Keys skipped as unusable since start, counted at every reload of the set (at most
    /// every `CACHE_SECS`), so it keeps growing while a bad key is still needed. For a
    /// metrics exporter.
    pub fn unusable_total(&self) -> u64 {
        self.unusable_total.load(Ordering::Relaxed)
    }

    /// Forgets the loaded set (after a rotation in this process, and in tests); the
    /// decrypted signers stay.
    pub fn invalidate(&self) {
        self.lock().loaded = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        // Poisoned only by a panic while building a set; what it holds is still consistent.
        self.cached.lock().unwrap_or_else(|e| e.into_inner())
    }
}
