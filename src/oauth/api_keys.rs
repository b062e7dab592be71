//! API keys (docs/api-keys.md): long-lived credentials a user makes for their own scripts,
//! which a gateway checks by introspection exactly like an opaque access token. The rules for
//! making, revoking and using them live here, shared by the `/account` page, the CLI, the
//! leak report endpoint and introspection.

use serde_json::json;

use crate::audit::{AuditEvent, AuditKind};
use crate::config::ApiKeyPolicy;
use crate::crypto::api_key;
use crate::crypto::token::{Digest, PlainSecret};
use crate::store::{AccountRecord, ApiKeyRecord, Store, StoreError, TokenKind, TokenRecord};

/// A key's last use is written at most this often, so a busy key costs one write a minute.
pub const TOUCH_INTERVAL_SECS: i64 = 60;
/// Longest label, in characters.
pub const LABEL_MAX_CHARS: usize = 64;
/// Longest lifetime a key may be given: ten years.
pub const MAX_TTL_SECS: i64 = 3650 * 86_400;

/// Why a key could not be made or revoked; each is the person's to fix except `Store`.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("the label must be 1 to {LABEL_MAX_CHARS} characters, without control characters")]
    InvalidLabel,
    #[error("choose at least one scope, from: {0}")]
    InvalidScope(String),
    #[error("the expiry must be between one hour and ten years")]
    InvalidExpiry,
    #[error("there is already an unrevoked key labelled “{0}”")]
    LabelTaken(String),
    #[error("{0} live keys is the most one user may hold; revoke one first")]
    LimitReached(i64),
    #[error("no such key")]
    NotFound,
    #[error("the user is disabled")]
    OwnerDisabled,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ApiKeyError {
    fn from(e: StoreError) -> Self {
        ApiKeyError::Store(e)
    }
}

/// Who asks, for the audit trail: `actor` (`user:<id>` or `cli`), source address, user agent.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub actor: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Actor {
    fn event(&self, kind: AuditKind, now: i64) -> AuditEvent {
        AuditEvent::new(kind, self.actor.clone(), now)
            .from_request(self.source_ip.clone(), self.user_agent.clone())
    }
}

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub label: &'a str,
    /// The scopes asked for; `None`: every scope API keys may carry.
    pub scopes: Option<Vec<String>>,
    /// Lifetime in seconds; `None`: until revoked.
    pub ttl_secs: Option<i64>,
}

/// Checks a label: what the person will recognise the key by, shown back to them.
pub fn check_label(label: &str) -> Result<String, ApiKeyError> {
    let label = label.trim();
    let count = label.chars().count();
    if count == 0 || count > LABEL_MAX_CHARS || label.chars().any(char::is_control) {
        return Err(ApiKeyError::InvalidLabel);
    }
    Ok(label.to_owned())
}

/// The scope string for `asked`: a non-empty subset of the policy's scopes, in its order.
fn check_scopes(policy: &ApiKeyPolicy, asked: Option<&[String]>) -> Result<String, ApiKeyError> {
    let allowed = || ApiKeyError::InvalidScope(policy.scopes.join(", "));
    let chosen: Vec<&str> = match asked {
        None => policy.scopes.iter().map(String::as_str).collect(),
        Some(asked) => {
            if asked.is_empty() || asked.iter().any(|s| !policy.scopes.contains(s)) {
                return Err(allowed());
            }
            policy
                .scopes
                .iter()
                .filter(|s| asked.contains(s))
                .map(String::as_str)
                .collect()
        }
    };
    Ok(chosen.join(" "))
}

/// Makes a key for `owner`, or — with `replaces` — a new key in place of that one (same
/// label; the old one is revoked in the same transaction). The key itself is returned once,
/// here, and never stored.
pub async fn create(
    store: &dyn Store,
    policy: &ApiKeyPolicy,
    owner: &AccountRecord,
    new: NewKey<'_>,
    replaces: Option<&ApiKeyRecord>,
    actor: &Actor,
    now: i64,
) -> Result<(PlainSecret, ApiKeyRecord), ApiKeyError> {
    if owner.disabled {
        return Err(ApiKeyError::OwnerDisabled);
    }
    let label = check_label(new.label)?;
    let scope = check_scopes(policy, new.scopes.as_deref())?;
    if new
        .ttl_secs
        .is_some_and(|t| !(3600..=MAX_TTL_SECS).contains(&t))
    {
        return Err(ApiKeyError::InvalidExpiry);
    }
    let key = api_key::generate();
    let record = ApiKeyRecord {
        id: new_key_id(),
        digest: key.digest(),
        account_id: owner.id.clone(),
        label: label.clone(),
        hint: api_key::hint(key.expose()),
        scope,
        created_at: now,
        expires_at: new.ttl_secs.map(|t| now + t),
        last_used_at: None,
        revoked_at: None,
    };
    let mut audit = Vec::new();
    if let Some(old) = replaces {
        audit.push(revoked_event(actor, old, "regenerated", now));
    }
    audit.push(
        actor
            .event(AuditKind::ApiKeyCreated, now)
            .account(&owner.id)
            .details(json!({
                "key_id": record.id,
                "label": record.label,
                "scope": record.scope,
                "expires_at": record.expires_at,
                "replaces": replaces.map(|k| &k.id),
            })),
    );
    let inserted = store.insert_api_key(
        &record,
        policy.max_per_user,
        replaces.map(|k| k.id.as_str()),
        &audit,
    );
    match inserted.await {
        Ok(()) => Ok((key, record)),
        Err(StoreError::Conflict(_)) => Err(ApiKeyError::LabelTaken(label)),
        Err(StoreError::LimitReached(_)) => Err(ApiKeyError::LimitReached(policy.max_per_user)),
        Err(StoreError::NotFound("user")) => Err(ApiKeyError::OwnerDisabled),
        Err(StoreError::NotFound(_)) => Err(ApiKeyError::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// Revokes `key`; `owner` (when given) must own it — another user's key is `NotFound`, and
/// nothing changes.
pub async fn revoke(
    store: &dyn Store,
    key: &ApiKeyRecord,
    owner: Option<&str>,
    reason: &str,
    actor: &Actor,
    now: i64,
) -> Result<(), ApiKeyError> {
    let audit = revoked_event(actor, key, reason, now);
    if store.revoke_api_key(&key.id, owner, now, &audit).await? {
        Ok(())
    } else {
        Err(ApiKeyError::NotFound)
    }
}

/// A key reported as leaked (by a secret scanner, say): revoked if it is a live key. The
/// caller answers the same either way, so the report says nothing about the key. A value
/// that is not a well-formed key costs no lookup.
pub async fn report_leaked(
    store: &dyn Store,
    presented: &str,
    actor: &Actor,
    now: i64,
) -> Result<(), StoreError> {
    if !api_key::is_well_formed(presented) {
        return Ok(());
    }
    let Some(token) = store.token(&Digest::of(presented)).await? else {
        return Ok(());
    };
    let Some(owner) = token.account_id.filter(|_| token.kind == TokenKind::ApiKey) else {
        return Ok(()); // not an API key: not this endpoint's to revoke
    };
    let audit = actor
        .event(AuditKind::ApiKeyRevoked, now)
        .account(&owner)
        .details(json!({ "key_id": token.jti, "label": token.label, "reason": "reported_leaked" }));
    // Already revoked: nothing changes and nothing is recorded.
    store.revoke_api_key(&token.jti, None, now, &audit).await?;
    Ok(())
}

fn revoked_event(actor: &Actor, key: &ApiKeyRecord, reason: &str, now: i64) -> AuditEvent {
    actor
        .event(AuditKind::ApiKeyRevoked, now)
        .account(&key.account_id)
        .details(json!({ "key_id": key.id, "label": key.label, "reason": reason }))
}

/// Notes that an active key was used: its last use, at most once a minute.
pub async fn note_use(store: &dyn Store, key: &TokenRecord, now: i64) {
    // Decided from the row already read: no statement at all for a key used this minute (on
    // SQLite even an update that matches nothing takes the write lock).
    if key.used_at.is_some_and(|t| t > now - TOUCH_INTERVAL_SECS) {
        return;
    }
    if let Err(e) = store
        .touch_api_key(&key.digest, now, TOUCH_INTERVAL_SECS, false)
        .await
    {
        crate::metrics::store_error(e.kind());
        // The answer stands: a missed last-use time is not worth failing a gateway's check.
        tracing::warn!(error = %e, key_id = %key.jti, "could not record an API key's use");
    }
}

/// Notes that a key that is not active was presented (by `caller`): audited as used after
/// revocation, after expiry, or by a disabled user — at most once a minute per key (one write
/// to the key's row decides), so a script retrying a dead key cannot flood the trail.
pub async fn note_refused_use(
    store: &dyn Store,
    key: &TokenRecord,
    caller: &str,
    now: i64,
) -> Result<(), StoreError> {
    if !store
        .touch_api_key(&key.digest, now, TOUCH_INTERVAL_SECS, true)
        .await?
    {
        return Ok(());
    }
    // The owner first: disabling a user also revokes their keys, and "disabled user" is
    // what the operator needs to read.
    let owner_enabled = match &key.account_id {
        Some(id) => store.account(id).await?.is_some_and(|a| !a.disabled),
        None => false,
    };
    let kind = if !owner_enabled {
        AuditKind::ApiKeyUsedByDisabledUser
    } else if key.revoked_at.is_some() {
        AuditKind::ApiKeyUsedAfterRevocation
    } else {
        AuditKind::ApiKeyUsedAfterExpiry
    };
    let mut event = AuditEvent::new(kind, format!("client:{caller}"), now)
        .client(caller)
        .details(json!({ "key_id": key.jti }));
    event.account_id = key.account_id.clone();
    store.append_audit(&event).await
}

/// A key id: public, 96 random bits behind `key_`, short enough to type into the CLI.
fn new_key_id() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "key_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Parses a lifetime such as `90d`, `12h` or `never` (the CLI's `--expires-in`).
pub fn parse_ttl(value: &str) -> Result<Option<i64>, ApiKeyError> {
    if value == "never" {
        return Ok(None);
    }
    let (number, seconds) = match (value.strip_suffix('d'), value.strip_suffix('h')) {
        (Some(n), _) => (n, 86_400),
        (_, Some(n)) => (n, 3600),
        _ => return Err(ApiKeyError::InvalidExpiry),
    };
    let n: i64 = number.parse().map_err(|_| ApiKeyError::InvalidExpiry)?;
    let ttl = n.checked_mul(seconds).ok_or(ApiKeyError::InvalidExpiry)?;
    if !(3600..=MAX_TTL_SECS).contains(&ttl) {
        return Err(ApiKeyError::InvalidExpiry);
    }
    Ok(Some(ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ApiKeyPolicy {
        ApiKeyPolicy {
            scopes: vec!["read".into(), "write".into(), "roles".into()],
            max_per_user: 20,
        }
    }

    #[test]
    fn scopes_are_a_non_empty_subset_in_policy_order() {
        let p = policy();
        assert_eq!(check_scopes(&p, None).unwrap(), "read write roles");
        let asked = ["roles".to_owned(), "read".to_owned()];
        assert_eq!(check_scopes(&p, Some(&asked)).unwrap(), "read roles");
        assert!(check_scopes(&p, Some(&[])).is_err());
        assert!(check_scopes(&p, Some(&["admin".to_owned()])).is_err());
    }

    #[test]
    fn labels_are_trimmed_and_bounded() {
        assert_eq!(check_label("  deploy bot ").unwrap(), "deploy bot");
        assert!(check_label("   ").is_err());
        assert!(check_label(&"x".repeat(65)).is_err());
        assert!(check_label("a\nb").is_err());
    }

    #[test]
    fn lifetimes_parse_in_days_and_hours() {
        assert_eq!(parse_ttl("90d").unwrap(), Some(90 * 86_400));
        assert_eq!(parse_ttl("12h").unwrap(), Some(12 * 3600));
        assert_eq!(parse_ttl("never").unwrap(), None);
        for bad in [
            "",
            "d",
            "0d",
            "30m",
            "-1d",
            "99999999999999999d",
            "3651d",
            "1.5d",
            "9é",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
