//! Housekeeping: sealing the audit trail's hash chain (every second) and purging what can no
//! longer matter (every `purge_interval_secs`): expired codes, sessions, tokens and
//! throttle counters, grants nothing refers to, and audit events past retention. The
//! server runs it in the background; `tessera purge` and `tessera audit verify` run the same
//! code by hand. Safe with several instances doing it at once (decision 0023).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::app::Clock;
use crate::audit::chain;
use crate::config::HousekeepingPolicy;
use crate::crypto::kek::Kek;
use crate::store::{Expired, Store, StoreError, SEAL_ROUND_MIN};

/// How often the server seals new audit events into the chain: the window in which an
/// event can be deleted without a trace (docs/decisions/0023-audit-hash-chain.md).
pub const SEAL_EVERY: Duration = Duration::from_secs(1);

/// Events sealed per transaction at most (a store may take fewer, down to
/// [`SEAL_ROUND_MIN`]). The loop below seals the rest in turns, other writes in between.
const SEAL_BATCH: i64 = 500;

/// Rows deleted per statement: small, so that no delete holds its locks for long.
const PURGE_BATCH: i64 = 1_000;

/// Rows are kept this long after they expire: an expired code, token or session presented
/// within a day is still recognised (and, for a spent code or refresh token, still treated
/// as reuse) instead of being unknown.
pub const EXPIRED_GRACE_SECS: i64 = 86_400;

/// Links every event not yet in the chain; returns how many.
pub async fn seal(store: &dyn Store, kek: &Kek, now: i64) -> Result<usize, StoreError> {
    let tag = |seq: i64, hash: &str| chain::head_tag(kek, seq, hash);
    let mut total = 0;
    loop {
        let sealed = store.seal_audit(SEAL_BATCH, now, &tag).await?;
        total += sealed;
        // A round short of a full one has caught up; what came in meanwhile waits for the
        // next second. Chasing it (until a round found nothing) sealed a few dozen events a
        // round back to back under load: 0.23 -> 0.32 commits per client_credentials token.
        if i64::try_from(sealed).unwrap_or(i64::MAX) < SEAL_ROUND_MIN {
            break;
        }
    }
    if total > 0 {
        crate::metrics::audit_sealed(total);
    }
    Ok(total)
}

/// What one purge deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    pub codes: u64,
    pub sessions: u64,
    pub tokens: u64,
    pub grants: u64,
    pub login_throttle: u64,
    pub audit_events: u64,
}

impl PurgeReport {
    fn add(&mut self, what: Expired, rows: u64) {
        let field = match what {
            Expired::Codes => &mut self.codes,
            Expired::Sessions => &mut self.sessions,
            Expired::Tokens => &mut self.tokens,
            Expired::Grants => &mut self.grants,
            Expired::LoginThrottle => &mut self.login_throttle,
        };
        *field += rows;
    }
}

/// Deletes, batch by batch, everything that ended more than [`EXPIRED_GRACE_SECS`] before
/// `now`, and audit events older than the retention (sealing first, so that only sealed
/// events are purged and the checkpoint names a real link).
pub async fn purge(
    store: &dyn Store,
    kek: &Kek,
    policy: &HousekeepingPolicy,
    now: i64,
) -> Result<PurgeReport, StoreError> {
    let mut report = PurgeReport::default();
    let cutoff = now - EXPIRED_GRACE_SECS;
    // Codes and tokens before grants: a grant goes once nothing refers to it.
    for what in Expired::ALL {
        loop {
            let rows = store.purge_expired(what, cutoff, now, PURGE_BATCH).await?;
            report.add(what, rows);
            crate::metrics::purged(what.as_str(), rows);
            if rows < u64::try_from(PURGE_BATCH).unwrap_or(u64::MAX) {
                break;
            }
        }
    }
    if let Some(retention) = policy.audit_retention {
        seal(store, kek, now).await?;
        let tag = |seq: i64, hash: &str| chain::checkpoint_tag(kek, seq, hash);
        loop {
            let rows = store
                .purge_audit(now - retention, PURGE_BATCH, now, &tag)
                .await?;
            let rows = u64::try_from(rows).unwrap_or(u64::MAX);
            report.audit_events += rows;
            crate::metrics::purged("audit_events", rows);
            if rows < u64::try_from(PURGE_BATCH).unwrap_or(u64::MAX) {
                break;
            }
        }
    }
    Ok(report)
}

/// The server's housekeeping, for as long as it serves: seals every [`SEAL_EVERY`], purges
/// every `policy.purge_interval` (the first a minute after start, not while it starts).
/// Failures (the store away) are logged and retried next round.
pub async fn run(store: Arc<dyn Store>, kek: Kek, clock: Clock, policy: HousekeepingPolicy) {
    let mut tick = tokio::time::interval(SEAL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_purge = policy
        .purge_interval
        .map(|every| Instant::now() + every.min(Duration::from_secs(60)));
    let mut sealing_failed = false;
    loop {
        tick.tick().await;
        match seal(store.as_ref(), &kek, clock.now()).await {
            Ok(_) => sealing_failed = false,
            // Once per outage, not every second of it.
            Err(e) if !sealing_failed => {
                sealing_failed = true;
                tracing::warn!(error = %e, "cannot seal the audit trail; retrying");
            }
            Err(_) => {}
        }
        let Some(due) = next_purge else { continue };
        if Instant::now() < due {
            continue;
        }
        let started = Instant::now();
        match purge(store.as_ref(), &kek, &policy, clock.now()).await {
            Ok(r) => {
                crate::metrics::purge_run(true);
                tracing::info!(
                    codes = r.codes,
                    sessions = r.sessions,
                    tokens = r.tokens,
                    grants = r.grants,
                    login_throttle = r.login_throttle,
                    audit_events = r.audit_events,
                    ms = started.elapsed().as_millis() as u64,
                    "purge done"
                );
            }
            Err(e) => {
                crate::metrics::purge_run(false);
                tracing::warn!(error = %e, "purge failed; retrying at the next interval");
            }
        }
        next_purge = policy.purge_interval.map(|every| Instant::now() + every);
    }
}
