//! The audit trail: [`AuditStore`] on SQL. Events that belong to a change are written by
//! that change's transaction ([`super::Tx::audit`]); these are the stand-alone ones, the
//! readers, and the hash chain's sealer and purge (decisions 0023 and 0041).

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::{insert_audit, Row, SqlStore};
use crate::audit::chain::{self, ChainHead, ChainRow, Checkpoint, Tagger};
use crate::audit::AuditEvent;
use crate::store::{AuditFilter, AuditRecord, AuditStore, Backend, StoreError, SEAL_ROUND_MIN};

/// An event's own columns; `e` is `audit_event`.
const EVENT_COLUMNS: &str = "e.id, e.created_at, e.kind, e.actor, e.client_id, e.account_id, \
                             e.source_ip, e.user_agent, e.details";

/// An event with its link, if it has one; `l` is `audit_link`.
const CHAIN_COLUMNS: &str = "e.id, l.seq, l.prev_hash, l.hash, e.created_at, e.kind, e.actor, \
                             e.client_id, e.account_id, e.source_ip, e.user_agent, e.details";

/// Postgres: the events a snapshot (`$1`, as text) did not see: its transaction began after
/// it (`xact`, an `xid8` as a `bigint`, at or past its `xmax`) or was still running (in its
/// in-progress list). Both are index lookups on `xact`, however long some other transaction
/// keeps the snapshot's `xmin` back. The two are read from the snapshot's text
/// (`xmin:xmax:xip,…`) by immutable functions, so that the planner, given the values, folds
/// them into constants and estimates the lookups from the index (through `pg_snapshot_xip`
/// it guessed a third of the table and scanned it all). Not also "and no link yet": for
/// that the planner hashed every link of the trail each round (37 ms a round in the bench,
/// growing with the trail); the state kept in the head says exactly what is sealed.
const UNSEEN_PG: &str = "(e.xact >= cast(split_part($1, ':', 2) as bigint) \
     or e.xact = any(cast(string_to_array(nullif(split_part($1, ':', 3), ''), ',') as bigint[])))";

/// Postgres: seen by the snapshot `$2` (as text).
const SEEN_BY_2: &str =
    "pg_visible_in_snapshot(cast(cast(e.xact as text) as xid8), cast($2 as pg_snapshot))";

/// Every event without a link: what a round reads when the head's snapshot cannot tell
/// (decision 0041: after migration 0015, or restored into another cluster). A scan of the
/// whole trail, until a round catches up and stores a snapshot of this cluster.
const UNLINKED: &str = "not exists (select 1 from audit_link l where l.event_id = e.id)";

/// Rows per insert of links: four values each, well under both dialects' limits on bound
/// parameters.
const SEAL_BATCH: usize = 500;

/// An event read without its link (the sealer's read).
fn event_row(row: &AnyRow) -> Result<ChainRow, StoreError> {
    let row = Row::new(row);
    Ok(ChainRow {
        id: row.get("id")?,
        seq: None,
        prev_hash: None,
        hash: None,
        created_at: row.get("created_at")?,
        kind: row.get("kind")?,
        actor: row.get("actor")?,
        client_id: row.get("client_id")?,
        account_id: row.get("account_id")?,
        source_ip: row.get("source_ip")?,
        user_agent: row.get("user_agent")?,
        details: row.get("details")?,
    })
}

/// An event read with [`CHAIN_COLUMNS`].
fn chain_row(row: &AnyRow) -> Result<ChainRow, StoreError> {
    let link = Row::new(row);
    Ok(ChainRow {
        seq: link.get("seq")?,
        prev_hash: link.get("prev_hash")?,
        hash: link.get("hash")?,
        ..event_row(row)?
    })
}

fn record(row: &AnyRow) -> Result<AuditRecord, StoreError> {
    let chained = chain_row(row)?;
    Ok(AuditRecord {
        id: chained.id,
        event: AuditEvent {
            created_at: chained.created_at,
            kind: chained.kind,
            actor: chained.actor,
            client_id: chained.client_id,
            account_id: chained.account_id,
            source_ip: chained.source_ip,
            user_agent: chained.user_agent,
            details: Row::new(row).json("details")?,
        },
        seq: chained.seq,
        prev_hash: chained.prev_hash,
        hash: chained.hash,
    })
}

/// Where the chain's head says sealing stands (see migration 0015).
struct Head {
    seq: i64,
    hash: String,
    sealed_snapshot: Option<String>,
    partial_snapshot: Option<String>,
    partial_through: Option<i64>,
    sealed_through: Option<i64>,
}

const HEAD_COLUMNS: &str =
    "seq, hash, sealed_snapshot, partial_snapshot, partial_through, sealed_through";

fn head_from(row: &AnyRow) -> Result<Head, StoreError> {
    let row = Row::new(row);
    Ok(Head {
        seq: row.get("seq")?,
        hash: row.get("hash")?,
        sealed_snapshot: row.get("sealed_snapshot")?,
        partial_snapshot: row.get("partial_snapshot")?,
        partial_through: row.get("partial_through")?,
        sealed_through: row.get("sealed_through")?,
    })
}

/// Postgres: what the head says a round must read (migration 0015, decision 0041).
enum Mode {
    /// Every event without a link.
    Rebasing,
    /// The events the head's snapshot did not see.
    Unseen(String),
    /// A round stopped at its limit: the events its snapshot `1` saw and the head's snapshot
    /// `0` did not, after event id `2`, before any the first did not see either.
    Draining(String, String, i64),
}

/// One round's read: the head, the events to link in id order, and (Postgres) the mode and
/// the snapshot they were read with.
struct Round {
    head: Head,
    rows: Vec<ChainRow>,
    pg: Option<(Mode, String)>,
}

/// The links of sealed events, in inserts of at most [`SEAL_BATCH`] rows.
async fn write_links(
    tx: &mut super::Tx,
    links: &[(i64, i64, String, String)],
) -> Result<(), StoreError> {
    for batch in links.chunks(SEAL_BATCH) {
        let values: Vec<String> = (0..batch.len())
            .map(|i| {
                let p = 4 * i;
                format!("(${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4)
            })
            .collect();
        let sql = format!(
            "insert into audit_link (event_id, seq, prev_hash, hash) values {}",
            values.join(", ")
        );
        // Not kept prepared: each batch size is a text of its own (up to 2,000 parameters),
        // and every pooled connection would keep each size it ever ran, megabytes held for a
        // statement that runs about once a second.
        let mut q = sqlx::query(&sql).persistent(false);
        for (id, seq, prev, hash) in batch {
            q = q
                .bind(*id)
                .bind(*seq)
                .bind(prev.as_str())
                .bind(hash.as_str());
        }
        q.execute(&mut **tx)
            .await
            .map_err(StoreError::Unavailable)?;
    }
    Ok(())
}

impl SqlStore {
    async fn head(&self) -> Result<Head, StoreError> {
        let row = sqlx::query(&format!(
            "select {HEAD_COLUMNS} from audit_chain where id = 1"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?;
        head_from(&row)
    }

    /// Postgres: the head, its mode and the snapshot of `tx` (which must be repeatable read,
    /// so that later reads in it see what this snapshot saw).
    async fn pg_head(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<(Head, Mode, String), StoreError> {
        // Rebasing also when the head's snapshots or the events' transaction ids cannot be
        // this cluster's: a snapshot past this one, or an event seen now whose transaction
        // is not before this snapshot (in one cluster it always is). Restored into another
        // cluster, for example. (Ids that merely fall inside this cluster's range are not
        // told apart: decision 0041 says what then.)
        let row = sqlx::query(&format!(
            "select {HEAD_COLUMNS}, pg_current_snapshot()::text as now, \
             coalesce(sealed_snapshot is null \
                      or pg_snapshot_xmax(pg_current_snapshot()) \
                         < pg_snapshot_xmax(cast(sealed_snapshot as pg_snapshot)) \
                      or pg_snapshot_xmax(pg_current_snapshot()) \
                         < pg_snapshot_xmax(cast(partial_snapshot as pg_snapshot)) \
                      or (select max(xact) from audit_event) \
                         >= cast(cast(pg_snapshot_xmax(pg_current_snapshot()) as text) \
                                 as bigint), false) \
             as rebasing from audit_chain where id = 1"
        ))
        .fetch_one(&mut **tx)
        .await
        .map_err(StoreError::Unavailable)?;
        let head = head_from(&row)?;
        let fields = Row::new(&row);
        let now: String = fields.get("now")?;
        let mode = match (
            fields.get::<bool>("rebasing")?,
            &head.sealed_snapshot,
            &head.partial_snapshot,
            head.partial_through,
        ) {
            (false, Some(sealed), None, _) => Mode::Unseen(sealed.clone()),
            (false, Some(sealed), Some(partial), Some(after)) => {
                Mode::Draining(sealed.clone(), partial.clone(), after)
            }
            _ => Mode::Rebasing,
        };
        Ok((head, mode, now))
    }

    /// A repeatable-read, read-only transaction: one snapshot for the head and the events.
    /// Its mode is part of `begin`: one round trip, not a `begin` and a `set transaction`.
    pub(super) async fn pg_snapshot_tx(
        &self,
    ) -> Result<sqlx::Transaction<'_, sqlx::Any>, StoreError> {
        self.pool
            .begin_with("begin isolation level repeatable read, read only")
            .await
            .map_err(StoreError::Unavailable)
    }

    /// Runs `sql(condition)`, a query of integers over `audit_event e`, where `condition`
    /// holds for exactly the events not sealed yet (committed ones) and takes its values from
    /// `$1` on. On Postgres in one snapshot with the head that says which those are.
    async fn over_unsealed(
        &self,
        sql: impl FnOnce(&str) -> String,
    ) -> Result<Vec<i64>, StoreError> {
        enum Bind {
            Text(String),
            Int(i64),
        }
        let mut tx = match self.backend {
            Backend::Postgres => Some(self.pg_snapshot_tx().await?),
            Backend::Sqlite => None,
        };
        let (condition, binds) = match tx.as_mut() {
            None => {
                let head = self.head().await?;
                let through = head.sealed_through.unwrap_or(0);
                (
                    format!("e.id > $1 and {UNLINKED}"),
                    vec![Bind::Int(through)],
                )
            }
            Some(tx) => match Self::pg_head(tx).await?.1 {
                Mode::Rebasing => (UNLINKED.to_owned(), Vec::new()),
                Mode::Unseen(sealed) => (UNSEEN_PG.to_owned(), vec![Bind::Text(sealed)]),
                Mode::Draining(sealed, partial, after) => (
                    format!("{UNSEEN_PG} and (not {SEEN_BY_2} or e.id > $3)"),
                    vec![Bind::Text(sealed), Bind::Text(partial), Bind::Int(after)],
                ),
            },
        };
        let sql = sql(&condition);
        // Planned for these values each time (see UNSEEN_PG): not kept prepared, whose
        // generic plan would not know them.
        let mut q = sqlx::query_scalar::<_, i64>(&sql).persistent(false);
        for bind in binds {
            q = match bind {
                Bind::Text(text) => q.bind(text),
                Bind::Int(n) => q.bind(n),
            };
        }
        let values = match tx {
            None => q.fetch_all(&self.pool).await,
            Some(mut tx) => {
                let values = q.fetch_all(&mut *tx).await;
                tx.commit().await.map_err(StoreError::Unavailable)?;
                values
            }
        };
        values.map_err(StoreError::Unavailable)
    }

    /// Events not sealed yet (committed ones: what `tessera audit verify` reports).
    async fn count_unsealed(&self) -> Result<i64, StoreError> {
        let count = self
            .over_unsealed(|unsealed| {
                format!("select count(*) from audit_event e where {unsealed}")
            })
            .await?;
        Ok(count.first().copied().unwrap_or(0))
    }

    /// Reads a round: the head, then up to `limit` events not sealed yet, in id order.
    async fn read_round(&self, limit: i64) -> Result<Round, StoreError> {
        if self.backend == Backend::Sqlite {
            // The head before the events: had another sealer committed between the two
            // reads, these events could already be in the chain while the head read was
            // its new one, and the compare-and-set would not notice.
            let head = self.head().await?;
            let rows = sqlx::query(&format!(
                "select {EVENT_COLUMNS} from audit_event e where e.id > $1 and {UNLINKED} \
                 order by e.id limit $2"
            ))
            .bind(head.sealed_through.unwrap_or(0))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
            let rows = rows.iter().map(event_row).collect::<Result<_, _>>()?;
            return Ok(Round {
                head,
                rows,
                pg: None,
            });
        }
        let mut tx = self.pg_snapshot_tx().await?;
        let (head, mode, now) = Self::pg_head(&mut tx).await?;
        // The inner queries are fenced (`offset 0`) so that they are planned on their own,
        // by the index on `xact`, and never as a walk of the whole table in id order that
        // stops at the limit; planned for these values each time (see UNSEEN_PG).
        let rows = match &mode {
            // All of them in one round, however many: a round that stopped at its limit
            // would scan the trail again, and under load might never catch up. Few wait
            // (the events of a moment around an upgrade or a restore).
            Mode::Rebasing => {
                sqlx::query(&format!(
                    "select {EVENT_COLUMNS} from audit_event e where {UNLINKED} order by e.id"
                ))
                .fetch_all(&mut *tx)
                .await
            }
            Mode::Unseen(sealed) => {
                sqlx::query(&format!(
                    "select {EVENT_COLUMNS} from (select * from audit_event e \
                     where {UNSEEN_PG} offset 0) e order by e.id limit $2"
                ))
                .persistent(false)
                .bind(sealed)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
            }
            Mode::Draining(sealed, partial, after) => {
                sqlx::query(&format!(
                    "select {EVENT_COLUMNS} from (select * from audit_event e \
                     where {UNSEEN_PG} and {SEEN_BY_2} and e.id > $3 \
                     and e.xact < cast(split_part($2, ':', 2) as bigint) offset 0) e \
                     order by e.id limit $4"
                ))
                .persistent(false)
                .bind(sealed)
                .bind(partial)
                .bind(*after)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
            }
        }
        .map_err(StoreError::Unavailable)?;
        tx.commit().await.map_err(StoreError::Unavailable)?;
        let rows = rows.iter().map(event_row).collect::<Result<_, _>>()?;
        Ok(Round {
            head,
            rows,
            pg: Some((mode, now)),
        })
    }
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self.pool.acquire().await.map_err(StoreError::Unavailable)?;
        insert_audit(&mut conn, event).await?;
        // Completed: the connection waits for the next statement instead of going back to
        // sqlx, which would check it with a round trip (decision 0038).
        self.pool.keep(conn);
        // One statement outside a transaction commits by itself: the event is durable now.
        self.hook.committed(std::slice::from_ref(event));
        Ok(())
    }

    async fn search_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut conditions = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        let mut numbers: Vec<i64> = Vec::new();
        for (column, value) in [
            ("e.account_id", &filter.account_id),
            ("e.client_id", &filter.client_id),
            ("e.kind", &filter.kind),
        ] {
            if let Some(v) = value {
                texts.push(v);
                conditions.push(format!("{column} = ${}", texts.len()));
            }
        }
        for (condition, value) in [
            ("e.created_at >=", filter.since),
            ("e.created_at <", filter.until),
            ("e.id >", filter.after_id),
        ] {
            if let Some(v) = value {
                numbers.push(v);
                conditions.push(format!("{condition} ${}", texts.len() + numbers.len()));
            }
        }
        let sql = format!(
            "select {CHAIN_COLUMNS} from audit_event e left join audit_link l on l.event_id = e.id \
             {} order by e.id {} limit ${}",
            if conditions.is_empty() {
                String::new()
            } else {
                format!("where {}", conditions.join(" and "))
            },
            if filter.newest_first { "desc" } else { "asc" },
            texts.len() + numbers.len() + 1
        );
        let mut q = sqlx::query(&sql);
        for t in texts {
            q = q.bind(t);
        }
        for n in numbers {
            q = q.bind(n);
        }
        let rows = q
            .bind(filter.limit)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        rows.iter().map(record).collect()
    }

    async fn seal_audit(
        &self,
        limit: i64,
        now: i64,
        tag: &Tagger<'_>,
    ) -> Result<usize, StoreError> {
        // SQLite: every token write waits while a sealer holds the write turn (5,000 events
        // at a time put 150 ms into the client_credentials p99 at 3,700 tokens/s, 500 still
        // 15 of its 28 ms at 8,400 tokens/s). Postgres writers do not wait for it, and
        // there a smaller batch is only more statements and commits.
        let limit = match self.backend {
            Backend::Sqlite => limit.min(SEAL_ROUND_MIN),
            Backend::Postgres => limit,
        };
        // Only the writes happen in the write turn: the events to link and the chain's head
        // are read, and the links computed, before it, and the write takes the head only if
        // no other sealer (another instance, the CLI) moved it meanwhile, or starts over.
        loop {
            let Round { head, rows, pg } = self.read_round(limit).await?;
            let (first, mut hash) = (head.seq, head.hash.clone());
            let mut seq = first;
            let mut links = Vec::with_capacity(rows.len());
            for row in &rows {
                seq += 1;
                let next = chain::link(&hash, row, seq);
                links.push((
                    row.id,
                    seq,
                    std::mem::replace(&mut hash, next.clone()),
                    next,
                ));
            }
            // What the head says next (decision 0041). A round that took fewer than its
            // limit took all its mode asked for; one that stopped at the limit took them up to
            // its last id.
            let caught_up = i64::try_from(rows.len()).unwrap_or(i64::MAX) < limit;
            let last_id = rows.last().map(|r| r.id);
            let (mut sealed_snapshot, mut partial_snapshot, mut partial_through) = (
                head.sealed_snapshot.clone(),
                head.partial_snapshot.clone(),
                head.partial_through,
            );
            // Rebasing: the snapshot whose unseen transaction ids the linked events must not
            // carry any more.
            let mut forget_unseen_by: Option<String> = None;
            // Most rounds find nothing: a read answers that without a write or a commit,
            // unless the head has a round's worth of state to move on from.
            let nothing_to_move = matches!(pg, None | Some((Mode::Unseen(_), _)));
            if links.is_empty() && nothing_to_move {
                return Ok(0);
            }
            match (pg, caught_up) {
                // SQLite: the events after the last id sealed, in id order.
                (None, _) => {}
                // Everything the head's snapshot did not see and this round's did is sealed.
                (Some((Mode::Unseen(_), now)), true) => sealed_snapshot = Some(now),
                // This round's snapshot is drained in id order before anything later.
                (Some((Mode::Unseen(_), now)), false) => {
                    (partial_snapshot, partial_through) = (Some(now), last_id);
                }
                (Some((Mode::Draining(_, partial, _), _)), true) => {
                    (sealed_snapshot, partial_snapshot, partial_through) =
                        (Some(partial), None, None);
                }
                (Some((Mode::Draining(..), _)), false) => partial_through = last_id,
                // Every event this round's snapshot saw has a link now. Transaction ids the
                // events carry from another cluster mean nothing here: forgotten, for the
                // linked ones.
                (Some((Mode::Rebasing, now)), _) => {
                    forget_unseen_by = Some(now.clone());
                    (sealed_snapshot, partial_snapshot, partial_through) = (Some(now), None, None);
                }
            }
            let sealed_through = match self.backend {
                Backend::Sqlite => last_id.or(head.sealed_through),
                Backend::Postgres => None,
            };
            let mut tx = self.begin_housekeeping().await?;
            // The head first: a write (SQLite's rule, see mod.rs) that makes concurrent
            // sealers take turns; it finds nothing if one of them got there first.
            let moved = sqlx::query(
                "update audit_chain set seq = $1, hash = $2, tag = $3, sealed_at = $4, \
                 sealed_snapshot = $5, partial_snapshot = $6, partial_through = $7, \
                 sealed_through = $8 where id = 1 and seq = $9",
            )
            .bind(seq)
            .bind(&hash)
            .bind(tag(seq, &hash))
            .bind(now)
            .bind(sealed_snapshot)
            .bind(partial_snapshot)
            .bind(partial_through)
            .bind(sealed_through)
            .bind(first)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
            if moved.rows_affected() == 0 {
                tx.rollback().await?;
                continue;
            }
            write_links(&mut tx, &links).await?;
            // Only the linked events this snapshot would count as unseen could be taken again
            // (two index lookups; an id it saw cannot belong to a transaction that runs later).
            if let Some(snapshot) = forget_unseen_by {
                sqlx::query(&format!(
                    "update audit_event e set xact = null where {UNSEEN_PG} and not {UNLINKED}"
                ))
                .persistent(false)
                .bind(snapshot)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::Unavailable)?;
            }
            tx.commit().await?;
            return Ok(links.len());
        }
    }

    async fn audit_chain(&self) -> Result<(ChainHead, Option<Checkpoint>, i64), StoreError> {
        let head = sqlx::query("select seq, hash, tag from audit_chain where id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        let head = Row::new(&head);
        let head = ChainHead {
            seq: head.get("seq")?,
            hash: head.get("hash")?,
            tag: head.get("tag")?,
        };
        let checkpoint = sqlx::query(
            "select seq, hash, tag, created_at from audit_checkpoint order by seq desc limit 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?;
        let checkpoint = match checkpoint {
            None => None,
            Some(row) => {
                let row = Row::new(&row);
                Some(Checkpoint {
                    seq: row.get("seq")?,
                    hash: row.get("hash")?,
                    tag: row.get("tag")?,
                    created_at: row.get("created_at")?,
                })
            }
        };
        let unsealed: i64 = self.count_unsealed().await?;
        Ok((head, checkpoint, unsealed))
    }

    async fn rebase_audit(&self) -> Result<bool, StoreError> {
        // SQLite: its writers take turns and its ids only grow, so there is nothing to
        // rebase.
        if self.backend == Backend::Sqlite {
            return Ok(false);
        }
        let mut tx = self.begin_housekeeping().await?;
        sqlx::query(
            "update audit_chain set sealed_snapshot = null, partial_snapshot = null, \
             partial_through = null where id = 1",
        )
        .execute(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?;
        tx.commit().await?;
        Ok(true)
    }

    async fn stranded_audit(&self) -> Result<Vec<i64>, StoreError> {
        // In one snapshot with what waits to be sealed: an event committed in between would
        // otherwise look stranded.
        self.over_unsealed(|unsealed| {
            format!(
                "select e.id from audit_event e where {UNLINKED} \
                 and not coalesce({unsealed}, false) order by e.id limit 10"
            )
        })
        .await
    }

    async fn sealed_audit(&self, after: i64, limit: i64) -> Result<Vec<ChainRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {CHAIN_COLUMNS} from audit_link l join audit_event e on e.id = l.event_id \
             where l.seq > $1 order by l.seq limit $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?;
        rows.iter().map(chain_row).collect()
    }

    async fn purge_audit(
        &self,
        before: i64,
        limit: i64,
        now: i64,
        tag: &Tagger<'_>,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin_housekeeping().await?;
        // The head row first, as the sealer does: purges and seals take turns.
        let head: i64 = sqlx::query_scalar(
            "update audit_chain set sealed_at = sealed_at where id = 1 returning seq",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?;
        let start: Option<i64> = sqlx::query_scalar("select max(seq) from audit_checkpoint")
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        let start = start.unwrap_or(0);
        // Only a prefix of the chain can go: up to the first sealed event still within
        // retention (events are sealed about in the order they happen, not exactly).
        // The links in order, each looked up in the events, up to the first within
        // retention: old events come first, so this stops early.
        let first_kept: Option<i64> = sqlx::query_scalar(
            "select l.seq from audit_link l join audit_event e on e.id = l.event_id \
             where e.created_at >= $1 order by l.seq limit 1",
        )
        .bind(before)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?;
        let cut = first_kept
            .map_or(head, |first| first - 1)
            .min(start + limit);
        if cut <= start {
            tx.rollback().await?;
            return Ok(0);
        }
        let hash: Option<String> = sqlx::query_scalar(
            "select l.hash from audit_link l join audit_event e on e.id = l.event_id \
                 where l.seq = $1",
        )
        .bind(cut)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?
        .flatten();
        let Some(hash) = hash else {
            // The event the checkpoint would name is gone: the chain is already broken, and
            // purging would hide where. `tessera audit verify` says more.
            tx.rollback().await?;
            return Err(StoreError::Corrupt(format!(
                "audit event seq {cut} is missing; not purging (run `tessera audit verify`)"
            )));
        };
        let deleted = sqlx::query(
            "delete from audit_event where id in (select event_id from audit_link where seq <= $1)",
        )
        .bind(cut)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?
        .rows_affected();
        sqlx::query("delete from audit_link where seq <= $1")
            .bind(cut)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        sqlx::query("delete from audit_checkpoint where seq < $1")
            .bind(cut)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        sqlx::query(
            "insert into audit_checkpoint (seq, hash, tag, created_at) values ($1, $2, $3, $4)",
        )
        .bind(cut)
        .bind(&hash)
        .bind(tag(cut, &hash))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?;
        tx.commit().await?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    /// The sealer finds unseen events through the index on `xact` several times a second.
    /// As a BRIN index (tried in decision 0049) every lookup read all the trail's pages not
    /// summarized yet, tens of megabytes a round under load: it must stay a B-tree, and the
    /// time index, which only searches use, is the BRIN one.
    #[tokio::test]
    async fn the_sealers_index_on_xact_is_a_btree_on_postgres() {
        let Some(store) = super::super::postgres_store().await else {
            return;
        };
        let method = |index: &'static str| {
            sqlx::query_scalar::<_, String>(
                "select a.amname::text from pg_class c join pg_am a on a.oid = c.relam \
                 where c.relname = $1",
            )
            .bind(index)
            .fetch_one(&store.pool)
        };
        assert_eq!(method("audit_event_xact_idx").await.unwrap(), "btree");
        assert_eq!(method("audit_event_created_idx").await.unwrap(), "brin");
    }
}
