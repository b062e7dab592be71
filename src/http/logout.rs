//! `/logout`: OpenID Connect RP-Initiated Logout 1.0 (`end_session_endpoint`); the rules are
//! in `oauth::logout`.

use std::net::SocketAddr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::forms::{expired_form, request_meta};
use super::{error, pages, session};
use crate::app::AppState;
use crate::oauth::backchannel;
use crate::oauth::frontchannel::{self, Frame};
use crate::oauth::logout::{self, LogoutError, LogoutRequest, LOGOUT_PARAMS};
use crate::oauth::params::Params;
use crate::store::AccountRecord;

const CONFIRM_PARAMS: &[&str] = &["csrf_token", "logout_query", "confirm"];

#[derive(Template)]
#[template(path = "logout_confirm.html")]
struct ConfirmPage<'a> {
    username: &'a str,
    csrf_token: &'a str,
    logout_query: &'a str,
}

/// The signed-out page; with front-channel logout `frames`, they load in hidden iframes and
/// the page's script sends the person on to `next` (the post-logout redirect) afterwards.
#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage<'a> {
    frames: &'a [Frame],
    next: Option<&'a str>,
}

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
    let now = app.clock.now();
    let keys = match params.get("id_token_hint") {
        None => None,
        Some(_) => match app.signer.keys(now).await {
            Ok(k) => Some(k),
            Err(e) => return server_error(e),
        },
    };
    let issuer = app.config.issuer_str();
    let request = match logout::validate(app.store.as_ref(), keys.as_deref(), issuer, params).await
    {
        Ok(r) => r,
        Err(LogoutError::Store(e)) => return server_error(e.into()),
        Err(e) => return bad_request(&e.message()),
    };
    let signed_in = match session::current(app, headers, now).await {
        Ok(s) => s,
        Err(e) => return server_error(e.into()),
    };
    let mut frames = Vec::new();
    if let Some((session_record, account)) = signed_in {
        if request.needs_confirmation(&account) && !confirmed {
            return confirm_page(app, headers, params, &request, &account);
        }
        if let Some(sid) = &session_record.sid {
            frames = logout_frames(app, sid).await;
        }
        let origin = request_meta(app, headers, peer);
        let ended = request.end_session(app.store.as_ref(), &session_record, &account, now, origin);
        if let Err(e) = ended.await {
            return server_error(e.into());
        }
        if let Some(sid) = &session_record.sid {
            notify_relying_parties(app, sid, now).await;
        }
    }
    let redirect = request.redirect_url();
    let mut response = match redirect {
        // A redirect would leave before any iframe loaded: the page goes first when it has
        // front-channel logouts to run.
        Some(url) if frames.is_empty() => {
            let mut r = redirect_status.into_response();
            if let Ok(v) = HeaderValue::from_str(url.as_str()) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        next => signed_out_page(&frames, next.as_ref().map(url::Url::as_str)),
    };
    if let Some(clear) = session::clear_session_cookie(app) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

/// OIDC Back-Channel Logout §2.7: tells each client of the ended session. Signing is here,
/// sending is the worker's; a failure loses only the notices, never the logout itself, so it
/// is logged and the person is signed out all the same.
async fn notify_relying_parties(app: &AppState, sid: &str, now: i64) {
    let issuer = app.config.issuer_str();
    match backchannel::deliveries(app.store.as_ref(), &app.signer, issuer, sid, now).await {
        Ok(deliveries) => {
            for d in deliveries {
                app.backchannel.enqueue(d);
            }
        }
        Err(e) => {
            crate::metrics::store_error(e.kind());
            tracing::error!(error = %e, "cannot find the clients to tell of a logout");
        }
    }
}

/// OIDC Front-Channel Logout §2: the iframes for the clients session `sid` signed into, read
/// before the session ends. A failure costs only the iframes, never the logout, so it is
/// logged and the person is signed out all the same.
async fn logout_frames(app: &AppState, sid: &str) -> Vec<Frame> {
    let issuer = app.config.issuer_str();
    match frontchannel::frames(app.store.as_ref(), issuer, sid).await {
        Ok(frames) => frames,
        Err(e) => {
            crate::metrics::store_error(e.kind());
            tracing::error!(error = %e, "cannot find the clients for front-channel logout");
            Vec::new()
        }
    }
}

/// The signed-out page. Its CSP lets it frame exactly the origins of `frames` and, when it
/// sends the person on to `next`, run Tessera's own script that does it.
fn signed_out_page(frames: &[Frame], next: Option<&str>) -> Response {
    let origins = frontchannel::origins(frames);
    let page = SignedOutPage { frames, next };
    let allow = pages::Allow {
        form_target: None,
        frames: &origins,
        scripts: next.is_some(),
    };
    pages::html_allowing(StatusCode::OK, page.render(), allow)
}

/// §2: asks the signed-in person to confirm; the request rides along in the form.
fn confirm_page(
    app: &AppState,
    headers: &HeaderMap,
    params: &Params,
    request: &LogoutRequest,
    account: &AccountRecord,
) -> Response {
    let query = params.to_query(|_, v| Some(v.to_owned()));
    // The confirmed form ends in a redirect to the RP; CSP form-action must allow it.
    let target = request.redirect.as_deref().unwrap_or("");
    session::form_page(app, headers, StatusCode::OK, target, |csrf_token| {
        ConfirmPage {
            username: &account.username,
            csrf_token,
            logout_query: &query,
        }
        .render()
    })
}

fn server_error(e: anyhow::Error) -> Response {
    crate::store::count_failure(&e);
    if crate::store::StoreError::unavailable_in(&e) {
        tracing::warn!(error = %e, "logout failed: the store is unavailable");
        return super::error::unavailable_page();
    }
    tracing::error!(error = %e, "logout failed");
    pages::error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The sign-out could not be completed. Please try again later.",
    )
}
