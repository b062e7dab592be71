//! The login page and its form post. Wrong username and wrong password get the same
//! message after the same work (an unknown user is checked against a dummy hash); password
//! checks run on the hashing threads, a bounded number at once (`crypto::password`).

use std::net::SocketAddr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use secrecy::SecretString;

use super::forms::{pending_form, pending_query, request_meta};
use super::{authorize, error, pages, session};
use crate::app::AppState;
use crate::oauth::authorize::{AuthorizeRequest, SessionUser, AUTHORIZE_PARAMS};
use crate::oauth::error::OAuthError;
use crate::oauth::login::{self, Attempt, Outcome, SignedIn};
use crate::oauth::params::Params;
use crate::store::{SessionRecord, StoreError};

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
    let status = if failed.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let error = failed.map(|_| WRONG.to_owned());
    page_with(
        app,
        headers,
        request,
        authorize_query,
        failed,
        status,
        error,
    )
}

/// The login page again, after too many failures: 429 with `Retry-After` (RFC 6585 §4),
/// the same for every username, existing or not.
fn throttled(
    app: &AppState,
    headers: &HeaderMap,
    request: &AuthorizeRequest,
    authorize_query: &str,
    username: &str,
    retry_after_secs: u64,
) -> Response {
    let response = page_with(
        app,
        headers,
        request,
        authorize_query,
        Some(username),
        StatusCode::TOO_MANY_REQUESTS,
        Some(throttled_message(retry_after_secs)),
    );
    with_retry_after(response, retry_after_secs)
}

/// What a throttled sign-in is told, on every sign-in form.
pub(super) fn throttled_message(retry_after_secs: u64) -> String {
    format!(
        "Too many failed sign-ins. Wait {retry_after_secs} second{} before trying again.",
        if retry_after_secs == 1 { "" } else { "s" }
    )
}

/// Adds `Retry-After` (RFC 9110 §10.2.3) to a throttled sign-in's answer.
pub(super) fn with_retry_after(mut response: Response, secs: u64) -> Response {
    if let Ok(value) = axum::http::HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn page_with(
    app: &AppState,
    headers: &HeaderMap,
    request: &AuthorizeRequest,
    authorize_query: &str,
    failed: Option<&str>,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let username = failed.or(request.login_hint.as_deref()).unwrap_or("");
    session::form_page(
        app,
        headers,
        status,
        &request.redirect.redirect_uri,
        |csrf_token| {
            pages::LoginPage {
                client_name: Some(&request.client.name),
                action: crate::paths::LOGIN,
                csrf_token,
                authorize_query: Some(authorize_query),
                username,
                error: error.as_deref(),
            }
            .render()
        },
    )
}

/// POST /login: check the CSRF token, the pending request and the password; on success
/// start a new session and continue the authorization request in the answer.
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
    let (outcome, origin) =
        check_password(&app, &headers, peer, &form, Some(&request.client.id)).await;
    let signed_in = match outcome {
        Ok(Outcome::SignedIn(signed_in)) => signed_in,
        Ok(Outcome::Refused) => return page(&app, &headers, &request, &query, Some(username)),
        Ok(Outcome::Throttled { retry_after_secs }) => {
            return throttled(&app, &headers, &request, &query, username, retry_after_secs)
        }
        Ok(Outcome::Busy) => return busy(),
        Err(e) => return error::authorize_error(&app, request.fail(e), StatusCode::SEE_OTHER),
    };
    start_and_continue(&app, &headers, peer, &request, &params, &signed_in, origin).await
}

/// Starts the new session (a new value at every login) and carries on with the request as
/// `/authorize` would, in the answer to the form: the consent page, or the code (303 to the
/// client), without the browser's round trip back to `/authorize` and its read of the
/// session just written (decision 0050).
async fn start_and_continue(
    app: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    request: &AuthorizeRequest,
    params: &Params,
    signed_in: &SignedIn,
    origin: Origin,
) -> Response {
    let params = continued(params);
    let client_id = Some(request.client.id.as_str());
    let (session, cookies) = match start_session(app, headers, signed_in, client_id, origin).await {
        Ok(started) => started,
        Err(e) => {
            return error::authorize_error(app, request.fail(e.into()), StatusCode::SEE_OTHER)
        }
    };
    let user = SessionUser::read(session, &signed_in.account);
    // The answer may be a page, which the browser's history keeps as the answer to this
    // form: sent again from there (Back, a reload), the form and its password must not sign
    // anyone in once more, for example the next person at a shared computer after a
    // logout. So the CSRF cookie the form was sent with ends here, and every form shown
    // before with it (decision 0050).
    let fresh = session::without_csrf_cookie(app, headers);
    let response = authorize::after_login(app, &fresh, &params, peer, user).await;
    // Signed in whatever the request's outcome: the session exists.
    session::end_csrf_cookie(app, with_cookies(response, cookies))
}

/// The request to carry on with after a sign-in. OIDC Core §3.1.2.1: `max_age=0` means one
/// fresh login, then continue; the request must not send the person back to the login page
/// because a second passed on the way. Likewise `prompt=login` and `select_account`,
/// satisfied by this sign-in.
fn continued(params: &Params) -> Params {
    Params::parse(
        pending_query(params, &["login", "select_account", "max_age"]).as_bytes(),
        AUTHORIZE_PARAMS,
    )
}

/// Source address and user agent of a request, for the audit trail (`forms::request_meta`).
pub(super) type Origin = (Option<String>, Option<String>);

/// Checks a sign-in form's `username` and `password` — the throttle first, then the hash —
/// for `client_id` (`None` at the account page). Every sign-in form goes through here.
pub(super) async fn check_password(
    app: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    form: &Params,
    client_id: Option<&str>,
) -> (Result<Outcome, OAuthError>, Origin) {
    let username = form.get("username").unwrap_or("");
    let password = SecretString::from(form.get("password").unwrap_or(""));
    let origin = request_meta(app, headers, peer);
    let attempt = Attempt {
        username,
        source_ip: origin.0.as_deref(),
        now: app.clock.now(),
        known_device: session::is_known_device(app, headers, username),
    };
    let outcome = app
        .authenticator()
        .authenticate(attempt, password, client_id, origin.clone(), || {
            app.clock.now()
        })
        .await;
    (outcome, origin)
}

/// Starts a new session for the signed-in account (a new value at every login, replacing the
/// one the browser had); returns it with the cookies that carry it, and the device cookie,
/// for the answer ([`with_cookies`]).
pub(super) async fn start_session(
    app: &AppState,
    headers: &HeaderMap,
    signed_in: &SignedIn,
    client_id: Option<&str>,
    origin: Origin,
) -> Result<(SessionRecord, Vec<HeaderValue>), StoreError> {
    let (value, cookie) = session::new_session_cookie(app);
    let replaces = session::session_digest(app, headers);
    let ttl = app.config.session_ttl_secs;
    let started = login::start_session(
        app.store.as_ref(),
        signed_in,
        value.digest(),
        replaces.as_ref(),
        ttl,
        client_id,
        origin,
    );
    let session = started.await?;
    let device = session::device_cookie(app, &signed_in.account.username);
    Ok((session, cookie.into_iter().chain(device).collect()))
}

/// `response` with `cookies` added.
pub(super) fn with_cookies(mut response: Response, cookies: Vec<HeaderValue>) -> Response {
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// 503 with `Retry-After` (RFC 9110 §10.2.3): the password checks are saturated; nothing was
/// checked, so trying again in a moment is safe.
pub(super) fn busy() -> Response {
    let mut response = pages::error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Too many sign-ins right now",
        "Please go back and try again in a moment.",
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a sign-in satisfies is not asked again: `max_age` (`0` would otherwise send the
    /// person back to the login page once a second passed), `prompt=login` and
    /// `select_account`; the rest of the request goes on as it was.
    #[test]
    fn the_request_goes_on_without_what_the_sign_in_satisfied_oidc_3_1_2_1() {
        let params = Params::parse(
            b"response_type=code&client_id=web&scope=openid&state=s&max_age=0\
              &prompt=login%20consent&nonce=n",
            AUTHORIZE_PARAMS,
        );
        let next = continued(&params);
        assert_eq!(next.get("max_age"), None);
        assert_eq!(next.get("prompt"), Some("consent"));
        for (name, value) in [("client_id", "web"), ("state", "s"), ("nonce", "n")] {
            assert_eq!(next.get(name), Some(value));
        }
        let only = continued(&Params::parse(
            b"client_id=web&prompt=select_account",
            AUTHORIZE_PARAMS,
        ));
        assert_eq!(only.get("prompt"), None);
    }
}
