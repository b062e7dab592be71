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
                latest = latest.max(Row::new(&row).get::<i64>("blocked_until")?);
            }
        }
        Ok(latest)
    }

    async fn count_login_attempt(
        &self,
        key: &str,
        now: i64,
        forget_before: i64,
        delay: &(dyn Fn(i64) -> i64 + Sync),
    ) -> Result<(bool, i64, i64), StoreError> {
        let mut tx = self.begin().await?;
        // The count and its read in one statement that writes first (and so locks the row):
        // concurrent attempts on several instances each see the ones before them, and an
        // attempt during a block changes nothing.
        let row = sqlx::query(
            "insert into login_throttle (key, failures, blocked_until, updated_at) \
             values ($1, 1, 0, $2) on conflict (key) do update set \
             failures = case when login_throttle.blocked_until >= $2 then login_throttle.failures \
             when login_throttle.updated_at < $3 then 1 \
             else login_throttle.failures + 1 end, \
             updated_at = case when login_throttle.blocked_until >= $2 \
             then login_throttle.updated_at else excluded.updated_at end \
             returning failures, blocked_until, updated_at",
        )
        .bind(key)
        .bind(now)
        .bind(forget_before)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?;
        let row = Row::new(&row);
        let failures: i64 = row.get("failures")?;
        let mut blocked_until: i64 = row.get("blocked_until")?;
        if blocked_until >= now {
            return Ok((false, failures, blocked_until));
        }
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
        // Forgotten rows go with the writes that would otherwise keep adding to them.
        sqlx::query("delete from login_throttle where updated_at < $1 and blocked_until < $2")
            .bind(forget_before)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        tx.commit().await?;
        Ok((true, failures, blocked_until))
    }

    async fn forgive_login_attempt(&self, key: &str) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "update login_throttle set failures = failures - 1 where key = $1 and failures > 0",
        )
        .bind(key)
        .execute(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?;
        Ok(())
    }

    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query("delete from login_throttle where key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(())
    }
}
