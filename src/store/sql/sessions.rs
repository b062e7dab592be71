//! Browser sessions and failed logins: [`SessionStore`] on SQL.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use std::sync::LazyLock;

use super::accounts::{account_from, ACCOUNT_COLUMNS};
use super::clients::{client_from_row, CLIENT_COLUMNS};
use super::throttle::{bind_take_back, take_back_clauses, take_back_values};
use super::tokens::{event_json, sqlite_events_insert};
use super::{
    aliased, audit_insert_lazily_sql, audit_insert_sql, bind_audit, placeholders_looking_up,
    sqlite_json_values, to_json, AnyQuery, Row, SqlStore,
};
use crate::audit::AuditEvent;
use crate::crypto::token::Digest;
use crate::store::Backend;
use crate::store::{
    AccountRecord, ClientRecord, SessionRecord, SessionStore, SignedInWithConsent, StoreError,
    TakeBack,
};

macro_rules! session_columns {
    () => {
        "id_digest, account_id, auth_time, amr, created_at, expires_at, sid"
    };
}

fn session_from_row(row: &AnyRow) -> Result<SessionRecord, StoreError> {
    session_from(Row::new(row))
}

fn session_from(row: Row<'_>) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id_digest: row.digest("id_digest")?,
        account_id: row.get("account_id")?,
        auth_time: row.get("auth_time")?,
        amr: row.json_list("amr")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        sid: row.get("sid")?,
    })
}

/// Binds a session's values, in `session_columns!` order.
fn bind_session<'q>(
    q: AnyQuery<'q>,
    session: &'q SessionRecord,
) -> Result<AnyQuery<'q>, StoreError> {
    Ok(q.bind(session.id_digest.as_bytes())
        .bind(&session.account_id)
        .bind(session.auth_time)
        .bind(to_json(&session.amr)?)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(&session.sid))
}

/// The live session `$1` at `$2` with its user, and `consent` as `k_scope` from `join`.
fn live_session_sql(consent: &str, join: &str) -> String {
    format!(
        "select {}, {}, {consent} as k_scope from session s \
         join account a on a.id = s.account_id {join} \
         where s.id_digest = $1 and s.expires_at > $2",
        aliased("s", session_columns!()),
        aliased("a", ACCOUNT_COLUMNS)
    )
}

/// SQLite: [`SessionStore::insert_session`] as one call to a connection's thread, as
/// Postgres's is one statement ([`session_insert_sql_pg`]): the replaced session's delete
/// (none when `$1` names none), the session, the reset of the user's failed-login count,
/// the throttle's take-back and the event, where a transaction of its own had been up to
/// eight hand-offs (decision 0054). `$1` is [`session_write_json`]'s object.
static SQLITE_WRITE_SESSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "begin immediate; \
         delete from main.session where id_digest = unhex($1 ->> 'replaces'); \
         with x (v) as materialized (select jsonb_extract($1, '$.session')) \
         insert into main.session ({}) select {} from x; \
         update main.account set failed_login_count = 0 \
         where id = ($1 ->> '$.session.account_id') and failed_login_count <> 0; \
         delete from main.login_throttle where key = ($1 ->> 'clear'); \
         update main.login_throttle set failures = failures - 1 \
         where key in (select value from json_each($1, '$.forgive')) and failures > 0; \
         {}; \
         commit",
        session_columns!(),
        sqlite_json_values("v", session_columns!(), &["id_digest"]),
        sqlite_events_insert("$1, '$.events'", "true"),
    )
});

/// [`SQLITE_WRITE_SESSION`]'s `$1`.
fn session_write_json(
    session: &SessionRecord,
    replaces: Option<&Digest>,
    take_back: &TakeBack,
    audit: &AuditEvent,
) -> Result<String, StoreError> {
    to_json(&serde_json::json!({
        "session": {
            "id_digest": session.id_digest.to_hex(),
            "account_id": session.account_id,
            "auth_time": session.auth_time,
            "amr": to_json(&session.amr)?,
            "created_at": session.created_at,
            "expires_at": session.expires_at,
            "sid": session.sid,
        },
        "replaces": replaces.map(Digest::to_hex),
        "clear": take_back.clear,
        "forgive": take_back.forgive,
        "events": [event_json(audit, None)?],
    }))
}

/// Postgres: a session's write in one statement: the session (`$1`…`$7`), the replaced one's
/// delete (`$8`, with `replaces`), the throttle's take-back, the reset of the account's
/// failed-login count, and the audit event.
pub(super) fn session_insert_sql_pg(replaces: bool, take_back: &TakeBack) -> String {
    // Conditional: most sign-ins follow no failure, and then the row is not written.
    // `$2` is the session's account.
    let reset = "update account set failed_login_count = 0 where id = $2 \
                 and failed_login_count <> 0";
    let replaced = if replaces {
        "d as (delete from session where id_digest = $8), "
    } else {
        ""
    };
    let first_take_back = if replaces { 9 } else { 8 };
    let mut settled = take_back_clauses(take_back, first_take_back).join(", ");
    if !settled.is_empty() {
        settled.push_str(", ");
    }
    let first_audit = first_take_back + take_back_values(take_back);
    // A new session commits lazily (decision 0039): lost in a crash, it costs the person a
    // sign-in. One that ends another stays synchronous: the end must hold.
    let audit_insert = if replaces {
        audit_insert_sql(first_audit, 1)
    } else {
        audit_insert_lazily_sql(first_audit, 1)
    };
    // The user looked up, not taken as given: the session table has no foreign keys on
    // Postgres (decision 0040).
    let insert = format!(
        "insert into session ({}) values {}",
        session_columns!(),
        placeholders_looking_up(1, 7, &[(1, "account")])
    );
    format!("with {replaced}{settled}s as ({insert}), r as ({reset}) {audit_insert}")
}

impl SqlStore {
    /// The unexpired session and its user in one lookup, with the user's consent for
    /// `consent_for` when given (else `None`).
    async fn live_session(
        &self,
        digest: &Digest,
        now: i64,
        consent_for: Option<&str>,
    ) -> Result<Option<SignedInWithConsent>, StoreError> {
        static PLAIN: LazyLock<String> = LazyLock::new(|| live_session_sql("null", ""));
        static WITH_CONSENT: LazyLock<String> = LazyLock::new(|| {
            live_session_sql(
                "k.scope",
                "left join consent k on k.account_id = s.account_id and k.client_id = $3",
            )
        });
        let q = match consent_for {
            Some(client_id) => sqlx::query(&WITH_CONSENT)
                .bind(digest.as_bytes())
                .bind(now)
                .bind(client_id),
            None => sqlx::query(&PLAIN).bind(digest.as_bytes()).bind(now),
        };
        let Some(row) = q
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?
        else {
            return Ok(None);
        };
        Ok(Some((
            (
                session_from(Row::prefixed(&row, "s_"))?,
                account_from(Row::prefixed(&row, "a_"))?,
            ),
            Row::new(&row).get("k_scope")?,
        )))
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn insert_session(
        &self,
        session: &SessionRecord,
        replaces: Option<&Digest>,
        take_back: &TakeBack,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            let sql = session_insert_sql_pg(replaces.is_some(), take_back);
            let mut q = bind_session(sqlx::query(&sql), session)?;
            if let Some(old) = replaces {
                q = q.bind(old.as_bytes());
            }
            q = bind_take_back(q, take_back);
            self.execute_audited(
                bind_audit(q, audit)?,
                std::slice::from_ref(audit),
                "session",
            )
            .await?;
            return Ok(());
        }
        let json = session_write_json(session, replaces, take_back, audit)?;
        let (_, took) = self
            .write_sqlite(&SQLITE_WRITE_SESSION, vec![json], "session")
            .await?;
        self.committed(std::slice::from_ref(audit), took);
        Ok(())
    }

    async fn session(
        &self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        // With its user, as a sign-in reads it: a session whose user is gone (a write that
        // raced the user's deletion, on Postgres: decision 0040) is none.
        Ok(self
            .live_session(digest, now, None)
            .await?
            .map(|((session, _), _)| session))
    }

    async fn signed_in(
        &self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<(SessionRecord, AccountRecord)>, StoreError> {
        Ok(self
            .live_session(digest, now, None)
            .await?
            .map(|(signed_in, _)| signed_in))
    }

    async fn signed_in_with_consent(
        &self,
        digest: &Digest,
        now: i64,
        client_id: &str,
    ) -> Result<Option<SignedInWithConsent>, StoreError> {
        self.live_session(digest, now, Some(client_id)).await
    }

    async fn delete_session(&self, digest: &Digest) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query("delete from session where id_digest = $1")
            .bind(digest.as_bytes())
            .execute(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(())
    }

    async fn sessions_of(
        &self,
        account_id: &str,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "select ",
            session_columns!(),
            " from session where account_id = $1 and expires_at > $2 order by created_at desc"
        ))
        .bind(account_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?;
        rows.iter().map(session_from_row).collect()
    }

    async fn end_session(
        &self,
        sid: &str,
        grants: bool,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let ended = sqlx::query("delete from session where sid = $1")
            .bind(sid)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        if ended.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound("session"));
        }
        let mut revoked = 0;
        if grants {
            revoked = sqlx::query(
                "update oauth_grant set revoked_at = $2 where sid = $1 and revoked_at is null",
            )
            .bind(sid)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?
            .rows_affected();
            sqlx::query(
                "update token set revoked_at = $2 where revoked_at is null and grant_id in \
                 (select id from oauth_grant where sid = $1)",
            )
            .bind(sid)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        }
        let mut audit = audit.clone();
        if let serde_json::Value::Object(details) = &mut audit.details {
            details.insert("sid".into(), sid.into());
            details.insert("grants_revoked".into(), revoked.into());
        }
        tx.audit(&audit).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn backchannel_clients(
        &self,
        sid: &str,
    ) -> Result<Vec<(ClientRecord, String)>, StoreError> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "select {CLIENT_COLUMNS}, g.account_id from client c join \
                 (select distinct client_id, account_id from oauth_grant \
                 where sid = $1 and account_id is not null) g on g.client_id = c.id \
                 where c.backchannel_logout_uri is not null order by c.id"
            )
        });
        let rows = sqlx::query(&SQL)
            .bind(sid)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        rows.iter()
            .map(|row| Ok((client_from_row(row)?, Row::new(row).get("account_id")?)))
            .collect()
    }

    async fn frontchannel_clients(&self, sid: &str) -> Result<Vec<ClientRecord>, StoreError> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "select {CLIENT_COLUMNS} from client where frontchannel_logout_uri is not null \
                 and id in (select client_id from oauth_grant where sid = $1) order by id"
            )
        });
        let rows = sqlx::query(&SQL)
            .bind(sid)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        rows.iter().map(client_from_row).collect()
    }

    async fn record_failed_login(
        &self,
        account_id: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        if let Some(id) = account_id {
            sqlx::query(
                "update account set failed_login_count = failed_login_count + 1, \
                 last_failed_login_at = $2 where id = $1",
            )
            .bind(id)
            .bind(audit.created_at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        }
        tx.audit(audit).await?;
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's sign-in write finds the replaced session, the user and the throttle's keys
    /// through their keys: a scan in the write turn would stop every writer.
    #[tokio::test]
    async fn the_sqlite_sign_in_write_finds_its_rows_by_key() {
        let bind = r#"{"replaces": "00", "session": {"account_id": "a"}, "clear": "k",
            "forgive": ["k"]}"#;
        for (read, table, key) in [
            ("delete from main.session", "session", "(id_digest=?)"),
            ("update main.account", "account", "(id=?)"),
            (
                "delete from main.login_throttle",
                "login_throttle",
                "(key=?)",
            ),
            ("update main.login_throttle", "login_throttle", "(key=?)"),
        ] {
            super::super::assert_sqlite_plans_search_by_key(
                &SQLITE_WRITE_SESSION,
                bind,
                &[read],
                (table, table, key),
                &["SCAN json_each"],
            )
            .await;
        }
    }
}
