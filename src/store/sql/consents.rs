//! Consents: [`ConsentStore`] on SQL.

use async_trait::async_trait;

use super::{audit_insert_sql, bind_audit, write_error, AnyQuery, Row, SqlStore, Tx};
use crate::audit::AuditEvent;
use crate::store::{Backend, ConsentStore, StoreError};

/// The scopes of `before` in their order, then those of `added` not among them, each once.
pub(super) fn merged(before: &str, added: &str) -> String {
    let mut scopes: Vec<&str> = Vec::new();
    for s in before.split_whitespace().chain(added.split_whitespace()) {
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    scopes.join(" ")
}

/// Postgres: the consent upsert, `$1` account, `$2` client, `$3` scope (each once), `$4`
/// now. One statement: the upsert locks the row (a concurrent grant waits, then merges into
/// what this one wrote), and the merge keeps the scopes already consented to in their order,
/// then adds the new ones, each once. The user and the client are looked up, not taken as
/// given: the consent table has no foreign keys on Postgres (decision 0040), and a null
/// refuses the row.
pub(super) const CONSENT_UPSERT_PG: &str = "insert into consent (account_id, client_id, scope, \
     created_at, updated_at) values ((select x.id from account x where x.id = $1), \
     (select x.id from client x where x.id = $2), $3, $4, $4) \
     on conflict (account_id, client_id) \
     do update set updated_at = excluded.updated_at, scope = (\
     select coalesce(string_agg(w, ' ' order by n), '') from (\
     select w, min(n) as n from unnest(string_to_array(\
     consent.scope || ' ' || excluded.scope, ' ')) with ordinality as t (w, n) \
     where w <> '' group by w) as words)";

/// Binds [`CONSENT_UPSERT_PG`]'s four values.
pub(super) fn bind_consent_pg<'q>(
    q: AnyQuery<'q>,
    account_id: &'q str,
    client_id: &'q str,
    scope: &str,
    now: i64,
) -> AnyQuery<'q> {
    q.bind(account_id)
        .bind(client_id)
        .bind(merged("", scope))
        .bind(now)
}

/// SQLite: adds `scope` to the consent within `tx`. The write first: it takes the write
/// lock, so a concurrent grant waits here and then reads what this one wrote; it hands back
/// the scope consented to so far (empty for a new row).
pub(super) async fn consent_in(
    tx: &mut Tx,
    account_id: &str,
    client_id: &str,
    scope: &str,
    now: i64,
) -> Result<(), StoreError> {
    let row = sqlx::query(
        "insert into consent (account_id, client_id, scope, created_at, updated_at) \
         values ($1, $2, '', $3, $3) on conflict (account_id, client_id) \
         do update set updated_at = excluded.updated_at returning scope",
    )
    .bind(account_id)
    .bind(client_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(write_error("consent"))?;
    let before: String = Row::new(&row).get("scope")?;
    sqlx::query("update consent set scope = $3 where account_id = $1 and client_id = $2")
        .bind(account_id)
        .bind(client_id)
        .bind(merged(&before, scope))
        .execute(&mut **tx)
        .await
        .map_err(write_error("consent"))?;
    Ok(())
}

#[async_trait]
impl ConsentStore for SqlStore {
    async fn consent(
        &self,
        account_id: &str,
        client_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("select scope from consent where account_id = $1 and client_id = $2")
            .bind(account_id)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        row.as_ref().map(|r| Row::new(r).get("scope")).transpose()
    }

    async fn grant_consent(
        &self,
        account_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            let sql = format!("with c as ({CONSENT_UPSERT_PG}) {}", audit_insert_sql(5, 1));
            let q = bind_consent_pg(sqlx::query(&sql), account_id, client_id, scope, now);
            self.execute_audited(
                bind_audit(q, audit)?,
                std::slice::from_ref(audit),
                "consent",
            )
            .await?;
            return Ok(());
        }
        let mut tx = self.begin().await?;
        consent_in(&mut tx, account_id, client_id, scope, now).await?;
        tx.audit(audit).await?;
        tx.commit().await
    }
}
