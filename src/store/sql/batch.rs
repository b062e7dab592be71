//! Write combining for new tokens (docs/decisions/0031-token-write-combining.md).
//!
//! Issuing tokens is the busiest write an authorization server makes, and on its own each
//! issue is one small statement and one commit: the database's cost per token is then
//! almost all per-statement and per-commit overhead (parse, plan, executor start, WAL flush),
//! not the rows. Concurrent issues are therefore handed to one task that writes whatever has
//! queued up since its last write as one statement (Postgres) or one transaction (SQLite): a
//! lone request waits for nobody, and under load the overhead is shared by the whole batch.
//! Each caller still returns only after its rows and its audit event are committed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::SqlStore;
use crate::audit::AuditEvent;
use crate::store::{Backend, StoreError, TokenRecord};

/// Most issues written by one statement: bounds the statement's size (Postgres allows 65,535
/// parameters; a batch of code-flow issues binds about 1,500) and the number of distinct
/// statement texts each connection caches.
const MAX_BATCH: usize = 32;

/// Most issues waiting for the writer; further callers wait for room (backpressure, not an
/// unbounded queue).
const QUEUE: usize = 1024;

/// One caller's issue: its rows, its audit event, and where the outcome goes.
struct Issue {
    tokens: Vec<TokenRecord>,
    audit: AuditEvent,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The sending side, kept by the store; the task ends when the last store clone is dropped.
#[derive(Clone)]
pub(super) struct TokenWrites {
    queue: mpsc::Sender<Issue>,
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
        tokio::spawn(run(store, rx, Arc::new(Semaphore::new(in_flight))));
        TokenWrites { queue }
    }

    /// Writes `tokens` and `audit` in some batch; `Err(issue)` hands the issue back when the
    /// writer is gone (its runtime shut down), for the caller to write itself.
    pub(super) async fn write(
        &self,
        tokens: Vec<TokenRecord>,
        audit: AuditEvent,
    ) -> Result<Result<(), StoreError>, (Vec<TokenRecord>, AuditEvent)> {
        let (done, outcome) = oneshot::channel();
        if let Err(mpsc::error::SendError(issue)) = self
            .queue
            .send(Issue {
                tokens,
                audit,
                done,
            })
            .await
        {
            return Err((issue.tokens, issue.audit));
        }
        // A writer that stopped mid-batch (its runtime shutting down) may or may not have
        // committed it: unavailable, as for a lost connection.
        Ok(outcome
            .await
            .unwrap_or(Err(StoreError::Unavailable(sqlx::Error::WorkerCrashed))))
    }
}

/// How often SQLite's write-ahead log is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

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
    let mut checkpointing: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let first = tokio::select! {
            issue = queue.recv() => match issue {
                Some(issue) => issue,
                None => return,
            },
            _ = tick(&mut checkpoints) => {
                if checkpointing.as_ref().is_none_or(|c| c.is_finished()) {
                    let store = store.clone();
                    checkpointing = Some(tokio::spawn(async move { store.checkpoint().await }));
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

async fn write_batch(store: &SqlStore, mut batch: Vec<Issue>) {
    if batch.len() == 1 {
        let issue = batch.swap_remove(0);
        let outcome = store.insert_tokens_now(&issue.tokens, &issue.audit).await;
        let _ = issue.done.send(outcome);
        return;
    }
    let (issues, dones): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|i| ((i.tokens, i.audit), i.done))
        .unzip();
    match store.insert_token_batch(&issues).await {
        Ok(()) => {
            for done in dones {
                let _ = done.send(Ok(()));
            }
        }
        // One bad issue (a value that must be unique, say) must not fail the others: each
        // is written on its own and gets its own outcome.
        Err(_) => {
            for ((tokens, audit), done) in issues.iter().zip(dones) {
                let _ = done.send(store.insert_tokens_now(tokens, audit).await);
            }
        }
    }
}
