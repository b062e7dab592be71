//! Access tokens, refresh tokens and API keys: [`TokenStore`] on SQL.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use std::collections::HashSet;
use std::sync::LazyLock;

use super::accounts::{joined_account_from, ACCOUNT_COLUMNS};
use super::batch::{Spend, TokenWrite};
use super::grants::{grant_from, GRANT_COLUMNS};
use super::{aliased, to_json, write_error, Row, SqlStore};
use crate::audit::AuditEvent;
use crate::crypto::token::Digest;
use crate::store::Backend;
use crate::store::{StoreError, StoredCredential, TokenKind, TokenRecord, TokenStore};

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

/// Postgres: token writes ([`TokenWrite`]) in one statement, one round trip and one implicit
/// transaction, however many a batch holds.
///
/// The rows come as JSON arrays (`$1` the tokens, `$2` the events, `$3` the refresh tokens
/// rotations spend; [`token_json`], [`event_json`]), so the statement has one shape whatever
/// the batch: with a placeholder per value, each batch size was a statement of its own,
/// prepared and cached by every pooled connection (megabytes held for nothing after a burst).
///
/// `spent` is the rotations' guard: a conditional update, so of concurrent rotations of one
/// token one finds it unspent and the others wait for its row lock, then find it spent. A
/// row or event that names a spend is written only if that spend happened. The update finds
/// its rows by `= any(array(…))`, an index condition: joined to the JSON rows instead, the
/// planner (which cannot know how few they are) scanned the whole token table, 6 ms of
/// Postgres CPU for a refresh and 0.3 for every client_credentials batch. The client is
/// looked up, not taken as given: the token table has no foreign keys (decision 0033), so a
/// client deleted since the request read it (clients are cached for up to a second) yields a
/// null `client_id`, which the table's check constraint refuses, failing the statement as the
/// foreign key did, without the foreign key's lock on the client row. The events keep their
/// order, which the audit chain seals them in. The answer: the spends that happened.
const WRITE_TOKENS: &str = "with s as (select decode(x.digest, 'hex') as digest, x.at \
     from json_to_recordset($3::json) as x (digest text, at bigint)), \
     spent as (update token set used_at = (select s.at from s where s.digest = token.digest) \
     where token.digest = any(array(select digest from s)) and token.kind = 'refresh' \
     and token.used_at is null and token.revoked_at is null \
     returning encode(token.digest, 'hex') as digest), \
     t as (insert into token (digest, kind, grant_id, client_id, \
     account_id, scope, label, previous_digest, created_at, expires_at, used_at, revoked_at, jti) \
     select decode(x.digest, 'hex'), x.kind, x.grant_id, \
     (select c.id from client c where c.id = x.client_id), x.account_id, x.scope, x.label, \
     decode(x.previous_digest, 'hex'), x.created_at, x.expires_at, x.used_at, x.revoked_at, \
     x.jti from json_to_recordset($1::json) as x (digest text, kind text, grant_id text, \
     client_id text, account_id text, scope text, label text, previous_digest text, \
     created_at bigint, expires_at bigint, used_at bigint, revoked_at bigint, jti text, \
     spends text) where x.spends is null or x.spends in (select digest from spent)), \
     a as (insert into audit_event (created_at, kind, actor, client_id, account_id, source_ip, \
     user_agent, details) \
     select e.created_at, e.kind, e.actor, e.client_id, e.account_id, e.source_ip, \
     e.user_agent, e.details from rows from (json_to_recordset($2::json) \
     as (created_at bigint, kind text, actor text, client_id text, account_id text, \
     source_ip text, user_agent text, details text, spends text)) with ordinality \
     as e (created_at, kind, actor, client_id, account_id, source_ip, user_agent, details, \
     spends, n) where e.spends is null or e.spends in (select digest from spent) order by e.n) \
     select digest from spent";

/// SQLite: the rotations' guard, first in the transaction (as on Postgres, a conditional
/// update; SQLite's one write lock orders concurrent ones). `$1` the spends as for
/// [`WRITE_TOKENS`]; the answer: the spends that happened.
const SQLITE_SPEND: &str = "update token set used_at = (select s.value ->> 'at' \
     from json_each($1) as s where s.value ->> 'digest' = lower(hex(token.digest))) \
     where kind = 'refresh' and used_at is null and revoked_at is null \
     and digest in (select unhex(value ->> 'digest') from json_each($1)) \
     returning lower(hex(digest))";

/// SQLite: then the rows of the writes that may go ahead, as two JSON arrays in two
/// statements of one shape each (it has no data-modifying `with`): a batch costs the writer
/// four or five statements with begin and commit, where a statement per row and per event
/// cost two per issue and more, each a hand-off to the connection's thread and back. `$1`
/// the tokens, then `$1` the events.
const SQLITE_INSERT_TOKENS: &str = "insert into token (digest, kind, grant_id, client_id, \
     account_id, scope, label, previous_digest, created_at, expires_at, used_at, revoked_at, jti) \
     select unhex(value ->> 'digest'), value ->> 'kind', value ->> 'grant_id', \
     value ->> 'client_id', value ->> 'account_id', value ->> 'scope', value ->> 'label', \
     unhex(value ->> 'previous_digest'), value ->> 'created_at', value ->> 'expires_at', \
     value ->> 'used_at', value ->> 'revoked_at', value ->> 'jti' from json_each($1) order by key";
const SQLITE_INSERT_EVENTS: &str = "insert into audit_event (created_at, kind, actor, client_id, \
     account_id, source_ip, user_agent, details) \
     select value ->> 'created_at', value ->> 'kind', value ->> 'actor', value ->> 'client_id', \
     value ->> 'account_id', value ->> 'source_ip', value ->> 'user_agent', value ->> 'details' \
     from json_each($1) order by key";

/// A token row for [`WRITE_TOKENS`] and [`SQLITE_INSERT_TOKENS`], digests in hex; `spends`
/// the hex digest whose spend it waits for.
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

/// An audit event row for [`WRITE_TOKENS`] and [`SQLITE_INSERT_EVENTS`], its details as the
/// text the table keeps.
fn event_json(e: &AuditEvent, spends: Option<&str>) -> Result<serde_json::Value, StoreError> {
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

/// The JSON arrays of `writes`' tokens and events; `spends`: with the spend each waits for.
fn rows_json(writes: &[&TokenWrite], spends: bool) -> Result<[String; 2], StoreError> {
    let mut tokens = Vec::new();
    let mut events = Vec::with_capacity(writes.len());
    for w in writes {
        let waits_for = w.spends.filter(|_| spends).map(|s| s.digest.to_hex());
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
    /// (one statement would see it unspent for both).
    pub(super) async fn write_tokens(
        &self,
        writes: &[&TokenWrite],
    ) -> Result<Vec<bool>, StoreError> {
        if self.backend == Backend::Postgres {
            let [tokens, events] = rows_json(writes, true)?;
            let spends = spends_json(writes)?;
            let _turn = self.write_turn().await;
            let started = std::time::Instant::now();
            let rows = sqlx::query(WRITE_TOKENS)
                .bind(tokens)
                .bind(events)
                .bind(spends)
                .fetch_all(&self.pool)
                .await
                .map_err(write_error("token"))?;
            let written = went_ahead(writes, &spent_digests(&rows)?);
            let events: Vec<AuditEvent> = going(writes, &written)
                .iter()
                .map(|w| w.audit.clone())
                .collect();
            for _ in &events {
                crate::metrics::audit_appended(started.elapsed());
            }
            self.hook.committed(&events);
            return Ok(written);
        }
        let mut tx = self.begin().await?;
        let started = std::time::Instant::now();
        let written = if writes.iter().any(|w| w.spends.is_some()) {
            let rows = sqlx::query(SQLITE_SPEND)
                .bind(spends_json(writes)?)
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::Unavailable)?;
            went_ahead(writes, &spent_digests(&rows)?)
        } else {
            vec![true; writes.len()]
        };
        let going = going(writes, &written);
        if going.is_empty() {
            tx.rollback().await?;
            return Ok(written);
        }
        let [tokens, events] = rows_json(&going, false)?;
        sqlx::query(SQLITE_INSERT_TOKENS)
            .bind(tokens)
            .execute(&mut *tx)
            .await
            .map_err(write_error("token"))?;
        sqlx::query(SQLITE_INSERT_EVENTS)
            .bind(events)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        let audited: Vec<&AuditEvent> = going.iter().map(|w| &w.audit).collect();
        tx.inserted_audit(&audited, started.elapsed());
        tx.commit().await?;
        Ok(written)
    }

    /// Through the batch writer when there is one (not in the writer's own store).
    async fn write_combined(&self, write: TokenWrite) -> Result<bool, StoreError> {
        let Some(writes) = self.token_writes.as_ref() else {
            return self.write_token(&write).await;
        };
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
        self.write_combined(TokenWrite {
            tokens: new.to_vec(),
            audit: audit.clone(),
            spends: Some(Spend {
                digest: *old,
                at: now,
            }),
        })
        .await
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
        let Some(row) = sqlx::query(&SQL)
            .bind(digest.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?
        else {
            return Ok(None);
        };
        let grant = Row::prefixed(&row, "g_");
        let account = Row::prefixed(&row, "a_");
        Ok(Some(StoredCredential {
            token: token_from_row(&row)?,
            grant: match grant.get::<Option<String>>("id")? {
                Some(_) => Some(grant_from(grant)?),
                None => None,
            },
            account: joined_account_from(account)?,
        }))
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
