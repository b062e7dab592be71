//! The SQL implementation of [`Store`], for SQLite and Postgres alike.
//!
//! Both dialects accept the same statements here (`$n` placeholders, `returning`, standard
//! types), so one implementation over sqlx's `Any` driver serves both, and the two migration
//! folders keep the schemas the same shape. Where a dialect must differ, branch on
//! `self.backend` at that spot.
//!
//! SQLite note: a transaction that reads before it writes can fail with `SQLITE_BUSY` when
//! another writer got there first, and no busy timeout helps it. Every transaction here
//! therefore starts with its write.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, AnyPool, Executor, Row};

use super::{
    AccessTokenFormat, AccountRecord, AuditRecord, AuthMethod, Backend, ClientRecord, CodeRecord,
    GrantRecord, ReencryptedKey, SessionRecord, SigningKeyRecord, Store, StoreError, TokenKind,
    TokenRecord,
};
use crate::audit::AuditEvent;
use crate::config::DatabaseUrl;
use crate::crypto::token::Digest;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// A pool on SQLite or Postgres.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

impl SqlStore {
    /// Connects, creating the SQLite file and its folder if needed, and migrates.
    pub async fn open(url: &DatabaseUrl) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.is_postgres() {
            (Backend::Postgres, url.as_str().to_owned())
        } else {
            (Backend::Sqlite, prepare_sqlite(url.as_str())?)
        };
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                // One writer at a time either way; a few readers share the WAL.
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Durable across power loss with WAL, and much faster than FULL.
                        conn.execute("pragma synchronous = normal").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(StoreError::Unavailable)?;
        if backend == Backend::Sqlite {
            // Readers do not block the writer and vice versa; the mode is stored in the file.
            sqlx::query("pragma journal_mode = wal")
                .execute(&pool)
                .await
                .map_err(StoreError::Unavailable)?;
        }
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await?;
        Ok(SqlStore { pool, backend })
    }
}

/// Creates the database's folder and makes sure a missing file is created, not an error.
fn prepare_sqlite(url: &str) -> Result<String, StoreError> {
    let options = SqliteConnectOptions::from_str(url).map_err(StoreError::Unavailable)?;
    if let Some(parent) = options.get_filename().parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(sqlx::Error::Configuration(
                    format!("cannot create {}: {e}", parent.display()).into(),
                ))
            })?;
        }
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// Unique violations become `Conflict(what)`; anything else means the store failed.
fn write_error(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::Unavailable(e),
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A flag: `boolean` on Postgres, a 0/1 integer on SQLite (see the migrations).
fn flag(row: &AnyRow, column: &str) -> Result<bool, StoreError> {
    row.try_get::<bool, _>(column)
        .or_else(|_| row.try_get::<i64, _>(column).map(|v| v != 0))
        .map_err(corrupt)
}

fn opt_digest(row: &AnyRow, column: &str) -> Result<Option<Digest>, StoreError> {
    let bytes: Option<Vec<u8>> = row.try_get(column).map_err(corrupt)?;
    bytes
        .map(|b| Digest::from_slice(&b).ok_or_else(|| corrupt(format!("{column} length"))))
        .transpose()
}

fn digest(row: &AnyRow, column: &str) -> Result<Digest, StoreError> {
    opt_digest(row, column)?.ok_or_else(|| corrupt(format!("{column} is null")))
}

fn opt_json_list(row: &AnyRow, column: &str) -> Result<Vec<String>, StoreError> {
    let text: Option<String> = row.try_get(column).map_err(corrupt)?;
    match text {
        None => Ok(Vec::new()),
        Some(t) => serde_json::from_str(&t).map_err(corrupt),
    }
}

fn json_list(row: &AnyRow, column: &str) -> Result<Vec<String>, StoreError> {
    let text: String = row.try_get(column).map_err(corrupt)?;
    serde_json::from_str(&text).map_err(corrupt)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(corrupt)
}

fn affected_one(done: sqlx::any::AnyQueryResult, what: &'static str) -> Result<(), StoreError> {
    if done.rows_affected() == 0 {
        Err(StoreError::NotFound(what))
    } else {
        Ok(())
    }
}

macro_rules! client_columns {
    () => {
        "id, name, secret_digest, redirect_uris, post_logout_redirect_uris, grant_types, scope, \
         token_endpoint_auth_method, access_token_format, may_introspect, first_party, \
         require_pkce, id_token_signed_response_alg, created_at, updated_at"
    };
}

fn session_from_row(row: &AnyRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id_digest: digest(row, "id_digest")?,
        account_id: row.try_get("account_id").map_err(corrupt)?,
        auth_time: row.try_get("auth_time").map_err(corrupt)?,
        amr: json_list(row, "amr")?,
        created_at: row.try_get("created_at").map_err(corrupt)?,
        expires_at: row.try_get("expires_at").map_err(corrupt)?,
    })
}

macro_rules! code_columns {
    () => {
        "digest, grant_id, client_id, account_id, redirect_uri, scope, nonce, code_challenge, \
         auth_time, amr, created_at, expires_at, consumed_at"
    };
}

fn code_from_row(row: &AnyRow) -> Result<CodeRecord, StoreError> {
    Ok(CodeRecord {
        digest: digest(row, "digest")?,
        grant_id: row.try_get("grant_id").map_err(corrupt)?,
        client_id: row.try_get("client_id").map_err(corrupt)?,
        account_id: row.try_get("account_id").map_err(corrupt)?,
        redirect_uri: row.try_get("redirect_uri").map_err(corrupt)?,
        scope: row.try_get("scope").map_err(corrupt)?,
        nonce: row.try_get("nonce").map_err(corrupt)?,
        code_challenge: row.try_get("code_challenge").map_err(corrupt)?,
        auth_time: row.try_get("auth_time").map_err(corrupt)?,
        amr: json_list(row, "amr")?,
        created_at: row.try_get("created_at").map_err(corrupt)?,
        expires_at: row.try_get("expires_at").map_err(corrupt)?,
        consumed_at: row.try_get("consumed_at").map_err(corrupt)?,
    })
}

fn grant_from_row(row: &AnyRow) -> Result<GrantRecord, StoreError> {
    Ok(GrantRecord {
        id: row.try_get("id").map_err(corrupt)?,
        client_id: row.try_get("client_id").map_err(corrupt)?,
        account_id: row.try_get("account_id").map_err(corrupt)?,
        scope: row.try_get("scope").map_err(corrupt)?,
        auth_time: row.try_get("auth_time").map_err(corrupt)?,
        amr: opt_json_list(row, "amr")?,
        created_at: row.try_get("created_at").map_err(corrupt)?,
        revoked_at: row.try_get("revoked_at").map_err(corrupt)?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    let kind: String = row.try_get("kind").map_err(corrupt)?;
    Ok(TokenRecord {
        digest: digest(row, "digest")?,
        kind: TokenKind::parse(&kind).ok_or_else(|| corrupt(format!("token kind {kind}")))?,
        jti: row.try_get("jti").map_err(corrupt)?,
        grant_id: row.try_get("grant_id").map_err(corrupt)?,
        client_id: row.try_get("client_id").map_err(corrupt)?,
        account_id: row.try_get("account_id").map_err(corrupt)?,
        scope: row.try_get("scope").map_err(corrupt)?,
        label: row.try_get("label").map_err(corrupt)?,
        previous_digest: opt_digest(row, "previous_digest")?,
        created_at: row.try_get("created_at").map_err(corrupt)?,
        expires_at: row.try_get("expires_at").map_err(corrupt)?,
        used_at: row.try_get("used_at").map_err(corrupt)?,
        revoked_at: row.try_get("revoked_at").map_err(corrupt)?,
    })
}

fn client_from_row(row: &AnyRow) -> Result<ClientRecord, StoreError> {
    let digest: Option<Vec<u8>> = row.try_get("secret_digest").map_err(corrupt)?;
    let secret_digest = match digest {
        None => None,
        Some(bytes) => Some(Digest::from_slice(&bytes).ok_or_else(|| corrupt("digest length"))?),
    };
    let method: String = row.try_get("token_endpoint_auth_method").map_err(corrupt)?;
    let format: String = row.try_get("access_token_format").map_err(corrupt)?;
    let grant_types: String = row.try_get("grant_types").map_err(corrupt)?;
    Ok(ClientRecord {
        id: row.try_get("id").map_err(corrupt)?,
        name: row.try_get("name").map_err(corrupt)?,
        secret_digest,
        redirect_uris: json_list(row, "redirect_uris")?,
        post_logout_redirect_uris: json_list(row, "post_logout_redirect_uris")?,
        grant_types: grant_types.split_whitespace().map(str::to_owned).collect(),
        scope: row.try_get("scope").map_err(corrupt)?,
        token_endpoint_auth_method: AuthMethod::parse(&method)
            .ok_or_else(|| corrupt(format!("auth method {method}")))?,
        access_token_format: AccessTokenFormat::parse(&format)
            .ok_or_else(|| corrupt(format!("access token format {format}")))?,
        may_introspect: flag(row, "may_introspect")?,
        first_party: flag(row, "first_party")?,
        require_pkce: flag(row, "require_pkce")?,
        id_token_signed_response_alg: row
            .try_get("id_token_signed_response_alg")
            .map_err(corrupt)?,
        created_at: row.try_get("created_at").map_err(corrupt)?,
        updated_at: row.try_get("updated_at").map_err(corrupt)?,
    })
}

macro_rules! account_columns {
    () => {
        "id, username, password_hash, claims, disabled, failed_login_count, created_at, updated_at"
    };
}

fn account_from_row(row: &AnyRow) -> Result<AccountRecord, StoreError> {
    let claims: String = row.try_get("claims").map_err(corrupt)?;
    Ok(AccountRecord {
        id: row.try_get("id").map_err(corrupt)?,
        username: row.try_get("username").map_err(corrupt)?,
        password_hash: row.try_get("password_hash").map_err(corrupt)?,
        claims: serde_json::from_str(&claims).map_err(corrupt)?,
        disabled: flag(row, "disabled")?,
        failed_login_count: row.try_get("failed_login_count").map_err(corrupt)?,
        created_at: row.try_get("created_at").map_err(corrupt)?,
        updated_at: row.try_get("updated_at").map_err(corrupt)?,
    })
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds `$1`–`$13`: the client's id and every field that insert and update both write.
fn bind_client<'q>(q: AnyQuery<'q>, c: &'q ClientRecord) -> Result<AnyQuery<'q>, StoreError> {
    Ok(q.bind(&c.id)
        .bind(&c.name)
        .bind(c.secret_digest.map(|d| d.as_bytes().to_vec()))
        .bind(to_json(&c.redirect_uris)?)
        .bind(to_json(&c.post_logout_redirect_uris)?)
        .bind(c.grant_types.join(" "))
        .bind(&c.scope)
        .bind(c.token_endpoint_auth_method.as_str())
        .bind(c.access_token_format.as_str())
        .bind(c.may_introspect)
        .bind(c.first_party)
        .bind(c.require_pkce)
        .bind(&c.id_token_signed_response_alg))
}

/// Binds `$1`–`$6`: the user's id and every field that insert and update both write.
fn bind_account<'q>(q: AnyQuery<'q>, a: &'q AccountRecord) -> Result<AnyQuery<'q>, StoreError> {
    Ok(q.bind(&a.id)
        .bind(&a.username)
        .bind(&a.password_hash)
        .bind(to_json(&a.claims)?)
        .bind(a.disabled)
        .bind(a.failed_login_count))
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

async fn insert_audit(conn: &mut AnyConnection, event: &AuditEvent) -> Result<(), StoreError> {
    sqlx::query(
        "insert into audit_event \
         (created_at, kind, actor, client_id, account_id, source_ip, user_agent, details) \
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(event.created_at)
    .bind(&event.kind)
    .bind(&event.actor)
    .bind(&event.client_id)
    .bind(&event.account_id)
    .bind(&event.source_ip)
    .bind(&event.user_agent)
    .bind(to_json(&event.details)?)
    .execute(conn)
    .await
    .map_err(StoreError::Unavailable)?;
    Ok(())
}

/// Writes every mutable field of the user; `NotFound` if absent, `Conflict` if the new
/// username is taken.
async fn write_account(conn: &mut AnyConnection, a: &AccountRecord) -> Result<(), StoreError> {
    let done = bind_account(
        sqlx::query(
            "update account set username = $2, password_hash = $3, claims = $4, \
             disabled = $5, failed_login_count = $6, updated_at = $7 where id = $1",
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
}

impl AccessEnded {
    fn recorded_in(&self, audit: &AuditEvent) -> AuditEvent {
        let mut event = audit.clone();
        if let serde_json::Value::Object(details) = &mut event.details {
            details.insert("sessions_ended".into(), self.sessions.into());
            details.insert("grants_revoked".into(), self.grants.into());
            details.insert("tokens_revoked".into(), self.tokens.into());
        }
        event
    }
}

/// Ends every browser session of the user and revokes every grant and every token issued to
/// them, so that nothing from before survives (ASVS 5.0 7.4.2, 7.4.3).
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
    let grants = sqlx::query(
        "update oauth_grant set revoked_at = $2 where account_id = $1 and revoked_at is null",
    )
    .bind(account_id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::Unavailable)?
    .rows_affected();
    let tokens = sqlx::query(
        "update token set revoked_at = $2 where account_id = $1 and revoked_at is null",
    )
    .bind(account_id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::Unavailable)?
    .rows_affected();
    Ok(AccessEnded {
        sessions,
        grants,
        tokens,
    })
}

impl SqlStore {
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        self.pool.begin().await.map_err(StoreError::Unavailable)
    }
}

async fn commit(tx: sqlx::Transaction<'static, sqlx::Any>) -> Result<(), StoreError> {
    tx.commit().await.map_err(StoreError::Unavailable)
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1")
            .execute(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(())
    }

    async fn insert_client(&self, c: &ClientRecord, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        bind_client(
            sqlx::query(concat!(
                "insert into client (",
                client_columns!(),
                ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            )),
            c,
        )?
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(write_error("client"))?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
    }

    async fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        sqlx::query(concat!(
            "select ",
            client_columns!(),
            " from client where id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?
        .as_ref()
        .map(client_from_row)
        .transpose()
    }

    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        sqlx::query(concat!(
            "select ",
            client_columns!(),
            " from client order by id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?
        .iter()
        .map(client_from_row)
        .collect()
    }

    async fn update_client(&self, c: &ClientRecord, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = bind_client(
            sqlx::query(
                "update client set name = $2, secret_digest = $3, redirect_uris = $4, \
                 post_logout_redirect_uris = $5, grant_types = $6, scope = $7, \
                 token_endpoint_auth_method = $8, access_token_format = $9, \
                 may_introspect = $10, first_party = $11, require_pkce = $12, \
                 id_token_signed_response_alg = $13, updated_at = $14 where id = $1",
            ),
            c,
        )?
        .bind(c.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(write_error("client"))?;
        affected_one(done, "client")?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
    }

    async fn delete_client(&self, id: &str, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("delete from client where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        affected_one(done, "client")?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
    }

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
                ") values ($1, $2, $3, $4, $5, $6, $7, $8)"
            )),
            a,
        )?
        .bind(a.created_at)
        .bind(a.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(write_error("user"))?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
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
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
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
        insert_audit(&mut tx, &ended.recorded_in(audit)).await?;
        commit(tx).await
    }

    async fn delete_account(&self, id: &str, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // Counted for the audit trail before the cascade deletes the rows. The time is never
        // read back: everything revoked here is deleted below.
        let ended = end_access(&mut tx, id, audit.created_at).await?;
        let done = sqlx::query("delete from account where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        affected_one(done, "user")?;
        insert_audit(&mut tx, &ended.recorded_in(audit)).await?;
        commit(tx).await
    }

    async fn insert_session(
        &self,
        session: &SessionRecord,
        replaces: Option<&Digest>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        if let Some(old) = replaces {
            sqlx::query("delete from session where id_digest = $1")
                .bind(old.as_bytes())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::Unavailable)?;
        }
        sqlx::query(
            "insert into session (id_digest, account_id, auth_time, amr, created_at, expires_at) \
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(session.id_digest.as_bytes())
        .bind(&session.account_id)
        .bind(session.auth_time)
        .bind(to_json(&session.amr)?)
        .bind(session.created_at)
        .bind(session.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(write_error("session"))?;
        sqlx::query("update account set failed_login_count = 0 where id = $1")
            .bind(&session.account_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
    }

    async fn session(
        &self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        sqlx::query(
            "select id_digest, account_id, auth_time, amr, created_at, expires_at from session \
             where id_digest = $1 and expires_at > $2",
        )
        .bind(digest.as_bytes())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?
        .as_ref()
        .map(session_from_row)
        .transpose()
    }

    async fn delete_session(&self, digest: &Digest) -> Result<(), StoreError> {
        sqlx::query("delete from session where id_digest = $1")
            .bind(digest.as_bytes())
            .execute(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(())
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
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
    }

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
        row.map(|r| r.try_get("scope").map_err(corrupt)).transpose()
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
        // (SQLite), so a concurrent grant waits here and then reads what this one wrote.
        sqlx::query(
            "insert into consent (account_id, client_id, scope, created_at, updated_at) \
             values ($1, $2, '', $3, $3) on conflict (account_id, client_id) \
             do update set updated_at = excluded.updated_at",
        )
        .bind(account_id)
        .bind(client_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::Unavailable)?;
        let row = sqlx::query("select scope from consent where account_id = $1 and client_id = $2")
            .bind(account_id)
            .bind(client_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        let before: String = row.try_get("scope").map_err(corrupt)?;
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
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
    }

    async fn insert_code(&self, grant: &GrantRecord, code: &CodeRecord) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "insert into oauth_grant (id, client_id, account_id, scope, auth_time, amr, created_at, \
             revoked_at) values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&grant.id)
        .bind(&grant.client_id)
        .bind(&grant.account_id)
        .bind(&grant.scope)
        .bind(grant.auth_time)
        .bind(to_json(&grant.amr)?)
        .bind(grant.created_at)
        .bind(grant.revoked_at)
        .execute(&mut *tx)
        .await
        .map_err(write_error("grant"))?;
        sqlx::query(concat!(
            "insert into authorization_code (",
            code_columns!(),
            ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(code.digest.as_bytes())
        .bind(&code.grant_id)
        .bind(&code.client_id)
        .bind(&code.account_id)
        .bind(&code.redirect_uri)
        .bind(&code.scope)
        .bind(&code.nonce)
        .bind(&code.code_challenge)
        .bind(code.auth_time)
        .bind(to_json(&code.amr)?)
        .bind(code.created_at)
        .bind(code.expires_at)
        .bind(code.consumed_at)
        .execute(&mut *tx)
        .await
        .map_err(write_error("authorization code"))?;
        commit(tx).await
    }

    async fn consume_code(
        &self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<CodeRecord>, StoreError> {
        sqlx::query(concat!(
            "update authorization_code set consumed_at = $2 \
             where digest = $1 and consumed_at is null returning ",
            code_columns!()
        ))
        .bind(digest.as_bytes())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?
        .as_ref()
        .map(code_from_row)
        .transpose()
    }

    async fn code_grant_id(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("select grant_id from authorization_code where digest = $1")
            .bind(digest.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        row.map(|r| r.try_get("grant_id").map_err(corrupt))
            .transpose()
    }

    async fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        sqlx::query(
            "select id, client_id, account_id, scope, auth_time, amr, created_at, revoked_at \
             from oauth_grant where id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?
        .as_ref()
        .map(grant_from_row)
        .transpose()
    }

    async fn revoke_grant(
        &self,
        grant_id: &str,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("update oauth_grant set revoked_at = $2 where id = $1 and revoked_at is null")
            .bind(grant_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        sqlx::query("update token set revoked_at = $2 where grant_id = $1 and revoked_at is null")
            .bind(grant_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
    }

    async fn insert_tokens(
        &self,
        tokens: &[TokenRecord],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for t in tokens {
            insert_token(&mut tx, t).await?;
        }
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
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
        insert_audit(&mut tx, audit).await?;
        commit(tx).await?;
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
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
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

    async fn insert_signing_key(
        &self,
        k: &SigningKeyRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        insert_signing_key_row(&mut tx, k).await?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
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
            .map(|r| r.try_get::<String, _>("alg").map_err(corrupt))
            .collect::<Result<_, _>>()?;
        let mut inserted = Vec::new();
        for (key, audit) in keys {
            if present.contains(&key.alg) || inserted.iter().any(|(_, alg)| *alg == &key.alg) {
                continue;
            }
            insert_signing_key_row(&mut tx, key).await?;
            insert_audit(&mut tx, audit).await?;
            inserted.push((key.kid.clone(), &key.alg));
        }
        commit(tx).await?;
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
                Ok(SigningKeyRecord {
                    kid: row.try_get("kid").map_err(corrupt)?,
                    alg: row.try_get("alg").map_err(corrupt)?,
                    public_jwk: row.try_get("public_jwk").map_err(corrupt)?,
                    private_jwk_encrypted: row.try_get("private_jwk_encrypted").map_err(corrupt)?,
                    state: row.try_get("state").map_err(corrupt)?,
                    created_at: row.try_get("created_at").map_err(corrupt)?,
                    activates_at: row.try_get("activates_at").map_err(corrupt)?,
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
                // Dropping the transaction rolls it back: nothing changed.
                return Ok(false);
            }
        }
        // A key inserted since the caller read them would stay under the old KEK.
        let stored: i64 = sqlx::query("select count(*) as n from signing_key")
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?
            .try_get("n")
            .map_err(corrupt)?;
        if usize::try_from(stored).ok() != Some(keys.len()) {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        commit(tx).await?;
        Ok(true)
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(StoreError::Unavailable)?;
        insert_audit(&mut conn, event).await
    }

    async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "select id, created_at, kind, actor, client_id, account_id, source_ip, user_agent, \
             details from audit_event order by id desc limit $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Unavailable)?;
        rows.iter()
            .map(|row| {
                let details: String = row.try_get("details").map_err(corrupt)?;
                Ok(AuditRecord {
                    id: row.try_get("id").map_err(corrupt)?,
                    event: AuditEvent {
                        created_at: row.try_get("created_at").map_err(corrupt)?,
                        kind: row.try_get("kind").map_err(corrupt)?,
                        actor: row.try_get("actor").map_err(corrupt)?,
                        client_id: row.try_get("client_id").map_err(corrupt)?,
                        account_id: row.try_get("account_id").map_err(corrupt)?,
                        source_ip: row.try_get("source_ip").map_err(corrupt)?,
                        user_agent: row.try_get("user_agent").map_err(corrupt)?,
                        details: serde_json::from_str(&details).map_err(corrupt)?,
                    },
                })
            })
            .collect()
    }
}
