//! The browser side: cookies, the session at Tessera, and CSRF protection for its forms.
//!
//! - The session cookie holds a 256-bit random value; the store keeps only its digest.
//!   `HttpOnly`, `SameSite=Lax` (the client's redirect to `/authorize` is a top-level GET
//!   and must carry it), `Path=/`, and `Secure` with the `__Host-` prefix when the issuer is
//!   https.
//! - CSRF: a separate random cookie; each form carries an HMAC of it under a server key
//!   (signed double submit). A cross-site page can neither read the cookie nor compute a
//!   token for a cookie value of its choosing. What keeps an attacker from planting a whole
//!   cookie-and-token pair that Tessera handed them is the cookie itself: `__Host-`, `Secure`
//!   under an https issuer, so no sibling host or plain-http hop can set it.

use axum::http::{header, HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::crypto::mac;
use crate::crypto::token::{Digest, PlainSecret, SESSION_PREFIX};
use crate::oauth::authorize::SessionUser;
use crate::store::{AccountRecord, SessionRecord, SignedInWithConsent, StoreError};

const SESSION: &str = "tessera_session";
const CSRF: &str = "tessera_csrf";
const DEVICE: &str = "tessera_device";
/// How long a browser stays known for a username after a successful sign-in (90 days).
const DEVICE_TTL_SECS: i64 = 90 * 24 * 3600;

/// `__Host-` binds the cookie to this exact host over https (RFC 6265bis §4.1.3.2).
fn name(base: &str, secure: bool) -> String {
    if secure {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

fn secure(app: &AppState) -> bool {
    !app.config.is_insecure_issuer()
}

/// The value of cookie `name` in the request, if any.
pub fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<i64>) -> Option<HeaderValue> {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        cookie.push_str("; Secure");
    }
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&cookie).ok()
}

/// The digest of the session cookie the browser sent, if any.
pub fn session_digest(app: &AppState, headers: &HeaderMap) -> Option<Digest> {
    read_cookie(headers, &name(SESSION, secure(app))).map(Digest::of)
}

/// [`current`], with what the user consented to for `client_id`, in one lookup.
pub async fn current_with_consent(
    app: &AppState,
    headers: &HeaderMap,
    now: i64,
    client_id: &str,
) -> Result<Option<SignedInWithConsent>, StoreError> {
    let Some(digest) = session_digest(app, headers) else {
        return Ok(None);
    };
    Ok(app
        .store
        .signed_in_with_consent(&digest, now, client_id)
        .await?
        .filter(|((_, a), _)| !a.disabled))
}

/// What the consent page carries of the session it was shown for, for its form to claim
/// (decision 0055). Nothing of it is secret: the page goes to the signed-in person.
#[derive(serde::Serialize, serde::Deserialize)]
struct Claim {
    account_id: String,
    auth_time: i64,
    amr: Vec<String>,
    created_at: i64,
    expires_at: i64,
    sid: Option<String>,
}

/// The longest claim a form may carry: far above any real one (a user id, a few short `amr`
/// values, a session id), far below what costs anything.
const CLAIM_MAX: usize = 4096;

/// The consent form's `signed_in` value for `user`'s session: its values, unencrypted
/// (base64url of JSON), for the form's answer to claim without reading the session first.
pub fn claim(user: &SessionUser) -> String {
    use base64::Engine;
    let s = &user.session;
    let claim = Claim {
        account_id: s.account_id.clone(),
        auth_time: s.auth_time,
        amr: s.amr.clone(),
        created_at: s.created_at,
        expires_at: s.expires_at,
        sid: s.sid.clone(),
    };
    // A struct of strings and numbers always serialises; an empty claim is refused later.
    let json = serde_json::to_vec(&claim).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// The session a consent form claims (`value`, from [`claim`]) for the session cookie the
/// browser sent, not yet checked against the store: [`SessionUser::claimed`], without a
/// username. `None` when there is no cookie, the value is malformed or over `CLAIM_MAX`,
/// or the session it names is already over.
pub fn claimed(
    app: &AppState,
    headers: &HeaderMap,
    value: Option<&str>,
    now: i64,
) -> Option<SessionUser> {
    use base64::Engine;
    let digest = session_digest(app, headers)?;
    let value = value.filter(|v| !v.is_empty() && v.len() <= CLAIM_MAX)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .ok()?;
    let claim: Claim = serde_json::from_slice(&json).ok()?;
    (claim.expires_at > now).then(|| SessionUser {
        session: SessionRecord {
            id_digest: digest,
            account_id: claim.account_id,
            auth_time: claim.auth_time,
            amr: claim.amr,
            created_at: claim.created_at,
            expires_at: claim.expires_at,
            sid: claim.sid,
        },
        username: String::new(),
        claimed: true,
    })
}

/// The browser's live session and its enabled user, if any.
pub async fn current(
    app: &AppState,
    headers: &HeaderMap,
    now: i64,
) -> Result<Option<(SessionRecord, AccountRecord)>, StoreError> {
    let Some(digest) = session_digest(app, headers) else {
        return Ok(None);
    };
    Ok(app
        .store
        .signed_in(&digest, now)
        .await?
        .filter(|(_, a)| !a.disabled))
}

/// A new session value and the `Set-Cookie` header that hands it to the browser.
pub fn new_session_cookie(app: &AppState) -> (PlainSecret, Option<HeaderValue>) {
    let value = PlainSecret::generate(SESSION_PREFIX);
    let header = set_cookie(
        &name(SESSION, secure(app)),
        value.expose(),
        secure(app),
        None,
    );
    (value, header)
}

/// `Set-Cookie` that removes the session cookie from the browser.
pub fn clear_session_cookie(app: &AppState) -> Option<HeaderValue> {
    set_cookie(&name(SESSION, secure(app)), "", secure(app), Some(0))
}

/// The CSRF cookie for this browser: the one it sent, or a new one to set.
pub struct Csrf {
    value: String,
    fresh: bool,
}

impl Csrf {
    pub fn for_browser(app: &AppState, headers: &HeaderMap) -> Csrf {
        match read_cookie(headers, &name(CSRF, secure(app))).filter(|v| v.len() >= 43) {
            Some(v) => Csrf {
                value: v.to_owned(),
                fresh: false,
            },
            None => Csrf {
                value: PlainSecret::generate("").expose().to_owned(),
                fresh: true,
            },
        }
    }

    /// The token the form carries.
    pub fn token(&self, app: &AppState) -> String {
        form_token(app, &self.value)
    }

    /// `Set-Cookie` when the browser had no CSRF cookie yet.
    pub fn set_cookie(&self, app: &AppState) -> Option<HeaderValue> {
        if self.fresh {
            set_cookie(&name(CSRF, secure(app)), &self.value, secure(app), None)
        } else {
            None
        }
    }

    /// Whether `presented` is the token for the CSRF cookie this browser sent.
    pub fn verify(app: &AppState, headers: &HeaderMap, presented: Option<&str>) -> bool {
        let Some(cookie) = read_cookie(headers, &name(CSRF, secure(app))) else {
            return false;
        };
        let Some(presented) = presented else {
            return false;
        };
        form_token(app, cookie)
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into()
    }
}

/// `headers` without the browser's CSRF cookie: a page rendered for them hands out a new
/// one, and the forms shown before stop working (after a sign-in, decision 0050).
pub fn without_csrf_cookie(app: &AppState, headers: &HeaderMap) -> HeaderMap {
    let csrf = name(CSRF, secure(app));
    let kept: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| pair.split_once('=').is_none_or(|(n, _)| n != csrf))
        .collect();
    let mut out = headers.clone();
    out.remove(header::COOKIE);
    if let (false, Ok(value)) = (kept.is_empty(), HeaderValue::from_str(&kept.join("; "))) {
        out.insert(header::COOKIE, value);
    }
    out
}

/// `response`, handing the browser a new CSRF cookie or, if it does not, removing the one
/// it has: either way no form shown before works any more.
pub fn end_csrf_cookie(
    app: &AppState,
    mut response: axum::response::Response,
) -> axum::response::Response {
    let csrf = name(CSRF, secure(app));
    let renewed = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|c| c.to_str().ok())
        .any(|c| c.split_once('=').is_some_and(|(n, _)| n == csrf));
    if !renewed {
        if let Some(clear) = set_cookie(&csrf, "", secure(app), Some(0)) {
            response.headers_mut().append(header::SET_COOKIE, clear);
        }
    }
    response
}

/// Renders a page that holds a form: `page` gets this browser's CSRF token, and the CSRF
/// cookie is set if the browser had none. `form_target` is the redirect URI the form's
/// follow-up redirects may reach (see `pages::form_action_source`).
pub fn form_page(
    app: &AppState,
    headers: &HeaderMap,
    status: axum::http::StatusCode,
    form_target: &str,
    render: impl FnOnce(&str) -> askama::Result<String>,
) -> axum::response::Response {
    let csrf = Csrf::for_browser(app, headers);
    let token = csrf.token(app);
    let target = (!form_target.is_empty()).then_some(form_target);
    let mut response = super::pages::html(status, render(&token), target);
    if let Some(cookie) = csrf.set_cookie(app) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The form token for a CSRF cookie: keyed with a server secret, so that nobody can compute
/// the token for a cookie value Tessera did not hand out itself.
fn form_token(app: &AppState, cookie: &str) -> String {
    use base64::Engine;
    let tag = mac::tag(&app.kek, mac::Purpose::Csrf, cookie.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
}

/// A device cookie (OWASP "device cookies" against account lockout): proof that this browser
/// signed in successfully as `username` before. The login throttle's per-username wait does
/// not apply to it, so a stranger failing for someone's name cannot keep that person out of
/// the browsers they use. Value: a random id and an HMAC of it with the username, under a
/// KEK-derived key; nothing is stored.
pub fn device_cookie(app: &AppState, username: &str) -> Option<HeaderValue> {
    let id = PlainSecret::generate("").expose().to_owned();
    let value = format!("{id}.{}", device_tag(app, &id, username));
    set_cookie(
        &name(DEVICE, secure(app)),
        &value,
        secure(app),
        Some(DEVICE_TTL_SECS),
    )
}

/// Whether the browser holds a device cookie for `username`.
pub fn is_known_device(app: &AppState, headers: &HeaderMap, username: &str) -> bool {
    let Some(value) = read_cookie(headers, &name(DEVICE, secure(app))) else {
        return false;
    };
    let Some((id, tag)) = value.split_once('.') else {
        return false;
    };
    device_tag(app, id, username)
        .as_bytes()
        .ct_eq(tag.as_bytes())
        .into()
}

fn device_tag(app: &AppState, id: &str, username: &str) -> String {
    use base64::Engine;
    let message = format!("{id}\n{}", username.to_lowercase());
    let tag = mac::tag(&app.kek, mac::Purpose::DeviceCookie, message.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(header::COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(read_cookie(&headers, "b"), Some("2"));
        assert_eq!(read_cookie(&headers, "c"), Some("3"));
        assert_eq!(read_cookie(&headers, "d"), None);
    }

    #[test]
    fn secure_cookies_use_the_host_prefix() {
        assert_eq!(name(SESSION, true), "__Host-tessera_session");
        let v = set_cookie("__Host-x", "v", true, None).unwrap();
        assert_eq!(v, "__Host-x=v; Path=/; HttpOnly; SameSite=Lax; Secure");
    }
}
