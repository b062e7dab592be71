//! Consents: [`ConsentStore`] on SQL.

use async_trait::async_trait;

use super::{Row, SqlStore};
use crate::audit::AuditEvent;
use crate::store::{ConsentStore, StoreError};

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
        let mut tx = self.begin().await?;
        // The write first: it creates the row or locks it (Postgres) / takes the write lock
        // (SQLite), so a concurrent grant waits here and then reads what this one wrote; it
        // hands back the scope consented to so far (empty for a new row).
        let row = sqlx::query(
            "insert into consent (account_id, client_id, scope, created_at, updated_at) \
             values ($1, $2, '', $3, $3) on conflict (account_id, client_id) \
             do update set updated_at = excluded.updated_at returning scope",
        )
        .bind(account_id)
        .bind(client_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?;
        let before: String = Row::new(&row).get("scope")?;
        let mut merged: Vec<&str> = before.split_whitespace().collect();
        for s in scope.split_whitespace() {
            if !merged.contains(&s) {
                merged.push(s);
            }
        }
        sqlx::query("update consent set scope = $3 where account_id = $1 and client_id = $2")
            .bind(account_id)
            .bind(client_id)
            .bind(merged.join(" "))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        tx.audit(audit).await?;
        tx.commit().await
    }
}
