//! Grants and authorization codes: [`GrantStore`] on SQL.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use std::sync::LazyLock;

use super::accounts::{joined_account_from, ACCOUNT_COLUMNS};
use super::consents::{bind_consent_pg, merged, CONSENT_UPSERT_PG};
use super::tokens::{
    bind_event_at_once, event_json, fill_placeholders, json_string, sqlite_events_insert,
    with_event, TOKEN_COLUMNS,
};
use super::{
    aliased, audit_insert_lazily_sql, bind_audit, placeholders, placeholders_but,
    placeholders_looking_up, sqlite_json_values, to_json, AnyQuery, Row, SqlStore, AUDIT_COLUMNS,
    COMMIT_LAZILY,
};
use crate::audit::AuditEvent;
use crate::crypto::token::Digest;
use crate::store::Backend;
use crate::store::{
    AccountRecord, AccountStore, CodeAtOnce, CodeRecord, ConsentGiven, GrantRecord, GrantStore,
    RedeemedCode, RequestedClaims, SessionRecord, StoreError, FROM_CODE_REFRESH, FROM_OLD_GRANT_ID,
    FROM_OLD_SCOPE,
};

macro_rules! code_columns {
    () => {
        "digest, grant_id, client_id, account_id, redirect_uri, scope, nonce, code_challenge, \
         auth_time, amr, created_at, expires_at, consumed_at, sid, claims"
    };
}

fn code_from_row(row: &AnyRow) -> Result<CodeRecord, StoreError> {
    let row = Row::new(row);
    Ok(CodeRecord {
        digest: row.digest("digest")?,
        grant_id: row.get("grant_id")?,
        client_id: row.get("client_id")?,
        account_id: row.get("account_id")?,
        redirect_uri: row.get("redirect_uri")?,
        scope: row.get("scope")?,
        nonce: row.get("nonce")?,
        code_challenge: row.get("code_challenge")?,
        auth_time: row.get("auth_time")?,
        amr: row.json_list("amr")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        consumed_at: row.get("consumed_at")?,
        sid: row.get("sid")?,
        claims: row.opt_json("claims")?.unwrap_or_default(),
    })
}

macro_rules! grant_columns {
    () => {
        "id, client_id, account_id, scope, auth_time, amr, created_at, revoked_at, sid, claims"
    };
}

/// The columns [`grant_from`] reads.
pub(super) const GRANT_COLUMNS: &str = grant_columns!();

fn grant_from_row(row: &AnyRow) -> Result<GrantRecord, StoreError> {
    grant_from(Row::new(row))
}

pub(super) fn grant_from(row: Row<'_>) -> Result<GrantRecord, StoreError> {
    Ok(GrantRecord {
        id: row.get("id")?,
        client_id: row.get("client_id")?,
        account_id: row.get("account_id")?,
        scope: row.get("scope")?,
        auth_time: row.get("auth_time")?,
        amr: row.opt_json_list("amr")?,
        created_at: row.get("created_at")?,
        revoked_at: row.get("revoked_at")?,
        sid: row.get("sid")?,
        claims: row.opt_json("claims")?.unwrap_or_default(),
    })
}

/// Null when the request asked for no claims by name, as for rows from before.
fn requested_claims(claims: &RequestedClaims) -> Result<Option<String>, StoreError> {
    (!claims.is_empty()).then(|| to_json(claims)).transpose()
}

/// Values per grant row and per code row.
const GRANT_VALUES: usize = 10;
const CODE_VALUES: usize = 15;

/// The insert of one grant, its placeholders numbered from `first`.
fn grant_insert_sql(first: usize) -> String {
    format!(
        "insert into oauth_grant ({}) values {}",
        grant_columns!(),
        placeholders(first, GRANT_VALUES)
    )
}

/// Postgres: the insert of one code, its placeholders numbered from `first`, the client and
/// the user looked up rather than taken as given: the code table has no foreign keys there
/// (decision 0040). The grant, written by the same statement, needs no check: a code names
/// it or nothing is written. With `session`, the session's three values that a code does
/// not carry ([`bind_session_check`]) at `$session`…: the user is looked up through that
/// session instead ([`code_user_in_session_pg`]).
fn code_insert_sql_pg(first: usize, session: Option<usize>) -> String {
    let values = match session {
        Some(at) => placeholders_but(
            first,
            CODE_VALUES,
            &[
                (
                    2,
                    format!("(select x.id from client x where x.id = ${})", first + 2),
                ),
                (3, code_user_in_session_pg(first, at)),
            ],
        ),
        None => placeholders_looking_up(first, CODE_VALUES, &[(2, "client"), (3, "account")]),
    };
    format!(
        "insert into authorization_code ({}) values {values}",
        code_columns!()
    )
}

/// Postgres: the code's user (its placeholders numbered from `first`) if the session whose
/// digest, `created_at` and `expires_at` are `$at`, `$at+1`, `$at+2` is stored with that
/// user and the code's `auth_time`, `amr` and `sid`, is live at the code's creation, and
/// its user is enabled; null otherwise, which the column refuses ([`write_error`]) and
/// the whole statement with it (decision 0055). Sessions are never updated, only
/// deleted, so equal values are the same sign-in.
///
/// [`write_error`]: super::write_error
fn code_user_in_session_pg(first: usize, at: usize) -> String {
    let code = |i: usize| first + i;
    format!(
        "(select s.account_id from session s join account a on a.id = s.account_id \
         where s.id_digest = ${at} and s.created_at = ${} and s.expires_at = ${} \
         and s.account_id = ${} and s.auth_time = ${} and s.amr = ${} \
         and s.sid is not distinct from ${} and s.expires_at > ${} and not a.disabled)",
        at + 1,
        at + 2,
        code(3),
        code(8),
        code(9),
        code(13),
        code(10),
    )
}

/// Binds what [`code_user_in_session_pg`] compares a session with beyond the code's own
/// values: its digest, `created_at` and `expires_at`.
fn bind_session_check<'q>(q: AnyQuery<'q>, session: &'q SessionRecord) -> AnyQuery<'q> {
    q.bind(session.id_digest.as_bytes())
        .bind(session.created_at)
        .bind(session.expires_at)
}

/// Binds a grant's values, in `grant_columns!` order.
fn bind_grant<'q>(q: AnyQuery<'q>, grant: &'q GrantRecord) -> Result<AnyQuery<'q>, StoreError> {
    Ok(q.bind(&grant.id)
        .bind(&grant.client_id)
        .bind(&grant.account_id)
        .bind(&grant.scope)
        .bind(grant.auth_time)
        .bind(to_json(&grant.amr)?)
        .bind(grant.created_at)
        .bind(grant.revoked_at)
        .bind(&grant.sid)
        .bind(requested_claims(&grant.claims)?))
}

/// Binds a code's values, in `code_columns!` order.
fn bind_code<'q>(q: AnyQuery<'q>, code: &'q CodeRecord) -> Result<AnyQuery<'q>, StoreError> {
    Ok(q.bind(code.digest.as_bytes())
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
        .bind(&code.sid)
        .bind(requested_claims(&code.claims)?))
}

impl SqlStore {
    /// A grant, its first code and `audit`, with `consent` if one was just given, in one
    /// write; with `session`, only if the store holds that session for the code's user
    /// ([`GrantStore::insert_code_in_session`]).
    async fn write_code(
        &self,
        consent: Option<&ConsentGiven>,
        session: Option<&SessionRecord>,
        grant: &GrantRecord,
        code: &CodeRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        // The code's client and user lookups stand for its grant's (decision 0040), and
        // the session's check of the code's values for the grant's and the consent's
        // (decision 0055): they are built together, for the same client, user and sign-in.
        debug_assert!(
            code.grant_id == grant.id
                && code.client_id == grant.client_id
                && grant.account_id.as_deref() == Some(code.account_id.as_str()),
            "a code names its own grant's client and user"
        );
        debug_assert!(
            session.is_none()
                || (grant.auth_time == Some(code.auth_time)
                    && grant.amr == code.amr
                    && grant.sid == code.sid
                    && consent.is_none_or(|c| c.account_id == code.account_id)),
            "a code checked against a session carries its grant's sign-in"
        );
        let events: Vec<AuditEvent> = consent
            .map(|c| c.audit.clone())
            .into_iter()
            .chain([audit.clone()])
            .collect();
        if self.backend == Backend::Postgres {
            let sql = code_write_sql_pg(consent.is_some(), session.is_some(), events.len());
            let mut q = sqlx::query(&sql);
            if let Some(c) = consent {
                q = bind_consent_pg(q, &c.account_id, &c.client_id, &c.scope, c.now);
            }
            q = bind_code(bind_grant(q, grant)?, code)?;
            if let Some(s) = session {
                q = bind_session_check(q, s);
            }
            for event in &events {
                q = bind_audit(q, event)?;
            }
            self.execute_audited(q, &events, "grant")
                .await
                .map_err(not_in_session(session))?;
            return Ok(());
        }
        let json = code_write_json(consent, session, grant, code, &events)?;
        let (_, took) = self
            .write_sqlite(&SQLITE_WRITE_CODE, vec![json], "grant")
            .await
            .map_err(not_in_session(session))?;
        self.committed(&events, took);
        Ok(())
    }
}

/// A code's write that checked `session` and found its user missing: the session is not
/// stored as claimed (or is over, or its user disabled or gone), which is what the caller
/// needs to know; a client gone meanwhile is told the same way.
fn not_in_session(session: Option<&SessionRecord>) -> impl Fn(StoreError) -> StoreError + '_ {
    move |e| match e {
        StoreError::NotFound(_) if session.is_some() => StoreError::NotFound("session"),
        e => e,
    }
}

/// SQLite: [`SqlStore::write_code`] as one call to a connection's thread, as Postgres's is
/// one statement ([`code_write_sql_pg`]): the consent's upsert when `$1` has one, the grant,
/// the code and the events, where a transaction of its own had been eight hand-offs
/// (decision 0054). `$1` is [`code_write_json`]'s object. The consent keeps the scopes
/// already consented to in their order and adds the new ones (`words`, each once) that it
/// lacks as a whole word, as [`merged`] does for the normalised text every writer of the
/// table stores (single spaces, each word once). When `$1` has a `session`, the code's user
/// is looked up through it as on Postgres ([`code_user_in_session_pg`]): null, refused by
/// the column, when the session is not stored as given, live, with its user enabled, and
/// the transaction is rolled back.
static SQLITE_WRITE_CODE: LazyLock<String> = LazyLock::new(|| {
    let code_values: Vec<String> = code_columns!()
        .split(',')
        .map(str::trim)
        .map(|c| match c {
            "account_id" => "case when $1 ->> '$.session' is null then v ->> 'account_id' else \
                 (select s.account_id from main.session s join main.account a \
                 on a.id = s.account_id \
                 where s.id_digest = unhex($1 ->> '$.session.id_digest') \
                 and s.created_at = ($1 ->> '$.session.created_at') \
                 and s.expires_at = ($1 ->> '$.session.expires_at') \
                 and s.account_id = (v ->> 'account_id') and s.auth_time = (v ->> 'auth_time') \
                 and s.amr = (v ->> 'amr') and s.sid is (v ->> 'sid') \
                 and s.expires_at > (v ->> 'created_at') and not a.disabled) end"
                .to_owned(),
            c => sqlite_json_values("v", c, &["digest"]),
        })
        .collect();
    format!(
        "begin immediate; \
         with x (v) as materialized (select jsonb_extract($1, '$.consent')) \
         insert into main.consent (account_id, client_id, scope, created_at, updated_at) \
         select v ->> 'account_id', v ->> 'client_id', v ->> 'scope', v ->> 'now', \
         v ->> 'now' from x where v ->> 'account_id' is not null \
         on conflict (account_id, client_id) do update set updated_at = excluded.updated_at, \
         scope = ltrim(consent.scope || coalesce((select group_concat(' ' || w.value, '' \
         order by w.key) from json_each($1, '$.consent.words') as w \
         where instr(' ' || consent.scope || ' ', ' ' || w.value || ' ') = 0), '')); \
         with x (v) as materialized (select jsonb_extract($1, '$.grant')) \
         insert into main.oauth_grant ({}) select {} from x; \
         with x (v) as materialized (select jsonb_extract($1, '$.code')) \
         insert into main.authorization_code ({}) select {} from x; \
         {}; \
         commit",
        grant_columns!(),
        sqlite_json_values("v", grant_columns!(), &[]),
        code_columns!(),
        code_values.join(", "),
        sqlite_events_insert("$1, '$.events'", "true"),
    )
});

/// [`SQLITE_WRITE_CODE`]'s `$1`: the consent (if any), the session to check (if any), the
/// grant and the code with their columns' values (as the `bind_*` functions bind them; the
/// code's digest in hex), and the events.
fn code_write_json(
    consent: Option<&ConsentGiven>,
    session: Option<&SessionRecord>,
    grant: &GrantRecord,
    code: &CodeRecord,
    events: &[AuditEvent],
) -> Result<String, StoreError> {
    let consent = consent.map(|c| {
        let scope = merged("", &c.scope);
        serde_json::json!({
            "account_id": c.account_id,
            "client_id": c.client_id,
            "words": scope.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>(),
            "scope": scope,
            "now": c.now,
        })
    });
    let events = events
        .iter()
        .map(|e| event_json(e, None))
        .collect::<Result<Vec<_>, _>>()?;
    let session = session.map(|s| {
        serde_json::json!({
            "id_digest": s.id_digest.to_hex(),
            "created_at": s.created_at,
            "expires_at": s.expires_at,
        })
    });
    to_json(&serde_json::json!({
        "consent": consent,
        "session": session,
        "grant": {
            "id": grant.id,
            "client_id": grant.client_id,
            "account_id": grant.account_id,
            "scope": grant.scope,
            "auth_time": grant.auth_time,
            "amr": to_json(&grant.amr)?,
            "created_at": grant.created_at,
            "revoked_at": grant.revoked_at,
            "sid": grant.sid,
            "claims": requested_claims(&grant.claims)?,
        },
        "code": {
            "digest": code.digest.to_hex(),
            "grant_id": code.grant_id,
            "client_id": code.client_id,
            "account_id": code.account_id,
            "redirect_uri": code.redirect_uri,
            "scope": code.scope,
            "nonce": code.nonce,
            "code_challenge": code.code_challenge,
            "auth_time": code.auth_time,
            "amr": to_json(&code.amr)?,
            "created_at": code.created_at,
            "expires_at": code.expires_at,
            "consumed_at": code.consumed_at,
            "sid": code.sid,
            "claims": requested_claims(&code.claims)?,
        },
        "events": events,
    }))
}

/// Marks the code `$1` consumed at `$2` if it was not, and returns it.
const CONSUME: &str = concat!(
    "update authorization_code set consumed_at = $2 \
     where digest = $1 and consumed_at is null returning ",
    code_columns!()
);

/// Postgres: a grant with its code and their audit events (`events`), after the consent's
/// upsert when `consent`, in one statement. Committed lazily (decision 0039):
/// lost in a crash, the code redeems nothing; the token write that redeems it flushes this
/// commit first.
pub(super) fn code_write_sql_pg(consent: bool, session: bool, events: usize) -> String {
    let (upsert, first) = if consent {
        (format!("k as ({CONSENT_UPSERT_PG}), "), 5)
    } else {
        (String::new(), 1)
    };
    let after_code = first + GRANT_VALUES + CODE_VALUES;
    let check = session.then_some(after_code);
    format!(
        "with {upsert}g as ({}), c as ({}) {}",
        grant_insert_sql(first),
        code_insert_sql_pg(first + GRANT_VALUES, check),
        audit_insert_lazily_sql(after_code + if session { 3 } else { 0 }, events)
    )
}

/// Postgres: [`CONSUME`] with the code's user, one round trip where the token request read
/// it next. Committed lazily (decision 0039): the tokens' synchronous write flushes the
/// redemption with it; a redemption that issues nothing and is lost in a crash leaves a
/// code that can still issue only once.
pub(super) fn consume_sql_pg() -> String {
    format!(
        "with c as ({CONSUME}) select c.*, {} from c \
         left join account a on a.id = c.account_id where {COMMIT_LAZILY}",
        aliased("a", ACCOUNT_COLUMNS)
    )
}

/// Postgres: [`GrantStore::redeem_code_at_once`] in one statement, where a redemption had
/// been the code's consumption ([`consume_sql_pg`]) and then the token write: one round trip
/// and one commit less per code (decision 0047). `c` is the read, with every check the
/// code grant makes of a code before it issues; the update consumes it only if `c` found
/// it, and its own `consumed_at is null` stays the guard between concurrent redemptions (a
/// waiter re-reads the row once the first commits, and finds it consumed). The tokens and
/// the event are written only if it was consumed, and the code is returned as read, with
/// its user, for the ID token signed after the commit.
///
/// The PKCE comparison is plain equality here, not constant-time as oxide-auth's: what it
/// compares is the S256 challenge, which the client sent in the front channel, with the
/// hash of the presented verifier; its timing tells nothing of the verifier.
///
/// The event's details come as the JSON the server would write, with the code's grant id,
/// scope and whether a refresh token was written as placeholders, replaced by their JSON
/// text (as `tokens::ROTATE_AT_ONCE` does); the scope, the one value a client's
/// registration writes freely, last, so that no placeholder inside it is replaced.
static REDEEM_AT_ONCE: LazyLock<String> = LazyLock::new(|| {
    let grant_id = json_string(FROM_OLD_GRANT_ID);
    let scope = json_string(FROM_OLD_SCOPE);
    let refresh = json_string(FROM_CODE_REFRESH);
    format!(
        "with c as (select k.*, {}, \
         ($9::bytea is not null and (not ('openid' = any(string_to_array(k.scope, ' '))) \
         or 'offline_access' = any(string_to_array(k.scope, ' ')))) as refresh_issued \
         from authorization_code k join client cl on cl.id = k.client_id \
         join account a on a.id = k.account_id \
         where k.digest = $1 and k.client_id = $2 and k.consumed_at is null \
         and $3 < k.expires_at and k.redirect_uri is not distinct from $4 \
         and k.code_challenge is not distinct from $5 and not a.disabled), \
         spent as (update authorization_code set consumed_at = $3 \
         where digest = $1 and consumed_at is null and exists (select 1 from c) returning 1), \
         t as (insert into token ({TOKEN_COLUMNS}) \
         select $6, 'access', c.grant_id, c.client_id, c.account_id, c.scope, \
         null::text, null::bytea, $3, $8, null::bigint, null::bigint, $7 \
         from c where exists (select 1 from spent) \
         union all \
         select $9, 'refresh', c.grant_id, c.client_id, c.account_id, c.scope, null, null, \
         $3, least($3 + $11, c.created_at + $12), null, null, $10 \
         from c where c.refresh_issued and exists (select 1 from spent)), \
         e as (insert into audit_event ({AUDIT_COLUMNS}) \
         select $3, $13, $14, c.client_id, c.account_id, $15, $16, \
         replace(replace(replace($17, \
         '{refresh}', case when c.refresh_issued then 'true' else 'false' end), \
         '{grant_id}', to_json(c.grant_id)::text), '{scope}', to_json(c.scope)::text) \
         from c where exists (select 1 from spent)) \
         select c.* from c where exists (select 1 from spent)",
        aliased("a", ACCOUNT_COLUMNS),
    )
});

/// SQLite: [`REDEEM_AT_ONCE`] as one transaction in the write turn (decision 0053), where a
/// redemption had been the code's consumption (a write of its own), a read of its user, and
/// then the token write through the batch writer: two writes and three calls to a
/// connection's thread per code.
///
/// `redeeming` holds the code if it passes every check the code grant makes, read with the
/// write lock held (`begin immediate`), so nothing can consume it between the read and the
/// update. The code is then selected as read with its user, consumed, and its tokens and
/// event written as on Postgres, the event's placeholders replaced by the JSON text of the
/// code's values. `$1` is the redemption as one JSON object ([`redemption_json`]), parsed
/// once (`jsonb`). A scope holds `openid` as on Postgres, a whole space-separated word,
/// case and all (`instr`, not `like`). `cross join` keeps SQLite's join order: the code
/// first, by its key (a unit test holds the plan).
static SQLITE_REDEEM_AT_ONCE: LazyLock<String> = LazyLock::new(|| {
    let grant_id = json_string(FROM_OLD_GRANT_ID);
    let scope = json_string(FROM_OLD_SCOPE);
    let refresh = json_string(FROM_CODE_REFRESH);
    format!(
        "begin immediate; \
         create temp table if not exists redeeming (digest blob primary key, \
         refresh_issued integer not null, v blob not null); \
         delete from temp.redeeming; \
         with x (v) as materialized (select jsonb($1)) \
         insert into temp.redeeming select k.digest, \
         (x.v ->> 'refresh_digest' is not null \
         and (instr(' ' || k.scope || ' ', ' openid ') = 0 \
         or instr(' ' || k.scope || ' ', ' offline_access ') > 0)), x.v \
         from x cross join main.authorization_code k cross join main.client cl \
         cross join main.account a \
         where k.digest = unhex(x.v ->> 'code') and cl.id = k.client_id \
         and a.id = k.account_id and k.client_id = x.v ->> 'client_id' \
         and k.consumed_at is null and (x.v ->> 'now') < k.expires_at \
         and k.redirect_uri is (x.v ->> 'redirect_uri') \
         and k.code_challenge is (x.v ->> 'code_challenge') and not a.disabled; \
         select k.*, r.refresh_issued, {} from temp.redeeming r \
         cross join main.authorization_code k cross join main.account a \
         where k.digest = r.digest and a.id = k.account_id; \
         update main.authorization_code set consumed_at = r.v ->> 'now' \
         from temp.redeeming r where authorization_code.digest = r.digest; \
         insert into main.token ({TOKEN_COLUMNS}) \
         select unhex(r.v ->> 'access_digest'), 'access', k.grant_id, k.client_id, \
         k.account_id, k.scope, null, null, r.v ->> 'now', r.v ->> 'access_expires_at', null, \
         null, r.v ->> 'access_jti' \
         from temp.redeeming r cross join main.authorization_code k where k.digest = r.digest \
         union all \
         select unhex(r.v ->> 'refresh_digest'), 'refresh', k.grant_id, k.client_id, \
         k.account_id, k.scope, null, null, r.v ->> 'now', \
         min((r.v ->> 'now') + (r.v ->> 'idle_ttl'), k.created_at + (r.v ->> 'absolute_ttl')), \
         null, null, r.v ->> 'refresh_jti' \
         from temp.redeeming r cross join main.authorization_code k \
         where k.digest = r.digest and r.refresh_issued; \
         insert into main.audit_event ({AUDIT_COLUMNS}) \
         select r.v ->> 'now', r.v ->> 'kind', r.v ->> 'actor', k.client_id, k.account_id, \
         r.v ->> 'source_ip', r.v ->> 'user_agent', \
         replace(replace(replace(r.v ->> 'details', \
         '{refresh}', case when r.refresh_issued then 'true' else 'false' end), \
         '{grant_id}', json_quote(k.grant_id)), '{scope}', json_quote(k.scope)) \
         from temp.redeeming r cross join main.authorization_code k where k.digest = r.digest; \
         commit",
        aliased("a", ACCOUNT_COLUMNS),
    )
});

/// [`SQLITE_REDEEM_AT_ONCE`]'s `$1`.
fn redemption_json(r: &CodeAtOnce<'_>) -> Result<String, StoreError> {
    to_json(&with_event(
        serde_json::json!({
            "code": r.code.to_hex(),
            "client_id": r.client_id,
            "now": r.now,
            "redirect_uri": r.redirect_uri,
            "code_challenge": r.code_challenge,
            "access_digest": r.access.digest.to_hex(),
            "access_jti": r.access.jti,
            "access_expires_at": r.access_expires_at,
            "refresh_digest": r.refresh.as_ref().map(|t| t.digest.to_hex()),
            "refresh_jti": r.refresh.as_ref().map(|t| t.jti.as_str()),
            "idle_ttl": r.refresh_idle_ttl,
            "absolute_ttl": r.refresh_absolute_ttl,
        }),
        r.audit,
    )?)
}

#[async_trait]
impl GrantStore for SqlStore {
    async fn redeem_code_at_once(
        &self,
        r: &CodeAtOnce<'_>,
    ) -> Result<Option<RedeemedCode>, StoreError> {
        let event = r.audit;
        let row = match self.backend {
            Backend::Postgres => {
                let _turn = self.write_turn().await;
                let q = sqlx::query(&REDEEM_AT_ONCE)
                    .bind(r.code.as_bytes())
                    .bind(r.client_id)
                    .bind(r.now)
                    .bind(r.redirect_uri)
                    .bind(r.code_challenge)
                    .bind(r.access.digest.as_bytes())
                    .bind(&r.access.jti)
                    .bind(r.access_expires_at)
                    .bind(r.refresh.as_ref().map(|t| t.digest.as_bytes().to_vec()))
                    .bind(r.refresh.as_ref().map(|t| t.jti.as_str()))
                    .bind(r.refresh_idle_ttl)
                    .bind(r.refresh_absolute_ttl);
                self.write_at_once(bind_event_at_once(q, event)?).await?
            }
            Backend::Sqlite => {
                let (rows, took) = self
                    .write_sqlite(&SQLITE_REDEEM_AT_ONCE, vec![redemption_json(r)?], "token")
                    .await?;
                let row = rows.into_iter().next();
                if row.is_some() {
                    crate::metrics::audit_appended(took);
                }
                row
            }
        };
        let Some(row) = row else {
            return Ok(None);
        };
        // Committed: the hook hears of it whatever decoding the user finds.
        let code = code_from_row(&row)?;
        let refresh_issued = Row::new(&row).flag("refresh_issued")?;
        let mut written = event.clone();
        written.account_id = Some(code.account_id.clone());
        fill_placeholders(&mut written.details, &|s| match s {
            FROM_OLD_GRANT_ID => Some(code.grant_id.clone().into()),
            FROM_OLD_SCOPE => Some(code.scope.clone().into()),
            FROM_CODE_REFRESH => Some(refresh_issued.into()),
            _ => None,
        });
        self.hook.committed(std::slice::from_ref(&written));
        // The statement joins the user; it cannot have redeemed a code without one.
        let account = joined_account_from(Row::prefixed(&row, "a_"))?
            .ok_or_else(|| StoreError::Corrupt("code redeemed without its user".into()))?;
        Ok(Some(RedeemedCode {
            code,
            account,
            refresh_issued,
        }))
    }

    async fn insert_code(
        &self,
        grant: &GrantRecord,
        code: &CodeRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.write_code(None, None, grant, code, audit).await
    }

    async fn insert_code_with_consent(
        &self,
        consent: &ConsentGiven,
        grant: &GrantRecord,
        code: &CodeRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.write_code(Some(consent), None, grant, code, audit)
            .await
    }

    async fn insert_code_in_session(
        &self,
        consent: Option<&ConsentGiven>,
        session: &SessionRecord,
        grant: &GrantRecord,
        code: &CodeRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.write_code(consent, Some(session), grant, code, audit)
            .await
    }

    async fn consume_code(
        &self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<(CodeRecord, Option<AccountRecord>)>, StoreError> {
        let _turn = self.write_turn().await;
        if self.backend == Backend::Postgres {
            static SQL: LazyLock<String> = LazyLock::new(consume_sql_pg);
            let Some(row) = sqlx::query(&SQL)
                .bind(digest.as_bytes())
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::Unavailable)?
            else {
                return Ok(None);
            };
            let account = joined_account_from(Row::prefixed(&row, "a_"))?;
            return Ok(Some((code_from_row(&row)?, account)));
        }
        let Some(code) = sqlx::query(CONSUME)
            .bind(digest.as_bytes())
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?
            .as_ref()
            .map(code_from_row)
            .transpose()?
        else {
            return Ok(None);
        };
        let account = self.account(&code.account_id).await?;
        Ok(Some((code, account)))
    }

    async fn code_grant_id(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("select grant_id from authorization_code where digest = $1")
            .bind(digest.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::Unavailable)?;
        row.as_ref()
            .map(|r| Row::new(r).get("grant_id"))
            .transpose()
    }

    async fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        sqlx::query(concat!(
            "select ",
            grant_columns!(),
            " from oauth_grant where id = $1"
        ))
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
        tx.audit(audit).await?;
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's redemption reads, and consumes, the code through its key, and joins its
    /// client, user and the tokens' rows by theirs: a scan in the write turn would stop every
    /// writer.
    #[tokio::test]
    async fn the_sqlite_redemption_finds_the_code_by_key() {
        super::super::assert_sqlite_plans_search_by_key(
            &SQLITE_REDEEM_AT_ONCE,
            "{}",
            &[
                "with x (v)",
                "select k.*",
                "update main.authorization_code",
                "insert into main.token",
                "insert into main.audit_event",
            ],
            (
                "k",
                "authorization_code",
                "sqlite_autoindex_authorization_code_1 (digest=?)",
            ),
            &["SCAN r", "SCAN x", "SCAN CONSTANT ROW"],
        )
        .await;
    }
}
