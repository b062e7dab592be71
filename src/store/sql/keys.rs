//! Signing keys: [`SigningKeyStore`] on SQL.

use async_trait::async_trait;
use sqlx::AnyConnection;

use super::{write_error, Row, SqlStore};
use crate::audit::AuditEvent;
use crate::store::{Backend, ReencryptedKey, SigningKeyRecord, SigningKeyStore, StoreError};

async fn insert_signing_key_row(
    conn: &mut AnyConnection,
    k: &SigningKeyRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into signing_key (kid, alg, public_jwk, private_jwk_encrypted, state, \
         created_at, activates_at) values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&k.kid)
    .bind(&k.alg)
    .bind(&k.public_jwk)
    .bind(&k.private_jwk_encrypted)
    .bind(&k.state)
    .bind(k.created_at)
    .bind(k.activates_at)
    .execute(conn)
    .await
    .map_err(write_error("signing key"))?;
    Ok(())
}

#[async_trait]
impl SigningKeyStore for SqlStore {
    async fn insert_signing_key(
        &self,
        k: &SigningKeyRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        insert_signing_key_row(&mut tx, k).await?;
        tx.audit(audit).await?;
        tx.commit().await
    }

    async fn insert_first_signing_keys(
        &self,
        keys: &[(SigningKeyRecord, AuditEvent)],
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin().await?;
        // Exclude every other caller until commit, so two instances starting together on
        // one store cannot both add a first key for the same algorithm.
        match self.backend {
            Backend::Postgres => {
                sqlx::query("select pg_advisory_xact_lock(7046390135)")
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::Unavailable)?;
            }
            // A write first takes SQLite's one write lock for the whole transaction.
            Backend::Sqlite => {
                sqlx::query("update signing_key set state = state where kid = ''")
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::Unavailable)?;
            }
        }
        let present: Vec<String> = sqlx::query("select distinct alg from signing_key")
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?
            .iter()
            .map(|r| Row::new(r).get("alg"))
            .collect::<Result<_, _>>()?;
        let mut inserted = Vec::new();
        for (key, audit) in keys {
            if present.contains(&key.alg) || inserted.iter().any(|(_, alg)| *alg == &key.alg) {
                continue;
            }
            insert_signing_key_row(&mut tx, key).await?;
            tx.audit(audit).await?;
            inserted.push((key.kid.clone(), &key.alg));
        }
        tx.commit().await?;
        Ok(inserted.into_iter().map(|(kid, _)| kid).collect())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "select kid, alg, public_jwk, private_jwk_encrypted, state, created_at, activates_at \
             from signing_key order by activates_at, created_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?;
        rows.iter()
            .map(|row| {
                let row = Row::new(row);
                Ok(SigningKeyRecord {
                    kid: row.get("kid")?,
                    alg: row.get("alg")?,
                    public_jwk: row.get("public_jwk")?,
                    private_jwk_encrypted: row.get("private_jwk_encrypted")?,
                    state: row.get("state")?,
                    created_at: row.get("created_at")?,
                    activates_at: row.get("activates_at")?,
                })
            })
            .collect()
    }

    async fn reencrypt_signing_keys(
        &self,
        keys: &[ReencryptedKey],
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        for k in keys {
            // Compare-and-swap on the old ciphertext: a concurrent rotation makes this miss.
            let done = sqlx::query(
                "update signing_key set private_jwk_encrypted = $3 \
                 where kid = $1 and private_jwk_encrypted = $2",
            )
            .bind(&k.kid)
            .bind(&k.previous)
            .bind(&k.private_jwk_encrypted)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
            if done.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        // A key inserted since the caller read them would stay under the old KEK.
        let count = sqlx::query("select count(*) as n from signing_key")
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        let stored: i64 = Row::new(&count).get("n")?;
        if usize::try_from(stored).ok() != Some(keys.len()) {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.audit(audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}
