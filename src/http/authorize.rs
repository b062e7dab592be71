//! Authorization endpoint: RFC 6749 §4.1.1–§4.1.2, RFC 7636 §4.3, RFC 9207, OIDC Core
//! §3.1.2. GET and POST (Core §3.1.2.1) read the same parameters.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{consent, error, forms, login, pages, session};
use crate::app::AppState;
use crate::oauth::authorize::{
    self, AuthorizeError, AuthorizeRequest, Decision, SessionUser, AUTHORIZE_PARAMS,
};
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;
use crate::store::{ConsentGiven, StoreError};

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
        signed_in: SessionUser,
        scope: String,
    },
    /// The person has just signed in: the new session with its user. What they consented
    /// to before is read only if it can change the outcome.
    SignedIn(SessionUser),
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
    signed_in: SessionUser,
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
    signed_in: SessionUser,
) -> Response {
    let known = Known::SignedIn(signed_in);
    match step(app, headers, params, peer, Some(known), &mut None).await {
        Ok(response) => response,
        Err(e) => error::authorize_error(app, e, StatusCode::SEE_OTHER),
    }
}

/// The person approved at the consent page, whose form claims the session it was shown for
/// (decision 0055): carries on as [`after_consent`] does, without reading the session,
/// when that leads to a code, whose write checks the claim. `None`, with nothing written,
/// when it leads anywhere else or the store does not hold the session as claimed (signed
/// out, replaced, over, user disabled meanwhile, or a claim that was never true): the
/// caller then reads the session and starts again. A store that fails is answered as
/// `/authorize` answers it.
pub(super) async fn approve_claimed(
    app: &AppState,
    headers: &HeaderMap,
    params: &Params,
    peer: SocketAddr,
    claimed: SessionUser,
    given: ConsentGiven,
) -> Option<Response> {
    debug_assert!(claimed.claimed, "only a claimed session skips the read");
    // (outcome for the counter, the answer: none to read the session and start again)
    let (outcome, answer) = async {
        let Ok((request, now)) = checked_request(app, params).await else {
            return ("refused", None);
        };
        let user = match authorize::decide(&request, Some(claimed), Some(&given.scope), now) {
            Ok(Decision::Issue(user)) => user,
            _ => return ("refused", None),
        };
        let issued = issue(app, headers, peer, &request, &user, now, Some(given)).await;
        match issued {
            Ok(redirect) => ("held", Some(redirect(StatusCode::SEE_OTHER))),
            Err(StoreError::NotFound(_)) => ("refused", None),
            // The store failed: whether the write committed is unknown, so it is not tried
            // again by the read's way; the error is the answer, counted as a store error.
            Err(e) => (
                "failed",
                Some(error::authorize_error(
                    app,
                    request.fail(e.into()),
                    StatusCode::SEE_OTHER,
                )),
            ),
        }
    }
    .await;
    crate::metrics::consent_claim(outcome);
    answer
}

/// The request in `params`, validated, with its `id_token_hint` checked, and the time it
/// was checked at.
async fn checked_request(
    app: &AppState,
    params: &Params,
) -> Result<(AuthorizeRequest, i64), AuthorizeError> {
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
    Ok((request, now))
}

async fn step(
    app: &AppState,
    headers: &HeaderMap,
    params: &Params,
    peer: SocketAddr,
    known: Option<Known>,
    given: &mut Option<ConsentGiven>,
) -> Result<Response, AuthorizeError> {
    let (request, now) = checked_request(app, params).await?;
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
                .consent(&signed_in.session.account_id, &request.client.id)
                .await
                .map_err(|e| request.fail(e.into()))?;
            (Some(signed_in), consented)
        }
        None => session::current_with_consent(app, headers, now, &request.client.id)
            .await
            .map_err(|e| request.fail(e.into()))?
            .map_or((None, None), |((session, account), consented)| {
                (Some(SessionUser::read(session, &account)), consented)
            }),
    };
    let decision = authorize::decide(&request, signed_in, consented.as_deref(), now)
        .map_err(|e| request.fail(e))?;
    let query = forms::pending_query(params, &[]);
    Ok(match decision {
        Decision::Login => login::page(app, headers, &request, &query, None),
        Decision::Consent(user) => consent::page(app, headers, &request, &query, &user),
        Decision::Issue(user) => {
            let redirect = issue(app, headers, peer, &request, &user, now, given.take())
                .await
                .map_err(|e| request.fail(e.into()))?;
            redirect(redirect_status)
        }
    })
}

/// Issues a code for `user` (with `consent`, if one was just given): the redirect that
/// hands it to the client, by the status the caller gives.
async fn issue<'r>(
    app: &'r AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    request: &'r AuthorizeRequest,
    user: &SessionUser,
    now: i64,
    consent: Option<ConsentGiven>,
) -> Result<impl FnOnce(StatusCode) -> Response + 'r, StoreError> {
    let origin = super::forms::request_meta(app, headers, peer);
    let code =
        authorize::issue_code(app.store.as_ref(), request, user, now, origin, consent).await?;
    Ok(move |status| {
        error::redirect_to_client(app, &request.redirect, &[("code", code.expose())], status)
    })
}
