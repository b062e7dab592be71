//! Registered clients as client authentication and authorization requests read them, kept
//! per instance for at most [`MAX_AGE`]. Every call to `/token`, `/introspect` and `/revoke`
//! authenticates its client, and that lookup was one of the two statements of a token issue
//! or an introspection; every step of a sign-in (authorize, login form, consent form)
//! validates the authorization request, which names its client.
//!
//! The bound (docs/scaling.md): a client changed or deleted — by the CLI or through another
//! instance — is seen as changed by every instance within one second. A rotated secret is
//! accepted for at most a second after the rotation, as are a removed permission and a
//! changed rate limit. Unknown ids are never cached, so a new client works at once, and ids
//! an attacker makes up cannot fill the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{ClientRecord, Store, StoreError};

/// How long a loaded client is used without asking the store again.
pub const MAX_AGE: Duration = Duration::from_secs(1);
/// More clients than this and the cache starts afresh (deployments have far fewer).
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub struct ClientCache {
    entries: Mutex<HashMap<String, (Instant, Arc<ClientRecord>)>>,
}

impl ClientCache {
    /// The client `id`, from the cache if loaded less than [`MAX_AGE`] ago.
    pub async fn get(
        &self,
        store: &dyn Store,
        id: &str,
    ) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        if let Some((loaded, client)) = self.lock().get(id) {
            if loaded.elapsed() < MAX_AGE {
                return Ok(Some(Arc::clone(client)));
            }
        }
        let Some(client) = store.client(id).await? else {
            self.lock().remove(id);
            return Ok(None);
        };
        let client = Arc::new(client);
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(id.to_owned(), (Instant::now(), Arc::clone(&client)));
        Ok(Some(client))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Instant, Arc<ClientRecord>)>> {
        // A panic while holding the lock leaves a map that is still valid.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}
