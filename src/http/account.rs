//! `/account`: a person's own page at Tessera, behind its login session. It lists their API
//! keys, makes one (shown once), regenerates and revokes them, each behind a confirmation,
//! and links to their profile (`profile.rs`).
//! Every form carries the CSRF token; the rules are in `oauth::api_keys`.
//!
//! Signing in here is the login form of `/authorize` without a client: the same
//! authenticator, throttle and session (`oauth::login`).

use std::net::SocketAddr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::forms::{expired_form, request_meta, see_other};
use super::{error, pages, session};
use crate::app::AppState;
use crate::crypto::token::PlainSecret;
use crate::oauth::api_keys::{self, Actor, ApiKeyError, NewKey};
use crate::oauth::login::Outcome;
use crate::oauth::params::Params;
use crate::paths;
use crate::store::{AccountRecord, ApiKeyRecord, StoreError};

const LOGIN_FIELDS: &[&str] = &["username", "password", "csrf_token"];
const KEY_FIELDS: &[&str] = &["csrf_token", "key_id", "confirm"];
const WRONG: &str = "Wrong username or password.";
/// The lifetimes offered on the page: `expires_in` values and their words.
const EXPIRIES: &[(&str, &str)] = &[
    ("30d", "In 30 days"),
    ("90d", "In 90 days"),
    ("365d", "In a year"),
    ("never", "Never"),
];
const DEFAULT_EXPIRY: &str = "90d";
/// Plain words for the API-key scopes Tessera ships with; others are named as they are.
const SCOPE_WORDS: &[(&str, &str)] = &[
    ("read", "read through APIs as you"),
    ("write", "change things through APIs as you"),
    ("roles", "tell APIs your roles and groups"),
];

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    username: &'a str,
    csrf_token: &'a str,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    new_key: Option<NewKeyView>,
    keys: Vec<KeyView>,
    label: &'a str,
    scopes: Vec<ScopeChoice>,
    expiries: &'static [(&'static str, &'static str)],
    expires_in: &'a str,
    max_keys: i64,
}

#[derive(Template)]
#[template(path = "account_confirm.html")]
struct ConfirmPage<'a> {
    title: &'a str,
    message: &'a str,
    action: &'a str,
    button: &'a str,
    csrf_token: &'a str,
    key_id: &'a str,
}

struct NewKeyView {
    key: String,
    label: String,
}

struct KeyView {
    id: String,
    label: String,
    hint: String,
    scope: String,
    created: String,
    last_used: String,
    expires: String,
    state: &'static str,
    live: bool,
}

struct ScopeChoice {
    name: String,
    field: String,
    description: String,
    checked: bool,
}

/// What the create form asked for, to show it again after an error.
struct Draft<'a> {
    label: &'a str,
    scopes: Option<Vec<String>>,
    expires_in: &'a str,
}

impl Default for Draft<'_> {
    fn default() -> Self {
        Draft {
            label: "",
            scopes: None,
            expires_in: DEFAULT_EXPIRY,
        }
    }
}

/// What the page says above the keys.
enum Banner<'a> {
    Quiet,
    Refused(&'a str),
    /// Fixed words, never text from the request.
    Notice(&'static str),
}

/// GET /account: the keys, or the sign-in form. After the profile form, its outcome.
pub async fn get(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let now = app.clock.now();
    let banner = match query.as_deref() {
        Some(super::profile::SAVED) => Banner::Notice("Your profile was saved."),
        Some(super::profile::UNCHANGED) => Banner::Notice("Your profile had no changes to save."),
        _ => Banner::Quiet,
    };
    match session::current(&app, &headers, now).await {
        Ok(Some((_, account))) => {
            page(
                &app,
                &headers,
                &account,
                StatusCode::OK,
                banner,
                None,
                Draft::default(),
            )
            .await
        }
        Ok(None) => sign_in_page(&app, &headers, StatusCode::OK, "", None),
        Err(e) => store_failed(e),
    }
}

/// POST /account/login: the sign-in form; on success a new session and back to `/account`.
pub async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Params::parse(&body, LOGIN_FIELDS);
    if !error::is_form(&headers) || form.reject_malformed().is_err() {
        return bad_form();
    }
    if !session::Csrf::verify(&app, &headers, form.get("csrf_token")) {
        return expired_form();
    }
    let username = form.get("username").unwrap_or("");
    let (outcome, origin) = super::login::check_password(&app, &headers, peer, &form, None).await;
    let signed_in = match outcome {
        Ok(Outcome::SignedIn(signed_in)) => signed_in,
        Ok(Outcome::Refused) => {
            return sign_in_page(
                &app,
                &headers,
                StatusCode::UNAUTHORIZED,
                username,
                Some(WRONG),
            )
        }
        Ok(Outcome::Throttled { retry_after_secs }) => {
            let message = super::login::throttled_message(retry_after_secs);
            let status = StatusCode::TOO_MANY_REQUESTS;
            let response = sign_in_page(&app, &headers, status, username, Some(&message));
            return super::login::with_retry_after(response, retry_after_secs);
        }
        Ok(Outcome::Busy) => return super::login::busy(),
        Err(e) => {
            tracing::error!(error = %e, "account sign-in failed");
            return failed_page();
        }
    };
    let next = see_other(paths::ACCOUNT);
    match super::login::start_session(&app, &headers, &signed_in, None, origin).await {
        Ok((_, cookies)) => super::login::with_cookies(next, cookies),
        Err(e) => store_failed(e),
    }
}

/// POST /account/keys: makes a key and shows it, this once.
pub async fn create(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let policy = &app.config.api_keys;
    let scope_fields: Vec<String> = policy.scopes.iter().map(|s| scope_field(s)).collect();
    let mut fields = vec!["csrf_token", "label", "expires_in"];
    fields.extend(scope_fields.iter().map(String::as_str));
    let (form, account) = match signed_in_form(&app, &headers, &body, &fields).await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let chosen: Vec<String> = policy
        .scopes
        .iter()
        .filter(|s| form.get(&scope_field(s)).is_some())
        .cloned()
        .collect();
    let draft = Draft {
        label: form.get("label").unwrap_or(""),
        scopes: Some(chosen.clone()),
        expires_in: form.get("expires_in").unwrap_or(DEFAULT_EXPIRY),
    };
    let parsed = EXPIRIES
        .iter()
        .find(|(v, _)| *v == draft.expires_in)
        .map(|(value, _)| api_keys::parse_ttl(value));
    let ttl_secs = match parsed {
        Some(Ok(ttl)) => ttl,
        _ => {
            let e = ApiKeyError::InvalidExpiry;
            return refused(&app, &headers, &account, e, draft).await;
        }
    };
    let new = NewKey {
        label: draft.label,
        scopes: Some(chosen),
        ttl_secs,
    };
    let actor = actor(&app, &headers, peer, &account);
    let now = app.clock.now();
    match api_keys::create(app.store.as_ref(), policy, &account, new, None, &actor, now).await {
        Ok((key, record)) => show_new_key(&app, &headers, &account, &key, &record).await,
        Err(e) => refused(&app, &headers, &account, e, draft).await,
    }
}

/// POST /account/keys/revoke: asks first; with `confirm=yes`, revokes and goes back.
pub async fn revoke(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ask = Confirm {
        title: "Revoke this API key?",
        action: paths::ACCOUNT_KEYS_REVOKE,
        button: "Revoke key",
        message: |k: &ApiKeyRecord| {
            format!(
                "Scripts using the key “{}” ({}…) stop working at once. This cannot be undone.",
                k.label, k.hint
            )
        },
    };
    let (account, key) = match confirmed_key(&app, &headers, &body, ask).await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let actor = actor(&app, &headers, peer, &account);
    let now = app.clock.now();
    let owner = Some(account.id.as_str());
    match api_keys::revoke(app.store.as_ref(), &key, owner, "owner", &actor, now).await {
        // Already revoked (a second click, another tab): the result the person wanted.
        Ok(()) | Err(ApiKeyError::NotFound) => see_other(paths::ACCOUNT),
        Err(e) => refused(&app, &headers, &account, e, Draft::default()).await,
    }
}

/// POST /account/keys/regenerate: asks first; with `confirm=yes`, revokes the key and makes
/// a new one with its label, scope and lifetime, shown once.
pub async fn regenerate(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ask = Confirm {
        title: "Regenerate this API key?",
        action: paths::ACCOUNT_KEYS_REGENERATE,
        button: "Regenerate key",
        message: |k: &ApiKeyRecord| {
            format!(
                "A new key replaces “{}” ({}…), with the same label and scope. The old key stops working at once: update the scripts that use it.",
                k.label, k.hint
            )
        },
    };
    let (account, old) = match confirmed_key(&app, &headers, &body, ask).await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let new = NewKey {
        label: &old.label,
        scopes: Some(old.scope.split(' ').map(str::to_owned).collect()),
        ttl_secs: old.expires_at.map(|exp| exp - old.created_at),
    };
    let actor = actor(&app, &headers, peer, &account);
    let now = app.clock.now();
    let policy = &app.config.api_keys;
    let store = app.store.as_ref();
    match api_keys::create(store, policy, &account, new, Some(&old), &actor, now).await {
        Ok((key, record)) => show_new_key(&app, &headers, &account, &key, &record).await,
        Err(e) => refused(&app, &headers, &account, e, Draft::default()).await,
    }
}

/// What a key action asks before it acts.
struct Confirm<M> {
    title: &'static str,
    action: &'static str,
    button: &'static str,
    message: M,
}

/// The signed-in person's key named by the form, once they have confirmed (`confirm=yes`);
/// before that, the page that asks them.
async fn confirmed_key<M: FnOnce(&ApiKeyRecord) -> String>(
    app: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    ask: Confirm<M>,
) -> Result<(AccountRecord, ApiKeyRecord), Response> {
    let (form, account, key) = own_key(app, headers, body).await?;
    if form.get("confirm") == Some("yes") {
        return Ok((account, key));
    }
    let message = (ask.message)(&key);
    Err(session::form_page(
        app,
        headers,
        StatusCode::OK,
        "",
        |csrf_token| {
            ConfirmPage {
                title: ask.title,
                message: &message,
                action: ask.action,
                button: ask.button,
                csrf_token,
                key_id: &key.id,
            }
            .render()
        },
    ))
}

/// The account page with a key just made, shown this once.
async fn show_new_key(
    app: &AppState,
    headers: &HeaderMap,
    account: &AccountRecord,
    key: &PlainSecret,
    record: &ApiKeyRecord,
) -> Response {
    let shown = NewKeyView {
        key: key.expose().to_owned(),
        label: record.label.clone(),
    };
    let draft = Draft::default();
    page(
        app,
        headers,
        account,
        StatusCode::OK,
        Banner::Quiet,
        Some(shown),
        draft,
    )
    .await
}

/// A form post from the signed-in person: a form, without repeated fields, with this
/// browser's CSRF token (checked before anything else), from a live session. Without a
/// session, back to the sign-in form.
async fn signed_in_form(
    app: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    fields: &[&str],
) -> Result<(Params, AccountRecord), Response> {
    let form = Params::parse(body, fields);
    if !error::is_form(headers) || form.reject_malformed().is_err() {
        return Err(bad_form());
    }
    if !session::Csrf::verify(app, headers, form.get("csrf_token")) {
        return Err(expired_form());
    }
    match session::current(app, headers, app.clock.now()).await {
        Ok(Some((_, account))) => Ok((form, account)),
        Ok(None) => Err(see_other(paths::ACCOUNT)),
        Err(e) => Err(store_failed(e)),
    }
}

/// The key named by the form's `key_id`, if it is the signed-in person's and not revoked.
/// Another person's key is answered exactly like a key that does not exist.
async fn own_key(
    app: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Params, AccountRecord, ApiKeyRecord), Response> {
    let (form, account) = signed_in_form(app, headers, body, KEY_FIELDS).await?;
    let Some(id) = form.get("key_id") else {
        return Err(bad_form());
    };
    match app.store.api_key(id).await {
        Ok(Some(key)) if key.account_id == account.id && key.revoked_at.is_none() => {
            Ok((form, account, key))
        }
        Ok(_) => Err(not_found()),
        Err(e) => Err(store_failed(e)),
    }
}

fn actor(app: &AppState, headers: &HeaderMap, peer: SocketAddr, account: &AccountRecord) -> Actor {
    let (source_ip, user_agent) = request_meta(app, headers, peer);
    Actor {
        actor: format!("user:{}", account.id),
        source_ip,
        user_agent,
    }
}

/// The page again with what went wrong; the draft stays filled in.
async fn refused(
    app: &AppState,
    headers: &HeaderMap,
    account: &AccountRecord,
    e: ApiKeyError,
    draft: Draft<'_>,
) -> Response {
    let status = match &e {
        ApiKeyError::Store(store) => {
            crate::metrics::store_error(store.kind());
            tracing::error!(error = %e, "API key change failed");
            return failed_page();
        }
        ApiKeyError::NotFound => return not_found(),
        ApiKeyError::LabelTaken(_) | ApiKeyError::LimitReached(_) => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    };
    let message = e.to_string();
    let banner = Banner::Refused(&message);
    page(app, headers, account, status, banner, None, draft).await
}

async fn page(
    app: &AppState,
    headers: &HeaderMap,
    account: &AccountRecord,
    status: StatusCode,
    banner: Banner<'_>,
    new_key: Option<NewKeyView>,
    draft: Draft<'_>,
) -> Response {
    let (error, notice) = match banner {
        Banner::Quiet => (None, None),
        Banner::Refused(error) => (Some(error), None),
        Banner::Notice(notice) => (None, Some(notice)),
    };
    let now = app.clock.now();
    let records = match app.store.api_keys(Some(&account.id)).await {
        Ok(r) => r,
        Err(e) => return store_failed(e),
    };
    // Revoked keys are history the owner can do nothing with; the audit trail keeps them.
    let keys: Vec<KeyView> = records
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| key_view(k, now))
        .collect();
    let policy = &app.config.api_keys;
    let scopes = policy
        .scopes
        .iter()
        .map(|s| ScopeChoice {
            name: s.clone(),
            field: scope_field(s),
            description: SCOPE_WORDS.iter().find(|(n, _)| n == s).map_or_else(
                || format!("use the permission “{s}”"),
                |(_, w)| (*w).to_owned(),
            ),
            checked: draft
                .scopes
                .as_ref()
                .is_none_or(|chosen| chosen.contains(s)),
        })
        .collect();
    let expires_in = if EXPIRIES.iter().any(|(v, _)| *v == draft.expires_in) {
        draft.expires_in
    } else {
        DEFAULT_EXPIRY
    };
    session::form_page(app, headers, status, "", |csrf_token| {
        AccountPage {
            username: &account.username,
            csrf_token,
            error,
            notice,
            new_key,
            keys,
            label: draft.label,
            scopes,
            expiries: EXPIRIES,
            expires_in,
            max_keys: policy.max_per_user,
        }
        .render()
    })
}

fn key_view(k: &ApiKeyRecord, now: i64) -> KeyView {
    let live = k.is_live(now);
    KeyView {
        id: k.id.clone(),
        label: k.label.clone(),
        hint: k.hint.clone(),
        scope: k.scope.clone(),
        created: date(k.created_at),
        last_used: k.last_used_at.map_or_else(|| "Never".to_owned(), date),
        expires: k.expires_at.map_or_else(|| "Never".to_owned(), date),
        state: if live { "active" } else { "expired" },
        live,
    }
}

/// `2026-12-02 14:05 UTC`: one time zone for everyone, as the audit trail keeps.
fn date(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => unix.to_string(),
    }
}

/// A checkbox per scope, so that no field repeats (repeats are refused as malformed).
fn scope_field(scope: &str) -> String {
    format!("scope_{scope}")
}

fn sign_in_page(
    app: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    username: &str,
    error: Option<&str>,
) -> Response {
    session::form_page(app, headers, status, "", |csrf_token| {
        pages::LoginPage {
            client_name: None,
            action: paths::ACCOUNT_LOGIN,
            csrf_token,
            authorize_query: None,
            username,
            error,
        }
        .render()
    })
}

fn bad_form() -> Response {
    pages::error_page(
        StatusCode::BAD_REQUEST,
        "The form was not sent correctly",
        "Go back to your account page and try again.",
    )
}

fn not_found() -> Response {
    pages::error_page(
        StatusCode::NOT_FOUND,
        "No such API key",
        "It may have been revoked already. Go back to your account page to see your keys.",
    )
}

const NOT_CHANGED: &str = "Your keys were not changed. Please try again later.";

fn failed_page() -> Response {
    failed_page_saying(NOT_CHANGED)
}

fn failed_page_saying(message: &str) -> Response {
    pages::error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        message,
    )
}

fn store_failed(e: StoreError) -> Response {
    store_failed_saying(e, NOT_CHANGED)
}

/// The answer to a store failure on the account's pages: 503 while the store is
/// unavailable, else 500 with `message` (what was not changed).
pub(super) fn store_failed_saying(e: StoreError, message: &str) -> Response {
    crate::metrics::store_error(e.kind());
    if e.is_unavailable() {
        tracing::warn!(error = %e, "account page: store unavailable");
        return super::error::unavailable_page();
    }
    tracing::error!(error = %e, "account page: store failed");
    failed_page_saying(message)
}
