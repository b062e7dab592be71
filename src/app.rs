//! Shared application state: cheap to clone, handed to every handler and CLI command.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::crypto::kek::Kek;
use crate::crypto::password::Passwords;
use crate::keys::KeyCache;
use crate::keys::Signer;
use crate::oauth::login::{Authenticator, LoginGate};
use crate::oauth::Context;
use crate::store::Store;

/// Everything a request needs, behind one `Arc`: axum clones the state for every extractor
/// and `from_fn_with_state` layer of every request, and one reference count to bump and drop
/// is cheaper than the twenty-odd inside (measured: cloning and dropping the fields was
/// 2 % of the server's CPU under introspection load).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub passwords: Passwords,
    pub kek: Kek,
    pub keys: KeyCache,
    pub signer: Signer,
    /// Asked before every password check (brute-force protection plugs in here).
    pub login_gate: Arc<dyn LoginGate>,
    /// Request-rate limits of this instance.
    pub rate_limits: Arc<crate::http::rate_limit::RateLimits>,
    /// Clients as client authentication reads them, for at most a second.
    pub clients: Arc<crate::store::client_cache::ClientCache>,
    /// Introspection answers of active access tokens, within the bound of decision 0022.
    pub introspection: Arc<crate::http::introspection_cache::TokenCache>,
    /// Events that a flood would repeat (refused introspection, a full hashing queue),
    /// recorded once a minute per key by this instance.
    pub floods: Arc<crate::audit::OncePerMinute>,
    /// Logout tokens on their way to relying parties (OIDC Back-Channel Logout), off the
    /// request path.
    pub backchannel: crate::oauth::backchannel::Queue,
    pub clock: Clock,
}

impl Shared {
    /// What a password login needs.
    pub fn authenticator(&self) -> Authenticator<'_> {
        Authenticator {
            store: self.store.as_ref(),
            passwords: &self.passwords,
            gate: self.login_gate.as_ref(),
            kek: &self.kek,
            floods: &self.floods,
        }
    }

    /// The narrow view protocol rules get (`oauth::Context`).
    pub fn oauth(&self) -> Context<'_> {
        Context {
            store: self.store.as_ref(),
            signer: &self.signer,
            tokens: &self.config.tokens,
            issuer: self.config.issuer_str(),
            default_resource: &self.config.default_resource,
            source_ip: None,
            user_agent: None,
        }
    }
}

/// The only source of "now" (Unix seconds). Tests move it forward instead of sleeping.
#[derive(Clone, Default, Debug)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> i64 {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        system + self.offset.load(Ordering::Relaxed)
    }

    /// Moves this clock (and every clone of it) forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_a_clone_moves_every_clone() {
        let clock = Clock::default();
        let other = clock.clone();
        let before = clock.now();
        other.advance(3600);
        assert!(clock.now() >= before + 3600);
    }
}
