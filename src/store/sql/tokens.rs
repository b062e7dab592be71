//! Access tokens, refresh tokens and API keys: [`TokenStore`] on SQL.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use std::collections::HashSet;
use std::sync::LazyLock;

use super::accounts::{joined_account_from, ACCOUNT_COLUMNS};
use super::batch::{Rotation, Spend, TokenWrite};
use super::grants::{grant_from, GRANT_COLUMNS};
use super::{
    aliased, bind_audit, placeholder_list, placeholders_looking_up, to_json, write_error, AnyQuery,
    Row, SqlStore, AUDIT_COLUMNS, AUDIT_VALUES,
};
use crate::audit::AuditEvent;
use crate::crypto::token::Digest;
use crate::store::Backend;
use crate::store::{
    RefreshAtOnce, StoreError, StoredCredential, TokenKind, TokenRecord, TokenStore,
    FROM_OLD_GRANT_ID, FROM_OLD_SCOPE,
};

fn token_from_row(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    let row = Row::new(row);
    Ok(TokenRecord {
        digest: row.digest("digest")?,
        kind: row.parsed("kind", "token kind", TokenKind::parse)?,
        jti: row.get("jti")?,
        grant_id: row.get("grant_id")?,
        client_id: row.get("client_id")?,
        account_id: row.get("account_id")?,
        scope: row.get("scope")?,
        label: row.get("label")?,
        previous_digest: row.opt_digest("previous_digest")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        used_at: row.get("used_at")?,
        revoked_at: row.get("revoked_at")?,
    })
}

pub(super) const TOKEN_COLUMNS: &str = "digest, kind, grant_id, client_id, account_id, \
     scope, label, previous_digest, created_at, expires_at, used_at, revoked_at, jti";
/// Values per token row.
const TOKEN_VALUES: usize = 13;

/// Binds one token row's values, in `TOKEN_COLUMNS` order.
fn bind_token<'q>(q: AnyQuery<'q>, t: &'q TokenRecord) -> AnyQuery<'q> {
    q.bind(t.digest.as_bytes())
        .bind(t.kind.as_str())
        .bind(&t.grant_id)
        .bind(&t.client_id)
        .bind(&t.account_id)
        .bind(&t.scope)
        .bind(&t.label)
        .bind(t.previous_digest.map(|d| d.as_bytes().to_vec()))
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.used_at)
        .bind(t.revoked_at)
        .bind(&t.jti)
}

/// Postgres: one token row's values with placeholders from `first`, the client id looked up
/// rather than taken as given. The token table has no foreign keys there (decision 0033): a
/// client deleted since the request read it (clients are cached for up to a second) yields
/// a null `client_id`, which the table's check constraint refuses, so the statement fails
/// as the foreign key made it fail, without the foreign key's lock on the client row.
fn token_values(first: usize) -> String {
    placeholders_looking_up(first, TOKEN_VALUES, &[(CLIENT_ID_COLUMN, "client")])
}

/// Where `client_id` is in [`TOKEN_COLUMNS`].
const CLIENT_ID_COLUMN: usize = 3;

/// Postgres: a refresh rotation in one statement. The conditional update is the guard (of
/// concurrent rotations of one token, one finds it unspent; the others wait for its row lock,
/// then find it spent); the new rows and the audit event are written only if it matched.
/// `$1` the old digest, `$2` now, then the new rows, then the audit event.
///
/// Rotations are not combined on Postgres (decision 0031): an update of several tokens
/// named by a JSON array (`= any(array(…))`, or a join) got a generic plan that scanned the
/// whole token table whenever it was first planned while the table was small, as on a new
/// database (the bench: 6.6 ms of Postgres CPU per refresh), and at c = 16 combining them
/// gained nothing measurable (2,015 → 2,018 refreshes/s). `digest = $1` is an index lookup
/// under every plan.
fn rotate_statement(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| token_values(3 + i * TOKEN_VALUES))
        .collect();
    let tokens = if rows == 0 {
        String::new()
    } else {
        format!(
            "t as (insert into token ({TOKEN_COLUMNS}) select * from (values {}) \
             as v ({TOKEN_COLUMNS}) where exists (select 1 from spent)), ",
            values.join(", ")
        )
    };
    format!(
        "with spent as (update token set used_at = $2 where digest = $1 and kind = 'refresh' \
         and used_at is null and revoked_at is null returning 1), {tokens}\
         a as (insert into audit_event \
         ({AUDIT_COLUMNS}) select {} where exists (select 1 from spent)) \
         select count(*) from spent",
        placeholder_list(3 + rows * TOKEN_VALUES, AUDIT_VALUES)
    )
}

/// Postgres: token rows and their audit events in one statement — one round trip and one
/// implicit transaction instead of begin, an insert per row, the audit inserts and commit.
/// (SQLite has no data-modifying `with`, and its statements cost no round trip.)
///
/// The rows come as two JSON arrays (`$1` the tokens, `$2` the events, [`token_json`] and
/// [`event_json`]), so the statement has one shape however many issues a batch holds: with
/// a placeholder per value, each batch size was a statement of its own, prepared and cached
/// by every pooled connection (up to 32 sizes of up to some 700 parameters, megabytes held
/// for nothing after a burst). The client is looked up, not taken as given, as in
/// [`token_values`]; the events keep their order, which the audit chain seals them in.
const INSERT_TOKENS: &str = "with t as (insert into token (digest, kind, grant_id, client_id, \
     account_id, scope, label, previous_digest, created_at, expires_at, used_at, revoked_at, jti) \
     select decode(x.digest, 'hex'), x.kind, x.grant_id, \
     (select c.id from client c where c.id = x.client_id), x.account_id, x.scope, x.label, \
     decode(x.previous_digest, 'hex'), x.created_at, x.expires_at, x.used_at, x.revoked_at, \
     x.jti from json_to_recordset($1::json) as x (digest text, kind text, grant_id text, \
     client_id text, account_id text, scope text, label text, previous_digest text, \
     created_at bigint, expires_at bigint, used_at bigint, revoked_at bigint, jti text)) \
     insert into audit_event (created_at, kind, actor, client_id, account_id, source_ip, \
     user_agent, details) \
     select e.created_at, e.kind, e.actor, e.client_id, e.account_id, e.source_ip, \
     e.user_agent, e.details from rows from (json_to_recordset($2::json) \
     as (created_at bigint, kind text, actor text, client_id text, account_id text, \
     source_ip text, user_agent text, details text)) with ordinality \
     as e (created_at, kind, actor, client_id, account_id, source_ip, user_agent, details, n) \
     order by e.n";

/// SQLite: token writes ([`TokenWrite`]) as one transaction in one call to the connection's
/// thread. Each sqlx statement is a hand-off to that thread and back, two context switches,
/// and they were most of a SQLite token write's CPU (a quarter of a lone refresh's in
/// `perf`): a batch was begin, the rotations' update, the token rows, the events and
/// commit, five hand-offs where this is one.
///
/// `$1` the tokens, `$2` the events, each naming the spend it waits for ([`rows_json`]),
/// `$3` the spends ([`spends_json`]). The rotations' guard is a conditional update (SQLite's
/// one write lock orders concurrent ones), of the tokens first noted in a temporary table
/// (each connection's own) with the time of their spend, which then decides which rows go
/// in and is the answer. SQLite's planner looks the digests up in the primary key whatever
/// the table's size.
///
/// Each row is read from its array once, as JSONB, into a materialized `with`: `json_each`
/// hands an object out as text, converted anew for every reference to `value`, and the
/// fifteen references of a token row made that conversion a tenth of the connection
/// threads' CPU under the bench's refresh load (`perf`, 2026-12-06).
/// The caller rolls back if a statement fails ([`SqlStore::write_sqlite`]).
static SQLITE_WRITE_TOKENS: LazyLock<String> = LazyLock::new(|| {
    let going = "v ->> 'spends' is null \
                 or unhex(v ->> 'spends') in (select digest from temp.spending)";
    format!(
        "begin immediate; \
         create temp table if not exists spending (digest blob primary key, \
         at integer not null); \
         delete from temp.spending; \
         insert into temp.spending (digest, at) select t.digest, s.at \
         from (select unhex(value ->> 'digest') as d, value ->> 'at' as at \
         from json_each($3)) as s \
         join main.token as t on t.digest = s.d \
         where t.kind = 'refresh' and t.used_at is null and t.revoked_at is null; \
         update main.token set used_at = s.at from temp.spending as s \
         where token.digest = s.digest; \
         with r (n, v) as materialized (select key, jsonb(value) from json_each($1)) \
         insert into main.token (digest, kind, grant_id, client_id, \
         account_id, scope, label, previous_digest, created_at, expires_at, used_at, \
         revoked_at, jti) \
         select unhex(v ->> 'digest'), v ->> 'kind', v ->> 'grant_id', \
         v ->> 'client_id', v ->> 'account_id', v ->> 'scope', v ->> 'label', \
         unhex(v ->> 'previous_digest'), v ->> 'created_at', v ->> 'expires_at', \
         v ->> 'used_at', v ->> 'revoked_at', v ->> 'jti' from r where {going} order by n; \
         {}; \
         select lower(hex(digest)) from temp.spending; \
         commit",
        sqlite_events_insert("$2", going)
    )
});

/// SQLite: the insert of the audit events in the JSON array `array` ([`event_json`]'s
/// objects) for which `only` holds (of `v`, each event as JSONB), in the array's order.
pub(super) fn sqlite_events_insert(array: &str, only: &str) -> String {
    format!(
        "with r (n, v) as materialized (select key, jsonb(value) from json_each({array})) \
         insert into main.audit_event ({AUDIT_COLUMNS}) \
         select v ->> 'created_at', v ->> 'kind', v ->> 'actor', v ->> 'client_id', \
         v ->> 'account_id', v ->> 'source_ip', v ->> 'user_agent', v ->> 'details' \
         from r where {only} order by n"
    )
}

/// A token row for [`INSERT_TOKENS`] and [`SQLITE_WRITE_TOKENS`], digests in hex; `spends`
/// the hex digest of the spend it waits for (Postgres ignores it).
fn token_json(t: &TokenRecord, spends: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "digest": t.digest.to_hex(),
        "kind": t.kind.as_str(),
        "grant_id": t.grant_id,
        "client_id": t.client_id,
        "account_id": t.account_id,
        "scope": t.scope,
        "label": t.label,
        "previous_digest": t.previous_digest.as_ref().map(Digest::to_hex),
        "created_at": t.created_at,
        "expires_at": t.expires_at,
        "used_at": t.used_at,
        "revoked_at": t.revoked_at,
        "jti": t.jti,
        "spends": spends,
    })
}

/// An audit event row for [`INSERT_TOKENS`] and [`sqlite_events_insert`] (SQLite's token,
/// session and code writes), its details as the text the table keeps.
pub(super) fn event_json(
    e: &AuditEvent,
    spends: Option<&str>,
) -> Result<serde_json::Value, StoreError> {
    Ok(serde_json::json!({
        "created_at": e.created_at,
        "kind": e.kind,
        "actor": e.actor,
        "client_id": e.client_id,
        "account_id": e.account_id,
        "source_ip": e.source_ip,
        "user_agent": e.user_agent,
        "details": to_json(&e.details)?,
        "spends": spends,
    }))
}

/// The two JSON arrays of [`INSERT_TOKENS`] and [`SQLITE_WRITE_TOKENS`]: `writes`' tokens,
/// their events, each with the spend it waits for.
fn rows_json(writes: &[&TokenWrite]) -> Result<[String; 2], StoreError> {
    let mut tokens = Vec::new();
    let mut events = Vec::with_capacity(writes.len());
    for w in writes {
        let waits_for = w.spends.map(|s| s.digest.to_hex());
        let waits_for = waits_for.as_deref();
        tokens.extend(w.tokens.iter().map(|t| token_json(t, waits_for)));
        events.push(event_json(&w.audit, waits_for)?);
    }
    Ok([to_json(&tokens)?, to_json(&events)?])
}

/// The JSON array of the spends in `writes`.
fn spends_json(writes: &[&TokenWrite]) -> Result<String, StoreError> {
    let spends: Vec<serde_json::Value> = writes
        .iter()
        .filter_map(|w| w.spends)
        .map(|s| serde_json::json!({ "digest": s.digest.to_hex(), "at": s.at }))
        .collect();
    to_json(&spends)
}

/// Whether each write's condition held: no spend, or its spend among those that happened.
fn went_ahead(writes: &[&TokenWrite], spent: &HashSet<String>) -> Vec<bool> {
    writes
        .iter()
        .map(|w| w.spends.is_none_or(|s| spent.contains(&s.digest.to_hex())))
        .collect()
}

/// The writes that were written.
fn going<'a>(writes: &[&'a TokenWrite], written: &[bool]) -> Vec<&'a TokenWrite> {
    writes
        .iter()
        .zip(written)
        .filter(|(_, &w)| w)
        .map(|(&w, _)| w)
        .collect()
}

fn spent_digests(rows: &[AnyRow]) -> Result<HashSet<String>, StoreError> {
    rows.iter()
        .map(|r| sqlx::Row::try_get::<String, _>(r, 0).map_err(StoreError::Unavailable))
        .collect()
}

impl SqlStore {
    /// Writes one [`TokenWrite`] by itself (see [`super::batch`]): whether it was written.
    pub(super) async fn write_token(&self, write: &TokenWrite) -> Result<bool, StoreError> {
        let written = self.write_tokens(&[write]).await?;
        Ok(written.first().copied().unwrap_or(false))
    }

    /// Writes `writes` all or nothing, each on its condition: one statement on Postgres, one
    /// transaction on SQLite. Whether each was written. No two may spend the same token
    /// (one update would see it unspent for both).
    pub(super) async fn write_tokens(
        &self,
        writes: &[&TokenWrite],
    ) -> Result<Vec<bool>, StoreError> {
        let started = std::time::Instant::now();
        let written = if self.backend == Backend::Postgres {
            self.write_tokens_pg(writes).await
        } else {
            self.write_tokens_sqlite(writes).await
        };
        // A failed write is retried one by one by the batch writer: only what committed
        // counts, so that the retries do not count the same writes twice.
        if written.is_ok() {
            crate::metrics::token_write(writes.len(), started.elapsed());
        }
        written
    }

    /// SQLite: [`SQLITE_WRITE_TOKENS`] (see [`SqlStore::write_sqlite`]).
    async fn write_tokens_sqlite(&self, writes: &[&TokenWrite]) -> Result<Vec<bool>, StoreError> {
        let [tokens, events] = rows_json(writes)?;
        let spends = spends_json(writes)?;
        let (rows, took) = self
            .write_sqlite(
                &SQLITE_WRITE_TOKENS,
                [tokens, events, spends].into(),
                "token",
            )
            .await?;
        let spent = spent_digests(&rows)?;
        let written = went_ahead(writes, &spent);
        let events: Vec<AuditEvent> = going(writes, &written)
            .iter()
            .map(|w| w.audit.clone())
            .collect();
        self.committed(&events, took);
        Ok(written)
    }

    /// SQLite: a write transaction `sql` (from its `begin immediate` to its `commit`) with
    /// `binds`, in the write turn: the rows it selected, and how long it took, the wait for
    /// the turn included. Run in a task of its own: a caller that goes away mid-call must
    /// not leave the transaction open on a pooled connection (sqlx stops running a call's
    /// statements when nobody waits for them any more). Nothing of a failed call stays.
    pub(super) async fn write_sqlite(
        &self,
        sql: &'static str,
        binds: Vec<String>,
        what: &'static str,
    ) -> Result<(Vec<AnyRow>, std::time::Duration), StoreError> {
        let store = self.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let _turn = store.write_turn().await;
            let mut conn = store
                .pool
                .acquire()
                .await
                .map_err(StoreError::Unavailable)?;
            crate::metrics::pool_acquired(started.elapsed());
            let mut q = sqlx::query(sql);
            for bind in binds {
                q = q.bind(bind);
            }
            match q.fetch_all(&mut *conn).await {
                Ok(rows) => {
                    // Committed, nothing left open: the next statement may have it unchecked.
                    store.pool.keep(conn);
                    Ok((rows, started.elapsed()))
                }
                Err(e) => {
                    // A connection that cannot even roll back is not given back to the pool.
                    if sqlx::query("rollback").execute(&mut *conn).await.is_err() {
                        conn.close_on_drop();
                    }
                    Err(write_error(what)(e))
                }
            }
        })
        .await
        // Panicked, or the runtime is shutting down: unknown whether it committed, as for
        // a lost connection.
        .unwrap_or(Err(StoreError::Unavailable(sqlx::Error::WorkerCrashed)))
    }

    /// Postgres: issues in one statement ([`INSERT_TOKENS`]); a rotation, which the batch
    /// writer never gets there ([`TokenStore::rotate_refresh`]), in its own
    /// ([`rotate_statement`]).
    async fn write_tokens_pg(&self, writes: &[&TokenWrite]) -> Result<Vec<bool>, StoreError> {
        if writes.iter().all(|w| w.spends.is_none()) {
            self.insert_tokens_pg(writes).await?;
            return Ok(vec![true; writes.len()]);
        }
        let mut written = Vec::with_capacity(writes.len());
        for write in writes {
            written.push(match write.spends {
                Some(spend) => self.rotate_pg(spend, write).await?,
                None => {
                    self.insert_tokens_pg(&[write]).await?;
                    true
                }
            });
        }
        Ok(written)
    }

    async fn insert_tokens_pg(&self, writes: &[&TokenWrite]) -> Result<(), StoreError> {
        let [tokens, events] = rows_json(writes)?;
        let q = sqlx::query(INSERT_TOKENS).bind(tokens).bind(events);
        let events: Vec<AuditEvent> = writes.iter().map(|w| w.audit.clone()).collect();
        self.execute_audited(q, &events, "token").await?;
        Ok(())
    }

    async fn rotate_pg(&self, spend: Spend, write: &TokenWrite) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let sql = rotate_statement(write.tokens.len());
        let mut q = sqlx::query(&sql)
            .bind(spend.digest.as_bytes())
            .bind(spend.at);
        for t in &write.tokens {
            q = bind_token(q, t);
        }
        let started = std::time::Instant::now();
        let row = bind_audit(q, &write.audit)?
            .fetch_one(&self.pool)
            .await
            .map_err(write_error("token"))?;
        crate::metrics::audit_appended(started.elapsed());
        let spent: i64 = sqlx::Row::try_get(&row, 0).map_err(StoreError::Unavailable)?;
        if spent > 0 {
            self.hook.committed(std::slice::from_ref(&write.audit));
        }
        Ok(spent > 0)
    }

    /// Through the batch writer when there is one (not in the writer's own store).
    async fn write_combined(&self, write: TokenWrite) -> Result<bool, StoreError> {
        let Some(writes) = self.token_writes.as_ref() else {
            return self.write_token(&write).await;
        };
        if let Some(_turn) = writes.turn_now() {
            return self.write_token(&write).await;
        }
        match writes.write(write).await {
            Ok(outcome) => outcome,
            Err(write) => self.write_token(&write).await,
        }
    }
}

#[async_trait]
impl TokenStore for SqlStore {
    async fn insert_tokens(
        &self,
        tokens: &[TokenRecord],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.write_combined(TokenWrite {
            tokens: tokens.to_vec(),
            audit: audit.clone(),
            spends: None,
        })
        .await
        .map(|_| ())
    }

    async fn rotate_refresh(
        &self,
        old: &Digest,
        new: &[TokenRecord],
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let write = TokenWrite {
            tokens: new.to_vec(),
            audit: audit.clone(),
            spends: Some(Spend {
                digest: *old,
                at: now,
            }),
        };
        // Postgres: one statement of its own (see `rotate_statement`).
        if self.backend == Backend::Postgres {
            return self.write_token(&write).await;
        }
        self.write_combined(write).await
    }

    async fn revoke_token(
        &self,
        digest: &Digest,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("update token set revoked_at = $2 where digest = $1 and revoked_at is null")
            .bind(digest.as_bytes())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        tx.audit(audit).await?;
        tx.commit().await
    }

    async fn token(&self, digest: &Digest) -> Result<Option<TokenRecord>, StoreError> {
        // One indexed lookup; the joins make a revoked or vanished grant or client revoke
        // the token too.
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!("select {TOKEN_SELECT} from {TOKEN_FROM} where t.digest = $1")
        });
        sqlx::query(&SQL)
            .bind(digest.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    async fn credential(&self, digest: &Digest) -> Result<Option<StoredCredential>, StoreError> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "select {TOKEN_SELECT}, {}, {} from {TOKEN_FROM} \
                 left join account a on a.id = t.account_id where t.digest = $1",
                aliased("g", GRANT_COLUMNS),
                aliased("a", ACCOUNT_COLUMNS)
            )
        });
        sqlx::query(&SQL)
            .bind(digest.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?
            .as_ref()
            .map(credential_from_row)
            .transpose()
    }

    async fn rotate_refresh_at_once(
        &self,
        r: &RefreshAtOnce<'_>,
    ) -> Result<Option<StoredCredential>, StoreError> {
        let rotation = Rotation::from(r);
        let Some(writes) = self.token_writes.as_ref() else {
            return self.rotate_one_at_once(&rotation).await;
        };
        // SQLite: nothing to combine with, as in `write_combined`.
        if let Some(_turn) = writes.turn_now() {
            return self.rotate_one_at_once(&rotation).await;
        }
        match writes.rotate(rotation).await {
            Ok(outcome) => outcome,
            Err(rotation) => self.rotate_one_at_once(&rotation).await,
        }
    }
}

impl SqlStore {
    /// `rotations` in one statement ([`ROTATE_AT_ONCE`]) on Postgres, one transaction
    /// ([`SQLITE_ROTATE_AT_ONCE`]) on SQLite, all or nothing. Each one's outcome, in order:
    /// its old credential if it spent its token, `None` if it wrote nothing. A row that
    /// cannot be decoded fails that rotation alone (the hook hears of its event if the token
    /// itself decodes, as the grant and user are decoded after).
    pub(super) async fn rotate_at_once(
        &self,
        rotations: &[&Rotation],
    ) -> Result<Vec<Result<Option<StoredCredential>, StoreError>>, StoreError> {
        let rows = rotations
            .iter()
            .map(|r| rotation_json(r))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = to_json(&rows)?;
        let (rows, took) = match self.backend {
            Backend::Postgres => {
                let _turn = self.write_turn().await;
                let started = std::time::Instant::now();
                let rows = sqlx::query(&ROTATE_AT_ONCE)
                    .bind(rows)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(write_error("token"))?;
                (rows, started.elapsed())
            }
            Backend::Sqlite => {
                self.write_sqlite(&SQLITE_ROTATE_AT_ONCE, vec![rows], "token")
                    .await?
            }
        };
        let mut out: Vec<Result<Option<StoredCredential>, StoreError>> =
            rotations.iter().map(|_| Ok(None)).collect();
        let mut written = Vec::with_capacity(rows.len());
        for row in &rows {
            let n: i64 = sqlx::Row::try_get(row, "n").map_err(StoreError::Unavailable)?;
            let i = usize::try_from(n).ok().and_then(|n| n.checked_sub(1));
            let Some(i) = i.filter(|&i| i < rotations.len()) else {
                continue;
            };
            crate::metrics::audit_appended(took);
            out[i] = token_from_row(row).and_then(|token| {
                let mut event = rotations[i].audit.clone();
                event.account_id = token.account_id.clone();
                fill_from_old(&mut event.details, &token);
                written.push(event);
                credential_from_row(row).map(Some)
            });
        }
        crate::metrics::token_write(rotations.len(), took);
        // Committed: the hook hears of every event whose row was read back, whatever
        // decoding the grant and user finds.
        self.hook.committed(&written);
        Ok(out)
    }

    /// One rotation by itself (the batch writer's retry, or a store without one).
    pub(super) async fn rotate_one_at_once(
        &self,
        rotation: &Rotation,
    ) -> Result<Option<StoredCredential>, StoreError> {
        self.rotate_at_once(&[rotation])
            .await?
            .pop()
            .unwrap_or(Ok(None))
    }
}

impl SqlStore {
    /// Runs a one-statement write that returns a row when it wrote (decisions 0043, 0047),
    /// timing it as an audit insert: every such write appends its event.
    pub(super) async fn write_at_once(
        &self,
        q: AnyQuery<'_>,
    ) -> Result<Option<AnyRow>, StoreError> {
        let started = std::time::Instant::now();
        let row = q
            .fetch_optional(&self.pool)
            .await
            .map_err(write_error("token"))?;
        if row.is_some() {
            crate::metrics::audit_appended(started.elapsed());
        }
        Ok(row)
    }
}

/// Binds what a one-statement write takes of its event, after its other values: the kind,
/// actor, source address, user agent and details (the rest comes from the rows it reads).
pub(super) fn bind_event_at_once<'q>(
    q: AnyQuery<'q>,
    event: &'q AuditEvent,
) -> Result<AnyQuery<'q>, StoreError> {
    Ok(q.bind(&event.kind)
        .bind(&event.actor)
        .bind(&event.source_ip)
        .bind(&event.user_agent)
        .bind(to_json(&event.details)?))
}

/// A token with its grant and user as [`TokenStore::credential`] and [`ROTATE_AT_ONCE`]
/// select them (`g_` and `a_` columns).
fn credential_from_row(row: &AnyRow) -> Result<StoredCredential, StoreError> {
    let grant = Row::prefixed(row, "g_");
    let account = Row::prefixed(row, "a_");
    Ok(StoredCredential {
        token: token_from_row(row)?,
        grant: match grant.get::<Option<String>>("id")? {
            Some(_) => Some(grant_from(grant)?),
            None => None,
        },
        account: joined_account_from(account)?,
    })
}

/// Postgres: [`TokenStore::rotate_refresh_at_once`] in one statement, where a rotation had
/// been a read (the token with its grant, client and user) and then [`rotate_statement`]:
/// one round trip and one plan less per refresh (decision 0043). Concurrent rotations share
/// it (decision 0051): `$1` is a JSON array of them ([`rotation_json`]), each numbered by its
/// place (`n`, from 1), one statement shape whatever their number.
///
/// `old` is the read, one indexed lookup per rotation, with every check the refresh grant
/// makes of an unspent token; the update spends a token only if `old` found it, and, as in
/// [`rotate_statement`], its own conditions are the guard between concurrent rotations (a
/// waiter re-reads the row once the first commits, and finds it spent). The new rows and the
/// event of a rotation are written only if its token was spent, and its old credential is
/// returned as read, with its `n`, for the ID token signed after the commit. Of two
/// rotations of one token in one statement only the first is read and may win (the batch
/// writer keeps such pairs apart anyway).
///
/// Every token is found through the primary key, whatever the planner's statistics say:
/// the read is a `lateral` subquery kept apart from the rest of the plan (`offset 0`), so
/// that it is planned as the one-token lookup it is, once per rotation; the update takes the
/// rows the read found by their place (`ctid`, a TID scan, which needs no statistics), and
/// checks their digest and state again (a row updated since the read is followed to its
/// newest version and checked anew, as in every update). Planned as joins, with the table's
/// statistics, or a cached plan, from when it was small, Postgres hashed the whole token
/// table for a batch of four, walked every token of every grant, or scanned the table for
/// the update (9 ms a statement in the bench).
///
/// The event's details come as the JSON the server would write, with the grant id and the
/// scope as placeholders ([`FROM_OLD_GRANT_ID`], [`FROM_OLD_SCOPE`]) replaced here by the
/// JSON strings of the old token's values: the row holds the same text as if the server had
/// written them (tested against the code's own event).
static ROTATE_AT_ONCE: LazyLock<String> = LazyLock::new(|| {
    let grant_id = json_string(FROM_OLD_GRANT_ID);
    let scope = json_string(FROM_OLD_SCOPE);
    format!(
        "with r as (select distinct on (x.old) x.n, decode(x.old, 'hex') as r_old, x.client_id as r_client_id, \
         x.now as r_now, decode(x.access_digest, 'hex') as r_access_digest, \
         x.access_jti as r_access_jti, x.access_expires_at as r_access_expires_at, \
         decode(x.refresh_digest, 'hex') as r_refresh_digest, x.refresh_jti as r_refresh_jti, \
         x.idle_ttl as r_idle_ttl, x.absolute_ttl as r_absolute_ttl, x.kind as r_kind, \
         x.actor as r_actor, x.source_ip as r_source_ip, x.user_agent as r_user_agent, \
         x.details as r_details \
         from rows from (json_to_recordset($1::json) as (old text, client_id text, now bigint, \
         access_digest text, access_jti text, access_expires_at bigint, refresh_digest text, \
         refresh_jti text, idle_ttl bigint, absolute_ttl bigint, kind text, actor text, \
         source_ip text, user_agent text, details text)) with ordinality \
         as x (old, client_id, now, access_digest, access_jti, access_expires_at, \
         refresh_digest, refresh_jti, idle_ttl, absolute_ttl, kind, actor, source_ip, \
         user_agent, details, n) order by x.old, x.n), \
         old as (select r.*, o.* from r cross join lateral (select t.ctid::text as tid, \
         t.digest, t.kind, t.jti, t.grant_id, t.client_id, t.account_id, t.scope, t.label, \
         t.previous_digest, t.created_at, t.expires_at, t.used_at, t.revoked_at, {}, {} \
         from token t join oauth_grant g on g.id = t.grant_id \
         join client c on c.id = t.client_id join account a on a.id = t.account_id \
         where t.digest = r.r_old and t.kind = 'refresh' and t.client_id = r.r_client_id \
         and t.used_at is null and t.revoked_at is null \
         and (t.expires_at is null or r.r_now < t.expires_at) \
         and g.revoked_at is null and not a.disabled offset 0) o), \
         spent as (update token set used_at = (select o.r_now from old o \
         where o.digest = token.digest) \
         where token.ctid = any(array(select tid::tid from old)) \
         and token.digest = any(array(select digest from old)) and token.kind = 'refresh' \
         and token.used_at is null and token.revoked_at is null returning token.digest), \
         w as (select o.* from old o where o.digest in (select digest from spent)), \
         t as (insert into token ({TOKEN_COLUMNS}) \
         select r_access_digest, 'access', grant_id, client_id, account_id, scope, \
         null::text, null::bytea, r_now, r_access_expires_at, null::bigint, null::bigint, \
         r_access_jti from w \
         union all \
         select r_refresh_digest, 'refresh', grant_id, client_id, account_id, scope, null, \
         r_old, r_now, least(r_now + r_idle_ttl, g_created_at + r_absolute_ttl), null, null, \
         r_refresh_jti from w), \
         e as (insert into audit_event ({AUDIT_COLUMNS}) \
         select r_now, r_kind, r_actor, client_id, account_id, r_source_ip, r_user_agent, \
         replace(replace(r_details, '{grant_id}', to_json(grant_id)::text), \
         '{scope}', to_json(scope)::text) from w order by n) \
         select * from w",
        aliased("g", GRANT_COLUMNS),
        aliased("a", ACCOUNT_COLUMNS),
    )
});

/// SQLite: [`ROTATE_AT_ONCE`] as one transaction in the write turn (decision 0052), where a
/// rotation had been a read on a connection of its own and then [`SQLITE_WRITE_TOKENS`]:
/// one call to a connection's thread less per refresh, and the read finds its pages in the
/// writer's own, where the read before it found them on a connection whose page cache the
/// last write (on another connection) had emptied.
///
/// `rotating` holds the rotations whose token passes every check the refresh grant makes of
/// an unspent token, read with the write lock held (`begin immediate`), so nothing can spend
/// it between the read and the update. Of two rotations of one token only the first in the
/// array is read at all, as on Postgres (`min(key)` takes the other values of its own row;
/// the batch writer keeps such pairs apart anyway). The array is parsed once (`jsonb`). Their old
/// credentials are selected as read, before the update spends them; then their new rows and
/// events are written, the event's placeholders replaced by the JSON strings of the old
/// token's values, as on Postgres. `cross join` keeps SQLite's join order: the array first,
/// each token found by its key (a unit test holds the plan).
static SQLITE_ROTATE_AT_ONCE: LazyLock<String> = LazyLock::new(|| {
    let grant_id = json_string(FROM_OLD_GRANT_ID);
    let scope = json_string(FROM_OLD_SCOPE);
    format!(
        "begin immediate; \
         create temp table if not exists rotating (n integer primary key, \
         digest blob not null unique, grant_id text, client_id text, account_id text, \
         scope text, g_created_at integer, now integer, access_digest blob, access_jti text, \
         access_expires_at integer, refresh_digest blob, refresh_jti text, idle_ttl integer, \
         absolute_ttl integer, kind text, actor text, source_ip text, user_agent text, \
         details text); \
         delete from temp.rotating; \
         with x (n, v) as materialized (select min(key) + 1, jsonb(value) from json_each($1) \
         group by value ->> 'old') \
         insert into temp.rotating select x.n, t.digest, t.grant_id, t.client_id, \
         t.account_id, t.scope, g.created_at, x.v ->> 'now', unhex(x.v ->> 'access_digest'), \
         x.v ->> 'access_jti', x.v ->> 'access_expires_at', unhex(x.v ->> 'refresh_digest'), \
         x.v ->> 'refresh_jti', x.v ->> 'idle_ttl', x.v ->> 'absolute_ttl', x.v ->> 'kind', \
         x.v ->> 'actor', x.v ->> 'source_ip', x.v ->> 'user_agent', x.v ->> 'details' \
         from x cross join main.token t cross join main.oauth_grant g cross join main.client c \
         cross join main.account a \
         where t.digest = unhex(x.v ->> 'old') and g.id = t.grant_id and c.id = t.client_id \
         and a.id = t.account_id and t.kind = 'refresh' and t.client_id = x.v ->> 'client_id' \
         and t.used_at is null and t.revoked_at is null \
         and (t.expires_at is null or x.v ->> 'now' < t.expires_at) \
         and g.revoked_at is null and not a.disabled order by x.n; \
         select r.n, {TOKEN_SELECT}, {}, {} from temp.rotating r cross join {TOKEN_FROM} \
         left join account a on a.id = t.account_id where t.digest = r.digest order by r.n; \
         update main.token set used_at = r.now from temp.rotating r \
         where token.digest = r.digest; \
         insert into main.token ({TOKEN_COLUMNS}) \
         select access_digest, 'access', grant_id, client_id, account_id, scope, null, null, \
         now, access_expires_at, null, null, access_jti from temp.rotating \
         union all \
         select refresh_digest, 'refresh', grant_id, client_id, account_id, scope, null, \
         digest, now, min(now + idle_ttl, g_created_at + absolute_ttl), null, null, \
         refresh_jti from temp.rotating; \
         insert into main.audit_event ({AUDIT_COLUMNS}) \
         select now, kind, actor, client_id, account_id, source_ip, user_agent, \
         replace(replace(details, '{grant_id}', json_quote(grant_id)), \
         '{scope}', json_quote(scope)) from temp.rotating order by n; \
         commit",
        aliased("g", GRANT_COLUMNS),
        aliased("a", ACCOUNT_COLUMNS),
    )
});

/// One rotation of [`ROTATE_AT_ONCE`]'s array.
fn rotation_json(r: &Rotation) -> Result<serde_json::Value, StoreError> {
    with_event(
        serde_json::json!({
            "old": r.old.to_hex(),
            "client_id": r.client_id,
            "now": r.now,
            "access_digest": r.access.digest.to_hex(),
            "access_jti": r.access.jti,
            "access_expires_at": r.access_expires_at,
            "refresh_digest": r.refresh.digest.to_hex(),
            "refresh_jti": r.refresh.jti,
            "idle_ttl": r.refresh_idle_ttl,
            "absolute_ttl": r.refresh_absolute_ttl,
        }),
        &r.audit,
    )
}

/// `write` (a JSON object) with what a one-statement write takes of its event, as
/// [`bind_event_at_once`] binds it on Postgres: the kind, actor, source address, user agent
/// and details (as their JSON text).
pub(super) fn with_event(
    mut write: serde_json::Value,
    e: &AuditEvent,
) -> Result<serde_json::Value, StoreError> {
    let event = serde_json::json!({
        "kind": e.kind,
        "actor": e.actor,
        "source_ip": e.source_ip,
        "user_agent": e.user_agent,
        "details": to_json(&e.details)?,
    });
    if let (Some(write), serde_json::Value::Object(event)) = (write.as_object_mut(), event) {
        write.extend(event);
    }
    Ok(write)
}

/// `value` as a JSON string, quotes included.
pub(super) fn json_string(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// The event's placeholders replaced by the old token's values, as [`ROTATE_AT_ONCE`] does.
fn fill_from_old(details: &mut serde_json::Value, old: &TokenRecord) {
    fill_placeholders(details, &|s| match s {
        FROM_OLD_GRANT_ID => Some(serde_json::Value::from(old.grant_id.clone())),
        FROM_OLD_SCOPE => Some(serde_json::Value::from(old.scope.clone())),
        _ => None,
    });
}

/// Every string in `details` for which `value` has a replacement, replaced.
pub(super) fn fill_placeholders(
    details: &mut serde_json::Value,
    value: &dyn Fn(&str) -> Option<serde_json::Value>,
) {
    match details {
        serde_json::Value::String(s) => {
            if let Some(v) = value(s) {
                *details = v;
            }
        }
        serde_json::Value::Object(map) => {
            map.values_mut().for_each(|v| fill_placeholders(v, value))
        }
        serde_json::Value::Array(list) => list.iter_mut().for_each(|v| fill_placeholders(v, value)),
        _ => {}
    }
}

/// A token `t` with its grant `g` and its client `c`, for [`TOKEN_SELECT`].
const TOKEN_FROM: &str = "token t left join oauth_grant g on g.id = t.grant_id \
     left join client c on c.id = t.client_id";

/// The token's columns as [`token_from_row`] reads them, from [`TOKEN_FROM`]: a revoked grant
/// revokes the token too, and so does a grant or client that no longer exists. On Postgres
/// the token table has no foreign keys (migration 0012, decision 0033), so a token written
/// while its client or user was being deleted can outlive them; such a token counts as
/// revoked from its creation (a vanished user is the credential lookup's to judge).
const TOKEN_SELECT: &str = "t.digest, t.kind, t.jti, t.grant_id, t.client_id, t.account_id, \
     t.scope, t.label, t.previous_digest, t.created_at, t.expires_at, t.used_at, \
     coalesce(t.revoked_at, g.revoked_at, \
       case when (t.grant_id is not null and g.id is null) \
              or (t.client_id is not null and c.id is null) then t.created_at end) \
       as revoked_at";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditKind;
    use crate::store::NewToken;

    /// SQLite's rotation reads each token, and spends it, through the token's key, whatever
    /// the order SQLite would otherwise pick for the array and four tables: a whole scan of
    /// the token table in the write turn would stop every writer.
    #[tokio::test]
    async fn the_sqlite_rotation_finds_tokens_by_key() {
        super::super::assert_sqlite_plans_search_by_key(
            &SQLITE_ROTATE_AT_ONCE,
            "[]",
            &["with x (n, v)", "select r.n", "update main.token"],
            ("t", "token", "sqlite_autoindex_token_1 (digest=?)"),
            &["SCAN json_each", "SCAN r", "SCAN x"],
        )
        .await;
    }

    /// The rotation statement finds its tokens through the primary key even when the
    /// planner's statistics were taken while the table was small and it has grown since, as
    /// in the bench and in any young deployment. Joined to the array (which the planner
    /// takes for 100 rows), it hashed the whole token table for a batch of four.
    #[tokio::test]
    async fn the_rotation_statement_finds_tokens_by_key_whatever_the_statistics() {
        let Some(store) = super::super::postgres_store().await else {
            return;
        };
        // Statistics taken with one grant of 100 tokens; then, as in the bench, 21 grants
        // of some 800 tokens each, and the dead row versions rotations leave behind: pages
        // the planner counts, rows it does not.
        let grants = |from: i64, to: i64| {
            sqlx::query(
                "insert into oauth_grant (id, client_id, account_id, scope, created_at) \
                 select 'g' || g, 'c', 'a', 'openid', 1 from generate_series($1::bigint, $2::bigint) g",
            )
            .bind(from)
            .bind(to)
            .execute(&store.pool)
        };
        let tokens = |from: i64, to: i64, grants: i64| {
            sqlx::query(
                "insert into token (digest, kind, jti, grant_id, client_id, account_id, scope, \
                 created_at) select sha256(g::text::bytea), 'refresh', 'jti-' || g, \
                 'g' || (g % $3), 'c', 'a', 'openid', 1 \
                 from generate_series($1::bigint, $2::bigint) g",
            )
            .bind(from)
            .bind(to)
            .bind(grants)
            .execute(&store.pool)
        };
        grants(0, 0).await.unwrap();
        tokens(1, 100, 1).await.unwrap();
        sqlx::query("analyze").execute(&store.pool).await.unwrap();
        grants(1, 20).await.unwrap();
        tokens(101, 17_000, 21).await.unwrap();
        for _ in 0..3 {
            sqlx::query("update token set used_at = null")
                .execute(&store.pool)
                .await
                .unwrap();
        }
        let event = AuditEvent::new(AuditKind::TokenIssued, "test", 1);
        let rotations = (1..=4)
            .map(|i| {
                rotation_json(&Rotation {
                    old: Digest::of(&i.to_string()),
                    client_id: "c".into(),
                    now: 2,
                    access: NewToken {
                        digest: Digest::of(&format!("a{i}")),
                        jti: format!("a{i}"),
                    },
                    access_expires_at: 3,
                    refresh: NewToken {
                        digest: Digest::of(&format!("r{i}")),
                        jti: format!("r{i}"),
                    },
                    refresh_idle_ttl: 10,
                    refresh_absolute_ttl: 100,
                    audit: event.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(&format!("explain {}", *ROTATE_AT_ONCE))
            .bind(to_json(&rotations).unwrap())
            .fetch_all(&store.pool)
            .await
            .unwrap();
        let plan = plan.join("\n");
        for scan in ["Seq Scan on token", "token_grant_idx"] {
            assert!(!plan.contains(scan), "tokens found by {scan}:\n{plan}");
        }
        assert!(plan.contains("token_pkey"), "the read: {plan}");
        assert!(plan.contains("Tid Scan on token"), "the update: {plan}");
    }
}
