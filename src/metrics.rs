//! Prometheus metrics (docs/decisions/0021-metrics.md): their names, the process-wide
//! recorder, and the few functions the rest of the code calls to feed it.
//!
//! Recording goes through the `metrics` facade: without a recorder installed (the CLI, or a
//! server with `admin_bind = "off"`) every call is a no-op; with one, a counter is an atomic
//! add after a lookup in the exporter's sharded registry, so nothing here takes a lock of
//! ours on the request path. The exporter never opens a listener of its own: the admin
//! listener (`http::admin`) renders the text.
//!
//! Figures are per instance, like the rate limits: Prometheus sums them over instances.

use std::sync::OnceLock;
use std::time::Duration;

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Label, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::audit::{AuditEvent, AuditKind};

pub const HTTP_REQUESTS: &str = "tessera_http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "tessera_http_request_duration_seconds";
pub const TOKENS_ISSUED: &str = "tessera_tokens_issued_total";
pub const LOGINS: &str = "tessera_logins_total";
pub const RATE_LIMIT_TRIPS: &str = "tessera_rate_limit_trips_total";
pub const AUDIT_EVENTS: &str = "tessera_audit_events_total";
pub const AUDIT_APPEND: &str = "tessera_audit_append_seconds";
pub const STORE_ERRORS: &str = "tessera_store_errors_total";
pub const DB_POOL_CONNECTIONS: &str = "tessera_db_pool_connections";
pub const DB_POOL_MAX_CONNECTIONS: &str = "tessera_db_pool_max_connections";
pub const STORE_WRITES: &str = "tessera_store_writes_total";
pub const PASSWORD_HASH_RUNNING: &str = "tessera_password_hash_running";
pub const PASSWORD_HASH_QUEUE_DEPTH: &str = "tessera_password_hash_queue_depth";
pub const PASSWORD_HASHES: &str = "tessera_password_hashes_total";
pub const PASSWORD_HASH_CPU: &str = "tessera_password_hash_cpu_microseconds_total";
pub const DB_POOL_ACQUIRE: &str = "tessera_db_pool_acquire_seconds";
pub const TOKEN_WRITE: &str = "tessera_token_write_seconds";
pub const TOKEN_WRITE_SIZE: &str = "tessera_token_write_size";
pub const SQLITE_CHECKPOINT: &str = "tessera_sqlite_checkpoint_seconds";
pub const PURGED_ROWS: &str = "tessera_purged_rows_total";
pub const PURGE_RUNS: &str = "tessera_purge_runs_total";
pub const AUDIT_SEALED: &str = "tessera_audit_events_sealed_total";
pub const BACKCHANNEL_LOGOUTS: &str = "tessera_backchannel_logouts_total";
pub const REFRESH_ROTATIONS: &str = "tessera_refresh_rotations_total";
pub const CODE_REDEMPTIONS: &str = "tessera_code_redemptions_total";
pub const CONSENT_CLAIMS: &str = "tessera_consent_session_claims_total";
pub const MEMORY_ALLOCATED: &str = "tessera_memory_allocated_bytes";
pub const MEMORY_RESIDENT: &str = "tessera_memory_allocator_resident_bytes";
pub const MEMORY_THREAD_CACHES: &str = "tessera_memory_allocator_thread_cache_bytes";

/// How a back-channel logout delivery ended.
pub const BACKCHANNEL_RESULTS: &[&str] = &["delivered", "gave_up", "queue_full", "worker_stopped"];

/// Request latency buckets, in seconds: from a cached JWKS answer (well under a millisecond)
/// to a login that waited for an argon2 slot, up to the default request timeout.
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Audit insert buckets: one indexed insert, usually well under 10 ms.
const AUDIT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Token writes per combined write: from one alone to a full batch under load.
const TOKEN_WRITE_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The limits whose trips are counted (`tessera_rate_limit_trips_total{limit}`).
pub const LIMITS: &[&str] = &["client", "address", "password_hash_queue"];

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use. A recorder is process-wide: a second
/// server in the same process (the tests start many) shares the first one's, so every
/// figure is a sum over them. `None` if another recorder was installed before ours (an
/// embedding program's); metrics are then that program's business.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    RECORDER.get_or_init(install).as_ref()
}

fn install() -> Option<PrometheusHandle> {
    match builder().and_then(PrometheusBuilder::install_recorder) {
        Ok(handle) => {
            describe();
            Some(handle)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot install the metrics recorder; /metrics stays empty");
            None
        }
    }
}

/// Histograms with buckets (true Prometheus histograms, summable over instances, unlike the
/// exporter's default summaries).
fn builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(HTTP_REQUEST_DURATION.to_owned()),
            REQUEST_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(AUDIT_APPEND.to_owned()), AUDIT_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(DB_POOL_ACQUIRE.to_owned()), AUDIT_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(TOKEN_WRITE.to_owned()), AUDIT_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(SQLITE_CHECKPOINT.to_owned()), AUDIT_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(TOKEN_WRITE_SIZE.to_owned()),
            TOKEN_WRITE_SIZE_BUCKETS,
        )
}

/// `# HELP` lines, and a zero for every label value known in advance, so that a rate over a
/// fresh instance's series starts from 0 instead of appearing only with the first event.
fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template, method and status"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, by route template, method and status"
    );
    describe_counter!(TOKENS_ISSUED, "Tokens issued at /token, by grant type");
    describe_counter!(
        LOGINS,
        "Password sign-ins: succeeded, failed, or throttled before the password was checked"
    );
    describe_counter!(
        RATE_LIMIT_TRIPS,
        "Requests refused by a limit: per client, per source address, or the password hashing queue"
    );
    describe_counter!(AUDIT_EVENTS, "Audit events committed, by kind");
    describe_histogram!(
        AUDIT_APPEND,
        Unit::Seconds,
        "Time to insert one audit event"
    );
    describe_counter!(
        STORE_ERRORS,
        "Store failures that reached a caller, by kind (pool_timeout: no connection in time)"
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Database pool connections, idle or in use (at the last scrape)"
    );
    describe_gauge!(DB_POOL_MAX_CONNECTIONS, "Most connections the pool opens");
    describe_counter!(
        STORE_WRITES,
        "Write transactions the store began (a single-statement write counts one)"
    );
    describe_gauge!(
        PASSWORD_HASH_RUNNING,
        "Password hashes being computed (at the last scrape)"
    );
    describe_gauge!(
        PASSWORD_HASH_QUEUE_DEPTH,
        "Sign-ins waiting for a password hashing slot (at the last scrape)"
    );
    describe_counter!(
        PASSWORD_HASHES,
        "Password hashes computed or verified (sign-ins, new passwords, the unknown-user dummy)"
    );
    describe_counter!(
        PASSWORD_HASH_CPU,
        "CPU time the hashing threads spent computing password hashes, in microseconds"
    );
    describe_histogram!(
        TOKEN_WRITE,
        Unit::Seconds,
        "Time one committed write of the token writer took (token issues and rotations, combined under load; not Postgres's one-statement refreshes and code redemptions), its wait for the write turn and a connection included"
    );
    describe_histogram!(
        TOKEN_WRITE_SIZE,
        "Token issues and rotations per write of the token writer"
    );
    describe_histogram!(
        SQLITE_CHECKPOINT,
        Unit::Seconds,
        "SQLite: time of a write-ahead log checkpoint; kind=passive runs beside the writers, kind=restart is how long it held the write turn, which every writer waits for"
    );
    describe_histogram!(
        DB_POOL_ACQUIRE,
        Unit::Seconds,
        "Time a write waited for its turn and a database connection (the pool's wait)"
    );
    describe_counter!(
        PURGED_ROWS,
        "Rows deleted by housekeeping, by table (codes, sessions, tokens, grants, login_throttle, audit_events)"
    );
    describe_counter!(PURGE_RUNS, "Housekeeping runs, by result (ok, error)");
    describe_counter!(
        AUDIT_SEALED,
        "Audit events linked into the hash chain by this instance"
    );
    describe_counter!(
        BACKCHANNEL_LOGOUTS,
        "Logout tokens for relying parties (OIDC Back-Channel Logout), by result (delivered, gave_up, queue_full, worker_stopped)"
    );
    describe_counter!(
        REFRESH_ROTATIONS,
        "Refresh tokens rotated, by path: at_once (one write that also reads the old token, Postgres) or steps (read, checks, then the write)"
    );
    describe_counter!(
        CODE_REDEMPTIONS,
        "Authorization codes redeemed for tokens, by path: at_once (one write that also reads the code, Postgres) or steps (the code consumed, checks, then the token write)"
    );
    describe_counter!(
        CONSENT_CLAIMS,
        "Approvals at the consent page that claimed their session, by outcome: held (the code's write found it), refused (read and decided again) or failed (the store failed)"
    );
    describe_gauge!(
        MEMORY_ALLOCATED,
        Unit::Bytes,
        "Heap bytes in live allocations, Rust's and the C libraries' (jemalloc, at the last scrape)"
    );
    describe_gauge!(
        MEMORY_RESIDENT,
        Unit::Bytes,
        "Bytes the allocator holds in physical memory: live allocations, their fragmentation and freed pages not yet returned (at the last scrape)"
    );
    describe_gauge!(
        MEMORY_THREAD_CACHES,
        Unit::Bytes,
        "Of the allocated bytes, those freed but kept in the threads' own caches for reuse, which an idle thread keeps (at the last scrape)"
    );
    for result in BACKCHANNEL_RESULTS {
        counter!(BACKCHANNEL_LOGOUTS, "result" => *result).increment(0);
    }
    for result in ["succeeded", "failed", "throttled"] {
        counter!(LOGINS, "result" => result).increment(0);
    }
    for limit in LIMITS {
        counter!(RATE_LIMIT_TRIPS, "limit" => *limit).increment(0);
    }
    for path in ["at_once", "steps"] {
        counter!(REFRESH_ROTATIONS, "path" => path).increment(0);
        counter!(CODE_REDEMPTIONS, "path" => path).increment(0);
    }
    for outcome in ["held", "refused", "failed"] {
        counter!(CONSENT_CLAIMS, "outcome" => outcome).increment(0);
    }
}

/// One answered request. `route` is the matched route template, never the raw path: paths
/// are chosen by whoever sends the request, and each distinct label value is a new series.
pub fn request_answered(route: String, method: &'static str, status: u16, elapsed: Duration) {
    let labels = vec![
        Label::new("route", route),
        Label::new("method", method),
        Label::new("status", status.to_string()),
    ];
    counter!(HTTP_REQUESTS, labels.clone()).increment(1);
    histogram!(HTTP_REQUEST_DURATION, labels).record(elapsed);
}

/// A request refused by the limit named `limit` (one of [`LIMITS`]).
pub fn rate_limit_tripped(limit: &'static str) {
    counter!(RATE_LIMIT_TRIPS, "limit" => limit).increment(1);
}

/// A write waited `elapsed` for its turn and a connection.
pub fn pool_acquired(elapsed: Duration) {
    histogram!(DB_POOL_ACQUIRE).record(elapsed);
}

/// A write of the token writer committed `size` token writes (decision 0031's batches),
/// in `elapsed`.
pub fn token_write(size: usize, elapsed: Duration) {
    histogram!(TOKEN_WRITE).record(elapsed);
    histogram!(TOKEN_WRITE_SIZE).record(size as f64);
}

/// SQLite: a checkpoint of `kind` (`passive`, or `restart` for the time it held the write
/// turn) took `elapsed`.
pub fn sqlite_checkpoint(kind: &'static str, elapsed: Duration) {
    histogram!(SQLITE_CHECKPOINT, "kind" => kind).record(elapsed);
}

/// Housekeeping deleted `rows` rows of `table`.
pub fn purged(table: &'static str, rows: u64) {
    counter!(PURGED_ROWS, "table" => table).increment(rows);
}

/// A housekeeping run ended, `ok` or not.
pub fn purge_run(ok: bool) {
    counter!(PURGE_RUNS, "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// This instance sealed `count` audit events.
pub fn audit_sealed(count: usize) {
    counter!(AUDIT_SEALED).increment(u64::try_from(count).unwrap_or(u64::MAX));
}

/// A back-channel logout delivery ended with `result` (one of [`BACKCHANNEL_RESULTS`]).
pub fn backchannel_logout(result: &'static str) {
    counter!(BACKCHANNEL_LOGOUTS, "result" => result).increment(1);
}

/// A refresh token was rotated by `path`: `at_once` or `steps` (decision 0043).
pub fn refresh_rotated(path: &'static str) {
    counter!(REFRESH_ROTATIONS, "path" => path).increment(1);
}

/// An authorization code was redeemed by `path`: `at_once` or `steps` (decision 0047).
pub fn code_redeemed(path: &'static str) {
    counter!(CODE_REDEMPTIONS, "path" => path).increment(1);
}

/// An approval claimed its session (decision 0055), and the claim was `held` (the code's
/// write found the session), `refused` (the session was read and the approval decided
/// again) or `failed` (the store failed).
pub fn consent_claim(outcome: &'static str) {
    counter!(CONSENT_CLAIMS, "outcome" => outcome).increment(1);
}

/// A store failure reached its caller (`StoreError::kind`).
pub fn store_error(kind: &'static str) {
    counter!(STORE_ERRORS, "kind" => kind).increment(1);
}

/// One audit insert took `elapsed`.
pub fn audit_appended(elapsed: Duration) {
    histogram!(AUDIT_APPEND).record(elapsed);
}

/// The figures that follow from committed audit events: every event by kind, tokens by grant
/// type, sign-ins by result. Counting committed events (not attempts) means a request whose
/// transaction rolled back is not counted as having issued anything.
pub fn audit_committed(events: &[AuditEvent]) {
    for event in events {
        counter!(AUDIT_EVENTS, "kind" => event.kind.clone()).increment(1);
        let kind = event.kind.as_str();
        if kind == AuditKind::TokenIssued.as_str() {
            let grant_type = event
                .details
                .get("grant_type")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown")
                .to_owned();
            counter!(TOKENS_ISSUED, "grant_type" => grant_type).increment(1);
        } else if let Some(result) = login_result(kind) {
            counter!(LOGINS, "result" => result).increment(1);
        }
    }
}

fn login_result(kind: &str) -> Option<&'static str> {
    [
        (AuditKind::LoginSucceeded, "succeeded"),
        (AuditKind::LoginFailed, "failed"),
        (AuditKind::LoginThrottled, "throttled"),
    ]
    .into_iter()
    .find(|(k, _)| k.as_str() == kind)
    .map(|(_, result)| result)
}

/// The database pool now: set when metrics are scraped, as reading it costs nothing.
pub fn pool(status: crate::store::PoolStatus) {
    let in_use = status.size.saturating_sub(status.idle);
    gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(status.idle));
    gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(f64::from(in_use));
    gauge!(DB_POOL_MAX_CONNECTIONS).set(f64::from(status.max));
    counter!(STORE_WRITES).absolute(status.writes);
}

/// Password hashing now: hashes running and sign-ins waiting for a slot.
pub fn password_hashing(running: usize, waiting: usize) {
    gauge!(PASSWORD_HASH_RUNNING).set(running as f64);
    gauge!(PASSWORD_HASH_QUEUE_DEPTH).set(waiting as f64);
}

/// One password hash computed, with the CPU microseconds its thread spent on it.
pub fn password_hashed(cpu_us: u64) {
    counter!(PASSWORD_HASHES).increment(1);
    counter!(PASSWORD_HASH_CPU).increment(cpu_us);
}

/// The allocator's figures now. Resident well above allocated after a burst means freed
/// memory not yet given back (or fragmentation); allocated itself growing at rest means
/// something keeps what it should not. Unavailable figures (an allocator without
/// statistics) are left out.
pub fn memory() {
    // jemalloc refreshes its statistics only when the epoch is advanced.
    if tikv_jemalloc_ctl::epoch::advance().is_err() {
        return;
    }
    if let Ok(bytes) = tikv_jemalloc_ctl::stats::allocated::read() {
        gauge!(MEMORY_ALLOCATED).set(bytes as f64);
    }
    if let Ok(bytes) = tikv_jemalloc_ctl::stats::resident::read() {
        gauge!(MEMORY_RESIDENT).set(bytes as f64);
    }
    // All arenas merged (jemalloc's MALLCTL_ARENAS_ALL); counted in `allocated`, though no
    // code holds them.
    use tikv_jemalloc_ctl::{Access, AsName};
    let cached: Result<usize, _> = b"stats.arenas.4096.tcache_bytes\0"[..].name().read();
    if let Ok(bytes) = cached {
        gauge!(MEMORY_THREAD_CACHES).set(bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` against a recorder of its own (not the process's) and renders what it saw.
    fn rendered(f: impl FnOnce()) -> String {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, f);
        handle.render()
    }

    #[test]
    fn committed_audit_events_count_tokens_by_grant_type_and_logins_by_result() {
        let text = rendered(|| {
            let token = |grant_type: &str| {
                AuditEvent::new(AuditKind::TokenIssued, "client:c", 1)
                    .details(serde_json::json!({ "grant_type": grant_type }))
            };
            audit_committed(&[
                token("client_credentials"),
                token("client_credentials"),
                token("refresh_token"),
                AuditEvent::new(AuditKind::LoginFailed, "anonymous", 1),
                AuditEvent::new(AuditKind::LoginThrottled, "anonymous", 1),
                AuditEvent::new(AuditKind::LoginSucceeded, "user:a", 1),
                AuditEvent::new(AuditKind::Logout, "user:a", 1),
            ]);
        });
        for line in [
            r#"tessera_tokens_issued_total{grant_type="client_credentials"} 2"#,
            r#"tessera_tokens_issued_total{grant_type="refresh_token"} 1"#,
            r#"tessera_logins_total{result="failed"} 1"#,
            r#"tessera_logins_total{result="throttled"} 1"#,
            r#"tessera_logins_total{result="succeeded"} 1"#,
            r#"tessera_audit_events_total{kind="token_issued"} 3"#,
            r#"tessera_audit_events_total{kind="logout"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
        }
    }

    #[test]
    fn request_durations_are_histograms_with_buckets() {
        let text = rendered(|| {
            request_answered("/token".into(), "POST", 200, Duration::from_millis(3));
        });
        assert!(text.contains(
            r#"tessera_http_requests_total{route="/token",method="POST",status="200"} 1"#
        ));
        assert!(
            text.contains(r#"tessera_http_request_duration_seconds_bucket{route="/token",method="POST",status="200",le="0.005"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tessera_http_request_duration_seconds_bucket{route="/token",method="POST",status="200",le="0.0025"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn pool_gauges_split_idle_from_in_use() {
        let text = rendered(|| {
            pool(crate::store::PoolStatus {
                size: 5,
                idle: 2,
                max: 16,
                writes: 7,
            })
        });
        assert!(text.contains("tessera_store_writes_total 7"), "{text}");
        assert!(text.contains(r#"tessera_db_pool_connections{state="in_use"} 3"#));
        assert!(text.contains(r#"tessera_db_pool_connections{state="idle"} 2"#));
        assert!(text.contains("tessera_db_pool_max_connections 16"));
    }
}
