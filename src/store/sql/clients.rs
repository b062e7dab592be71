//! Registered clients: [`ClientStore`] on SQL.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::{affected_one, delete_what_hangs_off, to_json, write_error, AnyQuery, Row, SqlStore};
use crate::audit::AuditEvent;
use crate::store::{AccessTokenFormat, AuthMethod, ClientRecord, ClientStore, StoreError};

macro_rules! client_columns {
    () => {
        "id, name, secret_digest, redirect_uris, post_logout_redirect_uris, grant_types, scope, \
         token_endpoint_auth_method, access_token_format, may_introspect, first_party, \
         require_pkce, id_token_signed_response_alg, created_at, updated_at, rate_limit_per_sec, \
         backchannel_logout_uri, backchannel_logout_session_required, frontchannel_logout_uri, \
         frontchannel_logout_session_required"
    };
}

/// The columns [`client_from_row`] reads.
pub(super) const CLIENT_COLUMNS: &str = client_columns!();

pub(super) fn client_from_row(row: &AnyRow) -> Result<ClientRecord, StoreError> {
    let row = Row::new(row);
    let grant_types: String = row.get("grant_types")?;
    Ok(ClientRecord {
        id: row.get("id")?,
        name: row.get("name")?,
        secret_digest: row.opt_digest("secret_digest")?,
        redirect_uris: row.json_list("redirect_uris")?,
        post_logout_redirect_uris: row.json_list("post_logout_redirect_uris")?,
        grant_types: grant_types.split_whitespace().map(str::to_owned).collect(),
        scope: row.get("scope")?,
        token_endpoint_auth_method: row.parsed(
            "token_endpoint_auth_method",
            "auth method",
            AuthMethod::parse,
        )?,
        access_token_format: row.parsed(
            "access_token_format",
            "access token format",
            AccessTokenFormat::parse,
        )?,
        may_introspect: row.flag("may_introspect")?,
        first_party: row.flag("first_party")?,
        require_pkce: row.flag("require_pkce")?,
        id_token_signed_response_alg: row.get("id_token_signed_response_alg")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        rate_limit_per_sec: row.get("rate_limit_per_sec")?,
        backchannel_logout_uri: row.get("backchannel_logout_uri")?,
        backchannel_logout_session_required: row.flag("backchannel_logout_session_required")?,
        frontchannel_logout_uri: row.get("frontchannel_logout_uri")?,
        frontchannel_logout_session_required: row.flag("frontchannel_logout_session_required")?,
    })
}

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

#[async_trait]
impl ClientStore for SqlStore {
    async fn insert_client(&self, c: &ClientRecord, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        bind_client(
            sqlx::query(concat!(
                "insert into client (",
                client_columns!(),
                ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
            )),
            c,
        )?
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(c.rate_limit_per_sec)
        .bind(&c.backchannel_logout_uri)
        .bind(c.backchannel_logout_session_required)
        .bind(&c.frontchannel_logout_uri)
        .bind(c.frontchannel_logout_session_required)
        .execute(&mut *tx)
        .await
        .map_err(write_error("client"))?;
        // Nothing left under this id from an earlier client may become the new one's (a
        // consent would skip the new client's consent screen): rows that raced the old one's
        // deletion on Postgres, or outlived a deletion made past Tessera (decision 0040).
        // After the insert: an id in use fails above and deletes nothing.
        delete_what_hangs_off(&mut tx, "client_id", &c.id).await?;
        tx.audit(audit).await?;
        tx.commit().await
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
                 id_token_signed_response_alg = $13, updated_at = $14, \
                 rate_limit_per_sec = $15, backchannel_logout_uri = $16, \
                 backchannel_logout_session_required = $17, frontchannel_logout_uri = $18, \
                 frontchannel_logout_session_required = $19 where id = $1",
            ),
            c,
        )?
        .bind(c.updated_at)
        .bind(c.rate_limit_per_sec)
        .bind(&c.backchannel_logout_uri)
        .bind(c.backchannel_logout_session_required)
        .bind(&c.frontchannel_logout_uri)
        .bind(c.frontchannel_logout_session_required)
        .execute(&mut *tx)
        .await
        .map_err(write_error("client"))?;
        affected_one(done, "client")?;
        tx.audit(audit).await?;
        tx.commit().await
    }

    async fn delete_client(&self, id: &str, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("delete from client where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Unavailable)?;
        affected_one(done, "client")?;
        // By name: on Postgres these tables have no foreign keys (decisions 0033, 0040).
        delete_what_hangs_off(&mut tx, "client_id", id).await?;
        tx.audit(audit).await?;
        tx.commit().await
    }
}
