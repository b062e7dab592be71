//! Helpers shared by the pages that continue an authorization request (login, consent) and
//! by logout: the pending request carried through a form, CSRF-checked form posts, redirects
//! within this server, and what the audit trail records of a request.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{error, pages, session};
use crate::app::AppState;
use crate::oauth::authorize::{self, AuthorizeRequest, AUTHORIZE_PARAMS};
use crate::oauth::params::Params;

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
        return Err(expired_form());
    }
    let params = Params::parse(
        form.get("authorize_query").unwrap_or("").as_bytes(),
        AUTHORIZE_PARAMS,
    );
    match authorize::validate(app.store.as_ref(), &app.clients, &params).await {
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

/// Source address (through the trusted-proxy rule, `client_ip`) and user agent, for the
/// audit trail.
pub fn request_meta(
    app: &AppState,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
) -> (Option<String>, Option<String>) {
    let agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect());
    let ip = super::client_ip::client_ip(&app.config.trusted_proxies, headers, peer);
    (Some(ip.to_string()), agent)
}

/// 303 to a path on this server.
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A form whose CSRF token does not match this browser: refused, nothing changed.
pub fn expired_form() -> Response {
    pages::error_page(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "For your security the form could not be accepted. Go back to the application and start again.",
    )
}
