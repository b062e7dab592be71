//! Connections the store keeps between statements instead of giving each back to sqlx's
//! pool at once (decision 0038).
//!
//! sqlx (0.8, and 0.9 still) checks every connection given back to its pool with a round
//! trip: on Postgres a `Sync` message and its answer, one more exchange over the loopback for
//! every statement, and on SQLite a wake-up of the connection's thread. On Postgres the
//! kernel's share of those exchanges was most of the database's CPU per request in the
//! bench. A connection whose statement ran to completion and left nothing queued is known to
//! be in order, so it waits here for the next statement instead. Anything else — a statement
//! that failed or was cancelled, a transaction, a connection unused for
//! [`KEEP_FOR`] — goes back to sqlx as before, which checks it, flushes what a dropped
//! transaction queued, and closes it if it is broken. A kept connection is handed out only
//! within [`KEEP_FOR`] of its last statement, well within the pool's own check of connections
//! idle a while (`STALE_AFTER`), and goes back to sqlx at least every [`ROUND_TRIP_EVERY`],
//! so that sqlx's maximum lifetime still retires connections that are never idle.
//!
//! Kept connections count as in use for sqlx: everything the store runs takes one from here
//! first ([`Conns::acquire`], [`Conns::begin`], or the `Executor` impl), so none waits for a
//! connection sqlx does not see idle, and a task gives back those unused for [`KEEP_FOR`], so
//! sqlx's idle timeout still closes connections an idle server does not need.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use sqlx::any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Describe, Either, Execute, Executor};

/// A kept connection unused this long goes back to sqlx's pool, whose idle timeout may then
/// close it. Under load a connection is taken again within milliseconds; an idle server
/// gives its connections back soon, so that they close (and give back their memory) on
/// sqlx's schedule as before.
const KEEP_FOR: Duration = Duration::from_millis(250);
/// How often every kept connection goes back to sqlx, busy or not. sqlx retires a connection
/// past its maximum lifetime (30 minutes by default) only when it comes back or sits idle;
/// under steady load the shelf would otherwise hand the same connections out for good.
/// Whatever sits on the shelf at that moment goes; under load every connection passes
/// through the shelf between its statements, so each meets sqlx's check before long.
const ROUND_TRIP_EVERY: Duration = Duration::from_secs(30);

type Kept = Vec<(PoolConnection<Any>, Instant)>;

/// The kept connections, newest last, and how many callers wait on sqlx's pool for one.
#[derive(Default)]
struct Shelf {
    kept: Kept,
    /// While anyone waits on sqlx, a connection whose statement is done goes back to sqlx
    /// (which hands it to a waiter) instead of onto the shelf, where no waiter would see it.
    waiting: usize,
}

/// sqlx's pool, and the connections the store holds between statements.
#[derive(Clone)]
pub(super) struct Conns {
    pool: AnyPool,
    shelf: Arc<Mutex<Shelf>>,
}

impl std::fmt::Debug for Conns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conns")
            .field("pool", &self.pool)
            .field("kept", &self.shelf().kept.len())
            .finish()
    }
}

impl Conns {
    /// Wraps `pool`; must be called inside a Tokio runtime (it spawns the task that gives
    /// connections idle too long back to sqlx, which ends with the last clone).
    pub(super) fn new(pool: AnyPool) -> Conns {
        Conns::giving_all_back_every(pool, ROUND_TRIP_EVERY)
    }

    fn giving_all_back_every(pool: AnyPool, every: Duration) -> Conns {
        let conns = Conns {
            pool,
            shelf: Arc::default(),
        };
        tokio::spawn(give_back_idle(Arc::downgrade(&conns.shelf), every));
        conns
    }

    /// sqlx's pool itself, for what takes one (the migrator).
    pub(super) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Open connections (kept ones included) and those idle, kept ones included.
    pub(super) fn size_and_idle(&self) -> (u32, usize) {
        // Two reads, not one snapshot: a connection moving between sqlx's idle queue and the
        // shelf meanwhile may be counted twice or missed (a metric, read at each scrape).
        let kept = self.shelf().kept.len();
        (self.pool.size(), self.pool.num_idle() + kept)
    }

    /// A connection of the pool's, a kept one first; it goes back to sqlx (and its check)
    /// when dropped.
    pub(super) async fn acquire(&self) -> Result<PoolConnection<Any>, sqlx::Error> {
        let _waiting = {
            let mut shelf = self.shelf();
            // The newest is at the end; if it is stale, so is everything before it.
            let stale = match shelf.kept.pop() {
                Some((conn, since)) if since.elapsed() < KEEP_FOR => return Ok(conn),
                Some(newest) => {
                    let mut stale = std::mem::take(&mut shelf.kept);
                    stale.push(newest);
                    stale
                }
                None => Kept::new(),
            };
            // Counted under the same lock `keep` reads it with: a connection done after this
            // goes back to sqlx, and so reaches this caller.
            shelf.waiting += 1;
            drop(shelf);
            // Back to sqlx, which checks them before anyone uses them again.
            drop(stale);
            Waiting(self)
        };
        self.pool.acquire().await
    }

    /// A transaction on a kept connection or one of the pool's.
    pub(super) async fn begin(&self) -> Result<sqlx::Transaction<'static, Any>, sqlx::Error> {
        // What sqlx's own `Pool::begin` does with the connection it acquires.
        sqlx::Transaction::begin(self.acquire().await?, None).await
    }

    /// As [`Conns::begin`], with `statement` (a `begin` with its modes) instead of `begin`.
    pub(super) async fn begin_with(
        &self,
        statement: &'static str,
    ) -> Result<sqlx::Transaction<'static, Any>, sqlx::Error> {
        sqlx::Transaction::begin(self.acquire().await?, Some(statement.into())).await
    }

    async fn lease(&self) -> Result<Lease<'_>, sqlx::Error> {
        Ok(Lease {
            conn: self.acquire().await?,
            home: self,
        })
    }

    /// Takes back a connection from [`Conns::acquire`] whose work ran to completion, for the
    /// next statement; one that left something queued goes back to sqlx, as does any while
    /// callers wait on sqlx.
    pub(super) fn keep(&self, conn: PoolConnection<Any>) {
        if conn.should_flush() {
            return;
        }
        let mut shelf = self.shelf();
        if shelf.waiting == 0 {
            shelf.kept.push((conn, Instant::now()));
        }
    }

    /// Connections waiting for the next statement.
    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        self.shelf().kept.len()
    }

    fn shelf(&self) -> MutexGuard<'_, Shelf> {
        // Nothing panics while holding the lock; a poisoned one still holds valid entries.
        self.shelf.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A caller counted in [`Shelf::waiting`], uncounted when it has its connection or gives up.
struct Waiting<'a>(&'a Conns);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut shelf = self.0.shelf();
        shelf.waiting = shelf.waiting.saturating_sub(1);
    }
}

/// A connection lent to one statement: kept for the next if the statement completes
/// ([`Lease::keep`]), given back to sqlx when dropped otherwise.
struct Lease<'a> {
    conn: PoolConnection<Any>,
    home: &'a Conns,
}

impl Lease<'_> {
    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    /// The statement ran to completion: the connection waits for the next one, unless the
    /// statement left something for sqlx to flush.
    fn keep(self) {
        self.home.keep(self.conn);
    }
}

/// Every [`KEEP_FOR`], gives sqlx back the connections kept that long unused, and every
/// [`ROUND_TRIP_EVERY`] all the kept ones.
async fn give_back_idle(shelf: Weak<Mutex<Shelf>>, every: Duration) {
    let mut beat = tokio::time::interval(KEEP_FOR);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut all_at = Instant::now() + every;
    loop {
        beat.tick().await;
        let Some(shelf) = shelf.upgrade() else {
            return;
        };
        let all = Instant::now() >= all_at;
        if all {
            all_at = Instant::now() + every;
        }
        let stale: Kept = {
            let mut shelf = shelf.lock().unwrap_or_else(|e| e.into_inner());
            let kept = &mut shelf.kept;
            // Oldest first: everything before the first fresh one is stale.
            let fresh = if all {
                kept.len()
            } else {
                kept.iter()
                    .position(|(_, since)| since.elapsed() < KEEP_FOR)
                    .unwrap_or(kept.len())
            };
            kept.drain(..fresh).collect()
        };
        drop(stale);
    }
}

impl<'c> Executor<'c> for &'c Conns {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        // Read to the end before handing anything out, so that the connection is free (and
        // kept) as soon as the statement is done: the store's results are a few rows.
        stream::once(async move {
            let mut lease = self.lease().await?;
            let all: Vec<_> = lease.conn().fetch_many(query).try_collect().await?;
            lease.keep();
            Ok::<_, sqlx::Error>(stream::iter(all.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn execute<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<AnyQueryResult, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        Box::pin(async move {
            let mut lease = self.lease().await?;
            let done = lease.conn().execute(query).await?;
            lease.keep();
            Ok(done)
        })
    }

    fn fetch_all<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Vec<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        Box::pin(async move {
            let mut lease = self.lease().await?;
            let rows = lease.conn().fetch_all(query).await?;
            lease.keep();
            Ok(rows)
        })
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        Box::pin(async move {
            let mut lease = self.lease().await?;
            // To the end, not to the first row as sqlx's `Any` drivers read: a connection
            // with answers still unread (a later row's error, the rest of a script) must not
            // be kept, and an error after the first row is this statement's, not the next's.
            let mut first = None;
            {
                let mut results = lease.conn().fetch_many(query);
                while let Some(result) = results.try_next().await? {
                    if let Either::Right(row) = result {
                        first.get_or_insert(row);
                    }
                }
            }
            lease.keep();
            Ok(first)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(async move {
            let mut lease = self.lease().await?;
            let statement = lease.conn().prepare_with(sql, parameters).await?;
            lease.keep();
            Ok(statement)
        })
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(async move {
            let mut lease = self.lease().await?;
            let described = lease.conn().describe(sql).await?;
            lease.keep();
            Ok(described)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;
    use sqlx::any::AnyPoolOptions;

    use super::*;

    async fn conns() -> Conns {
        conns_of(2).await
    }

    async fn conns_of(max: u32) -> Conns {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(2))
            .idle_timeout(None)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        Conns::new(pool)
    }

    async fn one(conns: &Conns) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("select 1").fetch_one(conns).await
    }

    #[tokio::test]
    async fn a_completed_statement_leaves_its_connection_for_the_next() {
        let conns = conns().await;
        for _ in 0..5 {
            assert_eq!(one(&conns).await.unwrap(), 1);
            assert_eq!(conns.shelf().kept.len(), 1);
        }
        sqlx::query("create table t (x integer)")
            .execute(&conns)
            .await
            .unwrap();
        let rows: Vec<i64> = sqlx::query_scalar("select x from t")
            .fetch_all(&conns)
            .await
            .unwrap();
        assert!(rows.is_empty());
        // One connection served every statement: the kept one was taken each time.
        assert_eq!(conns.pool().size(), 1);
        assert_eq!(conns.shelf().kept.len(), 1);
    }

    #[tokio::test]
    async fn a_failed_or_abandoned_statement_gives_its_connection_back_to_sqlx() {
        let conns = conns().await;
        assert!(sqlx::query("select * from no_such_table")
            .execute(&conns)
            .await
            .is_err());
        assert!(conns.shelf().kept.is_empty());
        one(&conns).await.unwrap();
        assert_eq!(conns.shelf().kept.len(), 1);
        // Started on the kept connection (a count long enough to be still running after
        // one poll), then dropped before it completed.
        let mut started = Box::pin(
            sqlx::query_scalar::<_, i64>(
                "with recursive c(x) as (select 1 union all select x + 1 from c \
                 where x < 3000000) select count(*) from c",
            )
            .fetch_one(&conns),
        );
        assert!((&mut started).now_or_never().is_none());
        assert!(conns.shelf().kept.is_empty());
        drop(started);
        assert!(
            conns.shelf().kept.is_empty(),
            "an abandoned statement's connection is not kept"
        );
        // sqlx checked what came back and hands it out again.
        assert_eq!(one(&conns).await.unwrap(), 1);
    }

    /// sqlx's `Any` drivers stop at the first row (or, with none yet, at the first result):
    /// kept like that, a script's connection would stay inside its transaction.
    #[tokio::test]
    async fn a_statement_asked_for_one_row_is_still_read_to_the_end() {
        let conns = conns_of(1).await;
        let x: Option<i64> = sqlx::query_scalar(
            "begin immediate; create table t (x integer); insert into t values (7); \
             select x from t; commit",
        )
        .fetch_optional(&conns)
        .await
        .unwrap();
        assert_eq!(x, Some(7));
        assert_eq!(conns.shelf().kept.len(), 1);
        // On the same connection (the pool has one): not inside the script's transaction.
        sqlx::query("begin immediate; commit")
            .execute(&conns)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn transactions_and_acquires_take_the_kept_connection_first() {
        let conns = conns().await;
        one(&conns).await.unwrap();
        let mut tx = conns.begin().await.unwrap();
        assert!(conns.shelf().kept.is_empty());
        assert_eq!(
            conns.pool().size(),
            1,
            "the transaction took the kept connection"
        );
        sqlx::query("select 1").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        // sqlx checks the connection the transaction gives back in a task of its own.
        tokio::time::sleep(Duration::from_millis(50)).await;
        one(&conns).await.unwrap();
        let held = conns.acquire().await.unwrap();
        assert!(conns.shelf().kept.is_empty());
        assert_eq!(
            conns.pool().size(),
            1,
            "the acquire took the kept connection"
        );
        drop(held);
    }

    /// Callers already waiting on sqlx's pool get the connections statements finish with;
    /// kept, they would wait until sqlx's acquire timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_waiting_for_a_connection_get_the_ones_statements_finish_with() {
        let conns = conns_of(1).await;
        let statements: Vec<_> = (0..32)
            .map(|_| {
                let conns = conns.clone();
                tokio::spawn(async move { one(&conns).await })
            })
            .collect();
        for statement in statements {
            assert_eq!(statement.await.unwrap().unwrap(), 1);
        }
        assert_eq!(conns.shelf().waiting, 0);
    }

    /// A connection never unused long enough to go back still meets sqlx's check (and its
    /// maximum lifetime) every round.
    #[tokio::test]
    async fn busy_connections_go_back_to_sqlx_every_round() {
        sqlx::any::install_default_drivers();
        let returns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&returns);
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .after_release(move |_, _| {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Box::pin(async { Ok(true) })
            })
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let conns = Conns::giving_all_back_every(pool, KEEP_FOR * 2);
        let start = Instant::now();
        while start.elapsed() < KEEP_FOR * 7 {
            one(&conns).await.unwrap();
            tokio::time::sleep(KEEP_FOR / 5).await;
        }
        // A round every 2 × KEEP_FOR (the beat's ticks may land late on a busy machine, and
        // each round gives back the one connection at most once).
        let returned = returns.load(std::sync::atomic::Ordering::Relaxed);
        let rounds = (start.elapsed().as_millis() / (KEEP_FOR * 2).as_millis()) as usize;
        assert!(
            (1..=rounds + 1).contains(&returned),
            "{returned} returns in {rounds} rounds"
        );
    }

    #[tokio::test]
    async fn kept_connections_go_back_to_sqlx_once_unused() {
        let conns = conns().await;
        one(&conns).await.unwrap();
        assert_eq!(conns.shelf().kept.len(), 1);
        tokio::time::sleep(KEEP_FOR * 2 + Duration::from_millis(100)).await;
        assert!(conns.shelf().kept.is_empty());
        // sqlx sees it idle again, so its idle timeout can close it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(conns.pool().num_idle(), 1);
        assert_eq!(conns.size_and_idle(), (1, 1));
    }
}
