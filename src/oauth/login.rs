//! Password login at Tessera's own page: who is signing in, and whether they may.
//!
//! Wrong username and wrong password are the same outcome after the same work (an unknown
//! user is checked against a dummy hash). Before any hashing, the [`LoginGate`] is asked
//! whether this attempt may proceed at all: the seam where brute-force protection plugs in
//! (per account and per source address), so that a flood of guesses is turned away before it
//! costs argon2 time.

use async_trait::async_trait;
use secrecy::SecretString;

use super::error::OAuthError;
use crate::audit::{AuditEvent, AuditKind};
use crate::config::LoginThrottlePolicy;
use crate::crypto::kek::Kek;
use crate::crypto::mac;
use crate::crypto::password::{PasswordError, Passwords};
use crate::crypto::token::Digest;
use crate::store::{
    AccountRecord, LoginCount, SessionRecord, Store, StoreError, TakeBack, ThrottleKey,
};

/// One login attempt, as the gate sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub username: &'a str,
    pub source_ip: Option<&'a str>,
    pub now: i64,
    /// The browser proved an earlier successful sign-in as this username (a device cookie):
    /// the per-username wait does not apply to it; the per-address one does.
    pub known_device: bool,
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// Check the password of the user the username names, if any (read with the count, in
    /// one round trip); hand the ticket back to [`LoginGate::record`].
    Proceed(Ticket, Option<Box<AccountRecord>>),
    /// Refused without checking the password; try again after this many seconds.
    Wait { retry_after_secs: u64 },
}

/// What the gate noted about an attempt it let through: the blocks that attempt started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ticket {
    /// (`username` or `address`, failures, blocked until).
    pub blocks_started: Vec<(&'static str, i64, i64)>,
}

/// Decides whether a login attempt may be checked at all, and learns how it ended.
#[async_trait]
pub trait LoginGate: Send + Sync {
    async fn check(&self, attempt: &Attempt<'_>) -> Result<Gate, StoreError>;
    /// Called after the password check with its outcome, and the user the username names, if
    /// any (for the audit trail only: the gate's own keys never depend on it). A success
    /// is not written here: what it takes back comes back, for the write that starts the
    /// session ([`crate::store::SessionStore::insert_session`]), one write fewer per sign-in.
    async fn record(
        &self,
        attempt: &Attempt<'_>,
        ticket: Ticket,
        account_id: Option<&str>,
        succeeded: bool,
    ) -> Result<TakeBack, StoreError>;
    /// Called instead of `record` when the password was never checked (the server was too
    /// busy): the attempt is taken back, as if it had not been made.
    async fn release(&self, attempt: &Attempt<'_>, ticket: Ticket) -> Result<(), StoreError>;
}

/// How long failures are remembered: a failure older than this starts the count afresh.
pub const FAILURE_MEMORY_SECS: i64 = 24 * 3600;

/// Brute-force protection: per typed username (existing or not, so the answer reveals
/// nothing) and per source address, a number of free failures, then a wait that doubles from
/// one second up to a cap before each further attempt, which is refused without hashing. The
/// state is in the store, so every instance sharing it agrees; a success clears the
/// username's count. Nobody is locked out for good: whoever waits gets an attempt, and a
/// browser that signed in as the user before (a device cookie) skips the username's wait.
pub struct ThrottleGate {
    pub store: std::sync::Arc<dyn Store>,
    pub kek: Kek,
    pub policy: LoginThrottlePolicy,
}

impl ThrottleGate {
    /// The username's key: a keyed tag, so the table never holds what people typed (a
    /// password, sometimes). Case-folded, as people sign in with either.
    fn username_key(&self, username: &str) -> String {
        let tag = mac::tag(
            &self.kek,
            mac::Purpose::LoginThrottle,
            username.to_lowercase().as_bytes(),
        );
        let hex: String = tag[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("user:{hex}")
    }

    fn keys(&self, attempt: &Attempt<'_>) -> Vec<(String, i64)> {
        let mut keys = Vec::new();
        if !attempt.known_device {
            keys.push((
                self.username_key(attempt.username),
                self.policy.per_username,
            ));
        }
        if let Some(ip) = attempt.source_ip {
            // An IPv6 host holds a /64: rotating within it must not buy fresh attempts.
            let key = match ip.parse() {
                Ok(addr) => crate::net::address_key(addr).to_string(),
                Err(_) => ip.to_owned(),
            };
            keys.push((format!("addr:{key}"), self.policy.per_address));
        }
        keys
    }
}

#[async_trait]
impl LoginGate for ThrottleGate {
    /// Every attempt is counted as a failure before its password is checked (and taken back
    /// if it succeeds), so attempts sent at once cannot all slip past a block that the first
    /// of them starts.
    async fn check(&self, attempt: &Attempt<'_>) -> Result<Gate, StoreError> {
        let keys = self.keys(attempt);
        let throttled: Vec<ThrottleKey<'_>> = keys
            .iter()
            .map(|(key, threshold)| ThrottleKey {
                key,
                threshold: *threshold,
            })
            .collect();
        let forget_before = attempt.now - FAILURE_MEMORY_SECS;
        let (count, account) = self
            .store
            .count_login_attempt_for(
                &throttled,
                attempt.now,
                forget_before,
                self.policy.max_delay_secs,
                attempt.username,
            )
            .await?;
        let counts = match count {
            LoginCount::Blocked { until } => return Ok(wait(until, attempt.now)),
            LoginCount::Counted(counts) => counts,
        };
        let mut ticket = Ticket::default();
        for ((key, threshold), (failures, until)) in keys.iter().zip(counts) {
            if until >= attempt.now && failures == threshold + 1 {
                let kind = if key.starts_with("addr:") {
                    "address"
                } else {
                    "username"
                };
                ticket.blocks_started.push((kind, failures, until));
            }
        }
        Ok(Gate::Proceed(ticket, account.map(Box::new)))
    }

    async fn record(
        &self,
        attempt: &Attempt<'_>,
        ticket: Ticket,
        account_id: Option<&str>,
        succeeded: bool,
    ) -> Result<TakeBack, StoreError> {
        let keys = self.keys(attempt);
        if succeeded {
            // The username starts afresh; the address only takes back this attempt.
            return Ok(TakeBack {
                clear: Some(self.username_key(attempt.username)),
                forgive: keys
                    .into_iter()
                    .map(|(k, _)| k)
                    .filter(|k| k.starts_with("addr:"))
                    .collect(),
            });
        }
        for (kind, failures, until) in ticket.blocks_started {
            let mut audit = AuditEvent::new(AuditKind::LoginBlocked, "anonymous", attempt.now)
                .from_request(attempt.source_ip.map(str::to_owned), None)
                .details(serde_json::json!({
                    "key": kind,
                    "failures": failures,
                    "blocked_until": until,
                }));
            audit.account_id = account_id.map(str::to_owned);
            self.store.append_audit(&audit).await?;
        }
        Ok(TakeBack::default())
    }
    async fn release(&self, attempt: &Attempt<'_>, _ticket: Ticket) -> Result<(), StoreError> {
        // A refusal for load says nothing about the password: no key keeps it. (A block this
        // very attempt started stays until it runs out: rare, and only ever seconds at first.)
        let take_back = TakeBack {
            clear: None,
            forgive: self.keys(attempt).into_iter().map(|(k, _)| k).collect(),
        };
        self.store.take_back_login_attempt(&take_back).await
    }
}

/// Times are whole seconds: blocked through the second `until` itself, so a wait is never
/// shorter than promised (a 1 s wait started at 10.9 lasts until 12.0).
fn wait(until: i64, now: i64) -> Gate {
    Gate::Wait {
        retry_after_secs: (until - now + 1).unsigned_abs(),
    }
}

/// How a login ended.
#[derive(Debug)]
pub enum Outcome {
    /// The password is right and the user may sign in.
    SignedIn(SignedIn),
    /// Wrong username or password, or a disabled user: all look the same.
    Refused,
    /// The gate turned the attempt away before the password was checked.
    Throttled { retry_after_secs: u64 },
    /// Too many password checks are already running or waiting: try again shortly.
    Busy,
}

/// A sign-in whose password checked out, for [`start_session`].
#[derive(Debug)]
pub struct SignedIn {
    pub account: Box<AccountRecord>,
    /// The `auth_time`.
    pub now: i64,
    /// What the session's start takes back from the throttle: until then the attempt counts
    /// as failed.
    pub take_back: TakeBack,
}

/// What a login needs from the server.
pub struct Authenticator<'a> {
    pub store: &'a dyn Store,
    pub passwords: &'a Passwords,
    pub gate: &'a dyn LoginGate,
    /// Keys the audit trail's stand-in for unknown usernames.
    pub kek: &'a Kek,
    /// A full hashing queue is audited once a minute.
    pub floods: &'a crate::audit::OncePerMinute,
}

impl Authenticator<'_> {
    /// Checks `password` for `username`; a refusal is audited (`client_id` is the client the
    /// person was signing in for, `None` at the account page, `origin` their address and user agent).
    pub async fn authenticate(
        &self,
        attempt: Attempt<'_>,
        password: SecretString,
        client_id: Option<&str>,
        origin: (Option<String>, Option<String>),
        clock: impl Fn() -> i64,
    ) -> Result<Outcome, OAuthError> {
        let (ticket, account) = match self.gate.check(&attempt).await? {
            Gate::Proceed(ticket, account) => (ticket, account.map(|a| *a)),
            Gate::Wait { retry_after_secs } => {
                let (ip, agent) = origin;
                let mut audit =
                    AuditEvent::new(AuditKind::LoginThrottled, "anonymous", attempt.now)
                        .from_request(ip, agent)
                        .details(serde_json::json!({ "retry_after": retry_after_secs }));
                audit.client_id = client_id.map(str::to_owned);
                self.store.append_audit(&audit).await?;
                return Ok(Outcome::Throttled { retry_after_secs });
            }
        };
        let hash = account.as_ref().and_then(|a| a.password_hash.clone());
        let (verified, upgraded) = match self.passwords.verify_upgrading(password, hash).await {
            Ok(v) => v,
            Err(e) => {
                // Not checked: the attempt must not count against the person.
                self.gate.release(&attempt, ticket).await?;
                return match e {
                    PasswordError::Busy => {
                        crate::metrics::rate_limit_tripped("password_hash_queue");
                        // Audited once a minute; the metric counts every refusal.
                        if self.floods.due("password_hash_queue", attempt.now) {
                            let (ip, agent) = origin;
                            let event = AuditEvent::new(
                                AuditKind::RateLimitTripped,
                                "anonymous",
                                attempt.now,
                            )
                            .from_request(ip, agent)
                            .details(serde_json::json!({ "limit": "password_hash_queue" }));
                            if let Err(e) = self.store.append_audit(&event).await {
                                crate::metrics::store_error(e.kind());
                                tracing::warn!(error = %e, "could not record a rate limit trip");
                            }
                        }
                        Ok(Outcome::Busy)
                    }
                    e => Err(OAuthError::server(e)),
                };
            }
        };
        // Read after the password check, which may have waited for a hashing slot:
        // `auth_time` is when the person finished authenticating.
        let now = clock();
        let signed_in = account.as_ref().is_some_and(|a| verified && !a.disabled);
        let account_id = account.as_ref().map(|a| a.id.as_str());
        let take_back = self
            .gate
            .record(&attempt, ticket, account_id, signed_in)
            .await?;
        match account {
            Some(mut account) if signed_in => {
                if let (Some(new), Some(old)) = (upgraded, account.password_hash.as_deref()) {
                    // The sign-in succeeds whether or not the upgrade is stored: it is
                    // tried again at the next one.
                    let (ip, agent) = origin;
                    let audit = AuditEvent::new(
                        AuditKind::UserPasswordRehashed,
                        format!("user:{}", account.id),
                        now,
                    )
                    .account(&account.id)
                    .from_request(ip, agent);
                    match self
                        .store
                        .upgrade_password_hash(&account.id, old, &new, &audit)
                        .await
                    {
                        Ok(true) => account.password_hash = Some(new),
                        Ok(false) => {}
                        Err(e) => {
                            crate::metrics::store_error(e.kind());
                            tracing::warn!(error = %e, "could not store an upgraded password hash");
                        }
                    }
                }
                Ok(Outcome::SignedIn(SignedIn {
                    account: Box::new(account),
                    now,
                    take_back,
                }))
            }
            known => {
                let (ip, agent) = origin;
                let mut audit = AuditEvent::new(AuditKind::LoginFailed, "anonymous", now)
                    .from_request(ip, agent)
                    .details(self.failed_login_details(known.as_ref(), attempt.username));
                audit.client_id = client_id.map(str::to_owned);
                let known_id = known.as_ref().map(|a| a.id.as_str());
                if let Err(e) = self.store.record_failed_login(known_id, &audit).await {
                    crate::metrics::store_error(e.kind());
                    tracing::error!(error = %e, "could not record a failed login");
                }
                Ok(Outcome::Refused)
            }
        }
    }

    /// What the audit trail keeps of a failed login's username. People type passwords into
    /// the username field, so a username nobody has is never stored as typed: only a short
    /// keyed tag of it, enough to see that one unknown name was tried many times, useless for
    /// guessing it.
    fn failed_login_details(
        &self,
        known: Option<&AccountRecord>,
        typed: &str,
    ) -> serde_json::Value {
        match known {
            Some(account) => serde_json::json!({ "username": account.username }),
            None => {
                let tag = mac::tag(self.kek, mac::Purpose::AuditUsername, typed.as_bytes());
                let hex: String = tag[..8].iter().map(|b| format!("{b:02x}")).collect();
                serde_json::json!({ "unknown_username_tag": hex })
            }
        }
    }
}

/// Starts a browser session for the signed-in account with the cookie value's digest,
/// replacing the session the browser had (a new value at every login: one planted before
/// login is worthless after), takes the sign-in attempt back from the throttle and audits
/// the login. Returns the session it wrote.
pub async fn start_session(
    store: &dyn Store,
    signed_in: &SignedIn,
    value: Digest,
    replaces: Option<&Digest>,
    ttl: i64,
    client_id: Option<&str>,
    (ip, agent): (Option<String>, Option<String>),
) -> Result<SessionRecord, StoreError> {
    let (account, now) = (&signed_in.account, signed_in.now);
    let record = SessionRecord {
        id_digest: value,
        account_id: account.id.clone(),
        auth_time: now,
        amr: vec!["pwd".to_owned()],
        created_at: now,
        expires_at: now + ttl,
        sid: Some(crate::oauth::grants::new_jti()),
    };
    let mut audit = AuditEvent::new(
        AuditKind::LoginSucceeded,
        format!("user:{}", account.id),
        now,
    )
    .account(&account.id)
    .from_request(ip, agent);
    audit.client_id = client_id.map(str::to_owned);
    store
        .insert_session(&record, replaces, &signed_in.take_back, &audit)
        .await?;
    Ok(record)
}
