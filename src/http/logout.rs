//! `/logout`: OpenID Connect RP-Initiated Logout 1.0 (`end_session_endpoint`).
//!
//! - `id_token_hint` must be an ID token we issued (expired is fine, §2); `client_id`, if
//!   sent with it, must be among its audiences.
//! - `post_logout_redirect_uri` is used only if it exactly matches one the client registered
//!   (§3: the OP "MUST NOT perform post-logout redirection" otherwise); the person then sees
//!   the signed-out page instead.
//! - When the request cannot be tied to the signed-in user (no hint, or a hint for someone
//!   else), the person confirms first (§2: the OP "SHOULD ask the End-User"), so a stray
//!   link cannot sign anyone out.

use std::net::SocketAddr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::authorize::request_meta;
use super::login::expired_form;
use super::{error, pages, session};
use crate::app::AppState;
use crate::audit::{AuditEvent, AuditKind};
use crate::oauth::id_token;
use crate::oauth::params::Params;
use crate::oauth::redirect_uri;

const LOGOUT_PARAMS: &[&str] = &[
    "id_token_hint",
    "logout_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "ui_locales",
];
const CONFIRM_PARAMS: &[&str] = &["csrf_token", "logout_query", "confirm"];

#[derive(Template)]
#[template(path = "logout_confirm.html")]
struct ConfirmPage<'a> {
    username: &'a str,
    csrf_token: &'a str,
    logout_query: &'a str,
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage;

pub async fn get(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes(), LOGOUT_PARAMS);
    logout(&app, &headers, peer, &params, false, StatusCode::FOUND).await
}

pub async fn post(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !error::is_form(&headers) {
        return bad_request("The request must be sent as an HTML form.");
    }
    let confirm = Params::parse(&body, CONFIRM_PARAMS);
    if confirm.get("confirm").is_some() {
        // The confirmation form: the original request rides in `logout_query`.
        if !session::Csrf::verify(&app, &headers, confirm.get("csrf_token")) {
            return expired_form();
        }
        let params = Params::parse(
            confirm.get("logout_query").unwrap_or("").as_bytes(),
            LOGOUT_PARAMS,
        );
        return logout(&app, &headers, peer, &params, true, StatusCode::SEE_OTHER).await;
    }
    let params = Params::parse(&body, LOGOUT_PARAMS);
    logout(&app, &headers, peer, &params, false, StatusCode::SEE_OTHER).await
}

fn bad_request(message: &str) -> Response {
    pages::error_page(
        StatusCode::BAD_REQUEST,
        "Sign-out request not valid",
        message,
    )
}

async fn logout(
    app: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    params: &Params,
    confirmed: bool,
    redirect_status: StatusCode,
) -> Response {
    if params.reject_malformed().is_err() {
        return bad_request("A parameter was sent more than once or holds a control character.");
    }
    let now = app.clock.now();
    let hint = match params.get("id_token_hint") {
        None => None,
        Some(token) => {
            let keys = match app.keys.current(app.store.as_ref(), now).await {
                Ok(k) => k,
                Err(e) => return server_error(e),
            };
            match id_token::verify_hint(&keys, app.config.issuer_str(), token) {
                Some(h) => Some(h),
                None => return bad_request("The id_token_hint is not an ID token issued here."),
            }
        }
    };
    // Which client asks: client_id, or the hint's audience; both must agree.
    let client_id = match (params.get("client_id"), &hint) {
        (Some(id), Some(h)) if !h.audience.iter().any(|a| a == id) => {
            return bad_request("The client_id does not match the id_token_hint.")
        }
        (Some(id), _) => Some(id.to_owned()),
        (None, Some(h)) => h.audience.first().cloned(),
        (None, None) => None,
    };
    let redirect = match (params.get("post_logout_redirect_uri"), &client_id) {
        (Some(uri), Some(id)) => match app.store.client(id).await {
            Ok(Some(c)) => {
                redirect_uri::find_exact(uri, &c.post_logout_redirect_uris).map(str::to_owned)
            }
            Ok(None) => None,
            Err(e) => return server_error(e.into()),
        },
        _ => None,
    };

    let signed_in = match session::current(app, headers, now).await {
        Ok(s) => s,
        Err(e) => return server_error(e.into()),
    };
    if let Some((session_record, account)) = signed_in {
        let tied = hint.as_ref().is_some_and(|h| h.subject == account.id);
        if !tied && !confirmed {
            let query = params.to_query(|_, v| Some(v.to_owned()));
            // The confirmed form ends in a redirect to the RP; CSP form-action must allow it.
            let target = redirect.as_deref().unwrap_or("");
            return session::form_page(app, headers, StatusCode::OK, target, |csrf_token| {
                ConfirmPage {
                    username: &account.username,
                    csrf_token,
                    logout_query: &query,
                }
                .render()
            });
        }
        let (ip, agent) = request_meta(headers, Some(peer));
        let mut audit = AuditEvent::new(AuditKind::Logout, format!("user:{}", account.id), now)
            .account(&account.id)
            .from_request(ip, agent);
        audit.client_id = client_id.clone();
        if let Err(e) = app.store.delete_session(&session_record.id_digest).await {
            return server_error(e.into());
        }
        if let Err(e) = app.store.append_audit(&audit).await {
            tracing::error!(error = %e, "could not record a logout");
        }
    }

    let mut response = match redirect {
        Some(uri) => {
            let mut url = match url::Url::parse(&uri) {
                Ok(u) => u,
                Err(e) => return server_error(e.into()),
            };
            if let Some(state) = params.get("state") {
                url.query_pairs_mut().append_pair("state", state);
            }
            let mut r = redirect_status.into_response();
            if let Ok(v) = HeaderValue::from_str(url.as_str()) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        None => pages::html(StatusCode::OK, SignedOutPage.render(), None),
    };
    if let Some(clear) = session::clear_session_cookie(app) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

fn server_error(e: anyhow::Error) -> Response {
    tracing::error!(error = %e, "logout failed");
    pages::error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The sign-out could not be completed. Please try again later.",
    )
}
