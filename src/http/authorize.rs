//! Authorization endpoint: RFC 6749 §4.1.1–§4.1.2, RFC 7636 §4.3, RFC 9207, OIDC Core
//! §3.1.2. GET and POST (Core §3.1.2.1) read the same parameters.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{consent, error, login, pages, session};
use crate::app::AppState;
use crate::crypto::token::{PlainSecret, CODE_PREFIX};
use crate::oauth::authorize::{self, AuthorizeError, AuthorizeRequest, Decision, AUTHORIZE_PARAMS};
use crate::oauth::error::OAuthError;
use crate::oauth::id_token;
use crate::oauth::params::Params;
use crate::store::{AccountRecord, CodeRecord, GrantRecord, SessionRecord};

/// RFC 6749 §4.1.2 recommends at most ten minutes; DESIGN.md keeps codes for 60 seconds.
pub const CODE_TTL_SECS: i64 = 60;

pub async fn get(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes(), AUTHORIZE_PARAMS);
    run(&app, &headers, &params).await
}

pub async fn post(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !error::is_form(&headers) {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "The request must be sent as an HTML form.",
        );
    }
    let params = Params::parse(&body, AUTHORIZE_PARAMS);
    run(&app, &headers, &params).await
}

async fn run(app: &AppState, headers: &HeaderMap, params: &Params) -> Response {
    match step(app, headers, params).await {
        Ok(response) => response,
        Err(e) => error::authorize_error(app, e, StatusCode::FOUND),
    }
}

async fn step(
    app: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Response, AuthorizeError> {
    let mut request = authorize::validate(app.store.as_ref(), params).await?;
    let now = app.clock.now();
    if let Some(hint) = params.get("id_token_hint") {
        let keys = app
            .keys
            .current(app.store.as_ref(), now)
            .await
            .map_err(|e| request.fail(OAuthError::server(e)))?;
        let verified =
            id_token::verify_hint(&keys, app.config.issuer_str(), hint).ok_or_else(|| {
                request.fail(OAuthError::invalid_request(
                    "id_token_hint is not an ID token issued here",
                ))
            })?;
        request.hint_subject = Some(verified.subject);
    }
    let signed_in = session::current(app, headers, now)
        .await
        .map_err(|e| request.fail(e.into()))?;
    let consented = match &signed_in {
        Some((_, account)) => app
            .store
            .consent(&account.id, &request.client.id)
            .await
            .map_err(|e| request.fail(e.into()))?,
        None => None,
    };
    let decision = authorize::decide(&request, signed_in, consented.as_deref(), now)
        .map_err(|e| request.fail(e))?;
    let query = pending_query(params, &[]);
    Ok(match decision {
        Decision::Login => login::page(app, headers, &request, &query, None),
        Decision::Consent(account) => consent::page(app, headers, &request, &query, &account),
        Decision::Issue(session, account) => {
            issue_code(app, &request, &session, &account, now).await?
        }
    })
}

/// A form that continues a pending authorization request (login, consent): it must be a
/// form without repeated fields and carry this browser's CSRF token; the request it carries
/// in `authorize_query` is validated again exactly as `/authorize` does. On failure, the
/// response to send.
pub async fn pending_form(
    app: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    fields: &[&str],
    title: &str,
) -> Result<(Params, Params, AuthorizeRequest), Response> {
    let form = Params::parse(body, fields);
    if !error::is_form(headers) || form.reject_malformed().is_err() {
        return Err(pages::error_page(
            StatusCode::BAD_REQUEST,
            title,
            "The form was not sent correctly.",
        ));
    }
    if !session::Csrf::verify(app, headers, form.get("csrf_token")) {
        return Err(login::expired_form());
    }
    let params = Params::parse(
        form.get("authorize_query").unwrap_or("").as_bytes(),
        AUTHORIZE_PARAMS,
    );
    match authorize::validate(app.store.as_ref(), &params).await {
        Ok(request) => Ok((form, params, request)),
        Err(e) => Err(error::authorize_error(app, e, StatusCode::SEE_OTHER)),
    }
}

/// The request's own parameters, to carry through the login and consent forms and back to
/// `/authorize`, minus what is already satisfied: `prompt` values listed in `satisfied` (else
/// `prompt=login` would ask for a login again after every login), and `max_age` when
/// `satisfied` names it (a login just happened, however many seconds the way back takes).
pub fn pending_query(params: &Params, satisfied: &[&str]) -> String {
    params.to_query(|name, value| {
        if name == "max_age" && satisfied.contains(&"max_age") {
            return None;
        }
        if name != "prompt" {
            return Some(value.to_owned());
        }
        let left: Vec<&str> = value
            .split(' ')
            .filter(|v| !satisfied.contains(v))
            .collect();
        (!left.is_empty()).then(|| left.join(" "))
    })
}

/// RFC 6749 §4.1.2: a code bound to this client, redirect URI, scope, nonce and PKCE
/// challenge, valid for 60 seconds, stored as a digest; a new grant for it to hang off.
async fn issue_code(
    app: &AppState,
    request: &AuthorizeRequest,
    session: &SessionRecord,
    account: &AccountRecord,
    now: i64,
) -> Result<Response, AuthorizeError> {
    let code = PlainSecret::generate(CODE_PREFIX);
    let grant = GrantRecord {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: request.client.id.clone(),
        account_id: Some(account.id.clone()),
        scope: request.scope_str.clone(),
        auth_time: Some(session.auth_time),
        amr: session.amr.clone(),
        created_at: now,
        revoked_at: None,
    };
    let record = CodeRecord {
        digest: code.digest(),
        grant_id: grant.id.clone(),
        client_id: request.client.id.clone(),
        account_id: account.id.clone(),
        redirect_uri: request
            .redirect_uri_sent
            .then(|| request.redirect.redirect_uri.clone()),
        scope: request.scope_str.clone(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        auth_time: session.auth_time,
        amr: session.amr.clone(),
        created_at: now,
        expires_at: now + CODE_TTL_SECS,
        consumed_at: None,
    };
    app.store
        .insert_code(&grant, &record)
        .await
        .map_err(|e| request.fail(e.into()))?;
    Ok(error::redirect_to_client(
        app,
        &request.redirect,
        &[("code", code.expose())],
        StatusCode::FOUND,
    ))
}

/// Source address and user agent, for the audit trail.
pub fn request_meta(
    headers: &HeaderMap,
    peer: Option<std::net::SocketAddr>,
) -> (Option<String>, Option<String>) {
    let agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect());
    (peer.map(|p| p.ip().to_string()), agent)
}
