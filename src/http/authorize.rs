//! Authorization endpoint: RFC 6749 §4.1.1–§4.1.2, RFC 7636 §4.3, RFC 9207, OIDC Core
//! §3.1.2. GET and POST (Core §3.1.2.1) read the same parameters.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{consent, error, forms, login, pages, session};
use crate::app::AppState;
use crate::oauth::authorize::{self, AuthorizeError, Decision, AUTHORIZE_PARAMS};
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;
use crate::store::{AccountRecord, ConsentGiven, SessionRecord};

pub async fn get(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes(), AUTHORIZE_PARAMS);
    run(&app, &headers, &params, peer).await
}

pub async fn post(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !error::is_form(&headers) {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "The request must be sent as an HTML form.",
        );
    }
    let params = Params::parse(&body, AUTHORIZE_PARAMS);
    run(&app, &headers, &params, peer).await
}

async fn run(app: &AppState, headers: &HeaderMap, params: &Params, peer: SocketAddr) -> Response {
    match step(app, headers, params, peer, None, &mut None).await {
        Ok(response) => response,
        Err(e) => error::authorize_error(app, e, StatusCode::FOUND),
    }
}

/// What a form's answer already knows when it carries on with the request as `/authorize`
/// would.
pub(super) enum Known {
    /// The person approved at the consent page: the session with its user, and the scopes
    /// just consented to.
    Consented {
        signed_in: (SessionRecord, AccountRecord),
        scope: String,
    },
    /// The person has just signed in: the new session with its user. What they consented
    /// to before is read only if it can change the outcome.
    SignedIn((SessionRecord, AccountRecord)),
}

/// The person approved at the consent page: carries on with the request (`params`, the
/// satisfied `prompt=consent` removed) as `/authorize` would, so the code goes to the client
/// in the answer to the consent form, without the browser's round trip back to
/// `/authorize` and its reads of the session and of the consent. Redirects answer the form
/// with 303 (RFC 9700 §4.12). When a code is issued, `given` (the consent, not yet stored) is
/// taken and stored with it in one write; otherwise it is left for the caller to store.
pub(super) async fn after_consent(
    app: &AppState,
    headers: &HeaderMap,
    params: &Params,
    peer: SocketAddr,
    signed_in: (SessionRecord, AccountRecord),
    scope: String,
    given: &mut Option<ConsentGiven>,
) -> Response {
    let known = Known::Consented { signed_in, scope };
    match step(app, headers, params, peer, Some(known), given).await {
        Ok(response) => response,
        Err(e) => error::authorize_error(app, e, StatusCode::SEE_OTHER),
    }
}

/// The person has just signed in: carries on with the request (`params`, the satisfied
/// `prompt=login`, `select_account` and `max_age` removed) as `/authorize` would, in the
/// answer to the login form: the consent page, or the code (303, RFC 9700 §4.12), without
/// the browser's round trip back to `/authorize` and its read of the session (decision
/// 0050).
pub(super) async fn after_login(
    app: &AppState,
    headers: &HeaderMap,
    params: &Params,
    peer: SocketAddr,
    signed_in: (SessionRecord, AccountRecord),
) -> Response {
    let known = Known::SignedIn(signed_in);
    match step(app, headers, params, peer, Some(known), &mut None).await {
        Ok(response) => response,
        Err(e) => error::authorize_error(app, e, StatusCode::SEE_OTHER),
    }
}

async fn step(
    app: &AppState,
    headers: &HeaderMap,
    params: &Params,
    peer: SocketAddr,
    known: Option<Known>,
    given: &mut Option<ConsentGiven>,
) -> Result<Response, AuthorizeError> {
    let mut request = authorize::validate(app.store.as_ref(), &app.clients, params).await?;
    let now = app.clock.now();
    if let Some(hint) = params.get("id_token_hint") {
        let keys = app
            .signer
            .keys(now)
            .await
            .map_err(|e| request.fail(OAuthError::server(e)))?;
        request.apply_id_token_hint(&keys, app.config.issuer_str(), hint)?;
    }
    let redirect_status = match known {
        Some(_) => StatusCode::SEE_OTHER,
        None => StatusCode::FOUND,
    };
    let (signed_in, consented) = match known {
        Some(Known::Consented { signed_in, scope }) => (Some(signed_in), Some(scope)),
        Some(Known::SignedIn(signed_in)) if !authorize::stored_consent_matters(&request) => {
            (Some(signed_in), None)
        }
        Some(Known::SignedIn(signed_in)) => {
            let consented = app
                .store
                .consent(&signed_in.1.id, &request.client.id)
                .await
                .map_err(|e| request.fail(e.into()))?;
            (Some(signed_in), consented)
        }
        None => session::current_with_consent(app, headers, now, &request.client.id)
            .await
            .map_err(|e| request.fail(e.into()))?
            .map_or((None, None), |(signed_in, consented)| {
                (Some(signed_in), consented)
            }),
    };
    let decision = authorize::decide(&request, signed_in, consented.as_deref(), now)
        .map_err(|e| request.fail(e))?;
    let query = forms::pending_query(params, &[]);
    Ok(match decision {
        Decision::Login => login::page(app, headers, &request, &query, None),
        Decision::Consent(account) => consent::page(app, headers, &request, &query, &account),
        Decision::Issue(session, account) => {
            let origin = super::forms::request_meta(app, headers, peer);
            let code = authorize::issue_code(
                app.store.as_ref(),
                &request,
                &session,
                &account,
                now,
                origin,
                given.take(),
            )
            .await
            .map_err(|e| request.fail(e.into()))?;
            error::redirect_to_client(
                app,
                &request.redirect,
                &[("code", code.expose())],
                redirect_status,
            )
        }
    })
}
