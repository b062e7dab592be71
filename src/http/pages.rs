//! Tessera's HTML pages (askama templates in `templates/`) and the headers every HTML
//! response carries.

use askama::Template;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use oxide_auth::primitives::scope::Scope;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    /// The client the person signs in for; `None` at the account page.
    pub client_name: Option<&'a str>,
    /// Where the form posts: `/login` or `/account/login`.
    pub action: &'a str,
    pub csrf_token: &'a str,
    pub authorize_query: Option<&'a str>,
    pub username: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub client_name: &'a str,
    pub username: &'a str,
    pub scopes: Vec<ScopeView>,
    pub csrf_token: &'a str,
    pub authorize_query: &'a str,
    /// The session the page was shown for, claimed by the form (decision 0055).
    pub signed_in: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

/// One requested scope, in words a person understands.
pub struct ScopeView {
    pub name: String,
    pub description: String,
}

/// Plain-words descriptions of the scopes Tessera knows (OIDC Core §5.4 and §11).
const SCOPE_WORDS: &[(&str, &str)] = &[
    ("openid", "Know who you are (your account identifier)"),
    ("profile", "See your basic profile: name, picture, locale"),
    ("email", "See your email address"),
    ("address", "See your postal address"),
    ("phone", "See your phone number"),
    ("roles", "See your roles and groups"),
    (
        "offline_access",
        "Stay connected while you are away (keep access until you revoke it)",
    ),
];

/// Known scopes first in a fixed order, then the others alphabetically.
pub fn scope_views(scope: &Scope) -> Vec<ScopeView> {
    let mut views: Vec<ScopeView> = SCOPE_WORDS
        .iter()
        .filter(|(name, _)| scope.iter().any(|s| s == *name))
        .map(|(name, words)| ScopeView {
            name: (*name).to_owned(),
            description: (*words).to_owned(),
        })
        .collect();
    let mut others: Vec<&str> = scope
        .iter()
        .filter(|s| !SCOPE_WORDS.iter().any(|(n, _)| n == s))
        .collect();
    others.sort_unstable();
    views.extend(others.into_iter().map(|s| ScopeView {
        name: s.to_owned(),
        description: format!("Use the permission “{s}”"),
    }));
    views
}

/// The CSP source that lets a form's follow-up redirect reach `redirect_uri`: browsers
/// apply `form-action` to every redirect after a form post, so the login and consent forms
/// must allow the client's origin (or private-use scheme), and nothing else.
pub fn form_action_source(redirect_uri: &str) -> Option<String> {
    let url = url::Url::parse(redirect_uri).ok()?;
    match url.scheme() {
        "http" | "https" => Some(url.origin().ascii_serialization()),
        scheme => Some(format!("{scheme}:")),
    }
}

/// The CSP of every answer that is not a page (JSON, the stylesheet, empty answers): nothing
/// may load, run or frame it. Pages send their own (`security_headers`).
pub const NOTHING_ALLOWED_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// What a page may load beyond what every page may: most pages need nothing more.
#[derive(Debug, Default, Clone, Copy)]
pub struct Allow<'a> {
    /// Where a form's follow-up redirect may go (`form-action`).
    pub form_target: Option<&'a str>,
    /// Origins the page may load in iframes (`frame-src`): the signed-out page's
    /// front-channel logout iframes, and nowhere else.
    pub frames: &'a [&'a str],
    /// The page runs Tessera's own scripts (`script-src 'self'`).
    pub scripts: bool,
}

/// A rendered page with the security headers every HTML response carries.
pub fn html(
    status: StatusCode,
    rendered: askama::Result<String>,
    form_target: Option<&str>,
) -> Response {
    html_allowing(
        status,
        rendered,
        Allow {
            form_target,
            ..Allow::default()
        },
    )
}

/// [`html`] for a page that may load more than the others (see [`Allow`]).
pub fn html_allowing(
    status: StatusCode,
    rendered: askama::Result<String>,
    allow: Allow,
) -> Response {
    let body = match rendered {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    let mut response = (status, body).into_response();
    security_headers(response.headers_mut(), allow);
    response
}

fn security_headers(headers: &mut HeaderMap, allow: Allow) {
    let form_action = match allow.form_target.and_then(form_action_source) {
        Some(target) => format!("form-action 'self' {target}"),
        None => "form-action 'self'".to_owned(),
    };
    let script = if allow.scripts {
        "script-src 'self'; "
    } else {
        ""
    };
    let frames = if allow.frames.is_empty() {
        String::new()
    } else {
        format!("frame-src {}; ", allow.frames.join(" "))
    };
    let csp = format!(
        "default-src 'none'; {script}style-src 'self'; img-src 'self'; {frames}{form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let fixed = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
}

/// An error page for the person at the browser.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    html(status, ErrorPage { title, message }.render(), None)
}

/// Any path no route serves.
pub async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing at this address. Go back to the application you came from.",
    )
}

/// The stylesheet, compiled in so the binary runs from any working directory.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/tessera.css"),
    )
        .into_response()
}

/// The signed-out page's script, compiled in like the stylesheet.
pub async fn frontchannel_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/frontchannel-logout.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn form_action_allows_exactly_the_redirect_origin() {
        assert_eq!(
            form_action_source("https://app.example:8443/cb?x=1").as_deref(),
            Some("https://app.example:8443")
        );
        assert_eq!(
            form_action_source("com.example.app:/cb").as_deref(),
            Some("com.example.app:")
        );
    }

    #[test]
    fn scopes_are_described_in_plain_words_known_first() {
        let views = scope_views(&Scope::from_str("zeta openid email").unwrap());
        let names: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["openid", "email", "zeta"]);
        assert!(views[1].description.contains("email address"));
    }
}
