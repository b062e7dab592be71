//! The store's interface, one small trait per concern (as Hydra composes its `Persister` from
//! managers), and [`Store`], which is all of them: callers hold one `Arc<dyn Store>`, on which
//! every concern's methods resolve, and code that needs only one concern can ask for just it.
//!
//! The doc comment of each method is its contract; the conformance suite in
//! `tests/it/store_conformance.rs` checks the ones the HTTP tests reach only indirectly.

use async_trait::async_trait;

use super::{
    AccountRecord, ApiKeyRecord, AuditFilter, AuditRecord, Backend, ClientRecord, CodeAtOnce,
    CodeRecord, GrantRecord, PoolStatus, RedeemedCode, ReencryptedKey, RefreshAtOnce,
    SessionRecord, SigningKeyRecord, StandardClaims, StoreError, StoredCredential, TokenRecord,
};
use crate::audit::chain::{ChainHead, ChainRow, Checkpoint, Tagger};
use crate::audit::AuditEvent;
use crate::crypto::token::Digest;

/// Everything Tessera keeps. Shared as `Arc<dyn Store>`.
#[async_trait]
pub trait Store:
    ClientStore
    + AccountStore
    + SessionStore
    + ConsentStore
    + GrantStore
    + TokenStore
    + ApiKeyStore
    + SigningKeyStore
    + AuditStore
    + LoginThrottleStore
    + HousekeepingStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> Backend;

    /// The connection pool's state now; cheap (no I/O), read when metrics are scraped.
    fn pool_status(&self) -> PoolStatus;

    /// Succeeds when the store answers a trivial query (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// SQLite: the change counter (migration 0013), which every committed change able to turn
    /// an active token's introspection answer inactive advances, whoever wrote it. `None` on
    /// Postgres, whose triggers notify instead.
    async fn change_count(&self) -> Result<Option<i64>, StoreError>;
}

/// Registered clients.
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Inserts a client and its audit event together; `Conflict` if the id is taken.
    async fn insert_client(
        &self,
        client: &ClientRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    async fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError>;
    /// All clients, ordered by id.
    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError>;
    /// Replaces every mutable field of the client with `client.id`; `NotFound` if absent.
    async fn update_client(
        &self,
        client: &ClientRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Deletes the client and, in the same write, its grants, codes, tokens and consents.
    async fn delete_client(&self, id: &str, audit: &AuditEvent) -> Result<(), StoreError>;
}

/// Users.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Inserts a user; `Conflict` if the id or username is taken.
    async fn insert_account(
        &self,
        account: &AccountRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    async fn account(&self, id: &str) -> Result<Option<AccountRecord>, StoreError>;
    async fn account_by_username(
        &self,
        username: &str,
    ) -> Result<Option<AccountRecord>, StoreError>;
    /// All users, ordered by username.
    async fn list_accounts(&self) -> Result<Vec<AccountRecord>, StoreError>;
    /// Replaces every mutable field of the user with `account.id`; `NotFound` if absent,
    /// `Conflict` if the new username is taken.
    async fn update_account(
        &self,
        account: &AccountRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Replaces the user's standard claims with `new` and sets `updated_at` to `now`, only if
    /// they are still `expected` (compared as claims, not as stored text), and records
    /// `audit`, in one transaction. Nothing else of the user is written, so a password set or
    /// a role given meanwhile stays. Returns whether it changed: `false` when the claims
    /// changed meanwhile (another tab, the CLI), and the caller decides again from what is
    /// stored now. `NotFound` if there is no such user or the user is disabled.
    async fn update_account_claims(
        &self,
        id: &str,
        expected: &StandardClaims,
        new: &StandardClaims,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Replaces the user's password hash with `new` (the same password under the configured,
    /// stronger argon2 parameters), only if it is still `old`: a password changed meanwhile
    /// wins. Sessions and tokens stay. Returns whether it changed.
    async fn upgrade_password_hash(
        &self,
        id: &str,
        old: &str,
        new: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Like [`AccountStore::update_account`], and in the same transaction ends every session
    /// of the user and revokes every grant and token issued to them (disabling a user, setting
    /// a new password). `audit` is recorded with the counts added to its details. Nothing
    /// ended here comes back when the user is enabled again.
    async fn update_account_ending_access(
        &self,
        account: &AccountRecord,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Deletes the user and, in the same write, their sessions, consents, grants, codes and
    /// tokens; `audit` is recorded with the counts of sessions, grants and tokens that ended.
    async fn delete_account(&self, id: &str, audit: &AuditEvent) -> Result<(), StoreError>;
}

/// Browser sessions at Tessera, and the failed logins that did not start one.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Starts a browser session: deletes the session it replaces (a new value at every
    /// login, against fixation), inserts the new one, resets the user's failed-login count,
    /// settles the sign-in's login-throttle keys (`take_back`, as
    /// [`LoginThrottleStore::take_back_login_attempt`] does) and records `audit`, in one
    /// transaction.
    async fn insert_session(
        &self,
        session: &SessionRecord,
        replaces: Option<&Digest>,
        take_back: &TakeBack,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// The session with this digest if it has not expired at `now`.
    async fn session(&self, digest: &Digest, now: i64)
        -> Result<Option<SessionRecord>, StoreError>;
    /// The unexpired session and its user, in one lookup: what every step of a sign-in
    /// reads first (the user may be disabled; the caller decides what that means).
    async fn signed_in(
        &self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<(SessionRecord, AccountRecord)>, StoreError>;
    /// [`SessionStore::signed_in`] with the scopes the user has consented to for
    /// `client_id` (as [`ConsentStore::consent`]), in the same lookup: what `/authorize`
    /// reads.
    async fn signed_in_with_consent(
        &self,
        digest: &Digest,
        now: i64,
        client_id: &str,
    ) -> Result<Option<SignedInWithConsent>, StoreError>;
    async fn delete_session(&self, digest: &Digest) -> Result<(), StoreError>;
    /// The user's sessions that have not expired at `now`, newest first.
    async fn sessions_of(
        &self,
        account_id: &str,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StoreError>;
    /// Ends the session with public id `sid` and, with `grants`, revokes every grant made in
    /// it and their tokens; records `audit` with the counts in its details, in one
    /// transaction. `NotFound` when no such session exists.
    async fn end_session(
        &self,
        sid: &str,
        grants: bool,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError>;
    /// The clients that signed in through session `sid` and registered a
    /// `backchannel_logout_uri`, each with the account it signed in: who to tell when the
    /// session ends (OIDC Back-Channel Logout §2.7). Revoked grants count: the RP may still
    /// hold a session of its own from them.
    async fn backchannel_clients(
        &self,
        sid: &str,
    ) -> Result<Vec<(ClientRecord, String)>, StoreError>;
    /// The clients that signed in through session `sid` and registered a
    /// `frontchannel_logout_uri`, ordered by id: the iframes of the signed-out page (OIDC
    /// Front-Channel Logout §2). Like [`SessionStore::backchannel_clients`], revoked grants
    /// count.
    async fn frontchannel_clients(&self, sid: &str) -> Result<Vec<ClientRecord>, StoreError>;
    /// Counts a failed login against the user (if the username exists) and records `audit`.
    async fn record_failed_login(
        &self,
        account_id: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
}

/// What each user has consented to, per client.
#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// The scopes this user has consented to for this client.
    async fn consent(
        &self,
        account_id: &str,
        client_id: &str,
    ) -> Result<Option<String>, StoreError>;
    /// Adds `scope` to the scopes this user has consented to for this client (a union) and
    /// records `audit`, in one transaction: of concurrent grants, every scope is kept.
    async fn grant_consent(
        &self,
        account_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
}

/// Grants and the authorization codes that start them.
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Inserts a grant, its first authorization code and `audit` together.
    async fn insert_code(
        &self,
        grant: &GrantRecord,
        code: &CodeRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Like [`GrantStore::insert_code`], and in the same transaction records `consent` as
    /// [`ConsentStore::grant_consent`] does: the code that answers an approval at the consent
    /// page, one write where there were two. Either both are stored or neither.
    async fn insert_code_with_consent(
        &self,
        consent: &ConsentGiven,
        grant: &GrantRecord,
        code: &CodeRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Like [`GrantStore::insert_code_with_consent`] (or [`GrantStore::insert_code`] without
    /// `consent`), only if `session` is stored exactly as given, live at the code's
    /// creation, with its user enabled, and the code and grant carry its user, `auth_time`,
    /// `amr` and `sid`: the check a read of the session did, made by the write itself, for
    /// a session the consent form claimed rather than one read (decision 0055). Otherwise
    /// nothing is written and the answer is `NotFound`.
    async fn insert_code_in_session(
        &self,
        consent: Option<&ConsentGiven>,
        session: &SessionRecord,
        grant: &GrantRecord,
        code: &CodeRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Marks the code consumed and returns it with its user (`None` if the user is gone),
    /// in one statement, if it exists and was not consumed before: of any number of
    /// concurrent calls for one code, at most one gets it.
    async fn consume_code(
        &self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<(CodeRecord, Option<AccountRecord>)>, StoreError>;
    /// A code's redemption and its token write in one write (one statement on Postgres,
    /// decision 0047; one transaction on SQLite, decision 0053). Consumes `r.code` only if
    /// it is a code of `r.client_id` (which must exist), unconsumed and unexpired, issued
    /// with `r.redirect_uri` (both absent, or equal) and with `r.code_challenge` (both
    /// absent, or equal), to a user who exists and is enabled; then writes an access token with the code's grant, user and
    /// scope, and a refresh token as well when `r.refresh` is given and the scope lacks
    /// `openid` or has `offline_access` (OIDC Core §11, decision 0006), its expiry
    /// `refresh_token_idle_ttl` from now but never past `refresh_token_absolute_ttl` from
    /// the code's creation, and `r.audit` completed from the code. Returns the code as read,
    /// or `None` when nothing was written (any check failed, a concurrent redemption
    /// consumed it first): the caller then takes the usual path, which consumes the code
    /// and tells why.
    async fn redeem_code_at_once(
        &self,
        r: &CodeAtOnce<'_>,
    ) -> Result<Option<RedeemedCode>, StoreError>;
    /// The grant of a code that exists, consumed or not (to revoke it on reuse).
    async fn code_grant_id(&self, digest: &Digest) -> Result<Option<String>, StoreError>;
    async fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError>;
    /// Revokes the grant and every token issued from it, and records `audit`, in one
    /// transaction. Revoking a revoked grant changes nothing.
    async fn revoke_grant(
        &self,
        grant_id: &str,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
}

/// Access tokens, refresh tokens and API keys.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Inserts tokens (an access token and its refresh token, say) and records `audit`, in
    /// one transaction.
    async fn insert_tokens(
        &self,
        tokens: &[TokenRecord],
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Marks the refresh token `old` used and inserts `new`, in one transaction, only if
    /// `old` was unused and unrevoked: of concurrent rotations of one token at most one
    /// returns `true`; the others change nothing.
    async fn rotate_refresh(
        &self,
        old: &Digest,
        new: &[TokenRecord],
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// A refresh rotation and the read before it in one write (decisions 0043, 0052). Spends `r.old` only if it is a refresh token of
    /// `r.client_id`, unspent, unrevoked and unexpired, whose grant is unrevoked and whose
    /// client and enabled user exist; then writes an access token and a refresh token with
    /// the old token's grant, user and scope (the refresh token's expiry as in a rotation
    /// with `refresh_token_idle_ttl` and `refresh_token_absolute_ttl` from the grant's
    /// creation, its `previous_digest` the old one), and `r.audit` completed from the old
    /// token. Returns the old credential as it was read, or `None` when nothing was written
    /// (any check failed, or a concurrent rotation spent it first): the caller then takes the
    /// usual path, which tells why.
    async fn rotate_refresh_at_once(
        &self,
        r: &RefreshAtOnce<'_>,
    ) -> Result<Option<StoredCredential>, StoreError>;
    /// Revokes one token (not its grant) and records `audit`; revoking twice changes nothing.
    async fn revoke_token(
        &self,
        digest: &Digest,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// The token with this digest; its `revoked_at` includes its grant's revocation.
    async fn token(&self, digest: &Digest) -> Result<Option<TokenRecord>, StoreError>;
    /// The token with this digest as [`TokenStore::token`] reads it, with its grant and its
    /// user (if any, and if they still exist), in one round trip.
    async fn credential(&self, digest: &Digest) -> Result<Option<StoredCredential>, StoreError>;
}

/// API keys: the users' own long-lived credentials (rows of the token table, so that the
/// credential resolver finds them by digest like any token).
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Adds `key` and records `audit`, in one transaction that excludes concurrent changes to
    /// the owner's keys. With `replaces` (a key id), that unrevoked key of the same owner is
    /// revoked first (regenerating: the label passes to the new key); `NotFound("api key")` if
    /// there is none, `NotFound("user")` if the owner is gone or disabled. `LimitReached` if the owner would hold more than `max_live` live (unrevoked,
    /// unexpired) keys; `Conflict` if another unrevoked key of the owner has the label. On any
    /// error nothing changes.
    async fn insert_api_key(
        &self,
        key: &ApiKeyRecord,
        max_live: i64,
        replaces: Option<&str>,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError>;
    /// The keys of `owner` (every key when `None`), revoked ones included, newest first.
    async fn api_keys(&self, owner: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// The key with this id, revoked or not.
    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Revokes the unrevoked key `id` — only if `owner` owns it, when given — and records
    /// `audit`, in one transaction. `false` (and nothing changed or recorded) when there is
    /// no such key.
    async fn revoke_api_key(
        &self,
        id: &str,
        owner: Option<&str>,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Sets the key's last use — or, with `refused`, the last time it was presented while
    /// not usable — to `now`, unless it was set less than `interval` seconds ago, so that a
    /// busy key costs one write a minute, not one per check. Returns whether it wrote.
    async fn touch_api_key(
        &self,
        digest: &Digest,
        now: i64,
        interval: i64,
        refused: bool,
    ) -> Result<bool, StoreError>;
}

/// Signing keys, their private halves encrypted under the key-encryption key.
#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Adds a signing key and records `audit`, in one transaction.
    async fn insert_signing_key(
        &self,
        key: &SigningKeyRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Adds each key whose algorithm has no key in the store yet, with its audit event, in
    /// one transaction that excludes concurrent callers; returns the kids added. Of several
    /// instances starting at once on one store, exactly one key per algorithm is added.
    async fn insert_first_signing_keys(
        &self,
        keys: &[(SigningKeyRecord, AuditEvent)],
    ) -> Result<Vec<String>, StoreError>;
    /// Every signing key, oldest activation first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// Replaces the encrypted private JWK of every signing key and records `audit`, in one
    /// transaction, only if `keys` names every stored key once and each row still holds its
    /// `previous` ciphertext. Otherwise (a key was added or re-encrypted meanwhile) nothing
    /// changes and the answer is `false`: no key is ever left under the old KEK.
    async fn reencrypt_signing_keys(
        &self,
        keys: &[ReencryptedKey],
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
}

/// The fewest events a store's sealing round takes while that many are waiting (SQLite takes
/// no more, since its sealing transaction holds the write turn every token write waits for):
/// a round that seals fewer has caught up.
pub const SEAL_ROUND_MIN: i64 = 100;

/// The audit trail. Most events are written by the other traits' methods, in the transaction
/// of the change they record; this one takes the rest and reads the trail back.
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;
    /// The newest `limit` events, newest first.
    async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        self.search_audit(&AuditFilter {
            newest_first: true,
            limit,
            ..AuditFilter::default()
        })
        .await
    }
    /// Events matching `filter`.
    async fn search_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;

    /// Links up to `limit` unsealed events into the hash chain, oldest first, and moves its
    /// head, tagged with `tag(seq, hash)` (decision 0023); returns how many it sealed. A
    /// store may take fewer than `limit`, but never fewer than [`SEAL_ROUND_MIN`] while that
    /// many are waiting.
    /// Concurrent sealers (instances, the CLI) take turns on the head row.
    async fn seal_audit(&self, limit: i64, now: i64, tag: &Tagger<'_>)
        -> Result<usize, StoreError>;
    /// The chain's head, the latest purge checkpoint, and how many events wait to be sealed.
    async fn audit_chain(&self) -> Result<(ChainHead, Option<Checkpoint>, i64), StoreError>;
    /// Makes the next sealing round take every event without a link (decision 0041): after
    /// the database was restored into another cluster, when `verify` names events that are
    /// neither linked nor waiting. Returns whether the store keeps such state (Postgres).
    async fn rebase_audit(&self) -> Result<bool, StoreError>;
    /// Up to ten ids of events that are neither linked nor waiting to be sealed: rows put
    /// into the trail past Tessera (decision 0041), which the chain cannot vouch for.
    async fn stranded_audit(&self) -> Result<Vec<i64>, StoreError>;
    /// Sealed events with `seq > after`, in `seq` order, at most `limit`.
    async fn sealed_audit(&self, after: i64, limit: i64) -> Result<Vec<ChainRow>, StoreError>;
    /// Deletes up to `limit` of the oldest sealed events created before `before`, keeping
    /// the chain verifiable: a checkpoint tagged `tag(seq, hash)` records where it now
    /// starts, in the same transaction. Returns how many were deleted.
    async fn purge_audit(
        &self,
        before: i64,
        limit: i64,
        now: i64,
        tag: &Tagger<'_>,
    ) -> Result<usize, StoreError>;
}

/// Failed sign-ins per key (a keyed tag of a typed username, or a source address), shared by
/// every instance on this store so that they all throttle alike.
#[async_trait]
pub trait LoginThrottleStore: Send + Sync {
    /// Counts an attempt at `now` against every one of `keys` as a failure until it proves
    /// otherwise, unless one of them is blocked at `now` (then nothing changes). Each key's
    /// count and the block it starts are one atomic statement, so that of concurrent
    /// attempts on several instances each sees the ones before it, and none slips past a
    /// block another just started. Failures older than `forget_before` are forgotten first;
    /// after `threshold` failures a key is blocked for 1 s, 2 s, 4 s, … up to `max_delay`
    /// (`LoginThrottlePolicy::delay`).
    async fn count_login_attempt(
        &self,
        keys: &[ThrottleKey<'_>],
        now: i64,
        forget_before: i64,
        max_delay: i64,
    ) -> Result<LoginCount, StoreError>;
    /// [`LoginThrottleStore::count_login_attempt`], and when the attempt was counted, the
    /// user named `username` as [`AccountStore::account_by_username`] reads it: what a
    /// sign-in needs before its password is checked, in one round trip where the store can
    /// (Postgres). `None` for the user when there is none, or when the attempt was blocked.
    async fn count_login_attempt_for(
        &self,
        keys: &[ThrottleKey<'_>],
        now: i64,
        forget_before: i64,
        max_delay: i64,
        username: &str,
    ) -> Result<(LoginCount, Option<AccountRecord>), StoreError>;
    /// Takes back an attempt (it was never checked): one write. A successful one is taken
    /// back by the write that starts its session instead ([`SessionStore::insert_session`]).
    async fn take_back_login_attempt(&self, take_back: &TakeBack) -> Result<(), StoreError>;
}

/// A live session, its user, and what the user consented to for one client.
pub type SignedInWithConsent = ((SessionRecord, AccountRecord), Option<String>);

/// A consent just given: `scope` (space-separated) added to what the user has consented to
/// for the client, at `now`, recorded with `audit`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentGiven {
    pub account_id: String,
    pub client_id: String,
    pub scope: String,
    pub now: i64,
    pub audit: AuditEvent,
}

/// What taking back a counted sign-in attempt changes: every failure of `clear` forgotten
/// (the username of a sign-in that succeeded), one counted attempt of each `forgive` key
/// taken back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TakeBack {
    pub clear: Option<String>,
    pub forgive: Vec<String>,
}

/// A login-throttle key and the failures it is allowed before its first block.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleKey<'a> {
    pub key: &'a str,
    pub threshold: i64,
}

/// What [`LoginThrottleStore::count_login_attempt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginCount {
    /// A key was blocked; nothing was counted (but see the SQL store: a key counted just
    /// before another was found blocked by a concurrent attempt stays counted).
    Blocked { until: i64 },
    /// Counted: per key, in order, the failures and `blocked_until` (0 or past: none).
    Counted(Vec<(i64, i64)>),
}

/// Rows that housekeeping deletes once they can no longer matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Authorization codes that expired before the cutoff.
    Codes,
    /// Browser sessions that expired before the cutoff.
    Sessions,
    /// Access and refresh tokens and API keys that expired before the cutoff.
    Tokens,
    /// Grants made before the cutoff that no code or token refers to any more.
    Grants,
    /// Login-throttle counters last touched before the cutoff and not blocking.
    LoginThrottle,
}

impl Expired {
    pub const ALL: [Expired; 5] = [
        Expired::Codes,
        Expired::Sessions,
        Expired::Tokens,
        Expired::Grants,
        Expired::LoginThrottle,
    ];

    /// The name in logs, metrics and `tessera purge`'s report.
    pub fn as_str(self) -> &'static str {
        match self {
            Expired::Codes => "codes",
            Expired::Sessions => "sessions",
            Expired::Tokens => "tokens",
            Expired::Grants => "grants",
            Expired::LoginThrottle => "login_throttle",
        }
    }
}

/// Housekeeping's deletes, a small batch per call, so that no statement holds locks for
/// long; safe with several instances purging at once.
#[async_trait]
pub trait HousekeepingStore: Send + Sync {
    /// Deletes at most `limit` rows of `what` that ended before `cutoff` (unix seconds);
    /// returns how many.
    async fn purge_expired(
        &self,
        what: Expired,
        cutoff: i64,
        now: i64,
        limit: i64,
    ) -> Result<u64, StoreError>;
}
