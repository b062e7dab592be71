//! OpenID Connect RP-Initiated Logout 1.0: which client asks, where the person may be sent
//! afterwards, and whether they must confirm.
//!
//! - `id_token_hint` must be an ID token we issued (expired is fine, §2); `client_id`, if
//!   sent with it, must be among its audiences.
//! - `post_logout_redirect_uri` is used only if it exactly matches one the client registered
//!   (§3: the OP "MUST NOT perform post-logout redirection" otherwise); the person then sees
//!   the signed-out page instead.
//! - When the request cannot be tied to the signed-in user (no hint, or a hint for someone
//!   else), the person confirms first (§2: the OP "SHOULD ask the End-User"), so a stray
//!   link cannot sign anyone out.

use std::borrow::Cow;

use super::id_token::{self, Hint};
use super::params::Params;
use super::redirect_uri;
use crate::audit::{AuditEvent, AuditKind};
use crate::crypto::keys::KeySet;
use crate::store::{AccountRecord, SessionRecord, Store, StoreError};

/// Parameters `/logout` reads (§2).
pub const LOGOUT_PARAMS: &[&str] = &[
    "id_token_hint",
    "logout_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "ui_locales",
];

/// A checked logout request.
#[derive(Debug, Clone)]
pub struct LogoutRequest {
    pub hint: Option<Hint>,
    pub client_id: Option<String>,
    /// The registered post-logout redirect URI to send the person to, if any.
    pub redirect: Option<String>,
    pub state: Option<String>,
}

/// Why a logout request cannot be served: shown to the person on a page.
#[derive(Debug)]
pub enum LogoutError {
    Invalid(&'static str),
    Store(StoreError),
}

impl From<StoreError> for LogoutError {
    fn from(e: StoreError) -> Self {
        LogoutError::Store(e)
    }
}

impl LogoutError {
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            LogoutError::Invalid(m) => Cow::Borrowed(m),
            LogoutError::Store(_) => Cow::Borrowed("The sign-out could not be completed."),
        }
    }
}

/// Checks the request; `keys` (loaded only when the request has an `id_token_hint`) verify
/// the hint.
pub async fn validate(
    store: &dyn Store,
    keys: Option<&KeySet>,
    issuer: &str,
    params: &Params,
) -> Result<LogoutRequest, LogoutError> {
    if params.reject_malformed().is_err() {
        return Err(LogoutError::Invalid(
            "A parameter was sent more than once or holds a control character.",
        ));
    }
    let hint = match params.get("id_token_hint") {
        None => None,
        Some(token) => Some(
            keys.and_then(|keys| id_token::verify_hint(keys, issuer, token))
                .ok_or(LogoutError::Invalid(
                    "The id_token_hint is not an ID token issued here.",
                ))?,
        ),
    };
    // Which client asks: client_id, or the hint's audience; both must agree.
    let client_id = match (params.get("client_id"), &hint) {
        (Some(id), Some(h)) if !h.audience.iter().any(|a| a == id) => {
            return Err(LogoutError::Invalid(
                "The client_id does not match the id_token_hint.",
            ))
        }
        (Some(id), _) => Some(id.to_owned()),
        (None, Some(h)) => h.audience.first().cloned(),
        (None, None) => None,
    };
    let redirect = match (params.get("post_logout_redirect_uri"), &client_id) {
        (Some(uri), Some(id)) => store.client(id).await?.and_then(|c| {
            redirect_uri::find_exact(uri, &c.post_logout_redirect_uris).map(str::to_owned)
        }),
        _ => None,
    };
    Ok(LogoutRequest {
        hint,
        client_id,
        redirect,
        state: params.get("state").map(str::to_owned),
    })
}

impl LogoutRequest {
    /// §2: whether the signed-in `account` must confirm before being signed out — unless the
    /// hint names exactly them.
    pub fn needs_confirmation(&self, account: &AccountRecord) -> bool {
        self.hint.as_ref().is_none_or(|h| h.subject != account.id)
    }

    /// Ends the browser session and records the logout.
    pub async fn end_session(
        &self,
        store: &dyn Store,
        session: &SessionRecord,
        account: &AccountRecord,
        now: i64,
        (ip, agent): (Option<String>, Option<String>),
    ) -> Result<(), StoreError> {
        let mut audit = AuditEvent::new(AuditKind::Logout, format!("user:{}", account.id), now)
            .account(&account.id)
            .from_request(ip, agent);
        audit.client_id = self.client_id.clone();
        store.delete_session(&session.id_digest).await?;
        if let Err(e) = store.append_audit(&audit).await {
            crate::metrics::store_error(e.kind());
            tracing::error!(error = %e, "could not record a logout");
        }
        Ok(())
    }

    /// The post-logout redirect with `state` (§3), if one may be used.
    pub fn redirect_url(&self) -> Option<url::Url> {
        let mut url = url::Url::parse(self.redirect.as_deref()?).ok()?;
        if let Some(state) = &self.state {
            url.query_pairs_mut().append_pair("state", state);
        }
        Some(url)
    }
}
