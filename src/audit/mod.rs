//! Typed audit events. Everything security-relevant is recorded (DESIGN.md): logins, consents,
//! tokens issued, refreshed, revoked, reuse detected, clients, users and keys changed.

use serde::Serialize;

/// What happened. The wire names are stable: operators search the trail by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    ClientCreated,
    ClientUpdated,
    ClientSecretRotated,
    ClientDeleted,
    UserCreated,
    UserUpdated,
    UserPasswordSet,
    /// A password hash made under weaker argon2 parameters was replaced at sign-in by one
    /// under the configured parameters (same password; nothing else changes).
    UserPasswordRehashed,
    UserDisabled,
    UserDeleted,
    LoginSucceeded,
    LoginFailed,
    /// A sign-in refused before its password was checked, because its username or source
    /// address is blocked for a while after failures.
    LoginThrottled,
    /// Failures for a username or source address started a temporary block.
    LoginBlocked,
    ConsentGranted,
    ConsentDenied,
    TokenIssued,
    KeyCreated,
    /// Every signing key was re-encrypted under a new key-encryption key.
    KekRotated,
    /// A spent refresh token was presented again: its grant is revoked (RFC 9700 §4.14.2).
    RefreshTokenReuse,
    TokenRevoked,
    Logout,
    /// An authorization code was presented again: its grant is revoked (RFC 6749 §4.1.2).
    CodeReuse,
    ApiKeyCreated,
    /// By its owner, an operator, or a leak report (`details.reason`).
    ApiKeyRevoked,
    /// A revoked API key was presented (at most one event a minute per key).
    ApiKeyUsedAfterRevocation,
    /// An expired API key was presented (at most one event a minute per key).
    ApiKeyUsedAfterExpiry,
    /// An API key of a disabled user was presented (at most one event a minute per key).
    ApiKeyUsedByDisabledUser,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::ClientCreated => "client_created",
            AuditKind::ClientUpdated => "client_updated",
            AuditKind::ClientSecretRotated => "client_secret_rotated",
            AuditKind::ClientDeleted => "client_deleted",
            AuditKind::UserCreated => "user_created",
            AuditKind::UserUpdated => "user_updated",
            AuditKind::UserPasswordSet => "user_password_set",
            AuditKind::UserPasswordRehashed => "user_password_rehashed",
            AuditKind::UserDisabled => "user_disabled",
            AuditKind::UserDeleted => "user_deleted",
            AuditKind::LoginSucceeded => "login_succeeded",
            AuditKind::LoginFailed => "login_failed",
            AuditKind::LoginThrottled => "login_throttled",
            AuditKind::LoginBlocked => "login_blocked",
            AuditKind::ConsentGranted => "consent_granted",
            AuditKind::ConsentDenied => "consent_denied",
            AuditKind::TokenIssued => "token_issued",
            AuditKind::KeyCreated => "key_created",
            AuditKind::KekRotated => "kek_rotated",
            AuditKind::RefreshTokenReuse => "refresh_token_reuse",
            AuditKind::TokenRevoked => "token_revoked",
            AuditKind::Logout => "logout",
            AuditKind::CodeReuse => "authorization_code_reuse",
            AuditKind::ApiKeyCreated => "api_key_created",
            AuditKind::ApiKeyRevoked => "api_key_revoked",
            AuditKind::ApiKeyUsedAfterRevocation => "api_key_used_after_revocation",
            AuditKind::ApiKeyUsedAfterExpiry => "api_key_used_after_expiry",
            AuditKind::ApiKeyUsedByDisabledUser => "api_key_used_by_disabled_user",
        }
    }
}

/// One event to append. Never carries a secret: details name what changed, not to what.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    pub created_at: i64,
    pub kind: String,
    /// Who did it: `cli`, `user:<id>`, `client:<id>`.
    pub actor: String,
    pub client_id: Option<String>,
    pub account_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(kind: AuditKind, actor: impl Into<String>, now: i64) -> AuditEvent {
        AuditEvent {
            created_at: now,
            kind: kind.as_str().to_owned(),
            actor: actor.into(),
            client_id: None,
            account_id: None,
            source_ip: None,
            user_agent: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn client(mut self, id: &str) -> Self {
        self.client_id = Some(id.to_owned());
        self
    }

    pub fn account(mut self, id: &str) -> Self {
        self.account_id = Some(id.to_owned());
        self
    }

    /// Where the request came from.
    pub fn from_request(mut self, source_ip: Option<String>, user_agent: Option<String>) -> Self {
        self.source_ip = source_ip;
        self.user_agent = user_agent;
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

pub mod chain;
