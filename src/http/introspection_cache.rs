//! Introspection answers for active access tokens, kept per instance (decision 0022).
//!
//! A gateway introspects the same token on every API call it forwards; the answer changes
//! only when the token is revoked (itself, its grant, its user) or expires. The bound, as
//! docs/scaling.md states it: a revocation made anywhere — this instance, another one, the
//! CLI — shows in every instance's answers within one second.
//!
//! - This instance's own changes empty the cache before the response that made them is sent
//!   ([`TokenCache::committed`], an after-commit hook), so a revocation is seen here at once.
//! - On Postgres, triggers (migration 0006) notify every instance of every revocation, and a
//!   listener task removes what they name ([`listen`]). Answers are served from the cache only
//!   while the listener proves itself live: it sends itself a notification every
//!   [`BEAT`] and the cache is used only while one sent less than [`FRESH`] ago has come back.
//!   Notifications arrive in commit order, so when a beat sent at `S` comes back every
//!   revocation committed before `S` has been applied. A lost connection empties the cache.
//! - On SQLite, triggers (migration 0013) advance a change counter instead, and a task reads
//!   it every [`BEAT`] ([`poll`]): a counter that moved empties the cache, and the cache is
//!   used only while a read started less than [`FRESH`] ago has come back. A read sees every
//!   change committed before it started (the CLI's, another process's), so the bound is the
//!   same as on Postgres.
//!
//! Only access tokens are kept: refresh tokens change at every use, and API keys record their
//! use. Each entry also carries the token's expiry, checked at every hit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::audit::{AuditEvent, AuditKind};
use crate::crypto::token::Digest;
use crate::store::AfterCommit;

/// The longest a cached answer may lag a revocation made elsewhere (docs/scaling.md says one
/// second; this leaves room for the time a request takes).
pub const FRESH: Duration = Duration::from_millis(800);
/// How often the Postgres listener checks that it is live.
pub const BEAT: Duration = Duration::from_millis(100);
/// More entries than this and the cache starts afresh (each is a few hundred bytes).
const MAX_ENTRIES: usize = 50_000;
/// Even with a live listener, an answer is looked up again after this long.
const MAX_AGE: Duration = Duration::from_secs(60);
/// An answer nobody asked for in this long is dropped by the sweep: what a gateway keeps asking
/// about stays, and after a burst of lookups of many tokens (the bench's 10,000 held 18 MiB)
/// the memory goes back. Ten seconds, not one: a gateway asks about a token once per API
/// call its user makes, often seconds apart, and with one second those calls all missed; so
/// did 14 % of the bench's at 19,554 answers/s over 10,000 tokens (each token's next turn
/// more than a second away), and a slower host missed more, which slowed it further.
pub const IDLE: Duration = Duration::from_secs(10);
/// How often [`TokenCache::trim`] runs ([`TokenCache::trim_in_background`]).
const SWEEP: Duration = Duration::from_millis(500);

struct Entry {
    /// The RFC 7662 answer as JSON text.
    answer: Arc<str>,
    expires_at: Option<i64>,
    loaded: Instant,
    /// The last time it was served (or stored).
    used: Instant,
}

/// Answers are served only while a beat (Postgres) or a read of the change counter (SQLite)
/// started less than [`FRESH`] ago has come back.
pub struct TokenCache {
    entries: Mutex<HashMap<Digest, Entry>>,
    /// Bumped by every invalidation: a lookup that started before one may not store its
    /// answer, which could predate the change.
    epoch: AtomicU64,
    /// When the newest beat that came back was sent, in ns since `base` (0: none yet).
    confirmed: AtomicU64,
    base: Instant,
}

impl TokenCache {
    /// A cache used only while a [`listen`] (Postgres) or [`poll`] (SQLite) task proves it
    /// live.
    pub fn watched() -> TokenCache {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    /// The cached answer for `digest`, if it may still be served at `now` (Unix seconds).
    pub fn get(&self, digest: &Digest, now: i64) -> Option<Arc<str>> {
        if !self.live() {
            return None;
        }
        let mut entries = self.lock();
        let entry = entries.get_mut(digest)?;
        if entry.loaded.elapsed() >= MAX_AGE || entry.expires_at.is_some_and(|exp| exp <= now) {
            return None;
        }
        entry.used = Instant::now();
        Some(Arc::clone(&entry.answer))
    }

    /// Drops the answers that may no longer be served at `now` or were not asked for in
    /// [`IDLE`] before it, and gives back the map's room when most of it went.
    pub fn trim(&self, now: Instant) {
        let mut entries = self.lock();
        let fresh = |since: Instant| now.saturating_duration_since(since);
        entries.retain(|_, e| fresh(e.loaded) < MAX_AGE && fresh(e.used) < IDLE);
        if entries.len() < entries.capacity() / 4 {
            entries.shrink_to_fit();
        }
    }

    /// Runs [`TokenCache::trim`] every [`SWEEP`] for as long as the cache lives. Call once
    /// from within the runtime (the server does at start-up).
    pub fn trim_in_background(self: &Arc<Self>) {
        let cache = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP);
            loop {
                tick.tick().await;
                match cache.upgrade() {
                    Some(cache) => cache.trim(Instant::now()),
                    None => return,
                }
            }
        });
    }

    /// Where a lookup starts: pass it to [`TokenCache::put`] with what the lookup found.
    pub fn ticket(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Keeps `answer` unless anything was invalidated since `ticket` was taken.
    pub fn put(&self, ticket: u64, digest: Digest, answer: Arc<str>, expires_at: Option<i64>) {
        if !self.live() {
            return;
        }
        let mut entries = self.lock();
        // Under the lock: invalidations bump the epoch while holding it too.
        if self.epoch.load(Ordering::Acquire) != ticket {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        let now = Instant::now();
        entries.insert(
            digest,
            Entry {
                answer,
                expires_at,
                loaded: now,
                used: now,
            },
        );
    }

    /// Forgets one token.
    pub fn forget(&self, digest: &Digest) {
        let mut entries = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.remove(digest);
    }

    /// Forgets everything.
    pub fn forget_all(&self) {
        let mut entries = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.clear();
        entries.shrink_to(0);
    }

    /// Entries held now (tests, metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn live(&self) -> bool {
        let sent = self.confirmed.load(Ordering::Acquire);
        sent != 0 && self.since_base().saturating_sub(sent) < FRESH.as_nanos() as u64
    }

    /// A beat sent (or a read of the change counter started) at `sent` came back.
    fn confirm(&self, sent: Instant) {
        // A beat from before this cache existed proves nothing about it.
        if let Some(since) = sent.checked_duration_since(self.base) {
            let at = since.as_nanos() as u64 + 1;
            self.confirmed.fetch_max(at, Ordering::AcqRel);
        }
    }

    /// The listener lost its connection: nothing cached can be trusted until it is back.
    fn disconnected(&self) {
        self.confirmed.store(0, Ordering::Release);
        self.forget_all();
    }

    fn since_base(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Digest, Entry>> {
        // A panic while holding the lock leaves a map that is still valid.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Audit events of changes that never turn an active access token inactive nor change its
/// answer; any other committed event empties this instance's cache (an unknown kind too).
/// Not here, for instance: a password set, which ends the user's access.
fn harmless(kind: &str) -> bool {
    const HARMLESS: &[AuditKind] = &[
        AuditKind::TokenIssued,
        AuditKind::CodeIssued,
        AuditKind::IntrospectionRefused,
        AuditKind::RateLimitTripped,
        AuditKind::LoginSucceeded,
        AuditKind::LoginFailed,
        AuditKind::LoginThrottled,
        AuditKind::LoginBlocked,
        AuditKind::ConsentGranted,
        AuditKind::ConsentDenied,
        AuditKind::ClientCreated,
        AuditKind::UserCreated,
        AuditKind::UserPasswordRehashed,
        AuditKind::KeyCreated,
        AuditKind::ApiKeyCreated,
        AuditKind::ApiKeyUsedAfterRevocation,
        AuditKind::ApiKeyUsedAfterExpiry,
        AuditKind::ApiKeyUsedByDisabledUser,
    ];
    HARMLESS.iter().any(|k| k.as_str() == kind)
}

/// Hears this instance's committed changes (before their response is sent) and passes them on.
pub struct InvalidateOnCommit {
    pub cache: Arc<TokenCache>,
    pub next: Arc<dyn AfterCommit>,
}

impl AfterCommit for InvalidateOnCommit {
    fn committed(&self, events: &[AuditEvent]) {
        if events.iter().any(|e| !harmless(&e.kind)) {
            self.cache.forget_all();
        }
        self.next.committed(events);
    }
}

/// Postgres: applies the change notifications of migration 0006 to `cache` and proves the
/// listener live with a beat every [`BEAT`]. Runs until the process ends; a lost connection
/// empties the cache, and the listener connects again.
pub async fn listen(url: String, cache: Arc<TokenCache>) {
    use sqlx::postgres::PgListener;

    const CHANNEL: &str = "tessera_changes";
    // Beats carry this instance's mark and a number, so each comes back to its sender only.
    let mark = format!(
        "beat:{}:",
        crate::crypto::token::PlainSecret::generate("").expose()
    );
    let sender = match sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy(&url)
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "change listener cannot start; introspection uncached");
            return;
        }
    };
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "change listener cannot connect; introspection uncached");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "change listener cannot listen; introspection uncached");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Anything cached before this connection may have missed a notification.
        cache.forget_all();
        let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        // Stopped with this task (the server aborts it when it stops serving).
        let _beats = AbortOnDrop(tokio::spawn(send_beats(
            sender.clone(),
            mark.clone(),
            Arc::clone(&sent),
        )));
        while let Ok(Some(n)) = listener.try_recv().await {
            let payload = n.payload();
            if let Some(seq) = payload.strip_prefix(mark.as_str()) {
                let at = seq.parse::<u64>().ok().and_then(|s| lock(&sent).remove(&s));
                if let Some(at) = at {
                    cache.confirm(at);
                }
            } else if payload.starts_with("beat:") {
                // Another instance's beat.
            } else if let Some(digest) = parse_hex_digest(payload) {
                cache.forget(&digest);
            } else {
                cache.forget_all();
            }
        }
        cache.disconnected();
        tracing::warn!("change listener lost its connection; introspection uncached until back");
        tokio::time::sleep(BEAT).await;
    }
}

/// SQLite: reads the change counter of migration 0013 every [`BEAT`]; a counter that moved
/// empties `cache`, and each read that came back proves it live as of when the read started
/// (a read sees every change committed before it). Runs until the process ends; reads that
/// fail leave the cache unused after [`FRESH`].
pub async fn poll(store: Arc<dyn crate::store::Store>, cache: Arc<TokenCache>) {
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = None;
    let mut failing = false;
    loop {
        tick.tick().await;
        let sent = Instant::now();
        match store.change_count().await {
            Ok(Some(n)) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("change counter read again; introspection cached again");
                }
                // Emptied before the read counts as proof: what was cached before it may
                // predate the change it saw (the first read too: nothing before it was
                // watched).
                if seen != Some(n) {
                    cache.forget_all();
                    seen = Some(n);
                }
                cache.confirm(sent);
            }
            Ok(None) => return,
            // Said once per run of failures: every read fails alike.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "change counter not read; introspection uncached until it is");
            }
            Err(e) => tracing::debug!(error = %e, "change counter not read"),
        }
    }
}

async fn send_beats(pool: sqlx::PgPool, mark: String, sent: Arc<Mutex<HashMap<u64, Instant>>>) {
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held = None;
    for seq in 0u64.. {
        tick.tick().await;
        {
            let mut sent = lock(&sent);
            // Beats lost on the way never come back; keep only the recent ones.
            sent.retain(|_, at| at.elapsed() < FRESH);
            sent.insert(seq, Instant::now());
        }
        let payload = format!("{mark}{seq}");
        // One connection held from beat to beat: through the pool, sqlx would check it with
        // a round trip when taken and again when given back, two more exchanges with
        // Postgres per beat, ten beats a second, whether or not anyone is served.
        let conn = match held.take() {
            Some(conn) => Ok(conn),
            None => pool.acquire().await,
        };
        let sent = match conn {
            Ok(mut conn) => {
                let sent = sqlx::query("select pg_notify('tessera_changes', $1)")
                    .bind(payload)
                    .execute(&mut *conn)
                    .await;
                // A connection whose beat failed goes back to the pool, which checks it.
                if sent.is_ok() {
                    held = Some(conn);
                }
                sent.map(drop)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "change listener beat not sent");
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn parse_hex_digest(hex: &str) -> Option<Digest> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Digest(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> Arc<str> {
        Arc::from(r#"{"active":true}"#)
    }

    /// A cache its watcher has just proven live.
    fn live_cache() -> TokenCache {
        let cache = TokenCache::watched();
        cache.confirm(Instant::now());
        cache
    }

    #[test]
    fn a_lookup_that_raced_an_invalidation_is_not_kept() {
        let cache = live_cache();
        let d = Digest::of("t");
        let ticket = cache.ticket();
        cache.forget(&Digest::of("other"));
        cache.put(ticket, d, answer(), None);
        assert!(cache.get(&d, 0).is_none());
        cache.put(cache.ticket(), d, answer(), None);
        assert!(cache.get(&d, 0).is_some());
    }

    #[test]
    fn expired_tokens_are_never_served() {
        let cache = live_cache();
        let d = Digest::of("t");
        cache.put(cache.ticket(), d, answer(), Some(100));
        assert!(cache.get(&d, 99).is_some());
        assert!(cache.get(&d, 100).is_none());
    }

    #[test]
    fn a_watched_cache_serves_only_while_a_recent_proof_came_back() {
        let cache = TokenCache::watched();
        let d = Digest::of("t");
        cache.put(cache.ticket(), d, answer(), None);
        assert!(cache.get(&d, 0).is_none(), "no beat yet: nothing kept");
        cache.confirm(Instant::now());
        cache.put(cache.ticket(), d, answer(), None);
        assert!(cache.get(&d, 0).is_some());
        cache.disconnected();
        assert!(cache.get(&d, 0).is_none());
        std::thread::sleep(FRESH);
        cache.confirm(Instant::now() - FRESH);
        assert!(!cache.live(), "a beat sent FRESH ago proves nothing now");
        cache.confirm(Instant::now());
        assert!(cache.live());
    }

    #[test]
    fn any_event_but_the_harmless_ones_empties_the_cache() {
        let cache = Arc::new(live_cache());
        let hook = InvalidateOnCommit {
            cache: Arc::clone(&cache),
            next: Arc::new(crate::store::LogAuditEvents),
        };
        let d = Digest::of("t");
        cache.put(cache.ticket(), d, answer(), None);
        hook.committed(&[AuditEvent::new(AuditKind::TokenIssued, "c", 1)]);
        assert_eq!(cache.len(), 1);
        hook.committed(&[AuditEvent::new(AuditKind::TokenRevoked, "c", 1)]);
        assert!(cache.is_empty());
    }

    #[test]
    fn answers_nobody_asks_for_are_dropped_and_their_room_given_back() {
        let cache = live_cache();
        for i in 0..1_000 {
            cache.put(cache.ticket(), Digest::of(&format!("t{i}")), answer(), None);
        }
        let kept = Digest::of("t0");
        let stored = Instant::now();
        cache.trim(stored + IDLE - Duration::from_millis(100));
        assert_eq!(cache.len(), 1_000, "all asked for within IDLE");
        std::thread::sleep(Duration::from_millis(50));
        assert!(cache.get(&kept, 0).is_some());
        // IDLE after they were stored, only the one asked for since is kept.
        cache.trim(stored + IDLE + Duration::from_millis(10));
        assert_eq!(cache.len(), 1, "idle answers dropped");
        assert!(cache.get(&kept, 0).is_some(), "the one asked for kept");
        assert!(cache.lock().capacity() < 1_000, "room given back");
    }

    /// SQLite: the change counter's reader proves the cache live, lets answers outlive
    /// [`FRESH`] while nothing changes, and empties the cache within the bound once another
    /// connection (the CLI, say) moves the counter.
    #[tokio::test]
    async fn the_change_counter_reader_keeps_answers_until_the_counter_moves() {
        use sqlx::Connection;
        let (dir, store) = crate::store::sqlite_store().await;
        let store: Arc<dyn crate::store::Store> = Arc::new(store);
        let cache = Arc::new(TokenCache::watched());
        let _poll = AbortOnDrop(tokio::spawn(poll(store, Arc::clone(&cache))));
        let since = Instant::now();
        while !cache.live() {
            assert!(since.elapsed() < FRESH, "the first read proves it live");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let d = Digest::of("t");
        cache.put(cache.ticket(), d, answer(), None);
        tokio::time::sleep(FRESH + BEAT).await;
        assert!(cache.get(&d, 0).is_some(), "kept while nothing changed");

        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("update change_counter set n = n + 1")
            .execute(&mut other)
            .await
            .unwrap();
        let since = Instant::now();
        while cache.get(&d, 0).is_some() {
            assert!(
                since.elapsed() < FRESH,
                "still served after the counter moved"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn hex_digests_round_trip() {
        let d = Digest::of("t");
        let hex = d.to_hex();
        assert_eq!(parse_hex_digest(&hex), Some(d));
        assert_eq!(parse_hex_digest("flush"), None);
        assert_eq!(parse_hex_digest(&"zz".repeat(32)), None);
    }
}
