//! Typed audit events. Everything security-relevant is recorded (DESIGN.md): logins, consents,
//! tokens issued, refreshed, revoked, reuse detected, clients, users and keys changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::store::Store;

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
    /// An authorization code was issued (its redemption is the `token_issued` event with
    /// `grant_type` authorization_code; a second redemption is `authorization_code_reuse`).
    CodeIssued,
    /// A client that may not introspect called the introspection endpoint (at most one
    /// event a minute per client).
    IntrospectionRefused,
    /// A rate limit refused requests (at most one event a minute per limit and key).
    RateLimitTripped,
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
            AuditKind::CodeIssued => "authorization_code_issued",
            AuditKind::IntrospectionRefused => "introspection_refused",
            AuditKind::RateLimitTripped => "rate_limit_tripped",
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

/// Remembers when an event was last recorded per key, so that a flood (a client hammering past
/// its limit, a misconfigured gateway) is audited once a minute per key, not once a request:
/// the trail shows that it happened without becoming the attacker's write amplifier.
#[derive(Debug, Default)]
pub struct OncePerMinute {
    last: Mutex<HashMap<String, i64>>,
}

impl OncePerMinute {
    /// Keys remembered before the stale ones are dropped.
    const MAX_KEYS: usize = 10_000;

    /// Whether an event for `key` at `now` (unix seconds) is due, and if so notes it.
    pub fn due(&self, key: &str, now: i64) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() >= Self::MAX_KEYS {
            last.retain(|_, at| now - *at < 60);
        }
        match last.get(key) {
            Some(at) if now - *at < 60 => false,
            _ => {
                last.insert(key.to_owned(), now);
                true
            }
        }
    }
}

/// Appends `event` off the request path: the answer does not wait for the write, and a
/// failed write is logged (the store is away) rather than turned into an error.
pub fn record_in_background(store: Arc<dyn Store>, event: AuditEvent) {
    tokio::spawn(async move {
        if let Err(e) = store.append_audit(&event).await {
            crate::metrics::store_error(e.kind());
            tracing::warn!(error = %e, kind = %event.kind, "could not record an audit event");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_minute_per_key() {
        let once = OncePerMinute::default();
        assert!(once.due("a", 1_000));
        assert!(!once.due("a", 1_059));
        assert!(once.due("b", 1_059));
        assert!(once.due("a", 1_060));
    }
}
