//! The SQL implementation of [`Store`], for SQLite and Postgres alike.
//!
//! Both dialects accept the same statements here (`$n` placeholders, `returning`, standard
//! types), so one implementation over sqlx's `Any` driver serves both, and the two migration
//! folders keep the schemas the same shape. Where a dialect must differ, branch on
//! `self.backend` at that spot.
//!
//! SQLite note: a transaction that reads before it writes can fail with `SQLITE_BUSY` when
//! another writer got there first, and no busy timeout helps it. Every transaction here
//! therefore starts with its write. And SQLite has one write lock per file: writers that
//! find it taken sleep in SQLite's busy handler (1, 2, 5 … 100 ms), which put p99 latencies
//! in the hundreds of milliseconds under concurrent writes. So this process's writers take
//! turns on a FIFO queue first ([`SqlStore::write_turn`]) and reach the lock one at a time;
//! the busy timeout is left for other processes (the CLI).
//!
//! This file holds the pool, the migrations, transactions ([`Tx`]) and the helpers every
//! concern shares; each concern's queries live in their own file (`clients.rs` … `audit.rs`),
//! and rows are read through [`Row`] (`row.rs`).

mod accounts;
mod api_keys;
mod audit;
mod batch;
mod clients;
mod conns;
mod consents;
mod grants;
mod housekeeping;
mod keys;
mod row;
mod sessions;
mod throttle;
mod tokens;

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Any, AnyConnection, Executor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use self::conns::Conns;
use self::row::{corrupt, Row};
use super::{AfterCommit, Backend, LogAuditEvents, MigrationStatus, PoolStatus, Store, StoreError};
use crate::audit::AuditEvent;
use crate::config::DatabaseUrl;

/// A pooled connection idle this long is checked with a round trip before it is used again.
const STALE_AFTER: Duration = Duration::from_secs(1);
/// SQLite: each connection's page cache, in KiB when negative (see `connect`).
const SQLITE_CACHE_SIZE: &str = "pragma cache_size = -512";
/// SQLite: how long a connection waits for a lock before answering busy (set on every
/// connection; the restart checkpoint lowers it for a moment and sets it back).
const POOL_BUSY_TIMEOUT_MS: u64 = 5_000;
/// SQLite: how long the restart checkpoint waits for the log's readers, holding the write
/// turn meanwhile; a reader still busy then (a long export, say) only puts it off a round.
const RESTART_WAIT: Duration = Duration::from_millis(20);
/// SQLite: how often the restart checkpoint looks again whether the log's readers are done.
const RESTART_LOOK_EVERY: Duration = Duration::from_millis(1);

/// Passive checkpoints before a restart (see [`SqlStore::checkpoint`]); a round without one
/// runs a single pass.
const PASSES_BEFORE_RESTART: usize = 2;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// A pool on SQLite or Postgres, and the hook told about committed audit events.
#[derive(Clone)]
pub struct SqlStore {
    pool: Conns,
    backend: Backend,
    hook: Arc<dyn AfterCommit>,
    /// SQLite: one permit, held by the one writer (see the module comment).
    writer: Option<Arc<Semaphore>>,
    /// Writes begun ([`SqlStore::write_turn`] counts them).
    writes: Arc<AtomicU64>,
    /// The writer that combines concurrent token issues ([`batch`]); `None` in the writer's
    /// own copy of the store.
    token_writes: Option<batch::TokenWrites>,
    /// SQLite: connections of their own for what runs on a timer for as long as the server
    /// does: the change counter read every 100 ms ([`Store::change_count`]) and the
    /// checkpoints every 125 ms. Through the pool, they would keep pooled connections (and
    /// their prepared statements) from ever going idle. Two, so that a checkpoint waiting for
    /// the write turn never holds up a read of the counter (the introspection cache stops
    /// answering 0.8 s after the last one).
    timers: Option<SqlitePool>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hook is any caller's type and need not be `Debug`.
        f.debug_struct("SqlStore")
            .field("pool", &self.pool)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Connects, creating the SQLite file and its folder if needed, and migrates. Committed
    /// audit events are logged ([`LogAuditEvents`]).
    pub async fn open(url: &DatabaseUrl) -> Result<SqlStore, StoreError> {
        SqlStore::open_with_hook(url, Arc::new(LogAuditEvents)).await
    }

    /// Like [`SqlStore::open`], with `hook` told about committed audit events instead.
    pub async fn open_with_hook(
        url: &DatabaseUrl,
        hook: Arc<dyn AfterCommit>,
    ) -> Result<SqlStore, StoreError> {
        let store = SqlStore::connect(url, hook, true).await?;
        if store.backend == Backend::Sqlite {
            // Readers do not block the writer and vice versa; the mode is stored in the file.
            sqlx::query("pragma journal_mode = wal")
                .execute(&store.pool)
                .await
                .map_err(StoreError::Unavailable)?;
        }
        store.migrator().run(store.pool.pool()).await?;
        Ok(store)
    }

    /// Connects and changes nothing: no migration, no SQLite file or folder created where
    /// none is, no journal mode set. For `tessera doctor`, which inspects a deployment and
    /// must not repair it behind the operator's back; check [`SqlStore::migration_status`]
    /// before reading records, which assume the current schema.
    pub async fn open_unmigrated(url: &DatabaseUrl) -> Result<SqlStore, StoreError> {
        SqlStore::connect(url, Arc::new(LogAuditEvents), false).await
    }

    async fn connect(
        url: &DatabaseUrl,
        hook: Arc<dyn AfterCommit>,
        create: bool,
    ) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.is_postgres() {
            (Backend::Postgres, url.as_str().to_owned())
        } else if create {
            (Backend::Sqlite, prepare_sqlite(url.as_str())?)
        } else {
            (Backend::Sqlite, existing_sqlite(url.as_str()))
        };
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                // One writer at a time either way; a few readers share the WAL.
                Backend::Sqlite => SQLITE_CONNECTIONS,
                Backend::Postgres => 16,
            })
            .idle_timeout(match backend {
                Backend::Sqlite => Some(SQLITE_IDLE_TIMEOUT),
                // sqlx's default: a Postgres connection costs a round trip and a backend
                // process to make again.
                Backend::Postgres => Some(Duration::from_secs(600)),
            })
            .acquire_timeout(Duration::from_secs(5))
            // sqlx checks a connection with a round trip before handing it out (and again
            // when it comes back, which sqlx 0.8 always does): on Postgres one more exchange
            // per use, on SQLite a wake-up of the connection's thread. A connection used less
            // than `STALE_AFTER` ago is known to work; one idle longer (the database may have
            // restarted meanwhile) is still checked, and replaced if it does not answer
            // (decision 0037).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= STALE_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(sqlite_settings().as_str()).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(StoreError::Unavailable)?;
        let timers = match backend {
            // Typed rather than `Any`, for sqlx's `thread_name`: the copy back of the log
            // runs on a thread `top -H` and `perf` can tell from the requests' connections.
            Backend::Sqlite => Some(
                SqlitePoolOptions::new()
                    .max_connections(2)
                    .idle_timeout(None)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(5))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(sqlite_settings().as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect_lazy_with(
                        SqliteConnectOptions::from_str(&url)
                            .map_err(StoreError::Unavailable)?
                            .thread_name(|id| format!("sqlite-timers-{id}")),
                    ),
            ),
            Backend::Postgres => None,
        };
        let mut store = SqlStore {
            pool: Conns::new(pool),
            backend,
            hook,
            writer: (backend == Backend::Sqlite).then(|| Arc::new(Semaphore::new(1))),
            writes: Arc::default(),
            token_writes: None,
            timers,
        };
        store.token_writes = Some(batch::TokenWrites::start(store.clone()));
        Ok(store)
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// The migrations this binary knows against those the store records as applied, read
    /// without taking the migration lock or creating sqlx's bookkeeping table.
    pub async fn migration_status(&self) -> Result<MigrationStatus, StoreError> {
        use sqlx::migrate::Migrate;
        let known: Vec<(i64, Vec<u8>)> = self
            .migrator()
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| (m.version, m.checksum.to_vec()))
            .collect();
        let mut status = MigrationStatus {
            known: known.iter().map(|(v, _)| *v).collect(),
            ..MigrationStatus::default()
        };
        let mut conn = self.pool.acquire().await.map_err(StoreError::Unavailable)?;
        // sqlx creates its table with the first migration, and asking it about a store
        // without one would fail: no table means nothing applied.
        let exists = match self.backend {
            Backend::Sqlite => {
                "select count(*) from sqlite_master \
                 where type = 'table' and name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "select cast(case when to_regclass('_sqlx_migrations') is null then 0 else 1 end \
                 as bigint)"
            }
        };
        let tables: i64 = sqlx::query_scalar(exists)
            .fetch_one(&mut *conn)
            .await
            .map_err(StoreError::Unavailable)?;
        if tables == 0 {
            return Ok(status);
        }
        for applied in conn.list_applied_migrations().await? {
            status.applied.push(applied.version);
            let same = known
                .iter()
                .any(|(v, sum)| *v == applied.version && sum[..] == applied.checksum[..]);
            if !same && status.known.contains(&applied.version) {
                status.changed.push(applied.version);
            }
        }
        status.failed = conn.dirty_version().await?;
        Ok(status)
    }

    /// The database server's clock, in Unix seconds with a fraction; `None` on SQLite,
    /// whose clock is this host's.
    pub async fn database_time(&self) -> Result<Option<f64>, StoreError> {
        if self.backend == Backend::Sqlite {
            return Ok(None);
        }
        // `clock_timestamp()`, not `now()`: the latter is the transaction's start.
        let time: f64 = sqlx::query_scalar(
            "select cast(extract(epoch from clock_timestamp()) as double precision)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?;
        Ok(Some(time))
    }

    /// Starts a transaction. Its first statement should be a write (see the module comment).
    async fn begin(&self) -> Result<Tx, StoreError> {
        let started = std::time::Instant::now();
        let turn = self.write_turn().await;
        let tx = self.pool.begin().await.map_err(StoreError::Unavailable)?;
        crate::metrics::pool_acquired(started.elapsed());
        Ok(Tx {
            tx,
            events: Vec::new(),
            hook: Arc::clone(&self.hook),
            _turn: turn,
        })
    }

    /// A transaction of the server's own upkeep (sealing the audit chain, purging), which
    /// takes its write turn like any other but is not counted among the writes requests
    /// make ([`PoolStatus::writes`]).
    async fn begin_housekeeping(&self) -> Result<Tx, StoreError> {
        let turn = self.turn().await;
        Ok(Tx {
            tx: self.pool.begin().await.map_err(StoreError::Unavailable)?,
            events: Vec::new(),
            hook: Arc::clone(&self.hook),
            _turn: turn,
        })
    }

    /// Postgres: runs `q`, one statement that writes its rows and its audit events (data-
    /// modifying `with` clauses ending in [`audit_insert_sql`]), as one implicit transaction,
    /// then tells the hook. One round trip, where begin, a statement per row, the audit
    /// inserts and commit took four to six.
    async fn execute_audited(
        &self,
        q: AnyQuery<'_>,
        events: &[AuditEvent],
        what: &'static str,
    ) -> Result<sqlx::any::AnyQueryResult, StoreError> {
        let _turn = self.write_turn().await;
        let started = std::time::Instant::now();
        let done = q.execute(&self.pool).await.map_err(write_error(what))?;
        self.committed(events, started.elapsed());
        Ok(done)
    }

    /// After a committed write that recorded `events`, which took `took`: each event's
    /// append time (the write's, `tessera_audit_append_seconds`), then the hook.
    fn committed(&self, events: &[AuditEvent], took: std::time::Duration) {
        for _ in events {
            crate::metrics::audit_appended(took);
        }
        self.hook.committed(events);
    }

    /// SQLite: copies what it can of the write-ahead log back into the database file without
    /// waiting for readers or writers, then, with `restart`, makes the log start over. A
    /// failure is only logged: the log stays, and the next round tries again. Returns
    /// whether the log starts over with the next write.
    ///
    /// A passive checkpoint alone never lets the log start over while some reader is always
    /// in the middle of a read, as under load: the log grew to 1.7 GB in a 16-second bench
    /// run, and every page read searched an index that grew with it. So the rest runs in the
    /// write turn (the store's writers wait, briefly: the passive round copied nearly
    /// everything) as a `restart` checkpoint, which waits for the readers of the log to
    /// finish, at most [`RESTART_WAIT`], and leaves the next write to begin the log anew
    /// (decision 0034).
    async fn checkpoint(&self, restart: bool) -> bool {
        match self.checkpoint_and_restart(restart).await {
            Ok(restarted) => restarted,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                false
            }
        }
    }

    /// Whether the log will start over with the next write.
    async fn checkpoint_and_restart(&self, restart: bool) -> Result<bool, sqlx::Error> {
        let Some(timers) = &self.timers else {
            return Ok(false); // Postgres: nothing to checkpoint
        };
        let mut conn = timers.acquire().await?;
        // The first pass copies what the last round wrote (`batch::CHECKPOINT_EVERY`).
        // Before a restart a second copies what was written meanwhile (some 700 pages, 5 ms,
        // when a round was 500 ms), so that the restart, in the turn, has only the last few
        // milliseconds' pages to copy and sync.
        let passes = if restart { PASSES_BEFORE_RESTART } else { 1 };
        for _ in 0..passes {
            let started = std::time::Instant::now();
            sqlx::query("pragma wal_checkpoint(passive)")
                .execute(&mut *conn)
                .await?;
            crate::metrics::sqlite_checkpoint("passive", started.elapsed());
        }
        if !restart {
            return Ok(false);
        }
        sync_log_and_file(timers.connect_options().get_filename()).await;
        let _turn = self.turn().await;
        // What the store's writers wait: the turn is theirs again when this returns.
        let held = HeldTurn(std::time::Instant::now());
        // SQLite's own wait for the readers sleeps 1, 2, 5, then 10 ms between looks, all in
        // the turn; looked at every millisecond instead, the turn goes back as soon as the
        // last of them is done.
        sqlx::query("pragma busy_timeout = 0")
            .execute(&mut *conn)
            .await?;
        let restarted = async {
            loop {
                let (busy, _, _): (i64, i64, i64) =
                    sqlx::query_as("pragma wal_checkpoint(restart)")
                        .fetch_one(&mut *conn)
                        .await?;
                if busy == 0 {
                    return Ok(true);
                }
                if held.0.elapsed() >= RESTART_WAIT {
                    return Ok(false);
                }
                tokio::time::sleep(RESTART_LOOK_EVERY).await;
            }
        }
        .await;
        // The pool's setting back before the connection goes back to the pool, whatever the
        // checkpoint did; a connection that cannot be set back is closed instead.
        if let Err(e) = sqlx::query(&format!("pragma busy_timeout = {POOL_BUSY_TIMEOUT_MS}"))
            .execute(&mut *conn)
            .await
        {
            conn.close_on_drop();
            return Err(e);
        }
        restarted
    }

    /// SQLite: waits for this process's turn to write, in arrival order; hold the result
    /// until the write has committed. Postgres: no wait (row locks order its writers).
    /// Every write a request makes starts here, so this also counts them
    /// ([`PoolStatus::writes`]).
    async fn write_turn(&self) -> Option<OwnedSemaphorePermit> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.turn().await
    }

    async fn turn(&self) -> Option<OwnedSemaphorePermit> {
        // The semaphore is never closed, so acquiring fails never.
        Arc::clone(self.writer.as_ref()?).acquire_owned().await.ok()
    }
}

/// Flushes the SQLite database file and its log to the disk, on a blocking thread. Under
/// constant writes no passive checkpoint reaches the end of the log, and SQLite syncs the
/// database file only in one that does: the restart, in the write turn, which then flushed
/// every page the rounds before it had copied (a 32 ms `fsync` of four seconds' pages, with
/// every writer waiting). Flushed here first, beside the writers, the restart's own syncs
/// have only its last few milliseconds' pages left: the bench's runs at c = 16 saw it hold
/// the turn 4 to 7 ms on average instead of 11 to 27 (2026-12-07). Not every round: a page
/// rewritten between rounds would go to the disk each time (8 % more written in the bench),
/// and an idle server would flush the disk's cache four times a second for nothing. A file
/// that cannot be synced is left to the restart, which syncs it anyway.
async fn sync_log_and_file(file: &std::path::Path) {
    let mut log = file.as_os_str().to_owned();
    log.push("-wal");
    let log = std::path::PathBuf::from(log);
    let file = file.to_owned();
    let synced = tokio::task::spawn_blocking(move || {
        // SQLite locks nothing in the log file: a descriptor of its own may come and go.
        std::fs::File::open(&log)?.sync_data()?;
        kept_open(&file)?.sync_data()
    })
    .await;
    if let Ok(Err(e)) = synced {
        tracing::debug!(error = %e, "sync before the log's restart");
    }
}

/// Descriptors of SQLite database files, opened once and kept for the life of the process.
/// Closing any descriptor of a file drops every POSIX lock the process holds on it, its
/// SQLite connections' included (SQLite keeps its own descriptors of a file open while any
/// connection holds a lock for that reason). A descriptor opened and closed for each sync
/// did just that: another process's last connection then took the file for its own,
/// checkpointed and deleted the log under the server's connections ("disk I/O error" in
/// the CLI tests). Only a file whose path is gone (a test's temporary folder) has its
/// descriptor closed, when another is opened.
static DATABASE_FILES: std::sync::Mutex<Vec<(std::path::PathBuf, Arc<std::fs::File>)>> =
    std::sync::Mutex::new(Vec::new());

fn kept_open(path: &std::path::Path) -> std::io::Result<Arc<std::fs::File>> {
    let mut files = DATABASE_FILES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, file)) = files.iter().find(|(p, _)| p == path) {
        return Ok(Arc::clone(file));
    }
    files.retain(|(p, _)| p.exists());
    let file = Arc::new(std::fs::File::open(path)?);
    files.push((path.to_owned(), Arc::clone(&file)));
    Ok(file)
}

/// Records how long the restart checkpoint held the write turn, however it ends.
struct HeldTurn(std::time::Instant);

impl Drop for HeldTurn {
    fn drop(&mut self) {
        crate::metrics::sqlite_checkpoint("restart", self.0.elapsed());
    }
}

/// SQLite connections: one writer at a time, and readers that mostly find what they need in
/// the server's caches. Each connection is a thread of sqlx's with its own prepared
/// statements and page cache (a heap profile after the bench's workloads: 10.8 of 11.8 MB
/// live were theirs, 6.6 MB prepared statements); four serve the bench's workloads as fast
/// as eight did (2026-12-04: client_credentials, introspection, refresh at c = 16 within
/// the run-to-run spread) and keep half of that.
const SQLITE_CONNECTIONS: u32 = 4;

/// A SQLite connection idle this long is closed, its statements and pages given back: a
/// new one costs about a millisecond (the file is local, the schema small), so a server
/// that has gone quiet need not keep what its last burst needed.
const SQLITE_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// What every SQLite connection of the store is set to (the pool's, through `Any`, and the
/// timers', typed), as one batch of statements.
fn sqlite_settings() -> String {
    [
        // With WAL, a power cut or an OS crash may take back the last commits but never
        // leaves the file inconsistent; much faster than FULL, which syncs every commit (the
        // same trade as Postgres's lazy commits, decision 0039).
        "pragma synchronous = normal".into(),
        // The store's writer task checkpoints instead (see `batch`), off the write path.
        "pragma wal_autocheckpoint = 0".into(),
        // 512 KiB of page cache per connection instead of SQLite's 2 MiB: eight connections
        // kept 16 MiB of pages the kernel's file cache holds anyway (2026-12-04 bench: 9 MiB
        // less live after the workloads, the same throughput within the run-to-run spread).
        SQLITE_CACHE_SIZE.into(),
        // The token writes' temporary table (and any sort that spills) in memory: as a file,
        // every write transaction that touched it created, wrote and deleted a journal file.
        "pragma temp_store = memory".into(),
        format!("pragma busy_timeout = {POOL_BUSY_TIMEOUT_MS}"),
    ]
    .join(";\n")
}

/// Creates the database's folder and makes sure a missing file is created, not an error.
fn prepare_sqlite(url: &str) -> Result<String, StoreError> {
    let options = SqliteConnectOptions::from_str(url).map_err(StoreError::Unavailable)?;
    if let Some(parent) = options.get_filename().parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(sqlx::Error::Configuration(
                    format!("cannot create {}: {e}", parent.display()).into(),
                ))
            })?;
        }
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// The URL of a SQLite file that must already exist: `mode=rwc` would create an empty one.
fn existing_sqlite(url: &str) -> String {
    url.replace("mode=rwc", "mode=rw")
}

/// A transaction that remembers the audit events it wrote, so that the hook hears of them
/// only once they are committed. Dropping it without [`Tx::commit`] rolls everything back,
/// events included, and the hook hears nothing.
struct Tx {
    tx: sqlx::Transaction<'static, Any>,
    events: Vec<AuditEvent>,
    hook: Arc<dyn AfterCommit>,
    /// SQLite's write turn, given back when the transaction ends.
    _turn: Option<OwnedSemaphorePermit>,
}

impl Tx {
    /// Records `event` in this transaction.
    async fn audit(&mut self, event: &AuditEvent) -> Result<(), StoreError> {
        insert_audit(&mut self.tx, event).await?;
        self.events.push(event.clone());
        Ok(())
    }

    /// Rolls back now and gives the connection back clean. Dropping a `Tx` rolls back too, but
    /// only when the connection is next used: until then a Postgres session sits `idle in
    /// transaction`, holding the row locks it took.
    async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await.map_err(StoreError::Unavailable)
    }

    /// A conditional write's end: when `done` changed a row, records `audit` and commits;
    /// otherwise rolls back (nothing happened, so nothing is audited). Whether it changed.
    async fn commit_audited_if(
        mut self,
        done: sqlx::any::AnyQueryResult,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        if done.rows_affected() == 0 {
            self.rollback().await?;
            return Ok(false);
        }
        self.audit(audit).await?;
        self.commit().await?;
        Ok(true)
    }

    /// Commits, then tells the hook about the events recorded (if any).
    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(StoreError::Unavailable)?;
        if !self.events.is_empty() {
            self.hook.committed(&self.events);
        }
        Ok(())
    }
}

/// Queries run on the transaction's connection: `.execute(&mut *tx)`.
impl Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// Unique violations become `Conflict(what)`; a row that refers to one deleted meanwhile (a
/// foreign-key violation) `NotFound("referenced row")`; anything else means the store failed.
fn write_error(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
        // A check violation, or a not-null one in a client or user column: a row whose
        // client or user was looked up and not found (decisions 0033, 0040, 0055); a
        // foreign key's, on SQLite. Any other null where none may be is a fault, not a
        // client's.
        sqlx::Error::Database(d)
            if d.is_foreign_key_violation()
                || d.is_check_violation()
                || (d.kind() == sqlx::error::ErrorKind::NotNullViolation
                    && null_column(d.as_ref())
                        .is_some_and(|c| c == "client_id" || c == "account_id")) =>
        {
            StoreError::NotFound("referenced row")
        }
        _ => StoreError::Unavailable(e),
    }
}

/// The column a not-null violation names: Postgres reports it as a field, SQLite in its
/// message (`NOT NULL constraint failed: table.column`).
fn null_column(e: &dyn sqlx::error::DatabaseError) -> Option<&str> {
    match e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        Some(pg) => pg.column(),
        None => e
            .message()
            .strip_prefix("NOT NULL constraint failed: ")
            .and_then(|c| c.rsplit_once('.'))
            .map(|(_, column)| column),
    }
}

/// Deletes, within `tx`, the codes (through their grants), grants, consents and tokens of
/// the client or user `id` (`owner` is `client_id` or `account_id`), and a user's sessions:
/// what a foreign key's cascade did, where the tables have none (Postgres, decisions 0033
/// and 0040). On SQLite it takes what the cascade would. Also run when a client or user is
/// created, for what a deletion raced or one made past Tessera left under its id.
async fn delete_what_hangs_off(tx: &mut Tx, owner: &str, id: &str) -> Result<(), StoreError> {
    for sql in deletes_hanging_off(owner) {
        sqlx::query(&sql)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::Unavailable)?;
    }
    Ok(())
}

/// The statements of [`delete_what_hangs_off`], each taking the id as `$1`.
fn deletes_hanging_off(owner: &str) -> Vec<String> {
    let mut deletes = vec![
        format!(
            "delete from authorization_code where grant_id in \
             (select id from oauth_grant where {owner} = $1)"
        ),
        // Through the grants first: on Postgres the client and user indexes hold only
        // tokens without a grant (migrations 0016 and 0017).
        format!(
            "delete from token where grant_id in (select id from oauth_grant where {owner} = $1)"
        ),
        format!("delete from oauth_grant where {owner} = $1"),
        format!("delete from consent where {owner} = $1"),
        format!("delete from token where grant_id is null and {owner} = $1"),
    ];
    if owner == "account_id" {
        deletes.push("delete from session where account_id = $1".into());
    }
    deletes
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(corrupt)
}

fn affected_one(done: sqlx::any::AnyQueryResult, what: &'static str) -> Result<(), StoreError> {
    if done.rows_affected() == 0 {
        Err(StoreError::NotFound(what))
    } else {
        Ok(())
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Writes one audit row. Inside a transaction, go through [`Tx::audit`] so the hook hears
/// of the event after the commit.
///
/// Its duration is `tessera_audit_append_seconds`: the one statement every stand-alone and
/// in-transaction event goes through. (An event written by its operation's own statement,
/// or on SQLite its own `write_sqlite` call, records that write's time instead, on SQLite
/// the wait for the write turn included.)
async fn insert_audit(conn: &mut AnyConnection, event: &AuditEvent) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    bind_audit(sqlx::query(&audit_insert_sql(1, 1)), event)?
        .execute(conn)
        .await
        .map_err(StoreError::Unavailable)?;
    crate::metrics::audit_appended(started.elapsed());
    Ok(())
}

const AUDIT_COLUMNS: &str =
    "created_at, kind, actor, client_id, account_id, source_ip, user_agent, details";
/// Values per audit row.
const AUDIT_VALUES: usize = 8;

/// SQLite: the values of `columns` (a column list) taken from the JSON object `object`, each
/// from the key of its name; those in `hex` from a hex string, as blobs.
fn sqlite_json_values(object: &str, columns: &str, hex: &[&str]) -> String {
    columns
        .split(',')
        .map(str::trim)
        .map(|c| {
            if hex.contains(&c) {
                format!("unhex({object} ->> '{c}')")
            } else {
                format!("{object} ->> '{c}'")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$first, …` for `count` consecutive placeholders.
fn placeholder_list(first: usize, count: usize) -> String {
    let list: Vec<String> = (first..first + count).map(|i| format!("${i}")).collect();
    list.join(", ")
}

/// `g.id as g_id, g.scope as g_scope, …`: a joined table's columns under a prefix, for
/// [`Row::prefixed`].
fn aliased(table: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| {
            let c = c.trim();
            format!("{table}.{c} as {table}_{c}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($first, …)`: one row's values.
fn placeholders(first: usize, count: usize) -> String {
    format!("({})", placeholder_list(first, count))
}

/// Postgres: [`placeholders`], except that the values at the `lookups` positions (counted
/// from 0) name a row of the given table by its `id`, and are that row's `id` as looked up
/// in the statement, null when there is none. A plain read, where a foreign key's check
/// locked the parent row (decisions 0033, 0040); the column's `not null` or check
/// constraint then refuses the row, as the foreign key did ([`write_error`]).
fn placeholders_looking_up(first: usize, count: usize, lookups: &[(usize, &str)]) -> String {
    let lookups: Vec<(usize, String)> = lookups
        .iter()
        .map(|&(at, table)| {
            let p = first + at;
            (
                at,
                format!("(select x.id from {table} x where x.id = ${p})"),
            )
        })
        .collect();
    placeholders_but(first, count, &lookups)
}

/// [`placeholders`], except that the values at the positions of `instead` (counted from 0)
/// are the expressions given there.
fn placeholders_but(first: usize, count: usize, instead: &[(usize, String)]) -> String {
    let values: Vec<String> = (0..count)
        .map(|i| match instead.iter().find(|(at, _)| *at == i) {
            Some((_, expression)) => expression.clone(),
            None => format!("${}", first + i),
        })
        .collect();
    format!("({})", values.join(", "))
}

/// Postgres: a condition that holds, and has the statement's own transaction commit without
/// waiting for its log to reach the disk (a transaction-local `synchronous_commit = off`).
/// Only for the sign-in's and the consent's writes, whose loss in a crash costs the person a
/// retry and issues nothing: every token, revocation and rotation commits synchronously, and
/// its flush takes every earlier commit's log with it (decision 0039). It goes in a
/// condition of the statement's last part that every written row passes, so the setting is
/// in place when the statement commits (a read-only `with` clause nothing refers to would
/// never run; data-modifying ones always do, before the commit).
const COMMIT_LAZILY: &str = "set_config('synchronous_commit', 'off', true) = 'off'";

/// [`audit_insert_sql`], committing lazily ([`COMMIT_LAZILY`]), Postgres only.
fn audit_insert_lazily_sql(first: usize, events: usize) -> String {
    format!(
        "insert into audit_event ({AUDIT_COLUMNS}) select * from (values {}) as v \
         where {COMMIT_LAZILY}",
        audit_rows(first, events)
    )
}

/// The insert of `events` audit events with its placeholders numbered from `first`, so that
/// it can close a statement that writes other rows first.
fn audit_insert_sql(first: usize, events: usize) -> String {
    format!(
        "insert into audit_event ({AUDIT_COLUMNS}) values {}",
        audit_rows(first, events)
    )
}

/// `events` audit rows' placeholders, numbered from `first`. The time is cast: a `values`
/// list under a `select` ([`audit_insert_lazily_sql`]) takes no column types from the table
/// (sqlx sends typed values anyway; this keeps the statement valid without them).
fn audit_rows(first: usize, events: usize) -> String {
    let rows: Vec<String> = (0..events)
        .map(|i| {
            let p = first + i * AUDIT_VALUES;
            format!(
                "(cast(${p} as bigint), {})",
                placeholder_list(p + 1, AUDIT_VALUES - 1)
            )
        })
        .collect();
    rows.join(", ")
}

/// Binds an audit event's eight values, in `audit_insert_sql` order.
fn bind_audit<'q>(q: AnyQuery<'q>, event: &'q AuditEvent) -> Result<AnyQuery<'q>, StoreError> {
    Ok(q.bind(event.created_at)
        .bind(&event.kind)
        .bind(&event.actor)
        .bind(&event.client_id)
        .bind(&event.account_id)
        .bind(&event.source_ip)
        .bind(&event.user_agent)
        .bind(to_json(&event.details)?))
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    fn pool_status(&self) -> PoolStatus {
        let (size, idle) = self.pool.size_and_idle();
        PoolStatus {
            size,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max: self.pool.pool().options().get_max_connections(),
            writes: self.writes.load(Ordering::Relaxed),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1")
            .execute(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(())
    }

    async fn change_count(&self) -> Result<Option<i64>, StoreError> {
        let Some(timers) = &self.timers else {
            return Ok(None);
        };
        sqlx::query_scalar("select n from change_counter where id = 1")
            .fetch_one(timers)
            .await
            .map(Some)
            .map_err(StoreError::Unavailable)
    }
}

/// A store on a fresh SQLite file, which lives as long as the folder (unit tests).
#[cfg(test)]
pub(crate) async fn sqlite_store() -> (tempfile::TempDir, SqlStore) {
    let dir = tempfile::tempdir().unwrap();
    let url: DatabaseUrl = format!("sqlite://{}", dir.path().join("t.db").display())
        .parse()
        .unwrap();
    let store = SqlStore::open(&url).await.unwrap();
    (dir, store)
}

/// Asserts that every statement of the SQLite write transaction `sql` (its statements
/// joined by `"; "`, those creating temporary tables run first) that starts with one of
/// `reads` finds the rows of the table it names as `alias` (or `main.<table>`) through
/// `index`, a search by key, and scans nothing but `scans` (a step equal to one, or
/// starting with it and a space; `$1` bound to `bind`): a scan in the write turn would stop
/// every writer (unit tests).
#[cfg(test)]
pub(crate) async fn assert_sqlite_plans_search_by_key(
    sql: &str,
    bind: &str,
    reads: &[&str],
    (alias, table, index): (&str, &str, &str),
    scans: &[&str],
) {
    let (_dir, store) = sqlite_store().await;
    let statements: Vec<&str> = sql.split("; ").collect();
    let mut conn = store.pool.acquire().await.unwrap();
    for setup in statements.iter().filter(|s| s.starts_with("create temp")) {
        sqlx::query(setup).execute(&mut *conn).await.unwrap();
    }
    for read in reads {
        let statement = statements.iter().find(|s| s.starts_with(read)).unwrap();
        let plan: Vec<String> = sqlx::query(&format!("explain query plan {statement}"))
            .bind(bind)
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .iter()
            .map(|r| sqlx::Row::get::<String, _>(r, 3))
            .collect();
        let step = plan
            .iter()
            .find(|step| {
                step.contains(&format!(" {alias} ")) || step.contains(&format!(" main.{table} "))
            })
            .unwrap_or_else(|| panic!("{read}: no {table} step in {plan:?}"));
        assert!(
            step.starts_with("SEARCH") && step.contains(index),
            "{read}: {plan:?}"
        );
        assert!(
            plan.iter().all(|s| !s.starts_with("SCAN")
                || scans
                    .iter()
                    .any(|scan| s == scan || s.starts_with(&format!("{scan} ")))),
            "{read}: {plan:?}"
        );
    }
}

/// A store on a new database of the Postgres server `TEST_DATABASE_URL` names, when it is
/// set (unit tests of what only Postgres does). The database is dropped when the returned
/// value is, so that the README's `cargo test` leaves nothing on a developer's server.
#[cfg(test)]
pub(crate) async fn postgres_store() -> Option<PostgresTestStore> {
    use sqlx::{Connection, Executor};
    let base = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())?;
    let name = format!("tessera_u_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("TEST_DATABASE_URL is set but unreachable: {e}"));
    conn.execute(format!("create database {name}").as_str())
        .await
        .unwrap();
    conn.close().await.unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&name);
    let store = SqlStore::open(&url.as_str().parse().unwrap())
        .await
        .unwrap();
    Some(PostgresTestStore { store, base, name })
}

/// [`postgres_store`]'s store, which drops its database when it goes.
#[cfg(test)]
pub(crate) struct PostgresTestStore {
    store: SqlStore,
    base: String,
    name: String,
}

#[cfg(test)]
impl std::ops::Deref for PostgresTestStore {
    type Target = SqlStore;

    fn deref(&self) -> &SqlStore {
        &self.store
    }
}

/// The store's own connections (and those of any clone still around) are ended.
#[cfg(test)]
impl Drop for PostgresTestStore {
    fn drop(&mut self) {
        drop_database::drop_database(&self.base, &self.name);
    }
}

#[cfg(test)]
#[path = "../../../tests/it/support/drop_database.rs"]
mod drop_database;

#[cfg(test)]
mod tests {
    use super::*;

    /// `synchronous_commit` as the connection `store` would use next sees it.
    async fn next_commit_setting(store: &SqlStore) -> String {
        assert_eq!(store.pool.kept(), 1, "the write kept its connection");
        let mut conn = store.pool.acquire().await.unwrap();
        let setting = sqlx::query_scalar("select current_setting('synchronous_commit')")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        store.pool.keep(conn);
        setting
    }

    /// Decision 0039: the sign-in's count, a new session, the consent with its code and the
    /// code's redemption carry the clause on Postgres; a session that ends another does
    /// not, nor does anything on SQLite (which has no such setting).
    #[test]
    fn the_sign_in_and_consent_writes_commit_lazily_on_postgres_only() {
        let take_back = crate::store::TakeBack {
            clear: Some("user:x".into()),
            forgive: vec!["addr:y".into()],
        };
        assert!(throttle::count_statement(Backend::Postgres, 2).contains(COMMIT_LAZILY));
        assert!(!throttle::count_statement(Backend::Sqlite, 2).contains("set_config"));
        assert!(sessions::session_insert_sql_pg(false, &take_back).contains(COMMIT_LAZILY));
        assert!(!sessions::session_insert_sql_pg(true, &take_back).contains("set_config"));
        for consent in [true, false] {
            assert!(grants::code_write_sql_pg(consent, false, 2).contains(COMMIT_LAZILY));
            assert!(grants::code_write_sql_pg(consent, true, 2).contains(COMMIT_LAZILY));
        }
        assert!(grants::consume_sql_pg().contains(COMMIT_LAZILY));
    }

    /// SQLite migration 0018 rebuilds the token table (decision 0044): every row comes
    /// through with every column and its rowid, the indexes and triggers are back, and
    /// `jti` is unique among API keys only.
    #[tokio::test]
    async fn sqlite_migration_0018_keeps_every_token_and_key_ids_unique() {
        use sqlx::{Connection, Executor};
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::from_str(&format!(
            "sqlite://{}",
            dir.path().join("t.db").display()
        ))
        .unwrap()
        .create_if_missing(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        let up_to_0017 = Migrator {
            migrations: std::borrow::Cow::Owned(
                SQLITE_MIGRATIONS
                    .iter()
                    .filter(|m| m.version <= 17)
                    .cloned()
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        up_to_0017.run(&mut conn).await.unwrap();
        conn.execute(
            "insert into client (id, name, redirect_uris, post_logout_redirect_uris, \
             grant_types, scope, token_endpoint_auth_method, access_token_format, \
             may_introspect, first_party, require_pkce, id_token_signed_response_alg, \
             created_at, updated_at) values ('web', 'Web', '[]', '[]', '[]', 'openid', \
             'none', 'opaque', 0, 0, 1, 'RS256', 1, 1); \
             insert into account (id, username, claims, disabled, failed_login_count, \
             created_at, updated_at) values ('u1', 'ada', '{}', 0, 0, 1, 1); \
             insert into oauth_grant (id, client_id, account_id, scope, created_at) \
             values ('g1', 'web', 'u1', 'openid', 1); \
             insert into token (digest, kind, jti, grant_id, client_id, account_id, scope, \
             label, previous_digest, created_at, expires_at, used_at, revoked_at, hint, \
             refused_at) values \
             (x'01', 'access', 'j1', 'g1', 'web', 'u1', 'openid', null, null, 2, 3, null, \
              null, null, null), \
             (x'02', 'refresh', 'j2', 'g1', 'web', 'u1', 'openid', null, x'00', 2, 9, 4, \
              5, null, null), \
             (x'03', 'access', 'j3', null, 'web', null, 'api', null, null, 2, 3, null, \
              null, null, null), \
             (x'04', 'api_key', 'k1', null, null, 'u1', 'api', 'ci', null, 2, null, null, \
              null, 'tsk_ab', 6)",
        )
        .await
        .unwrap();
        const ROWS: &str = "select rowid || '|' || quote(digest) || '|' || kind || '|' || \
             jti || '|' || quote(grant_id) || '|' || quote(client_id) || '|' || \
             quote(account_id) || '|' || scope || '|' || quote(label) || '|' || \
             quote(previous_digest) || '|' || created_at || '|' || quote(expires_at) || '|' \
             || quote(used_at) || '|' || quote(revoked_at) || '|' || quote(hint) || '|' || \
             quote(refused_at) from token order by rowid";
        const SCHEMA: &str =
            "select type || ' ' || name from sqlite_master where tbl_name = 'token' \
             and name not like 'sqlite_autoindex%' order by 1";
        let rows: Vec<String> = sqlx::query_scalar(ROWS).fetch_all(&mut conn).await.unwrap();
        let schema: Vec<String> = sqlx::query_scalar(SCHEMA)
            .fetch_all(&mut conn)
            .await
            .unwrap();

        SQLITE_MIGRATIONS.run(&mut conn).await.unwrap();
        let after: Vec<String> = sqlx::query_scalar(ROWS).fetch_all(&mut conn).await.unwrap();
        assert_eq!(after, rows);
        let mut expected = schema;
        expected.push("index token_jti_key".into());
        expected.sort();
        let now: Vec<String> = sqlx::query_scalar(SCHEMA)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(now, expected);
        // Another token may repeat a `jti`; another API key may not.
        let insert = |digest: &str, kind: &str, jti: &str| {
            format!(
                "insert into token (digest, kind, jti, client_id, account_id, scope, \
                 created_at) values (x'{digest}', '{kind}', '{jti}', 'web', 'u1', 'api', 7)"
            )
        };
        conn.execute(insert("05", "access", "j3").as_str())
            .await
            .unwrap();
        let repeated = conn.execute(insert("06", "api_key", "k1").as_str()).await;
        assert!(repeated.is_err(), "a second API key with the same id");
        // The change counter's trigger is back.
        let count = "select n from change_counter where id = 1";
        let n: i64 = sqlx::query_scalar(count)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.execute("update token set revoked_at = 8 where digest = x'01'")
            .await
            .unwrap();
        let m: i64 = sqlx::query_scalar(count)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(m, n + 1);
        conn.close().await.unwrap();
    }

    /// Migrations 0016 and 0017 left the token table's client, user and key-id indexes
    /// holding only tokens without a grant (or API keys): every statement that finds tokens
    /// by owner or key id must still be an index lookup, not a scan of every token. With
    /// sequential scans priced out, a statement that no index can serve still scans.
    #[tokio::test]
    async fn statements_finding_tokens_by_owner_or_key_id_use_an_index_on_postgres() {
        let Some(store) = postgres_store().await else {
            return;
        };
        let mut conn = store.pool.acquire().await.unwrap();
        sqlx::query("set enable_seqscan = off")
            .execute(&mut *conn)
            .await
            .unwrap();
        // Each statement with the types of its parameters, `$1` first.
        let mut statements: Vec<(String, &[&str])> = ["client_id", "account_id"]
            .into_iter()
            .flat_map(deletes_hanging_off)
            .map(|sql| (sql, &["text"][..]))
            .collect();
        let (by_user, by_key_and_user) = (&["text", "bigint"][..], &["text", "text", "bigint"][..]);
        statements.extend([
            (accounts::REVOKE_API_KEYS_OF_USER.to_owned(), by_user),
            (accounts::REVOKE_TOKENS_OF_USER.to_owned(), by_user),
            (api_keys::REVOKE_REPLACED.to_owned(), by_key_and_user),
            (api_keys::COUNT_LIVE.to_owned(), by_user),
            (api_keys::REVOKE.to_owned(), by_key_and_user),
            (api_keys::BY_ID.clone(), &["text"][..]),
        ]);
        for (i, (sql, types)) in statements.iter().enumerate() {
            let args: Vec<&str> = types
                .iter()
                .map(|t| if *t == "bigint" { "1" } else { "'x'" })
                .collect();
            let (types, args) = (types.join(", "), args.join(", "));
            sqlx::query(&format!("prepare s{i} ({types}) as {sql}"))
                .execute(&mut *conn)
                .await
                .unwrap();
            let plan: Vec<String> = sqlx::query_scalar(&format!("explain execute s{i} ({args})"))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            let plan = plan.join("\n");
            assert!(
                !plan.contains("Seq Scan on token"),
                "{sql}\nscans the token table:\n{plan}"
            );
        }
    }

    /// A sealing round reads the head and the events in one snapshot (decision 0041): its
    /// transaction, begun in one statement, is repeatable read and read only.
    #[tokio::test]
    async fn the_sealers_transaction_is_one_read_only_snapshot_on_postgres() {
        let Some(store) = postgres_store().await else {
            return;
        };
        let mut tx = store.pg_snapshot_tx().await.unwrap();
        for (setting, expected) in [
            ("transaction_isolation", "repeatable read"),
            ("transaction_read_only", "on"),
        ] {
            let value: String = sqlx::query_scalar(&format!("select current_setting('{setting}')"))
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            assert_eq!(value, expected, "{setting}");
        }
    }

    /// Decision 0039's clause on a real Postgres: it holds, it turns synchronous commit off
    /// for its own statement's transaction, and the connection's next transaction commits as
    /// the server is set to.
    #[tokio::test]
    async fn committing_lazily_is_the_statement_transactions_own_setting() {
        let Some(store) = postgres_store().await else {
            return;
        };
        let mut conn = store.pool.acquire().await.unwrap();
        let setting = "select current_setting('synchronous_commit')";
        let before: String = sqlx::query_scalar(setting)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_ne!(before, "off", "the test server commits synchronously");
        let during: Option<String> =
            sqlx::query_scalar(&format!("{setting} where {COMMIT_LAZILY}"))
                .fetch_optional(&mut *conn)
                .await
                .unwrap();
        assert_eq!(during.as_deref(), Some("off"));
        let after: String = sqlx::query_scalar(setting)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(after, before);
    }

    /// The sign-in's and the consent's writes commit lazily, each on its own: the
    /// connection each leaves for the next statement (a token's write, say) commits
    /// synchronously again. A setting that outlived its statement would make every later
    /// write on that connection lazy.
    #[tokio::test]
    async fn lazily_committed_writes_leave_their_connection_committing_synchronously() {
        use crate::audit::{AuditEvent, AuditKind};
        use crate::crypto::token::Digest;
        use crate::store::samples::{account, client};
        use crate::store::{
            AccountStore, ClientStore, CodeRecord, ConsentGiven, GrantRecord, GrantStore,
            LoginThrottleStore, SessionRecord, SessionStore, TakeBack, ThrottleKey,
        };
        let Some(store) = postgres_store().await else {
            return;
        };
        let event = |kind| AuditEvent::new(kind, "test", 1_000);
        store
            .insert_client(
                &client("app", &["https://app.example/cb"]),
                &event(AuditKind::ClientCreated),
            )
            .await
            .unwrap();
        store
            .insert_account(&account("ada", None), &event(AuditKind::UserCreated))
            .await
            .unwrap();

        let keys = [ThrottleKey {
            key: "addr:192.0.2.1",
            threshold: 5,
        }];
        let (_, found) = store
            .count_login_attempt_for(&keys, 1_000, 0, 900, "ada")
            .await
            .unwrap();
        assert!(found.is_some());
        assert_eq!(next_commit_setting(&store).await, "on", "sign-in count");

        let session = SessionRecord {
            id_digest: Digest::of("session"),
            account_id: "ada".into(),
            auth_time: 1_000,
            amr: vec!["pwd".into()],
            created_at: 1_000,
            expires_at: 9_000,
            sid: Some("sid".into()),
        };
        let take_back = TakeBack {
            clear: None,
            forgive: vec!["addr:192.0.2.1".into()],
        };
        store
            .insert_session(
                &session,
                None,
                &take_back,
                &event(AuditKind::LoginSucceeded),
            )
            .await
            .unwrap();
        assert_eq!(next_commit_setting(&store).await, "on", "session");

        let grant = GrantRecord {
            id: "g1".into(),
            client_id: "app".into(),
            account_id: Some("ada".into()),
            scope: "openid".into(),
            auth_time: Some(1_000),
            amr: vec!["pwd".into()],
            created_at: 1_000,
            revoked_at: None,
            sid: Some("sid".into()),
            claims: Default::default(),
        };
        let code = CodeRecord {
            digest: Digest::of("code"),
            grant_id: "g1".into(),
            client_id: "app".into(),
            account_id: "ada".into(),
            redirect_uri: Some("https://app.example/cb".into()),
            scope: "openid".into(),
            nonce: None,
            code_challenge: None,
            auth_time: 1_000,
            amr: vec!["pwd".into()],
            created_at: 1_000,
            expires_at: 1_060,
            consumed_at: None,
            sid: Some("sid".into()),
            claims: Default::default(),
        };
        let consent = ConsentGiven {
            account_id: "ada".into(),
            client_id: "app".into(),
            scope: "openid".into(),
            now: 1_000,
            audit: event(AuditKind::ConsentGranted),
        };
        store
            .insert_code_with_consent(&consent, &grant, &code, &event(AuditKind::CodeIssued))
            .await
            .unwrap();
        assert_eq!(next_commit_setting(&store).await, "on", "consent and code");

        assert!(store
            .consume_code(&Digest::of("code"), 1_001)
            .await
            .unwrap()
            .is_some());
        assert_eq!(next_commit_setting(&store).await, "on", "redemption");
    }

    /// An audit event appended on its own leaves its connection for the next statement, as
    /// every other completed statement does (decision 0038).
    #[tokio::test]
    async fn an_appended_audit_event_leaves_its_connection_for_the_next_statement() {
        use crate::store::AuditStore;
        let (_dir, store) = sqlite_store().await;
        let event = crate::audit::AuditEvent::new(
            crate::audit::AuditKind::ClientCreated,
            "operator",
            1_000,
        );
        for _ in 0..3 {
            store.append_audit(&event).await.unwrap();
            assert_eq!(store.pool.kept(), 1);
        }
    }

    /// The change counter is read every 100 ms for as long as the server runs; through a
    /// connection of its own, so that an idle server's pool still closes its connections
    /// (and gives back their prepared statements and pages).
    #[tokio::test]
    async fn reading_the_change_counter_lets_the_pool_go_idle() {
        let (_dir, store) = sqlite_store().await;
        let start = std::time::Instant::now();
        while start.elapsed() < SQLITE_IDLE_TIMEOUT * 4 && store.pool.pool().size() > 0 {
            assert!(store.change_count().await.unwrap().is_some());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            store.pool.pool().size(),
            0,
            "pooled connections closed once idle"
        );
    }

    #[tokio::test]
    async fn sqlite_connections_keep_a_small_page_cache_the_busy_timeout_and_temp_tables_in_memory()
    {
        let (_dir, store) = sqlite_store().await;
        // Every connection of the pool, not only the first.
        let mut conns = Vec::new();
        for _ in 0..3 {
            conns.push(store.pool.acquire().await.unwrap());
        }
        for conn in &mut conns {
            let size: i64 = sqlx::query_scalar("pragma cache_size")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(size, -512);
            let busy: i64 = sqlx::query_scalar("pragma busy_timeout")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(busy, POOL_BUSY_TIMEOUT_MS as i64);
            // 2: memory.
            let temp: i64 = sqlx::query_scalar("pragma temp_store")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(temp, 2);
        }
    }

    /// Every setting reaches the connections of both SQLite pools, though they are applied
    /// as one batch.
    #[tokio::test]
    async fn sqlite_connections_of_both_pools_get_every_setting() {
        let (_dir, store) = sqlite_store().await;
        let expected = [
            ("busy_timeout", POOL_BUSY_TIMEOUT_MS as i64),
            ("wal_autocheckpoint", 0),
            ("temp_store", 2),
            ("cache_size", -512),
            ("synchronous", 1),
        ];
        let mut pooled = store.pool.acquire().await.unwrap();
        let timers = store.timers.as_ref().unwrap();
        for (pragma, want) in expected {
            let read = format!("pragma {pragma}");
            let got: i64 = sqlx::query_scalar(&read)
                .fetch_one(&mut *pooled)
                .await
                .unwrap();
            assert_eq!(got, want, "{pragma} on the pool's connection");
            let got: i64 = sqlx::query_scalar(&read).fetch_one(timers).await.unwrap();
            assert_eq!(got, want, "{pragma} on the timers' connection");
        }
    }

    /// A reader that keeps SQLite's log from starting over puts the restart off instead of
    /// holding the write turn while it reads: the turn is free again once the restart gives
    /// up, and the restart, tried again after the reader is done, succeeds.
    #[tokio::test]
    async fn sqlite_restart_a_reader_keeps_off_is_put_off_and_succeeds_after() {
        let (_dir, store) = sqlite_store().await;
        let mut writer = store.pool.acquire().await.unwrap();
        let mut reader = store.pool.acquire().await.unwrap();
        for sql in [
            "create table probe (x integer)",
            "insert into probe values (1)",
        ] {
            sqlx::query(sql).execute(&mut *writer).await.unwrap();
        }
        sqlx::query("begin").execute(&mut *reader).await.unwrap();
        let seen: i64 = sqlx::query_scalar("select count(*) from probe")
            .fetch_one(&mut *reader)
            .await
            .unwrap();
        assert_eq!(seen, 1);
        // Written after the reader's snapshot: whichever snapshot it holds, this frame
        // cannot be copied back, or the log begun anew, until it is done.
        sqlx::query("insert into probe values (2)")
            .execute(&mut *writer)
            .await
            .unwrap();

        let started = std::time::Instant::now();
        assert!(
            !store.checkpoint(true).await,
            "restarted under an open reader"
        );
        assert!(started.elapsed() < RESTART_WAIT + Duration::from_secs(2));
        let turn = tokio::time::timeout(Duration::from_secs(1), store.turn()).await;
        assert!(turn.is_ok(), "the write turn was kept");
        drop(turn);

        sqlx::query("commit").execute(&mut *reader).await.unwrap();
        assert!(
            store.checkpoint(true).await,
            "no restart once the reader was done"
        );
        let busy: i64 = sqlx::query_scalar("pragma busy_timeout")
            .fetch_one(store.timers.as_ref().unwrap())
            .await
            .unwrap();
        assert_eq!(
            busy, POOL_BUSY_TIMEOUT_MS as i64,
            "the timers' setting put back"
        );
    }

    /// The store's own sync of its SQLite file keeps the descriptor it opens: closing any
    /// descriptor of the file drops every POSIX lock the process holds on it, SQLite's own
    /// included (CI at 7f31256: CLI processes took the database from under a store that had
    /// synced it through a descriptor it then closed).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn sqlite_sync_keeps_its_descriptor_of_the_database_file_open() {
        let (_dir, store) = sqlite_store().await;
        let file = store
            .timers
            .as_ref()
            .unwrap()
            .connect_options()
            .get_filename()
            .to_owned();
        let open_on_file = || {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter(|target| *target == file)
                .count()
        };
        let before = open_on_file();
        sync_log_and_file(&file).await;
        assert_eq!(open_on_file(), before + 1, "no descriptor kept");
        sync_log_and_file(&file).await;
        assert_eq!(open_on_file(), before + 1, "a second descriptor opened");
    }

    /// Connections a burst opened are closed once idle, their memory given back; the pool
    /// opens them again when asked.
    #[tokio::test]
    async fn sqlite_connections_idle_for_a_second_are_closed() {
        let (_dir, store) = sqlite_store().await;
        let mut conns = Vec::new();
        for _ in 0..SQLITE_CONNECTIONS {
            conns.push(store.pool.acquire().await.unwrap());
        }
        assert_eq!(store.pool.pool().size(), SQLITE_CONNECTIONS);
        drop(conns);
        // Closed by the pool's reaper, which looks every idle timeout. The store's
        // checkpoint task takes a connection every 125 ms, the longest idle first, so
        // it may keep two alive in turn.
        let deadline = std::time::Instant::now() + 4 * SQLITE_IDLE_TIMEOUT;
        while store.pool.pool().size() > 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            store.pool.pool().size() <= 2,
            "{} still open",
            store.pool.pool().size()
        );
        let one: i64 = sqlx::query_scalar("select 1")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(one, 1);
    }
}
