//! OAuth errors on the wire, per endpoint (STYLE.md §3):
//! - `/authorize`: an HTML page before the redirect URI is verified, then a redirect with
//!   `error`, `error_description`, `state` and `iss` (RFC 6749 §4.1.2.1, RFC 9207).
//! - `/token` (and client authentication elsewhere): JSON per RFC 6749 §5.2; `invalid_client`
//!   is 401, with `WWW-Authenticate` when the client used HTTP Basic.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::oauth::authorize::{AuthorizeError, VerifiedRedirect};
use crate::oauth::error::{ErrorCode, OAuthError};

use super::rate_limit::Exceeded;
use super::{pages, respond};

/// Logs an error at a level that fits: ours loudly, the client's quietly.
pub fn log(e: &OAuthError) {
    if e.code == ErrorCode::ServerError {
        tracing::error!(error = %e, "request failed");
    } else if e.code == ErrorCode::TemporarilyUnavailable && e.detail.is_some() {
        tracing::warn!(error = %e, "request failed: the store is unavailable");
    } else {
        tracing::info!(error = %e, "request refused");
    }
}

/// Sends the browser to the client's verified redirect URI with `params`, plus `state` and
/// `iss`. Existing query parameters of the registered URI are kept (RFC 6749 §3.1.2).
pub fn redirect_to_client(
    app: &AppState,
    redirect: &VerifiedRedirect,
    params: &[(&str, &str)],
    status: StatusCode,
) -> Response {
    let Ok(mut url) = url::Url::parse(&redirect.redirect_uri) else {
        // Registered URIs are validated when registered; this cannot happen for them.
        return pages::error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The application's redirect address is not valid.",
        );
    };
    {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in params {
            pairs.append_pair(name, value);
        }
        if let Some(state) = &redirect.state {
            pairs.append_pair("state", state);
        }
        // RFC 9207 §2: the issuer identifier tells the client which server answered.
        pairs.append_pair("iss", app.config.issuer_str());
    }
    let mut response = status.into_response();
    if let Ok(location) = HeaderValue::from_str(url.as_str()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    respond::no_store(response)
}

/// The response for an authorization error. `status` is 302 after a GET and 303 after a
/// form post (so the browser follows with a GET).
pub fn authorize_error(app: &AppState, e: AuthorizeError, status: StatusCode) -> Response {
    match e {
        AuthorizeError::Page(e) => {
            log(&e);
            if e.code == ErrorCode::ServerError {
                return pages::error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The sign-in service could not complete the request. Please try again later.",
                );
            }
            if e.code == ErrorCode::TemporarilyUnavailable {
                return unavailable_page();
            }
            pages::error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid",
                &format!(
                    "The application sent an invalid request ({}). Nothing was shared with it.",
                    e.description
                ),
            )
        }
        AuthorizeError::Redirect(redirect, e) => {
            log(&e);
            redirect_to_client(
                app,
                &redirect,
                &[
                    ("error", e.code.as_str()),
                    ("error_description", &e.description),
                ],
                status,
            )
        }
    }
}

/// An error from the token endpoint, or from client authentication at any endpoint.
#[derive(Debug)]
pub struct TokenError {
    pub error: OAuthError,
    /// The client tried HTTP Basic authentication.
    pub basic: bool,
    /// Over a rate limit: answered 429 with its headers.
    pub limit: Option<Exceeded>,
}

impl From<OAuthError> for TokenError {
    fn from(error: OAuthError) -> Self {
        TokenError {
            error,
            basic: false,
            limit: None,
        }
    }
}

impl TokenError {
    /// 429 (RFC 6585 §4) with `temporarily_unavailable` (decision 0018).
    pub fn rate_limited(exceeded: Exceeded) -> TokenError {
        TokenError {
            error: OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                format!(
                    "too many requests; retry after {} s",
                    exceeded.retry_after_secs
                ),
            ),
            basic: false,
            limit: Some(exceeded),
        }
    }
}

impl From<crate::store::StoreError> for TokenError {
    fn from(e: crate::store::StoreError) -> Self {
        OAuthError::from(e).into()
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        log(&self.error);
        if let Some(exceeded) = &self.limit {
            let mut response = respond::json_error(
                StatusCode::TOO_MANY_REQUESTS,
                self.error.code,
                &self.error.description,
            );
            exceeded.apply(response.headers_mut());
            return response;
        }
        let status = match self.error.code {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut response = respond::json_error(status, self.error.code, &self.error.description);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, RETRY_AFTER);
        }
        // RFC 6749 §5.2: a client that tried the Authorization header gets a challenge back.
        if self.basic && self.error.code == ErrorCode::InvalidClient {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tessera\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

/// How long a client should wait after a 503 for a store that was away (RFC 9110 §10.2.3):
/// restarts and failovers take seconds.
pub const RETRY_AFTER: HeaderValue = HeaderValue::from_static("2");

/// The page for a person when the store is away: 503, try again in a moment.
pub fn unavailable_page() -> Response {
    let mut response = pages::error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "The sign-in service is briefly unavailable. Nothing was changed. Please try again in a moment.",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, RETRY_AFTER);
    response
}

/// Whether the request body is `application/x-www-form-urlencoded` (parameters allowed).
pub fn is_form(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}
