//! The login page and its form post. Wrong username and wrong password get the same
//! message after the same work (an unknown user is checked against a dummy hash); password
//! checks run on the blocking pool, a bounded number at once (`crypto::password`).

use std::net::SocketAddr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use secrecy::SecretString;

use super::forms::{pending_form, pending_query, request_meta, see_other};
use super::{error, pages, session};
use crate::app::AppState;
use crate::audit::{AuditEvent, AuditKind};
use crate::crypto::mac;
use crate::oauth::authorize::AuthorizeRequest;
use crate::store::SessionRecord;

const LOGIN_PARAMS: &[&str] = &["username", "password", "csrf_token", "authorize_query"];
const WRONG: &str = "Wrong username or password.";

/// The login page for a pending authorization request.
pub fn page(
    app: &AppState,
    headers: &HeaderMap,
    request: &AuthorizeRequest,
    authorize_query: &str,
    failed: Option<&str>,
) -> Response {
    let username = failed.or(request.login_hint.as_deref()).unwrap_or("");
    let status = if failed.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    session::form_page(
        app,
        headers,
        status,
        &request.redirect.redirect_uri,
        |csrf_token| {
            pages::LoginPage {
                client_name: &request.client.name,
                csrf_token,
                authorize_query,
                username,
                error: failed.map(|_| WRONG),
            }
            .render()
        },
    )
}

/// POST /login: check the CSRF token, the pending request and the password; on success
/// start a new session and continue the authorization request.
pub async fn post(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, params, request) =
        match pending_form(&app, &headers, &body, LOGIN_PARAMS, "Sign-in failed").await {
            Ok(parts) => parts,
            Err(response) => return response,
        };
    let query = pending_query(&params, &[]);
    let username = form.get("username").unwrap_or("");
    let password = SecretString::from(form.get("password").unwrap_or(""));
    let (ip, agent) = request_meta(&headers, Some(peer));

    let account = match app.store.account_by_username(username).await {
        Ok(a) => a,
        Err(e) => {
            return error::authorize_error(&app, request.fail(e.into()), StatusCode::SEE_OTHER)
        }
    };
    let hash = account.as_ref().and_then(|a| a.password_hash.clone());
    let verified = match app.passwords.verify(password, hash).await {
        Ok(ok) => ok,
        Err(e) => {
            let e = crate::oauth::error::OAuthError::server(e);
            return error::authorize_error(&app, request.fail(e), StatusCode::SEE_OTHER);
        }
    };
    // Taken after the password check, which may have waited for a hashing slot: `auth_time`
    // is when the person finished authenticating.
    let now = app.clock.now();
    let (account, known) = match account {
        Some(a) if verified && !a.disabled => (Some(a), None),
        other => (None, other),
    };
    let Some(account) = account else {
        let audit = AuditEvent::new(AuditKind::LoginFailed, "anonymous", now)
            .client(&request.client.id)
            .from_request(ip, agent)
            .details(failed_login_details(&app, known.as_ref(), username));
        if let Err(e) = app
            .store
            .record_failed_login(known.as_ref().map(|a| a.id.as_str()), &audit)
            .await
        {
            tracing::error!(error = %e, "could not record a failed login");
        }
        return page(&app, &headers, &request, &query, Some(username));
    };

    // A new session value at every login: a value planted before login is worthless after.
    let (value, cookie) = session::new_session_cookie(&app);
    let record = SessionRecord {
        id_digest: value.digest(),
        account_id: account.id.clone(),
        auth_time: now,
        amr: vec!["pwd".to_owned()],
        created_at: now,
        expires_at: now + app.config.session_ttl_secs,
    };
    let audit = AuditEvent::new(
        AuditKind::LoginSucceeded,
        format!("user:{}", account.id),
        now,
    )
    .account(&account.id)
    .client(&request.client.id)
    .from_request(ip, agent);
    let old = session::session_digest(&app, &headers);
    if let Err(e) = app
        .store
        .insert_session(&record, old.as_ref(), &audit)
        .await
    {
        return error::authorize_error(&app, request.fail(e.into()), StatusCode::SEE_OTHER);
    }
    // OIDC Core §3.1.2.1: `max_age=0` means one fresh login, then continue; the request must
    // not send the person back to this page because a second passed on the way.
    let mut response = see_other(&format!(
        "/authorize?{}",
        pending_query(&params, &["login", "select_account", "max_age"])
    ));
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// What the audit trail keeps of a failed login's username. People type passwords into the
/// username field, so a username nobody has is never stored as typed: only a short keyed tag
/// of it, enough to see that one unknown name was tried many times, useless for guessing it.
fn failed_login_details(
    app: &AppState,
    known: Option<&crate::store::AccountRecord>,
    typed: &str,
) -> serde_json::Value {
    match known {
        Some(account) => serde_json::json!({ "username": account.username }),
        None => {
            let tag = mac::tag(&app.kek, mac::Purpose::AuditUsername, typed.as_bytes());
            let hex: String = tag[..8].iter().map(|b| format!("{b:02x}")).collect();
            serde_json::json!({ "unknown_username_tag": hex })
        }
    }
}
