//! OAuth 2.0 / OpenID Connect errors, independent of how they go on the wire.
//!
//! The description is sent to the client; the detail is logged and never sent (STYLE.md §3).
//! For credentials the description stays generic: which check failed goes to the log only.

use std::borrow::Cow;
use std::fmt;

use crate::store::StoreError;

/// Registered error codes: RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1,
/// OIDC Core §3.1.2.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    InvalidToken,
    InsufficientScope,
    UnsupportedTokenType,
    LoginRequired,
    ConsentRequired,
    RequestNotSupported,
    RequestUriNotSupported,
    /// OpenID Connect Core Error Code unmet_authentication_requirements 1.0: the requested
    /// authentication context cannot be met.
    UnmetAuthenticationRequirements,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            ErrorCode::UnmetAuthenticationRequirements => "unmet_authentication_requirements",
        }
    }
}

/// What a client is told while the store is away (the cause is logged).
pub const UNAVAILABLE: &str = "the service is temporarily unavailable; retry shortly";

/// An error to report in the spec's format.
#[derive(Debug)]
pub struct OAuthError {
    pub code: ErrorCode,
    /// Sent to the client.
    pub description: Cow<'static, str>,
    /// Logged, never sent.
    pub detail: Option<anyhow::Error>,
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d:#})")?;
        }
        Ok(())
    }
}

impl std::error::Error for OAuthError {}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            detail: None,
        }
    }

    /// Adds a private detail for the log.
    pub fn detail(mut self, detail: impl Into<anyhow::Error>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError::new(ErrorCode::InvalidRequest, description)
    }

    /// Every problem with a code or refresh token looks the same to the client (RFC 6749
    /// §5.2); `why` goes to the log.
    pub fn invalid_grant(why: &'static str) -> Self {
        OAuthError::new(
            ErrorCode::InvalidGrant,
            "the authorization grant is invalid, expired, revoked, or was issued to another client",
        )
        .detail(anyhow::anyhow!(why))
    }

    /// Unknown client and wrong secret are the same error (STYLE.md §3); `why` is logged.
    pub fn invalid_client(why: &'static str) -> Self {
        OAuthError::new(ErrorCode::InvalidClient, "client authentication failed")
            .detail(anyhow::anyhow!(why))
    }

    /// The store is away for a moment (RFC 6749 §4.1.2.1 and §5.2 `temporarily_unavailable`,
    /// 503): fixed description, cause logged.
    pub fn unavailable(detail: impl Into<anyhow::Error>) -> Self {
        OAuthError::new(ErrorCode::TemporarilyUnavailable, UNAVAILABLE).detail(detail)
    }

    /// A failure of ours: fixed description, cause logged.
    pub fn server(detail: impl Into<anyhow::Error>) -> Self {
        OAuthError::new(
            ErrorCode::ServerError,
            "the server could not complete the request",
        )
        .detail(detail)
    }
}

impl From<StoreError> for OAuthError {
    /// Where most store failures end up on their way to an answer: counted here, once.
    fn from(e: StoreError) -> Self {
        crate::metrics::store_error(e.kind());
        if e.is_unavailable() {
            OAuthError::unavailable(e)
        } else {
            OAuthError::server(e)
        }
    }
}
