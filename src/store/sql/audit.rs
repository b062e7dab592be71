//! The audit trail: [`AuditStore`] on SQL. Events that belong to a change are written by
//! that change's transaction ([`super::Tx::audit`]); these are the stand-alone ones, the
//! readers, and the hash chain's sealer and purge (decision 0023).

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::{insert_audit, Row, SqlStore};
use crate::audit::chain::{self, ChainHead, ChainRow, Checkpoint, Tagger};
use crate::audit::AuditEvent;
use crate::store::{AuditFilter, AuditRecord, AuditStore, Backend, StoreError, SEAL_ROUND_MIN};

const CHAIN_COLUMNS: &str = "id, seq, prev_hash, hash, created_at, kind, actor, client_id, \
                             account_id, source_ip, user_agent, details";

/// Rows per `update … from (values …)` when sealing: four values each, well under both
/// dialects' limits on bound parameters.
const SEAL_BATCH: usize = 500;

fn chain_row(row: &AnyRow) -> Result<ChainRow, StoreError> {
    let row = Row::new(row);
    Ok(ChainRow {
        id: row.get("id")?,
        seq: row.get("seq")?,
        prev_hash: row.get("prev_hash")?,
        hash: row.get("hash")?,
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

/// The chain positions and hashes of sealed events, in statements of at most
/// [`SEAL_BATCH`] rows.
async fn write_links(
    tx: &mut super::Tx,
    links: &[(i64, i64, String, String)],
) -> Result<(), StoreError> {
    for batch in links.chunks(SEAL_BATCH) {
        let values: Vec<String> = (0..batch.len())
            .map(|i| {
                let p = 4 * i;
                format!(
                    "(cast(${} as bigint), cast(${} as bigint), ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4
                )
            })
            .collect();
        // Columns of a `values` list are column1, column2 … in both dialects.
        let sql = format!(
            "update audit_event set seq = v.column2, prev_hash = v.column3, \
             hash = v.column4 from (values {}) as v where audit_event.id = v.column1",
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
            ("account_id", &filter.account_id),
            ("client_id", &filter.client_id),
            ("kind", &filter.kind),
        ] {
            if let Some(v) = value {
                texts.push(v);
                conditions.push(format!("{column} = ${}", texts.len()));
            }
        }
        for (condition, value) in [
            ("created_at >=", filter.since),
            ("created_at <", filter.until),
            ("id >", filter.after_id),
        ] {
            if let Some(v) = value {
                numbers.push(v);
                conditions.push(format!("{condition} ${}", texts.len() + numbers.len()));
            }
        }
        let sql = format!(
            "select {CHAIN_COLUMNS} from audit_event {} order by id {} limit ${}",
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
            // The head before the events: had another sealer committed between the two reads,
            // these events could already be in the chain while the head read was its new one,
            // and the compare-and-set below would not notice.
            let head = sqlx::query("select seq, hash from audit_chain where id = 1")
                .fetch_one(&self.pool)
                .await
                .map_err(StoreError::Unavailable)?;
            let head = Row::new(&head);
            let (first, mut hash): (i64, String) = (head.get("seq")?, head.get("hash")?);
            let rows = sqlx::query(&format!(
                "select {CHAIN_COLUMNS} from audit_event where seq is null order by id limit $1"
            ))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
            // Most rounds find nothing: a read answers that without a write or a commit.
            if rows.is_empty() {
                return Ok(0);
            }
            let mut seq = first;
            let mut links = Vec::with_capacity(rows.len());
            for row in &rows {
                let row = chain_row(row)?;
                seq += 1;
                let next = chain::link(&hash, &row, seq);
                links.push((
                    row.id,
                    seq,
                    std::mem::replace(&mut hash, next.clone()),
                    next,
                ));
            }
            let mut tx = self.begin_housekeeping().await?;
            // The head first: a write (SQLite's rule, see mod.rs) that makes concurrent
            // sealers take turns; it finds nothing if one of them got there first.
            let moved = sqlx::query(
                "update audit_chain set seq = $1, hash = $2, tag = $3, sealed_at = $4 \
                 where id = 1 and seq = $5",
            )
            .bind(seq)
            .bind(&hash)
            .bind(tag(seq, &hash))
            .bind(now)
            .bind(first)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
            if moved.rows_affected() == 0 {
                tx.rollback().await?;
                continue;
            }
            write_links(&mut tx, &links).await?;
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
        let unsealed: i64 =
            sqlx::query_scalar("select count(*) from audit_event where seq is null")
                .fetch_one(&self.pool)
                .await
                .map_err(StoreError::Unavailable)?;
        Ok((head, checkpoint, unsealed))
    }

    async fn sealed_audit(&self, after: i64, limit: i64) -> Result<Vec<ChainRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "select {CHAIN_COLUMNS} from audit_event where seq > $1 order by seq limit $2"
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
        let first_kept: Option<i64> = sqlx::query_scalar(
            "select min(seq) from audit_event where seq is not null and created_at >= $1",
        )
        .bind(before)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?;
        let cut = first_kept
            .map_or(head, |first| first - 1)
            .min(start + limit);
        if cut <= start {
            tx.rollback().await?;
            return Ok(0);
        }
        let hash: Option<String> =
            sqlx::query_scalar("select hash from audit_event where seq = $1")
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
        let deleted = sqlx::query("delete from audit_event where seq <= $1")
            .bind(cut)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?
            .rows_affected();
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
