//! Access tokens, refresh tokens and API keys: [`TokenStore`] on SQL.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use super::{write_error, Row, SqlStore};
use crate::audit::AuditEvent;
use crate::crypto::token::Digest;
use crate::store::{StoreError, TokenKind, TokenRecord, TokenStore};

fn token_from_row(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    let row = Row(row);
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

async fn insert_token(conn: &mut AnyConnection, t: &TokenRecord) -> Result<(), StoreError> {
    sqlx::query(
        "insert into token (digest, kind, grant_id, client_id, account_id, scope, label, \
         previous_digest, created_at, expires_at, used_at, revoked_at, jti) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(t.digest.as_bytes())
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
    .execute(conn)
    .await
    .map_err(write_error("token"))?;
    Ok(())
}

#[async_trait]
impl TokenStore for SqlStore {
    async fn insert_tokens(
        &self,
        tokens: &[TokenRecord],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for t in tokens {
            insert_token(&mut tx, t).await?;
        }
        tx.audit(audit).await?;
        tx.commit().await
    }

    async fn rotate_refresh(
        &self,
        old: &Digest,
        new: &[TokenRecord],
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // The guard and the spend in one statement: a concurrent rotation finds used_at set.
        let done = sqlx::query(
            "update token set used_at = $2 where digest = $1 and kind = 'refresh' \
             and used_at is null and revoked_at is null",
        )
        .bind(old.as_bytes())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?;
        if done.rows_affected() == 0 {
            // Dropping the transaction rolls it back: nothing changed.
            return Ok(false);
        }
        for t in new {
            insert_token(&mut tx, t).await?;
        }
        tx.audit(audit).await?;
        tx.commit().await?;
        Ok(true)
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
        // One indexed lookup; the grant join makes a revoked grant revoke the token too.
        sqlx::query(
            "select t.digest, t.kind, t.jti, t.grant_id, t.client_id, t.account_id, t.scope, t.label, \
             t.previous_digest, t.created_at, t.expires_at, t.used_at, \
             coalesce(t.revoked_at, g.revoked_at) as revoked_at \
             from token t left join oauth_grant g on g.id = t.grant_id where t.digest = $1",
        )
        .bind(digest.as_bytes())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }
}
