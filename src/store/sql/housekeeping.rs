//! Housekeeping's deletes: [`HousekeepingStore`] on SQL.

use async_trait::async_trait;

use super::SqlStore;
use crate::store::{Backend, Expired, HousekeepingStore, StoreError};

#[async_trait]
impl HousekeepingStore for SqlStore {
    async fn purge_expired(
        &self,
        what: Expired,
        cutoff: i64,
        now: i64,
        limit: i64,
    ) -> Result<u64, StoreError> {
        // Each batch picks its rows by key; on Postgres it skips rows another purger (or a
        // request) holds, so concurrent purgers share the work instead of queueing on it.
        let skip_locked = match self.backend {
            Backend::Postgres => " for update skip locked",
            Backend::Sqlite => "",
        };
        let (table, key, condition) = match what {
            Expired::Codes => ("authorization_code", "digest", "expires_at < $1"),
            Expired::Sessions => ("session", "id_digest", "expires_at < $1"),
            Expired::Tokens => ("token", "digest", "expires_at < $1"),
            // A grant's codes and tokens go first (above); a grant nothing refers to any
            // more can authorize nothing. (Consents are the user's standing decisions and
            // are not housekeeping's to remove.)
            Expired::Grants => (
                "oauth_grant",
                "id",
                "created_at < $1 \
                 and not exists (select 1 from token t where t.grant_id = oauth_grant.id) \
                 and not exists (select 1 from authorization_code c \
                                 where c.grant_id = oauth_grant.id)",
            ),
            Expired::LoginThrottle => (
                "login_throttle",
                "key",
                "updated_at < $1 and blocked_until < $2",
            ),
        };
        let sql = format!(
            "delete from {table} where {key} in \
             (select {key} from {table} where {condition} limit $3{skip_locked})"
        );
        let _turn = self.turn().await;
        let done = sqlx::query(&sql)
            .bind(cutoff)
            .bind(now)
            .bind(limit)
            .execute(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(done.rows_affected())
    }
}
