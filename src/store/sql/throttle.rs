//! Failed sign-ins per key: [`LoginThrottleStore`] on SQL.

use async_trait::async_trait;

use super::{placeholder_list, Row, SqlStore};
use crate::store::{Backend, LoginCount, LoginThrottleStore, StoreError, ThrottleKey};

impl SqlStore {
    /// The latest `blocked_until` among `keys` (0 when none is known).
    async fn login_blocked_until(&self, keys: &[ThrottleKey<'_>]) -> Result<i64, StoreError> {
        let mut latest = 0;
        for k in keys {
            let row = sqlx::query("select blocked_until from login_throttle where key = $1")
                .bind(k.key)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::Unavailable)?;
            if let Some(row) = row {
                latest = latest.max(Row::new(&row).get::<i64>("blocked_until")?);
            }
        }
        Ok(latest)
    }
}

/// One key's attempt in one statement: counted unless it, or any of the `others` keys
/// (`$6`…), is blocked at `$2` (then no row comes back). The failure count restarts when the
/// last one is older than `$3`; past the key's `$4` free failures the block is
/// `min($5, 2^(over - 1))` seconds, as `LoginThrottlePolicy::delay` computes it. The update's
/// own `where` keeps a key blocked by a concurrent attempt as it is: its row is locked
/// (Postgres) or the write is serialised (SQLite), so the check sees the latest state.
/// Forgotten rows are purged by housekeeping (`Expired::LoginThrottle`), not here.
fn count_statement(backend: Backend, others: usize) -> String {
    let min = match backend {
        Backend::Postgres => "least",
        Backend::Sqlite => "min",
    };
    let block = |failures: &str| {
        format!(
            "case when {failures} - $4 <= 0 then 0 \
             else $2 + {min}($5, 1 << cast({min}({failures} - $4 - 1, 30) as integer)) end"
        )
    };
    let unblocked = if others == 0 {
        // SQLite needs a `where` to tell `on conflict` from a join constraint.
        "where 1 = 1".to_owned()
    } else {
        format!(
            "where not exists (select 1 from login_throttle where key in ({}) \
             and blocked_until >= $2)",
            placeholder_list(6, others)
        )
    };
    let failures = "case when login_throttle.updated_at < $3 then 1 \
                    else login_throttle.failures + 1 end";
    format!(
        "insert into login_throttle (key, failures, blocked_until, updated_at) \
         select $1, 1, {first}, $2 {unblocked} \
         on conflict (key) do update set failures = {failures}, \
         blocked_until = {later}, updated_at = $2 \
         where login_throttle.blocked_until < $2 \
         returning failures, blocked_until",
        first = block("1"),
        later = block(&format!("({failures})")),
    )
}

#[async_trait]
impl LoginThrottleStore for SqlStore {
    async fn count_login_attempt(
        &self,
        keys: &[ThrottleKey<'_>],
        now: i64,
        forget_before: i64,
        max_delay: i64,
    ) -> Result<LoginCount, StoreError> {
        let _turn = self.write_turn().await;
        let mut counted = Vec::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            // The first statement checks every key; the later ones must not, or they would
            // find the block the earlier ones of this very attempt have just started.
            let others = if i == 0 { keys.len() } else { 0 };
            let sql = count_statement(self.backend, others);
            let mut q = sqlx::query(&sql)
                .bind(k.key)
                .bind(now)
                .bind(forget_before)
                .bind(k.threshold)
                .bind(max_delay);
            for other in &keys[..others] {
                q = q.bind(other.key);
            }
            let row = q
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::Unavailable)?;
            match row {
                Some(row) => {
                    let row = Row::new(&row);
                    counted.push((row.get("failures")?, row.get("blocked_until")?));
                }
                // A key is blocked: this statement wrote nothing. A key counted before it
                // stays counted; only a concurrent attempt starting the block between the
                // two statements makes that happen, and it errs towards throttling.
                None => {
                    return Ok(LoginCount::Blocked {
                        until: self.login_blocked_until(keys).await?,
                    })
                }
            }
        }
        Ok(LoginCount::Counted(counted))
    }

    async fn take_back_login_attempt(
        &self,
        clear: Option<&str>,
        forgive: &[&str],
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        if let Some(key) = clear {
            sqlx::query("delete from login_throttle where key = $1")
                .bind(key)
                .execute(&self.pool)
                .await
                .map_err(StoreError::Unavailable)?;
        }
        for key in forgive {
            sqlx::query(
                "update login_throttle set failures = failures - 1 \
                 where key = $1 and failures > 0",
            )
            .bind(*key)
            .execute(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        }
        Ok(())
    }
}
