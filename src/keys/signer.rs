//! The one way Tessera signs a JWT: ID tokens (OIDC Core §2), RFC 9068 access tokens and RFC
//! 9701 introspection answers all go through [`Signer::sign`], which picks the active key
//! for the algorithm and runs the signature on the blocking pool (an RSA signature costs
//! about a millisecond of CPU, too long for an async worker).

use std::sync::Arc;

use josekit::jwt::JwtPayload;

use super::KeyCache;
use crate::crypto::keys::KeySet;
use crate::store::Store;

/// Signs with the current keys; cheap to clone.
#[derive(Clone)]
pub struct Signer {
    cache: KeyCache,
    store: Arc<dyn Store>,
}

impl Signer {
    pub fn new(cache: KeyCache, store: Arc<dyn Store>) -> Signer {
        Signer { cache, store }
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
        if !keys.active.contains_key(alg) {
            anyhow::bail!("no active {alg} signing key");
        }
        let alg = alg.to_owned();
        tokio::task::spawn_blocking(move || match keys.active.get(&alg) {
            Some(key) => Ok(key.sign(&payload, typ)?),
            None => Err(anyhow::anyhow!("no active {alg} signing key")),
        })
        .await?
    }
}
