//! Write combining for new tokens (docs/decisions/0031-token-write-combining.md).
//!
//! Issuing tokens is the busiest write an authorization server makes, and on its own each
//! issue is one small statement and one commit: the database's cost per token is then
//! almost all per-statement and per-commit overhead (parse, plan, executor start, WAL flush),
//! not the rows. Concurrent issues are therefore handed to one task that writes whatever has
//! queued up since its last write as one statement (Postgres) or one transaction (SQLite): a
//! lone request waits for nobody, and under load the overhead is shared by the whole batch.
//! Each caller still returns only after its rows and its audit event are committed.
//!
//! Refresh rotations go the same way: their new rows are written only if the batch's
//! conditional update spent the old refresh token ([`Spend`]), so each rotation keeps its own
//! outcome. Two rotations of one token in one batch cannot both win; the later one is written
//! after the batch, by itself, and finds the token spent (or, if the batch failed, unspent).
//! A plain rotation comes with its read ([`Rotation`], decisions 0043, 0051 and 0052): the
//! rotations of a batch are one statement (Postgres) or transaction (SQLite) of their own,
//! beside its issues.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::SqlStore;
use crate::audit::AuditEvent;
use crate::crypto::token::Digest;
use crate::store::{Backend, NewToken, RefreshAtOnce, StoreError, StoredCredential, TokenRecord};

/// Most writes in one batch: bounds the statement's size and how long one batch holds
/// SQLite's write turn.
const MAX_BATCH: usize = 32;

/// Most issues waiting for the writer; further callers wait for room (backpressure, not an
/// unbounded queue).
const QUEUE: usize = 1024;

/// A refresh rotation's condition: the refresh token it spends (still unspent and not
/// revoked, or nothing is written), and the time it is spent at.
#[derive(Clone, Copy)]
pub(super) struct Spend {
    pub(super) digest: Digest,
    pub(super) at: i64,
}

/// One caller's write: new token rows and their audit event, on the condition in `spends`
/// if there is one.
pub(super) struct TokenWrite {
    pub(super) tokens: Vec<TokenRecord>,
    pub(super) audit: AuditEvent,
    pub(super) spends: Option<Spend>,
}

/// A refresh rotation with its read ([`RefreshAtOnce`], owned): written if the
/// old token is found unspent, answering its credential as read.
pub(super) struct Rotation {
    pub(super) old: Digest,
    pub(super) client_id: String,
    pub(super) now: i64,
    pub(super) access: NewToken,
    pub(super) access_expires_at: i64,
    pub(super) refresh: NewToken,
    pub(super) refresh_idle_ttl: i64,
    pub(super) refresh_absolute_ttl: i64,
    pub(super) audit: AuditEvent,
}

impl From<&RefreshAtOnce<'_>> for Rotation {
    fn from(r: &RefreshAtOnce<'_>) -> Self {
        Rotation {
            old: r.old,
            client_id: r.client_id.to_owned(),
            now: r.now,
            access: r.access.clone(),
            access_expires_at: r.access_expires_at,
            refresh: r.refresh.clone(),
            refresh_idle_ttl: r.refresh_idle_ttl,
            refresh_absolute_ttl: r.refresh_absolute_ttl,
            audit: r.audit.clone(),
        }
    }
}

type Rotated = Result<Option<StoredCredential>, StoreError>;

/// A write waiting for the writer, and where its outcome goes.
enum Issue {
    /// Whether it was written.
    Write {
        write: TokenWrite,
        done: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// The old credential if the rotation was written.
    Rotate {
        rotation: Rotation,
        done: oneshot::Sender<Rotated>,
    },
}

/// The sending side, kept by the store; the task ends when the last store clone is dropped.
#[derive(Clone)]
pub(super) struct TokenWrites {
    queue: mpsc::Sender<Issue>,
    /// Batches being written: at most a backend's `in_flight`.
    in_flight: Arc<Semaphore>,
    backend: Backend,
}

impl TokenWrites {
    /// Starts the writer for `store` (a clone without a `TokenWrites` of its own, so that the
    /// task does not keep its own queue open).
    pub(super) fn start(store: SqlStore) -> TokenWrites {
        let (queue, rx) = mpsc::channel(QUEUE);
        // Postgres: while one batch waits for its commit to be flushed, the next one forms
        // and is written; more in flight would only make batches smaller. SQLite has one
        // writer anyway.
        let in_flight = match store.backend {
            Backend::Postgres => 2,
            Backend::Sqlite => 1,
        };
        let in_flight = Arc::new(Semaphore::new(in_flight));
        let backend = store.backend;
        tokio::spawn(run(store, rx, Arc::clone(&in_flight)));
        TokenWrites {
            queue,
            in_flight,
            backend,
        }
    }

    /// SQLite: a turn to write at once, in the caller's own task, while no batch is being
    /// written and nobody waits: nothing to combine with, and the hand-offs to the writer
    /// task and back cost a lone refresh a sixth of its CPU. Hold it until the write is
    /// done. Waiting writes keep their order (the semaphore is fair). Not on Postgres,
    /// where a round trip and a commit cost far more than the hand-off, and writes taken
    /// alone would only combine less. (A rise from 0.23 to 0.32 commits per token first
    /// blamed on this was the audit sealer's rounds.)
    pub(super) fn turn_now(&self) -> Option<OwnedSemaphorePermit> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        Arc::clone(&self.in_flight).try_acquire_owned().ok()
    }

    /// Writes `write` in some batch: whether it was written (a rotation whose token was
    /// spent or revoked is not). `Err(write)` hands it back when the writer is gone (its
    /// runtime shut down), for the caller to write itself.
    pub(super) async fn write(
        &self,
        write: TokenWrite,
    ) -> Result<Result<bool, StoreError>, TokenWrite> {
        let (done, outcome) = oneshot::channel();
        if let Err(mpsc::error::SendError(Issue::Write { write, .. })) =
            self.queue.send(Issue::Write { write, done }).await
        {
            return Err(write);
        }
        Ok(outcome.await.unwrap_or(Err(crashed())))
    }

    /// Writes `rotation` in some batch. `Err(rotation)` hands it back when the
    /// writer is gone, as [`TokenWrites::write`] does.
    pub(super) async fn rotate(&self, rotation: Rotation) -> Result<Rotated, Rotation> {
        let (done, outcome) = oneshot::channel();
        if let Err(mpsc::error::SendError(Issue::Rotate { rotation, .. })) =
            self.queue.send(Issue::Rotate { rotation, done }).await
        {
            return Err(rotation);
        }
        Ok(outcome.await.unwrap_or(Err(crashed())))
    }
}

/// A writer that stopped mid-batch (its runtime shutting down) may or may not have committed
/// it: unavailable, as for a lost connection.
fn crashed() -> StoreError {
    StoreError::Unavailable(sqlx::Error::WorkerCrashed)
}

/// How often SQLite's write-ahead log is copied back into the database file. Each passive
/// checkpoint first syncs the log, and while that sync writes the log out, the writer's own
/// appends to it wait in the kernel (`pwrite` blocked on the blocks being written: 13 to 44
/// ms at a time in a `perf` of the ES256 refresh at c = 16, every time a checkpoint synced):
/// the less a round has to sync, the shorter the wait. Every 500 ms, the refresh's p99 was
/// 33.6 and 36.3 ms; every 125 ms, 20.8, 14.1, 17.4 and 18.0 ms; every 50 ms 11.3 and 13.1
/// ms, at more CPU per refresh; every 2 s, 122 and 148 ms (2026-12-07, fifteenth session,
/// SQLite alone). An idle round copies nothing and syncs nothing.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(125);

/// Every how many of those rounds the log also starts over, which holds the write turn for
/// a few milliseconds (decision 0034; tens under load until the restart's round synced
/// the files itself first): every 4 s. Every 500 ms, the bench's SQLite refresh and
/// client_credentials JWT runs had a p99 of 31.8 and 22.2 ms; every 2 s, 23.8 and 13.4 ms
/// (2026-12-06, two runs each); every 4 s, the refresh after every other SQLite workload
/// had 17.5 and 19.3 ms (ES256) where every 2 s had 24.4 and 30.9 ms (2026-12-07,
/// interleaved). The log then holds up to four seconds of writes (about 320 MB under the
/// bench's heaviest load): disk, not reads, since a reader searches only the frames not yet
/// copied back.
const RESTART_EVERY_ROUNDS: u64 = 32;

async fn run(store: SqlStore, mut queue: mpsc::Receiver<Issue>, in_flight: Arc<Semaphore>) {
    // SQLite: the checkpoints run here, beside the writes, not in them. Left to SQLite, the
    // connection whose commit fills the log past 1,000 pages copies it back and syncs the
    // file before its commit returns, holding the write turn all the while: every
    // thousandth-page write waited tens of milliseconds (the client_credentials p99). A
    // passive checkpoint needs no lock the writers take. The task ends with the store, as
    // this one does.
    let mut checkpoints = (store.backend == Backend::Sqlite).then(|| {
        let mut every = tokio::time::interval(CHECKPOINT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        every
    });
    let mut checkpointing: Option<tokio::task::JoinHandle<bool>> = None;
    // Rounds since the log last started over; a restart that readers kept off is tried
    // again the next round.
    let mut rounds: u64 = 0;
    loop {
        let first = tokio::select! {
            issue = queue.recv() => match issue {
                Some(issue) => issue,
                None => return,
            },
            _ = tick(&mut checkpoints) => {
                if checkpointing.as_ref().is_none_or(|c| c.is_finished()) {
                    if let Some(done) = checkpointing.take() {
                        if done.await.unwrap_or(false) {
                            rounds = 0;
                        }
                    }
                    let store = store.clone();
                    rounds += 1;
                    let restart = rounds >= RESTART_EVERY_ROUNDS;
                    checkpointing = Some(tokio::spawn(async move { store.checkpoint(restart).await }));
                }
                continue;
            }
        };
        // Waiting for a free slot first lets more issues queue up behind `first`.
        let Ok(slot) = Arc::clone(&in_flight).acquire_owned().await else {
            return; // never closed
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(issue) => batch.push(issue),
                Err(_) => break,
            }
        }
        let store = store.clone();
        // Its own task: a caller that goes away (client disconnected, request timeout) must
        // not cancel the write of everyone else's tokens.
        tokio::spawn(async move {
            write_batch(&store, batch).await;
            drop(slot);
        });
    }
}

/// The next tick, or never without an interval (Postgres).
async fn tick(every: &mut Option<tokio::time::Interval>) {
    match every {
        Some(every) => {
            every.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn write_batch(store: &SqlStore, batch: Vec<Issue>) {
    let mut writes = Vec::new();
    let mut rotations = Vec::new();
    for issue in batch {
        match issue {
            Issue::Write { write, done } => writes.push((write, done)),
            Issue::Rotate { rotation, done } => rotations.push((rotation, done)),
        }
    }
    // Apart, on two connections at once: neither waits for the other's commit.
    tokio::join!(write_apart(store, writes), write_apart(store, rotations));
}

type Waiting<T, O> = Vec<(T, oneshot::Sender<Result<O, StoreError>>)>;

/// A kind of write the writer combines: how a batch of them is written at once, how one is
/// written by itself, and which token it spends (two that spend one never share a write).
trait Combined: Sized + Send + Sync {
    type Out: Send;
    fn spends(&self) -> Option<Digest>;
    /// Each write's outcome, in order; `Err` if nothing was written.
    fn all<'a>(
        store: &'a SqlStore,
        batch: &'a [&'a Self],
    ) -> impl Future<Output = Result<Vec<Result<Self::Out, StoreError>>, StoreError>> + Send + 'a;
    fn alone<'a>(
        store: &'a SqlStore,
        one: &'a Self,
    ) -> impl Future<Output = Result<Self::Out, StoreError>> + Send + 'a;
    /// Whether the writes of a batch that failed with `e` on `backend` are written again
    /// one by one.
    fn retry_after(backend: Backend, e: &StoreError) -> bool;
}

impl Combined for TokenWrite {
    type Out = bool;

    fn spends(&self) -> Option<Digest> {
        self.spends.map(|s| s.digest)
    }

    async fn all<'a>(
        store: &'a SqlStore,
        batch: &'a [&'a Self],
    ) -> Result<Vec<Result<bool, StoreError>>, StoreError> {
        Ok(store
            .write_tokens(batch)
            .await?
            .into_iter()
            .map(Ok)
            .collect())
    }

    fn alone<'a>(
        store: &'a SqlStore,
        one: &'a Self,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send + 'a {
        store.write_token(one)
    }

    /// Always: a batch that did commit after all only makes each issue's retry conflict on
    /// its digest, and SQLite's rotations (the only ones here) fail definitely, rolled back.
    fn retry_after(_: Backend, _: &StoreError) -> bool {
        true
    }
}

impl Combined for Rotation {
    type Out = Option<StoredCredential>;

    fn spends(&self) -> Option<Digest> {
        Some(self.old)
    }

    fn all<'a>(
        store: &'a SqlStore,
        batch: &'a [&'a Self],
    ) -> impl Future<Output = Result<Vec<Rotated>, StoreError>> + Send + 'a {
        store.rotate_at_once(batch)
    }

    fn alone<'a>(store: &'a SqlStore, one: &'a Self) -> impl Future<Output = Rotated> + Send + 'a {
        store.rotate_one_at_once(one)
    }

    /// Only when the write certainly wrote nothing. After a lost connection a Postgres
    /// statement may have committed, and a rotation written again would find its token
    /// spent, take it for reuse and revoke the grant: each waiter gets the error (503)
    /// instead. A SQLite transaction that failed was rolled back (`write_sqlite`), whatever
    /// the error, unless its task never answered: only then is the outcome unknown.
    fn retry_after(backend: Backend, e: &StoreError) -> bool {
        match backend {
            Backend::Postgres => !e.is_unavailable(),
            Backend::Sqlite => !matches!(e, StoreError::Unavailable(sqlx::Error::WorkerCrashed)),
        }
    }
}

/// The writes of a batch, at once, each waiter getting its own outcome; then those that
/// spend a token an earlier write of the batch spends (in one statement both would see it
/// unspent), each by itself. A failed batch is written again one write at a time where the
/// kind allows ([`Combined::retry_after`]), so that one bad write (a value that must be
/// unique, say) does not fail the others.
async fn write_apart<T: Combined>(store: &SqlStore, batch: Waiting<T, T::Out>) {
    if batch.is_empty() {
        return;
    }
    let mut spends = std::collections::HashSet::new();
    let (batch, later): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|(w, _)| w.spends().is_none_or(|s| spends.insert(s)));
    let (writes, dones): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
    let all: Vec<&T> = writes.iter().collect();
    match T::all(store, &all).await {
        Ok(outcomes) => {
            for (done, outcome) in dones.into_iter().zip(outcomes) {
                let _ = done.send(outcome);
            }
        }
        Err(e) if dones.len() == 1 || !T::retry_after(store.backend, &e) => {
            let mut dones = dones.into_iter();
            if let Some(first) = dones.next() {
                for done in dones {
                    let _ = done.send(Err(same_error(&e)));
                }
                let _ = first.send(Err(e));
            }
        }
        Err(_) => {
            for (write, done) in writes.iter().zip(dones) {
                let _ = done.send(T::alone(store, write).await);
            }
        }
    }
    for (write, done) in later {
        let _ = done.send(T::alone(store, &write).await);
    }
}

/// The error a failed batch gives each of its waiters: `StoreError` is not `Clone` (sqlx's
/// errors are not), so the others get its kind with the message.
fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound(what) => StoreError::NotFound(what),
        StoreError::Conflict(what) => StoreError::Conflict(what),
        StoreError::LimitReached(what) => StoreError::LimitReached(what),
        other => StoreError::Unavailable(sqlx::Error::Protocol(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditKind;
    use crate::store::{AuditStore as _, TokenKind, TokenStore as _};

    fn refresh(value: &str) -> TokenRecord {
        TokenRecord {
            digest: Digest::of(value),
            kind: TokenKind::Refresh,
            jti: format!("jti-{value}"),
            grant_id: None,
            client_id: None,
            account_id: None,
            scope: "openid".into(),
            label: None,
            previous_digest: None,
            created_at: 2_000,
            expires_at: None,
            used_at: None,
            revoked_at: None,
        }
    }

    /// A write of the refresh token `new`, spending `old` if given.
    fn token_write(old: Option<&str>, new: &str) -> TokenWrite {
        TokenWrite {
            tokens: vec![refresh(new)],
            audit: AuditEvent::new(AuditKind::TokenIssued, "test", 3_000),
            spends: old.map(|old| Spend {
                digest: Digest::of(old),
                at: 4_000,
            }),
        }
    }

    /// [`token_write`] waiting for the writer, and its outcome's receiver.
    fn write(old: Option<&str>, new: &str) -> (Issue, oneshot::Receiver<Result<bool, StoreError>>) {
        let (done, outcome) = oneshot::channel();
        let write = token_write(old, new);
        (Issue::Write { write, done }, outcome)
    }

    /// A write whose batch fails with the error `fails` makes.
    struct Flaky {
        fails: fn() -> StoreError,
    }

    static WRITTEN_ALONE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    impl Combined for Flaky {
        type Out = ();

        fn spends(&self) -> Option<Digest> {
            None
        }

        async fn all<'a>(
            _: &'a SqlStore,
            batch: &'a [&'a Self],
        ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
            Err(batch
                .first()
                .map_or(StoreError::Conflict("token"), |w| (w.fails)()))
        }

        async fn alone<'a>(_: &'a SqlStore, _: &'a Self) -> Result<(), StoreError> {
            WRITTEN_ALONE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }

        fn retry_after(backend: Backend, e: &StoreError) -> bool {
            Rotation::retry_after(backend, e)
        }
    }

    /// A batch of rotations is written again one by one only when it certainly wrote
    /// nothing: after a failure that may have committed, a rotation written again would
    /// find its token spent and count as reuse, revoking the grant (decision 0051). On
    /// Postgres a lost connection may have committed; on SQLite a failed transaction was
    /// rolled back, unless its task never answered (decision 0052).
    #[tokio::test]
    async fn a_failed_batch_of_rotations_is_written_again_only_if_it_certainly_wrote_nothing() {
        use std::sync::atomic::Ordering::SeqCst;
        let lost = || StoreError::Unavailable(sqlx::Error::PoolTimedOut);
        let crashed = || StoreError::Unavailable(sqlx::Error::WorkerCrashed);
        let refused = || StoreError::Conflict("token");
        let (_dir, sqlite) = super::super::sqlite_store().await;
        // The store, the error its batch fails with, and whether the writes are retried.
        type Case = (SqlStore, fn() -> StoreError, bool);
        let mut cases: Vec<Case> = vec![
            (sqlite.clone(), crashed, false),
            (sqlite.clone(), lost, true),
            (sqlite, refused, true),
        ];
        let postgres = super::super::postgres_store().await;
        if let Some(postgres) = &postgres {
            cases.push(((*postgres).clone(), lost, false));
            cases.push(((*postgres).clone(), crashed, false));
            cases.push(((*postgres).clone(), refused, true));
        }
        for (store, fails, retried) in cases {
            let before = WRITTEN_ALONE.load(SeqCst);
            let (batch, outcomes): (Waiting<Flaky, ()>, Vec<_>) = (0..3)
                .map(|_| {
                    let (done, outcome) = oneshot::channel();
                    ((Flaky { fails }, done), outcome)
                })
                .unzip();
            write_apart(&store, batch).await;
            let what = format!("{:?} after {:?}", store.backend, fails());
            let alone = WRITTEN_ALONE.load(SeqCst) - before;
            assert_eq!(alone, if retried { 3 } else { 0 }, "{what}");
            for outcome in outcomes {
                let outcome = outcome.await.unwrap();
                match retried {
                    true => assert!(outcome.is_ok(), "{what}: {outcome:?}"),
                    false => assert!(
                        matches!(outcome, Err(ref e) if e.is_unavailable()),
                        "{what}: {outcome:?}"
                    ),
                }
            }
        }
    }

    #[tokio::test]
    async fn a_batch_writes_each_write_on_its_own_condition_and_one_spend_per_token() {
        let (_dir, store) = super::super::sqlite_store().await;
        let event = AuditEvent::new(AuditKind::TokenIssued, "test", 3_000);
        store
            .insert_tokens(&[refresh("a"), refresh("b")], &event)
            .await
            .unwrap();

        let (issues, outcomes): (Vec<_>, Vec<_>) = [
            write(None, "issued"),
            write(Some("a"), "a1"),
            // The same token again in the same batch: it waits, then finds it spent.
            write(Some("a"), "a2"),
            write(Some("missing"), "m1"),
            write(Some("b"), "b1"),
        ]
        .into_iter()
        .unzip();
        write_batch(&store, issues).await;
        let mut written = Vec::new();
        for outcome in outcomes {
            written.push(outcome.await.unwrap().unwrap());
        }
        assert_eq!(written, [true, true, false, false, true]);
        for (value, expected) in [("issued", true), ("a1", true), ("a2", false), ("m1", false)] {
            let stored = store.token(&Digest::of(value)).await.unwrap();
            assert_eq!(stored.is_some(), expected, "{value}");
        }
        for spent in ["a", "b"] {
            let token = store.token(&Digest::of(spent)).await.unwrap().unwrap();
            assert_eq!(token.used_at, Some(4_000), "{spent}");
        }
        let trail = store.recent_audit(100).await.unwrap();
        assert_eq!(
            trail.len(),
            1 + 3,
            "the first issue and the three writes written"
        );
    }

    #[tokio::test]
    async fn a_failed_write_leaves_nothing_behind_and_its_connection_clean() {
        let (_dir, store) = super::super::sqlite_store().await;
        let event = AuditEvent::new(AuditKind::TokenIssued, "test", 3_000);
        store.insert_tokens(&[refresh("a")], &event).await.unwrap();
        let before = store.recent_audit(100).await.unwrap().len();

        // A rotation of `a` whose second new row repeats a digest: the spend goes too.
        let mut rotation = token_write(Some("a"), "fresh");
        rotation.tokens.push(refresh("a"));
        let err = store.write_token(&rotation).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict("token")), "{err:?}");
        let a = store.token(&Digest::of("a")).await.unwrap().unwrap();
        assert_eq!(a.used_at, None);
        assert_eq!(store.token(&Digest::of("fresh")).await.unwrap(), None);
        assert_eq!(store.recent_audit(100).await.unwrap().len(), before);

        // No connection of the pool was left inside the transaction.
        let mut conns = Vec::new();
        for _ in 0..super::super::SQLITE_CONNECTIONS {
            conns.push(store.pool.acquire().await.unwrap());
        }
        for conn in &mut conns {
            sqlx::query("begin").execute(&mut **conn).await.unwrap();
            sqlx::query("rollback").execute(&mut **conn).await.unwrap();
        }
        drop(conns);
        for i in 0..2 * super::super::SQLITE_CONNECTIONS {
            let issue = token_write(None, &format!("after{i}"));
            assert!(store.write_token(&issue).await.unwrap());
        }
        let again = token_write(Some("a"), "fresh");
        assert!(store.write_token(&again).await.unwrap());
    }
}
