//! Users: [`AccountStore`] on SQL, and ending a user's access when they change.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use super::{affected_one, delete_what_hangs_off, to_json, write_error, AnyQuery, Row, SqlStore};
use crate::audit::AuditEvent;
use crate::store::{AccountRecord, AccountStore, StandardClaims, StoreError};

macro_rules! account_columns {
    () => {
        "id, username, password_hash, claims, disabled, failed_login_count, roles, group_names, \
         created_at, updated_at"
    };
}

/// The columns [`account_from`] reads.
pub(super) const ACCOUNT_COLUMNS: &str = account_columns!();

fn account_from_row(row: &AnyRow) -> Result<AccountRecord, StoreError> {
    account_from(Row::new(row))
}

/// The account of a left join: `None` when no row matched.
pub(super) fn joined_account_from(row: Row<'_>) -> Result<Option<AccountRecord>, StoreError> {
    match row.get::<Option<String>>("id")? {
        Some(_) => Ok(Some(account_from(row)?)),
        None => Ok(None),
    }
}

pub(super) fn account_from(row: Row<'_>) -> Result<AccountRecord, StoreError> {
    Ok(AccountRecord {
        id: row.get("id")?,
        username: row.get("username")?,
        password_hash: row.get("password_hash")?,
        claims: row.json("claims")?,
        disabled: row.flag("disabled")?,
        failed_login_count: row.get("failed_login_count")?,
        roles: row.json_list("roles")?,
        groups: row.json_list("group_names")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// Binds `$1`–`$8`: the user's id and every field that insert and update both write.
fn bind_account<'q>(q: AnyQuery<'q>, a: &'q AccountRecord) -> Result<AnyQuery<'q>, StoreError> {
    Ok(q.bind(&a.id)
        .bind(&a.username)
        .bind(&a.password_hash)
        .bind(to_json(&a.claims)?)
        .bind(a.disabled)
        .bind(a.failed_login_count)
        .bind(to_json(&a.roles)?)
        .bind(to_json(&a.groups)?))
}

/// Writes every mutable field of the user; `NotFound` if absent, `Conflict` if the new
/// username is taken.
async fn write_account(conn: &mut AnyConnection, a: &AccountRecord) -> Result<(), StoreError> {
    let done = bind_account(
        sqlx::query(
            "update account set username = $2, password_hash = $3, claims = $4, \
             disabled = $5, failed_login_count = $6, roles = $7, group_names = $8, \
             updated_at = $9 where id = $1",
        ),
        a,
    )?
    .bind(a.updated_at)
    .execute(conn)
    .await
    .map_err(write_error("user"))?;
    affected_one(done, "user")
}

/// What [`end_access`] ended, for the audit event of the change that caused it.
struct AccessEnded {
    sessions: u64,
    grants: u64,
    tokens: u64,
    api_keys: u64,
    codes: u64,
}

impl AccessEnded {
    fn recorded_in(&self, audit: &AuditEvent) -> AuditEvent {
        let mut event = audit.clone();
        if let serde_json::Value::Object(details) = &mut event.details {
            details.insert("sessions_ended".into(), self.sessions.into());
            details.insert("grants_revoked".into(), self.grants.into());
            details.insert("tokens_revoked".into(), self.tokens.into());
            details.insert("api_keys_revoked".into(), self.api_keys.into());
            details.insert("codes_revoked".into(), self.codes.into());
        }
        event
    }
}

/// Ends every browser session of the user and revokes every grant and every token issued to
/// them, and deletes their unredeemed authorization codes (a code in flight would otherwise
/// still yield tokens for up to a minute), so that nothing from before survives (ASVS 5.0
/// 7.4.2, 7.4.3). Redeemed codes stay: they are what detects a replay.
async fn end_access(
    conn: &mut AnyConnection,
    account_id: &str,
    now: i64,
) -> Result<AccessEnded, StoreError> {
    let sessions = sqlx::query("delete from session where account_id = $1")
        .bind(account_id)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::Unavailable)?
        .rows_affected();
    let grants = revoke_of_user(conn, REVOKE_GRANTS_OF_USER, account_id, now).await?;
    // API keys first, to count them apart: the operator reads which keys a change ended.
    let api_keys = revoke_of_user(conn, REVOKE_API_KEYS_OF_USER, account_id, now).await?;
    let tokens = revoke_of_user(conn, REVOKE_TOKENS_OF_USER, account_id, now).await?;
    let codes =
        sqlx::query("delete from authorization_code where account_id = $1 and consumed_at is null")
            .bind(account_id)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::Unavailable)?
            .rows_affected();
    Ok(AccessEnded {
        sessions,
        grants,
        tokens,
        api_keys,
        codes,
    })
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn insert_account(
        &self,
        a: &AccountRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        bind_account(
            sqlx::query(concat!(
                "insert into account (",
                account_columns!(),
                ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            )),
            a,
        )?
        .bind(a.created_at)
        .bind(a.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(write_error("user"))?;
        // Nothing left under this id from an earlier user may become the new one's (a
        // consent would skip the new user's consent screen): rows that raced the old one's
        // deletion on Postgres, or outlived a deletion made past Tessera (decision 0040).
        // After the insert: an id in use fails above and deletes nothing.
        delete_what_hangs_off(&mut tx, "account_id", &a.id).await?;
        tx.audit(audit).await?;
        tx.commit().await
    }

    async fn account(&self, id: &str) -> Result<Option<AccountRecord>, StoreError> {
        sqlx::query(concat!(
            "select ",
            account_columns!(),
            " from account where id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?
        .as_ref()
        .map(account_from_row)
        .transpose()
    }

    async fn account_by_username(
        &self,
        username: &str,
    ) -> Result<Option<AccountRecord>, StoreError> {
        sqlx::query(concat!(
            "select ",
            account_columns!(),
            " from account where username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?
        .as_ref()
        .map(account_from_row)
        .transpose()
    }

    async fn list_accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        sqlx::query(concat!(
            "select ",
            account_columns!(),
            " from account order by username"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?
        .iter()
        .map(account_from_row)
        .collect()
    }

    async fn update_account(
        &self,
        a: &AccountRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        write_account(&mut tx, a).await?;
        tx.audit(audit).await?;
        tx.commit().await
    }

    async fn update_account_claims(
        &self,
        id: &str,
        expected: &StandardClaims,
        new: &StandardClaims,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // A write that changes nothing, first: it takes the row's lock (Postgres) or the
        // database's (SQLite), so the claims it hands back stay as read until the commit.
        let Some(row) = sqlx::query(
            "update account set claims = claims where id = $1 and disabled = $2 returning claims",
        )
        .bind(id)
        .bind(false)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?
        else {
            tx.rollback().await?;
            return Err(StoreError::NotFound("user"));
        };
        let current: StandardClaims = Row::new(&row).json("claims")?;
        if current != *expected {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("update account set claims = $1, updated_at = $2 where id = $3")
            .bind(to_json(new)?)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        tx.audit(audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn upgrade_password_hash(
        &self,
        id: &str,
        old: &str,
        new: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "update account set password_hash = $1 where id = $2 and password_hash = $3",
        )
        .bind(new)
        .bind(id)
        .bind(old)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?;
        tx.commit_audited_if(done, audit).await
    }

    async fn update_account_ending_access(
        &self,
        a: &AccountRecord,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        write_account(&mut tx, a).await?;
        let ended = end_access(&mut tx, &a.id, now).await?;
        tx.audit(&ended.recorded_in(audit)).await?;
        tx.commit().await
    }

    async fn delete_account(&self, id: &str, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // Counted for the audit trail before the rows are deleted. The time is never
        // read back: everything revoked here is deleted below.
        let ended = end_access(&mut tx, id, audit.created_at).await?;
        let done = sqlx::query("delete from account where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        affected_one(done, "user")?;
        // By name: on Postgres these tables have no foreign keys (decisions 0033, 0040). Its
        // sessions went with its access, above.
        delete_what_hangs_off(&mut tx, "account_id", id).await?;
        tx.audit(&ended.recorded_in(audit)).await?;
        tx.commit().await
    }
}

/// Runs one of the `REVOKE_*_OF_USER` statements; how many rows it revoked.
async fn revoke_of_user(
    conn: &mut AnyConnection,
    sql: &'static str,
    account_id: &str,
    now: i64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(sql)
        .bind(account_id)
        .bind(now)
        .execute(conn)
        .await
        .map_err(StoreError::Unavailable)?
        .rows_affected())
}

/// `$1` the user, `$2` the time.
const REVOKE_GRANTS_OF_USER: &str =
    "update oauth_grant set revoked_at = $2 where account_id = $1 and revoked_at is null";

/// `$1` the user, `$2` the time.
pub(super) const REVOKE_API_KEYS_OF_USER: &str = "update token set revoked_at = $2 \
     where account_id = $1 and kind = 'api_key' and revoked_at is null";

/// The user's other tokens, reached through their grants: on Postgres the user index holds
/// only tokens without a grant (migration 0017), which are API keys, revoked first. `$1`
/// the user, `$2` the time.
pub(super) const REVOKE_TOKENS_OF_USER: &str = "update token set revoked_at = $2 \
     where grant_id in (select id from oauth_grant where account_id = $1) \
     and revoked_at is null";
