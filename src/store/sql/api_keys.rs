//! API keys: [`ApiKeyStore`] on SQL. They are rows of `token` (kind `api_key`), so the one
//! credential resolver finds them by digest like any token.

use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::{write_error, Row, SqlStore};
use crate::audit::AuditEvent;
use crate::crypto::token::Digest;
use crate::store::{ApiKeyRecord, ApiKeyStore, StoreError};

const COLUMNS: &str = "digest, jti, account_id, label, hint, scope, created_at, expires_at, \
                       used_at, revoked_at";

fn api_key_from_row(row: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
    let row = Row::new(row);
    let required = |v: Option<String>, column: &str| {
        v.ok_or_else(|| StoreError::Corrupt(format!("api key without {column}")))
    };
    Ok(ApiKeyRecord {
        id: row.get("jti")?,
        digest: row.digest("digest")?,
        account_id: required(row.get("account_id")?, "owner")?,
        label: required(row.get("label")?, "label")?,
        hint: required(row.get("hint")?, "hint")?,
        scope: row.get("scope")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        last_used_at: row.get("used_at")?,
        revoked_at: row.get("revoked_at")?,
    })
}

#[async_trait]
impl ApiKeyStore for SqlStore {
    async fn insert_api_key(
        &self,
        key: &ApiKeyRecord,
        max_live: i64,
        replaces: Option<&str>,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // A write first: it locks the owner's row on Postgres and takes SQLite's write lock,
        // so concurrent creations for one owner queue here and each counts the ones before.
        // Only an enabled owner: a key made while the user was being disabled must not
        // outlive the disabling (decision 0012).
        let owner = sqlx::query(
            "update account set updated_at = updated_at where id = $1 and disabled = $2",
        )
        .bind(&key.account_id)
        .bind(false)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?;
        if owner.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound("user"));
        }
        if let Some(old) = replaces {
            let revoked = sqlx::query(REVOKE_REPLACED)
                .bind(old)
                .bind(&key.account_id)
                .bind(key.created_at)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::Unavailable)?;
            if revoked.rows_affected() == 0 {
                tx.rollback().await?;
                return Err(StoreError::NotFound("api key"));
            }
        }
        let live: i64 = sqlx::query_scalar(COUNT_LIVE)
            .bind(&key.account_id)
            .bind(key.created_at)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        if live >= max_live {
            tx.rollback().await?;
            return Err(StoreError::LimitReached("api keys"));
        }
        let inserted = sqlx::query(
            "insert into token (digest, kind, jti, account_id, scope, label, hint, created_at, \
             expires_at) values ($1, 'api_key', $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(key.digest.as_bytes())
        .bind(&key.id)
        .bind(&key.account_id)
        .bind(&key.scope)
        .bind(&key.label)
        .bind(&key.hint)
        .bind(key.created_at)
        .bind(key.expires_at)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            // A label clash aborts the transaction; end it now, not at the connection's reuse.
            tx.rollback().await?;
            return Err(write_error("api key label")(e));
        }
        for event in audit {
            tx.audit(event).await?;
        }
        tx.commit().await
    }

    async fn api_keys(&self, owner: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sqlx::query(&format!(
            "select {COLUMNS} from token where kind = 'api_key' \
             and ($1 is null or account_id = $1) order by created_at desc, jti"
        ))
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?
        .iter()
        .map(api_key_from_row)
        .collect()
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query(&BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?
            .as_ref()
            .map(api_key_from_row)
            .transpose()
    }

    async fn revoke_api_key(
        &self,
        id: &str,
        owner: Option<&str>,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(REVOKE)
            .bind(id)
            .bind(owner)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        tx.commit_audited_if(done, audit).await
    }

    async fn touch_api_key(
        &self,
        digest: &Digest,
        now: i64,
        interval: i64,
        refused: bool,
    ) -> Result<bool, StoreError> {
        let sql = if refused {
            "update token set refused_at = $2 where digest = $1 and kind = 'api_key' \
             and (refused_at is null or refused_at <= $3)"
        } else {
            "update token set used_at = $2 where digest = $1 and kind = 'api_key' \
             and (used_at is null or used_at <= $3)"
        };
        let _turn = self.write_turn().await;
        let done = sqlx::query(sql)
            .bind(digest.as_bytes())
            .bind(now)
            .bind(now - interval)
            .execute(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(done.rows_affected() > 0)
    }
}

/// `$1` the key id, `$2` the owner, `$3` the time.
pub(super) const REVOKE_REPLACED: &str = "update token set revoked_at = $3 \
     where jti = $1 and account_id = $2 and kind = 'api_key' and revoked_at is null";

/// `$1` the owner, `$2` the time.
pub(super) const COUNT_LIVE: &str = "select count(*) from token where account_id = $1 \
     and kind = 'api_key' and revoked_at is null and (expires_at is null or expires_at > $2)";

/// `$1` the key id, `$2` the owner (any if null), `$3` the time.
pub(super) const REVOKE: &str = "update token set revoked_at = $3 where jti = $1 \
     and kind = 'api_key' and revoked_at is null and ($2 is null or account_id = $2)";

/// `$1` the key id.
pub(super) static BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("select {COLUMNS} from token where kind = 'api_key' and jti = $1"));
