//! The store: one interface over everything Tessera keeps, with one SQL implementation that
//! speaks both SQLite (the embedded default) and Postgres (shared by many instances), chosen
//! by the database URL's scheme. See `docs/decisions/0001-one-sql-store-for-two-backends.md`.
//!
//! Contracts (fosite's `storage.go` style): methods are named for their guarantee, only
//! digests of secrets cross this interface, writes that belong together commit in one
//! transaction, and time comes in as `now` (Unix seconds) so tests control it.
//!
//! The interface is split by concern (`traits.rs`); the records it passes are here; the
//! [`AfterCommit`] hook (`after_commit.rs`) hears about audit events once they are committed.

mod after_commit;
pub mod client_cache;
mod sql;
mod traits;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::AuditEvent;
use crate::config::DatabaseUrl;
use crate::crypto::token::Digest;

pub use after_commit::{AfterCommit, AuditMetrics, LogAuditEvents};
#[cfg(test)]
pub(crate) use sql::sqlite_store;
pub use sql::SqlStore;
pub use traits::{
    AccountStore, ApiKeyStore, AuditStore, ClientStore, ConsentGiven, ConsentStore, Expired,
    GrantStore, HousekeepingStore, LoginCount, LoginThrottleStore, SessionStore,
    SignedInWithConsent, SigningKeyStore, Store, TakeBack, ThrottleKey, TokenStore, SEAL_ROUND_MIN,
};

/// Every store trait, for `use crate::store::prelude::*;`. Code holding a `dyn Store` (or an
/// `S: Store`) can call every method without it; a concrete store (`SqlStore`) or a bound on
/// one concern (`S: ClientStore`) needs the traits in scope.
pub mod prelude {
    pub use super::{
        AccountStore, ApiKeyStore, AuditStore, ClientStore, ConsentStore, GrantStore,
        HousekeepingStore, LoginThrottleStore, SessionStore, SigningKeyStore, Store, TokenStore,
    };
}

/// Which SQL dialect a store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store failure. Callers map `Unavailable` and `Corrupt` to `server_error` and log them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(&'static str),
    // Not a `#[source]`: the message already includes it, and error chains would repeat it.
    #[error("store unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    #[error("too many {0}")]
    LimitReached(&'static str),
}

impl StoreError {
    /// A short, fixed name for metrics (`tessera_store_errors_total{kind}`): a pool that ran
    /// out of connections is told apart from a database that does not answer.
    /// The store could not be reached or did not answer (down, restarting, locked, out of
    /// connections): a moment later the same request may well succeed, so callers answer
    /// 503 rather than 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// Whether `e` is, or wraps, a store that is unavailable.
    pub fn unavailable_in(e: &anyhow::Error) -> bool {
        e.chain().any(|cause| {
            cause
                .downcast_ref::<StoreError>()
                .is_some_and(StoreError::is_unavailable)
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "not_found",
            StoreError::Conflict(_) => "conflict",
            StoreError::Unavailable(sqlx::Error::PoolTimedOut) => "pool_timeout",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Migration(_) => "migration",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::LimitReached(_) => "limit_reached",
        }
    }
}

/// Counts `e` in `tessera_store_errors_total` if it is a store failure; for the error
/// responders that hold failures as `anyhow::Error`.
pub fn count_failure(e: &anyhow::Error) {
    if let Some(e) = e.downcast_ref::<StoreError>() {
        crate::metrics::store_error(e.kind());
    }
}

/// A connection pool's state at one moment (for the pool gauges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open, idle or in use.
    pub size: u32,
    pub idle: u32,
    /// Most connections the pool opens.
    pub max: u32,
    /// Write transactions begun since the store was opened (a single-statement write counts
    /// one): what the benchmark's writes-per-flow invariant counts.
    pub writes: u64,
}

/// How a client authenticates at the token endpoint (RFC 7591 §2 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<AuthMethod> {
        [
            AuthMethod::ClientSecretBasic,
            AuthMethod::ClientSecretPost,
            AuthMethod::None,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// What kind of access token a client receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessTokenFormat {
    Opaque,
    Jwt,
}

impl AccessTokenFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessTokenFormat::Opaque => "opaque",
            AccessTokenFormat::Jwt => "jwt",
        }
    }

    pub fn parse(s: &str) -> Option<AccessTokenFormat> {
        [AccessTokenFormat::Opaque, AccessTokenFormat::Jwt]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// A registered client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientRecord {
    pub id: String,
    pub name: String,
    /// SHA-256 of the secret; `None` for a public client.
    #[serde(skip)]
    pub secret_digest: Option<Digest>,
    /// Exactly as registered; matched by string equality.
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// Space-separated scopes the client may ask for.
    pub scope: String,
    pub token_endpoint_auth_method: AuthMethod,
    pub access_token_format: AccessTokenFormat,
    /// May call `/introspect` (gateways and resource servers).
    pub may_introspect: bool,
    /// Consent may be skipped.
    pub first_party: bool,
    /// PKCE required even though confidential.
    pub require_pkce: bool,
    pub id_token_signed_response_alg: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Requests per second at the client endpoints; `None`: the configured default.
    pub rate_limit_per_sec: Option<i64>,
    /// Where logout tokens are POSTed (OIDC Back-Channel Logout §2.2); `None`: never.
    pub backchannel_logout_uri: Option<String>,
    /// The client needs `sid` in its logout tokens (§2.2); Tessera always sends it when the
    /// session has one, so this is informational.
    pub backchannel_logout_session_required: bool,
    /// The page the signed-out page loads in a hidden iframe (OIDC Front-Channel Logout §2);
    /// `None`: no iframe.
    pub frontchannel_logout_uri: Option<String>,
    /// The client needs `iss` and `sid` on that iframe's URL (§2); Tessera always adds them,
    /// so this is informational.
    pub frontchannel_logout_session_required: bool,
}

impl ClientRecord {
    pub fn is_public(&self) -> bool {
        self.secret_digest.is_none()
    }
}

/// OpenID Connect standard claims (Core §5.1) a user may have. `sub` is the account id and
/// `updated_at` the account's, so neither is repeated here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StandardClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birthdate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zoneinfo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
}

/// Core §5.1.1 address claim.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Address {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// A user (table `account`: `user` is reserved in SQL).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountRecord {
    /// Stable, never reused: the `sub`.
    pub id: String,
    pub username: String,
    /// argon2id PHC string; `None` means password login is impossible.
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub claims: StandardClaims,
    pub disabled: bool,
    pub failed_login_count: i64,
    /// Released as the `roles` claim (RFC 9068 §2.2.3.1) with the `roles` scope.
    pub roles: Vec<String>,
    /// Released as the `groups` claim with the `roles` scope.
    pub groups: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A browser's login at Tessera. Only the digest of the cookie value is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id_digest: Digest,
    pub account_id: String,
    /// When the person authenticated (OIDC `auth_time`).
    pub auth_time: i64,
    /// How (OIDC `amr`), e.g. `["pwd"]`.
    pub amr: Vec<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// The public session id (OIDC `sid`); `None` for sessions from before it existed.
    pub sid: Option<String>,
}

/// One authorization of a client by a user; codes and tokens hang off it.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantRecord {
    pub id: String,
    pub client_id: String,
    pub account_id: Option<String>,
    pub scope: String,
    pub auth_time: Option<i64>,
    pub amr: Vec<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// The browser session that granted it (OIDC `sid`), if any.
    pub sid: Option<String>,
    /// The claims the authorization request asked for by name (OIDC Core §5.5), for the ID
    /// tokens of later refreshes and for userinfo.
    pub claims: RequestedClaims,
}

/// Claims asked for one by one with the OIDC `claims` request parameter (Core §5.5), by
/// where they go; limited to user claims the grant may release (`oauth::claims::requested`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedClaims {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub userinfo: Vec<String>,
}

impl RequestedClaims {
    pub fn is_empty(&self) -> bool {
        self.id_token.is_empty() && self.userinfo.is_empty()
    }
}

/// An authorization code. Single use: see [`GrantStore::consume_code`].
#[derive(Debug, Clone, PartialEq)]
pub struct CodeRecord {
    pub digest: Digest,
    pub grant_id: String,
    pub client_id: String,
    pub account_id: String,
    /// The `redirect_uri` sent to `/authorize`; `None` when it was omitted.
    pub redirect_uri: Option<String>,
    pub scope: String,
    pub nonce: Option<String>,
    /// oxide-auth's encoding of the PKCE S256 challenge.
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub consumed_at: Option<i64>,
    /// The browser session it was issued in (OIDC `sid`), if any.
    pub sid: Option<String>,
    /// As the grant's: the claims asked for by name.
    pub claims: RequestedClaims,
}

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
    ApiKey,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
            TokenKind::ApiKey => "api_key",
        }
    }

    pub fn parse(s: &str) -> Option<TokenKind> {
        [TokenKind::Access, TokenKind::Refresh, TokenKind::ApiKey]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A token with its grant and its user, as one lookup by digest finds them.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCredential {
    pub token: TokenRecord,
    pub grant: Option<GrantRecord>,
    pub account: Option<AccountRecord>,
}

/// A refresh rotation with the read before it, for [`TokenStore::rotate_refresh_at_once`]:
/// the new tokens as far as they do not depend on the old one.
#[derive(Debug, Clone)]
pub struct RefreshAtOnce<'a> {
    /// The presented refresh token.
    pub old: Digest,
    /// The authenticated client: the old token must be its own.
    pub client_id: &'a str,
    pub now: i64,
    pub access: NewToken,
    pub access_expires_at: i64,
    /// Its expiry comes from the grant (see [`TokenStore::rotate_refresh_at_once`]).
    pub refresh: NewToken,
    pub refresh_idle_ttl: i64,
    pub refresh_absolute_ttl: i64,
    /// The `token_issued` event, written with `account_id` set to the old token's user and
    /// every string in `details` equal to [`FROM_OLD_GRANT_ID`] or [`FROM_OLD_SCOPE`]
    /// replaced by the old token's grant id or scope.
    pub audit: &'a AuditEvent,
}

/// A code redemption with its token write, for [`GrantStore::redeem_code_at_once`]: the new
/// tokens as far as they do not depend on the code.
#[derive(Debug, Clone)]
pub struct CodeAtOnce<'a> {
    /// The presented code.
    pub code: Digest,
    /// The authenticated client: the code must be its own.
    pub client_id: &'a str,
    /// The `redirect_uri` of the token request, to equal the authorization request's.
    pub redirect_uri: Option<&'a str>,
    /// The challenge the presented `code_verifier` answers, in the code row's encoding
    /// ([`crate::oauth::pkce::challenge_of`]); `None` when no verifier was sent.
    pub code_challenge: Option<&'a str>,
    pub now: i64,
    pub access: NewToken,
    pub access_expires_at: i64,
    /// `None` when the client may not use the refresh grant. Written only when the code's
    /// scope allows it as well (see [`GrantStore::redeem_code_at_once`]).
    pub refresh: Option<NewToken>,
    pub refresh_idle_ttl: i64,
    pub refresh_absolute_ttl: i64,
    /// The `token_issued` event, written with `account_id` set to the code's user and every
    /// string in `details` equal to [`FROM_OLD_GRANT_ID`], [`FROM_OLD_SCOPE`] or
    /// [`FROM_CODE_REFRESH`] replaced by the code's grant id, its scope, or whether a
    /// refresh token was written.
    pub audit: &'a AuditEvent,
}

/// What [`GrantStore::redeem_code_at_once`] redeemed: the code as it was read (unconsumed),
/// its user, and whether a refresh token was written.
#[derive(Debug, Clone, PartialEq)]
pub struct RedeemedCode {
    pub code: CodeRecord,
    pub account: AccountRecord,
    pub refresh_issued: bool,
}

/// A new token's own values (the rest it takes from the token it replaces).
#[derive(Debug, Clone)]
pub struct NewToken {
    pub digest: Digest,
    pub jti: String,
}

/// Placeholders in [`RefreshAtOnce::audit`]'s and [`CodeAtOnce::audit`]'s details for what
/// only the stored row (the old token, the code) knows.
pub const FROM_OLD_GRANT_ID: &str = "@old-grant-id@";
pub const FROM_OLD_SCOPE: &str = "@old-scope@";
/// Placeholder in [`CodeAtOnce::audit`]'s details for whether a refresh token was written
/// (replaced by a JSON boolean).
pub const FROM_CODE_REFRESH: &str = "@code-refresh@";

/// An access token, refresh token or API key. Only its digest is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub digest: Digest,
    pub kind: TokenKind,
    /// Public identifier: says which token without being it (RFC 7662 / RFC 9068 `jti`).
    pub jti: String,
    pub grant_id: Option<String>,
    pub client_id: Option<String>,
    pub account_id: Option<String>,
    pub scope: String,
    pub label: Option<String>,
    pub previous_digest: Option<Digest>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub used_at: Option<i64>,
    /// When read back: the token's own revocation or, if earlier, its grant's.
    pub revoked_at: Option<i64>,
}

impl TokenRecord {
    /// Unrevoked (itself and its grant) and unexpired at `now`.
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|exp| now < exp)
    }
}

/// An API key as its owner and operators see it (a row of `token` with kind `api_key`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKeyRecord {
    /// The key id: public, says which key without being it (the token's `jti`).
    pub id: String,
    #[serde(skip)]
    pub digest: Digest,
    /// The owner (a user id).
    pub account_id: String,
    pub label: String,
    /// The start of the key (`tsk_` and six characters), to recognise it by.
    pub hint: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    /// Updated at most once a minute (`api_key::TOUCH_INTERVAL_SECS`).
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl ApiKeyRecord {
    /// Unrevoked and unexpired at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|exp| now < exp)
    }
}

/// A signing key. The private JWK is encrypted under the key-encryption key.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: String,
    /// Public JWK as JSON, with `kid`, `alg` and `use`.
    pub public_jwk: String,
    pub private_jwk_encrypted: Vec<u8>,
    /// Informational (`next`, `active`, `retired`); the effective state follows from the
    /// times, see `crypto::keys::KeySet`.
    pub state: String,
    pub created_at: i64,
    /// Signs from this time on; published before it.
    pub activates_at: i64,
}

/// One signing key's private JWK re-encrypted under a new key-encryption key.
#[derive(Debug, Clone, PartialEq)]
pub struct ReencryptedKey {
    pub kid: String,
    /// The ciphertext the new one was made from: the row must still hold it.
    pub previous: Vec<u8>,
    pub private_jwk_encrypted: Vec<u8>,
}

/// An audit event as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The event's place in the hash chain and its hash, once sealed (decision 0023): an
    /// export carries them so that a SIEM can check the links too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// Which audit events to read: every condition set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub account_id: Option<String>,
    pub client_id: Option<String>,
    pub kind: Option<String>,
    /// Created at or after (unix seconds).
    pub since: Option<i64>,
    /// Created before (unix seconds).
    pub until: Option<i64>,
    /// Ids above this one only (following a trail as it grows).
    pub after_id: Option<i64>,
    /// Newest first (the last `limit` events) instead of oldest first.
    pub newest_first: bool,
    pub limit: i64,
}

/// The schema's migrations as the store records them against those this binary carries
/// ([`SqlStore::migration_status`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Versions this binary carries, in order.
    pub known: Vec<i64>,
    /// Versions the store records as applied, in order.
    pub applied: Vec<i64>,
    /// Applied versions whose recorded checksum is not this binary's: the file was edited
    /// after it ran somewhere.
    pub changed: Vec<i64>,
    /// A migration that started and did not finish.
    pub failed: Option<i64>,
}

impl MigrationStatus {
    /// Known, not applied yet.
    pub fn pending(&self) -> Vec<i64> {
        let applied = &self.applied;
        self.known
            .iter()
            .copied()
            .filter(|v| !applied.contains(v))
            .collect()
    }

    /// Applied, unknown to this binary: the store was migrated by a newer Tessera.
    pub fn unknown(&self) -> Vec<i64> {
        let known = &self.known;
        self.applied
            .iter()
            .copied()
            .filter(|v| !known.contains(v))
            .collect()
    }
}

/// One connection attempt, answering as soon as the server does (or refuses): start-up
/// retries with this instead of waiting out a pool's acquire timeout on every attempt.
pub async fn probe(url: &DatabaseUrl) -> Result<(), StoreError> {
    use sqlx::Connection;
    if !url.is_postgres() {
        return Ok(()); // an embedded file: nothing to wait for
    }
    let conn = sqlx::PgConnection::connect(url.as_str())
        .await
        .map_err(StoreError::Unavailable)?;
    let _ = conn.close().await;
    Ok(())
}

/// Opens the store named by `url` and applies its migrations. Committed audit events go to
/// the log ([`LogAuditEvents`]).
pub async fn open(url: &DatabaseUrl) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqlStore::open(url).await?))
}

/// Like [`open`], with `hook` told about committed audit events instead of the log.
pub async fn open_with_hook(
    url: &DatabaseUrl,
    hook: Arc<dyn AfterCommit>,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqlStore::open_with_hook(url, hook).await?))
}

/// Records for unit tests: a client and a user with everything but what a test names.
#[cfg(test)]
pub(crate) mod samples {
    use super::{AccessTokenFormat, AccountRecord, AuthMethod, ClientRecord, StandardClaims};

    pub(crate) fn client(id: &str, redirect: &[&str]) -> ClientRecord {
        ClientRecord {
            id: id.to_owned(),
            name: id.to_owned(),
            secret_digest: Some(crate::crypto::token::Digest::of("secret")),
            redirect_uris: redirect.iter().map(|s| s.to_string()).collect(),
            post_logout_redirect_uris: vec![],
            grant_types: vec!["authorization_code".into()],
            scope: "openid".into(),
            token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
            access_token_format: AccessTokenFormat::Opaque,
            may_introspect: false,
            first_party: false,
            require_pkce: true,
            id_token_signed_response_alg: "RS256".into(),
            created_at: 0,
            updated_at: 0,
            rate_limit_per_sec: None,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            frontchannel_logout_uri: None,
            frontchannel_logout_session_required: false,
        }
    }

    pub(crate) fn account(username: &str, hash: Option<&str>) -> AccountRecord {
        AccountRecord {
            id: username.to_owned(),
            username: username.to_owned(),
            password_hash: hash.map(str::to_owned),
            claims: StandardClaims::default(),
            disabled: false,
            failed_login_count: 0,
            roles: vec![],
            groups: vec![],
            created_at: 0,
            updated_at: 0,
        }
    }
}
