//! The one way Tessera signs a JWT: ID tokens (OIDC Core §2), RFC 9068 access tokens and RFC
//! 9701 introspection answers all go through [`Signer::sign`], which picks the active key
//! for the algorithm. An RSA signature (a quarter to two thirds of a millisecond of CPU,
//! too long for an async worker) runs on the blocking pool; ES256 and EdDSA sign in 25 to
//! 45 µs, about what the hand-off to that pool and back costs, and run where they are asked
//! for (decision 0056).

use std::sync::Arc;

use josekit::jwt::JwtPayload;
use tokio::sync::Semaphore;

use super::KeyCache;
use crate::crypto::keys::KeySet;
use crate::store::Store;

/// Signs with the current keys; cheap to clone.
#[derive(Clone)]
pub struct Signer {
    cache: KeyCache,
    store: Arc<dyn Store>,
    /// RSA signatures computed at once: two per core. Without a bound, 64 concurrent JWT
    /// requests each took a blocking-pool thread of their own (tokio grows that pool to 512
    /// threads, with a stack and an allocator cache each) and doubled the peak RSS. Exactly
    /// one per core leaves a core idle whenever a signing thread is preempted by the database
    /// or the network; two keeps one queued behind each.
    running: Arc<Semaphore>,
    limit: usize,
}

/// RSA signatures computed at once (see [`Signer`]): two per core.
pub fn concurrency() -> usize {
    2 * std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Signer {
    pub fn new(cache: KeyCache, store: Arc<dyn Store>) -> Signer {
        let limit = concurrency();
        Signer {
            cache,
            store,
            running: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// RSA signatures being computed now (on the blocking pool).
    pub fn running(&self) -> usize {
        self.limit.saturating_sub(self.running.available_permits())
    }

    /// The keys as of `now` (cached; see `keys::CACHE_SECS`), to verify with or to
    /// publish.
    pub async fn keys(&self, now: i64) -> anyhow::Result<Arc<KeySet>> {
        self.cache.current(self.store.as_ref(), now).await
    }

    /// A compact JWS of `payload` with `typ` in the header, signed by the active key for
    /// `alg`.
    pub async fn sign(
        &self,
        payload: JwtPayload,
        alg: &str,
        typ: &'static str,
        now: i64,
    ) -> anyhow::Result<String> {
        let keys = self.keys(now).await?;
        self.sign_with(keys, payload, alg, typ).await
    }

    /// Like [`Signer::sign`], with a key set read before: for a signature that must not
    /// depend on reading the store again (decision 0043).
    pub async fn sign_with(
        &self,
        keys: Arc<KeySet>,
        payload: JwtPayload,
        alg: &str,
        typ: &'static str,
    ) -> anyhow::Result<String> {
        let Some(key) = keys.active.get(alg) else {
            anyhow::bail!("no active {alg} signing key");
        };
        if signs_inline(alg) {
            return Ok(key.sign(&payload, typ)?);
        }
        let key = Arc::clone(key);
        let permit = Arc::clone(&self.running).acquire_owned().await?;
        tokio::task::spawn_blocking(move || {
            let _held = permit;
            Ok(key.sign(&payload, typ)?)
        })
        .await?
    }
}

/// Whether `alg` signs on the task that asks (decision 0056): an ES256 (P-256) signature
/// takes about 25 µs of CPU and an EdDSA one about 45 (`openssl speed` on a slow host),
/// about what a round trip through the blocking pool costs, which also wakes two threads
/// (the SQLite ES256 refresh at c = 16 made 4.2 context switches per refresh with it
/// against 2.3 without, at 9 % more server CPU). An RS256 signature (0.25 to 0.7 ms with a
/// 2048-bit key, by host) stays off the async workers.
fn signs_inline(alg: &str) -> bool {
    matches!(alg, "ES256" | "EdDSA")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::crypto::kek::Kek;

    const NOW: i64 = 1_000_000;

    /// A signer with the first keys of a new SQLite store (kept in the returned folder).
    async fn signer_on_a_new_store() -> (tempfile::TempDir, Signer) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display())
            .parse()
            .unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::SqlStore::open(&url).await.unwrap());
        let kek = Kek::generate();
        crate::keys::ensure_initial(store.as_ref(), &kek, NOW)
            .await
            .unwrap();
        (dir, Signer::new(KeyCache::new(kek, 3600), store))
    }

    /// With the runtime's one blocking thread taken, ES256 and EdDSA still sign and RS256
    /// waits for it.
    #[test]
    fn cheap_signatures_need_no_blocking_thread() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (_dir, signer) = signer_on_a_new_store().await;
            let keys = signer.keys(NOW).await.unwrap();
            let (release, held) = std::sync::mpsc::channel::<()>();
            let blocker = tokio::task::spawn_blocking(move || held.recv());
            let within = std::time::Duration::from_secs(5);
            for alg in ["ES256", "EdDSA"] {
                let signed = tokio::time::timeout(
                    within,
                    signer.sign_with(Arc::clone(&keys), JwtPayload::new(), alg, "JWT"),
                )
                .await;
                assert!(signed.unwrap().is_ok(), "{alg} signed beside a busy pool");
            }
            let rsa = tokio::spawn({
                let (signer, keys) = (signer.clone(), Arc::clone(&keys));
                async move {
                    signer
                        .sign_with(keys, JwtPayload::new(), "RS256", "JWT")
                        .await
                }
            });
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert!(!rsa.is_finished(), "RS256 waits for the blocking pool");
            release.send(()).unwrap();
            blocker.await.unwrap().unwrap();
            assert!(rsa.await.unwrap().is_ok());
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signatures_run_at_most_two_per_core() {
        let (_dir, signer) = signer_on_a_new_store().await;
        let done = Arc::new(AtomicBool::new(false));
        // A thread of its own, not a task: a task on the runtime that runs the signatures
        // can miss them all when it is not polled while they run (seen once in CI).
        let watch = {
            let (signer, done) = (signer.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut most = 0;
                while !done.load(Ordering::Acquire) {
                    most = most.max(signer.running());
                    std::thread::yield_now();
                }
                most
            })
        };
        let signs: Vec<_> = (0..96)
            .map(|_| {
                let signer = signer.clone();
                tokio::spawn(async move {
                    signer
                        .sign(JwtPayload::new(), "RS256", "JWT", NOW)
                        .await
                        .unwrap()
                })
            })
            .collect();
        for s in signs {
            assert!(!s.await.unwrap().is_empty());
        }
        done.store(true, Ordering::Release);
        let most = watch.join().unwrap();
        assert!(most >= 1, "the watcher saw signatures run");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        assert!(most <= 2 * cores, "{most} at once on {cores} cores");
        assert_eq!(signer.running(), 0);
    }
}
