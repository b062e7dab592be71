//! Failed sign-ins per key: [`LoginThrottleStore`] on SQL.

use async_trait::async_trait;

use super::{Row, SqlStore};
use crate::store::{LoginThrottleStore, StoreError};

#[async_trait]
impl LoginThrottleStore for SqlStore {
    async fn login_blocked_until(&self, keys: &[&str]) -> Result<i64, StoreError> {
        let mut latest = 0;
        for key in keys {
            let row = sqlx::query("select blocked_until from login_throttle where key = $1")
                .bind(*key)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::Unavailable)?;
            if let Some(row) = row {
                latest = latest.max(Row(&row).get::<i64>("blocked_until")?);
            }
        }
        Ok(latest)
    }

    async fn record_login_failure(
        &self,
        key: &str,
        now: i64,
        forget_before: i64,
        delay: &(dyn Fn(i64) -> i64 + Sync),
    ) -> Result<(i64, i64), StoreError> {
        let mut tx = self.begin().await?;
        // The count and its read in one statement that writes first: concurrent failures on
        // several instances each get their own number.
        let row = sqlx::query(
            "insert into login_throttle (key, failures, blocked_until, updated_at) \
             values ($1, 1, 0, $2) on conflict (key) do update set \
             failures = case when login_throttle.updated_at < $3 then 1 \
             else login_throttle.failures + 1 end, updated_at = excluded.updated_at \
             returning failures, blocked_until",
        )
        .bind(key)
        .bind(now)
        .bind(forget_before)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?;
        let row = Row(&row);
        let failures: i64 = row.get("failures")?;
        let mut blocked_until: i64 = row.get("blocked_until")?;
        let wait = delay(failures);
        if wait > 0 {
            blocked_until = now + wait;
            sqlx::query("update login_throttle set blocked_until = $2 where key = $1")
                .bind(key)
                .bind(blocked_until)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::Unavailable)?;
        }
        tx.commit().await?;
        Ok((failures, blocked_until))
    }

    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("delete from login_throttle where key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(())
    }
}
