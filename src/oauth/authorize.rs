//! The authorization request: RFC 6749 §4.1.1, RFC 7636 §4.3, OIDC Core §3.1.2.1–§3.1.2.6.
//!
//! Validation has two zones (RFC 6749 §4.1.2.1). Until the client and its redirect URI are
//! verified, an error is shown to the person and never redirected; after that, every error
//! goes back to the client. Only a [`VerifiedRedirect`] can carry an error back, so the type
//! system keeps an unverified URI from ever receiving one.

use oxide_auth::primitives::scope::Scope;

use super::error::{ErrorCode, OAuthError};
use super::grants::GrantType;
use super::params::Params;
use super::{acr, claims, id_token, pkce, redirect_uri, scope};
use crate::audit::{AuditEvent, AuditKind};
use crate::crypto::keys::KeySet;
use crate::crypto::token::{PlainSecret, CODE_PREFIX};
use crate::store::client_cache::ClientCache;
use crate::store::{
    AccountRecord, ClientRecord, CodeRecord, ConsentGiven, GrantRecord, RequestedClaims,
    SessionRecord, Store, StoreError,
};

/// Parameters `/authorize` reads; anything else is ignored (RFC 6749 §3.1).
pub const AUTHORIZE_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "ui_locales",
    "display",
    "response_mode",
    "id_token_hint",
    "claims",
    "request",
    "request_uri",
    "acr_values",
];

/// RFC 6749 §4.1.2 recommends at most ten minutes; DESIGN.md keeps codes for 60 seconds.
pub const CODE_TTL_SECS: i64 = 60;

/// Longest `state` or `nonce` kept: generous for real clients, bounded for the store.
const MAX_OPAQUE_LEN: usize = 2048;

/// A redirect URI checked against the client's registration, with the request's `state`.
#[derive(Debug, Clone)]
pub struct VerifiedRedirect {
    pub redirect_uri: String,
    pub state: Option<String>,
}

/// Where an authorization error goes.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Shown to the person: the client or redirect URI could not be verified.
    Page(OAuthError),
    /// Sent back to the client's verified redirect URI.
    Redirect(VerifiedRedirect, OAuthError),
}

impl From<crate::store::StoreError> for AuthorizeError {
    fn from(e: crate::store::StoreError) -> Self {
        AuthorizeError::Page(e.into())
    }
}

/// The `prompt` values, OIDC Core §3.1.2.1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
    pub select_account: bool,
}

impl Prompt {
    fn parse(value: Option<&str>) -> Result<Prompt, OAuthError> {
        let mut p = Prompt::default();
        let Some(value) = value else { return Ok(p) };
        for v in value.split(' ') {
            match v {
                "none" => p.none = true,
                "login" => p.login = true,
                "consent" => p.consent = true,
                "select_account" => p.select_account = true,
                other => {
                    return Err(OAuthError::invalid_request(format!(
                        "unsupported prompt value `{other}`"
                    )))
                }
            }
        }
        // Core §3.1.2.1: "If this parameter contains none with any other value, an error is
        // returned."
        if p.none && (p.login || p.consent || p.select_account) {
            return Err(OAuthError::invalid_request(
                "prompt=none cannot be combined with other values",
            ));
        }
        Ok(p)
    }
}

/// A fully validated authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub client: ClientRecord,
    pub redirect: VerifiedRedirect,
    /// Whether `redirect_uri` was in the request (then `/token` must repeat it).
    pub redirect_uri_sent: bool,
    pub scope: Scope,
    /// The scope as sent, for the code row.
    pub scope_str: String,
    pub nonce: Option<String>,
    /// oxide-auth's encoding of the S256 challenge.
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// Who the answer may be for: the subject of a verified `id_token_hint` (set by the
    /// caller, which has the keys) or of a `sub` claim requested with a value (Core §5.5.1).
    pub hint_subject: Option<String>,
    /// The claims asked for by name with the `claims` parameter (Core §5.5).
    pub claims: RequestedClaims,
    /// What consent must cover: the scope, plus the scopes whose claims `claims` asks for.
    pub consent_scope: Scope,
}

impl AuthorizeRequest {
    pub fn fail(&self, e: OAuthError) -> AuthorizeError {
        AuthorizeError::Redirect(self.redirect.clone(), e)
    }

    /// OIDC Core §3.1.2.1: an `id_token_hint` must be an ID token issued here; its subject is
    /// who the client expects to be signed in (see [`decide`]).
    pub fn apply_id_token_hint(
        &mut self,
        keys: &KeySet,
        issuer: &str,
        hint: &str,
    ) -> Result<(), AuthorizeError> {
        let verified = id_token::verify_hint(keys, issuer, hint).ok_or_else(|| {
            self.fail(OAuthError::invalid_request(
                "id_token_hint is not an ID token issued here",
            ))
        })?;
        // Two different people named: no one could be signed in for both.
        if self
            .hint_subject
            .as_ref()
            .is_some_and(|sub| *sub != verified.subject)
        {
            return Err(self.fail(OAuthError::invalid_request(
                "id_token_hint and the sub claim requested name different users",
            )));
        }
        self.hint_subject = Some(verified.subject);
        Ok(())
    }
}

/// Checks the request in spec order; see the module docs for where errors go.
pub async fn validate(
    store: &dyn Store,
    clients: &ClientCache,
    params: &Params,
) -> Result<AuthorizeRequest, AuthorizeError> {
    // Zone 1: client and redirect URI. A repeated or malformed client_id or redirect_uri
    // cannot be trusted to say where to redirect, so it is a page too.
    let page = |d: &'static str| AuthorizeError::Page(OAuthError::invalid_request(d));
    if params.is_rejected("client_id") || params.is_rejected("redirect_uri") {
        return Err(page(
            "client_id or redirect_uri was sent more than once or holds a control character",
        ));
    }
    let client_id = params
        .get("client_id")
        .ok_or_else(|| page("the request has no client_id"))?;
    let client = clients
        .get(store, client_id)
        .await?
        .ok_or_else(|| page("the application is not registered here"))?;
    let client = ClientRecord::clone(&client);
    let (redirect_uri, sent) = match params.get("redirect_uri") {
        Some(requested) => (
            redirect_uri::find_exact(requested, &client.redirect_uris)
                .ok_or_else(|| page("the redirect_uri is not registered for this application"))?
                .to_owned(),
            true,
        ),
        // OIDC Core §3.1.2.1: REQUIRED in an OpenID request. Not knowing where the client
        // wanted the answer, we cannot redirect the error either.
        None if is_openid_request(params) => {
            return Err(page(
                "the request has no redirect_uri, which OpenID Connect requires",
            ))
        }
        // RFC 6749 §3.1.2.3: may be omitted when exactly one is registered.
        None => match client.redirect_uris.as_slice() {
            [only] => (only.clone(), false),
            _ => return Err(page("the request has no redirect_uri")),
        },
    };
    let state = params.get("state").map(str::to_owned);
    let redirect = VerifiedRedirect {
        redirect_uri,
        state,
    };
    let fail = |e: OAuthError| AuthorizeError::Redirect(redirect.clone(), e);

    // Zone 2: everything else, each failure redirected.
    params.reject_malformed().map_err(fail)?;
    if redirect
        .state
        .as_ref()
        .is_some_and(|s| s.len() > MAX_OPAQUE_LEN)
    {
        return Err(fail(OAuthError::invalid_request("state is too long")));
    }
    // OIDC Core §6: request objects are not supported, and must not be silently ignored.
    if params.get("request").is_some() {
        return Err(fail(OAuthError::new(
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        )));
    }
    if params.get("request_uri").is_some() {
        return Err(fail(OAuthError::new(
            ErrorCode::RequestUriNotSupported,
            "request_uri is not supported",
        )));
    }
    match params.get("response_type") {
        None => {
            return Err(fail(OAuthError::invalid_request(
                "missing required parameter `response_type`",
            )))
        }
        Some("code") => {}
        Some(_) => {
            return Err(fail(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            )))
        }
    }
    if !GrantType::AuthorizationCode.allowed(&client) {
        return Err(fail(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization code grant",
        )));
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(fail(OAuthError::invalid_request(
            "only response_mode=query is supported",
        )));
    }

    let scope_str = params.get("scope").ok_or_else(|| {
        fail(OAuthError::new(
            ErrorCode::InvalidScope,
            "scope is required",
        ))
    })?;
    let allowed = scope::parse(&client.scope).map_err(|e| {
        fail(OAuthError::server(anyhow::anyhow!(
            "client {} scope: {e}",
            client.id
        )))
    })?;
    let scope = scope::check_within(scope_str, &allowed)
        .map_err(|e| fail(OAuthError::new(ErrorCode::InvalidScope, e.to_string())))?;

    let code_challenge = pkce::challenge(
        params.get("code_challenge_method"),
        params.get("code_challenge"),
    )
    .map_err(fail)?;
    let nonce = params.get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_OPAQUE_LEN) {
        return Err(fail(OAuthError::invalid_request("nonce is too long")));
    }
    // RFC 9700 §2.1.1: PKCE for every client. The one exception is a confidential client
    // registered with the audited opt-out, in an OpenID request whose `nonce` gives the same
    // protection against code injection.
    let nonce_instead = !client.require_pkce
        && !client.is_public()
        && nonce.is_some()
        && scope.iter().any(|s| s == "openid");
    if code_challenge.is_none() && !nonce_instead {
        return Err(fail(OAuthError::invalid_request(
            "code_challenge is required (PKCE with S256)",
        )));
    }
    let prompt = Prompt::parse(params.get("prompt")).map_err(fail)?;
    // OIDC Core §5.5 and §5.5.1.1: a malformed `claims` parameter, or an essential `acr`
    // that no sign-in here can prove, ends the request now.
    let claims = acr::parse_claims(params.get("claims")).map_err(fail)?;
    acr::Requested::parse(params.get("acr_values"), claims.as_ref())
        .check()
        .map_err(fail)?;
    // The parameter is OpenID Connect's (Core §5.5): a plain OAuth request releases no claims.
    let claims = claims.filter(|_| scope.iter().any(|s| s == "openid"));
    let requested_claims = claims::requested(claims.as_ref(), &allowed);
    let consent_scope = consent_scope(&scope, &requested_claims).map_err(fail)?;
    let max_age = match params.get("max_age") {
        None => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            fail(OAuthError::invalid_request(
                "max_age must be a non-negative integer",
            ))
        })?),
    };

    Ok(AuthorizeRequest {
        scope_str: scope_str.to_owned(),
        client,
        redirect,
        redirect_uri_sent: sent,
        scope,
        nonce,
        code_challenge,
        prompt,
        max_age,
        login_hint: params.get("login_hint").map(str::to_owned),
        hint_subject: claims::requested_subject(claims.as_ref()),
        claims: requested_claims,
        consent_scope,
    })
}

/// The scope plus the scopes whose claims were asked for by name, so that consent to the
/// scope is consent to those claims too.
fn consent_scope(scope: &Scope, requested: &RequestedClaims) -> Result<Scope, OAuthError> {
    let mut names: Vec<&str> = scope.iter().collect();
    for claim in requested.id_token.iter().chain(&requested.userinfo) {
        if let Some(s) = claims::scope_of(claim) {
            if !names.contains(&s) {
                names.push(s);
            }
        }
    }
    scope::parse(&names.join(" ")).map_err(|e| OAuthError::server(anyhow::anyhow!("{e}")))
}

/// Whether the request asks for the `openid` scope (read before the scope is validated, to
/// know which rules apply to `redirect_uri`).
fn is_openid_request(params: &Params) -> bool {
    params
        .get("scope")
        .is_some_and(|s| s.split(' ').any(|v| v == "openid"))
}

/// The browser's session with what the authorization steps use of its user.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionUser {
    /// Its `account_id` is the user's id, the `sub`.
    pub session: SessionRecord,
    /// Empty for a claimed session: it only ever leads to a code, never to a page.
    pub username: String,
    /// Taken from the consent form, not read from the store (decision 0055): only a code
    /// whose write finds this very session stored, live and its user enabled may rest on
    /// it ([`issue_code`]); whatever else it leads to is dropped, and the session read.
    pub claimed: bool,
}

impl SessionUser {
    /// A session and its user as the store returned them.
    pub fn read(session: SessionRecord, account: &AccountRecord) -> SessionUser {
        SessionUser {
            session,
            username: account.username.clone(),
            claimed: false,
        }
    }
}

/// What happens next for a valid request.
#[derive(Debug)]
pub enum Decision {
    /// Show the login page.
    Login,
    /// Show the consent page for this signed-in user.
    Consent(SessionUser),
    /// Issue a code.
    Issue(SessionUser),
}

/// Whether what the user consented to before can change what [`decide`] answers: not when
/// the request asks for consent anyway (`prompt=consent`), nor for a first-party client,
/// which needs none. Where it cannot, it need not be read.
pub fn stored_consent_matters(request: &AuthorizeRequest) -> bool {
    !(request.prompt.consent || request.client.first_party)
}

/// OIDC Core §3.1.2.3–§3.1.2.4: authenticate if there is no session, if `prompt=login` or
/// `select_account`, or if the session is older than `max_age`; then ask for consent unless
/// it was given for every requested scope (or the client is first-party) and `prompt=consent`
/// was not sent. `prompt=none` never shows a page.
pub fn decide(
    request: &AuthorizeRequest,
    session: Option<SessionUser>,
    consented: Option<&str>,
    now: i64,
) -> Result<Decision, OAuthError> {
    let p = request.prompt;
    // Core §3.1.2.2: an id_token_hint naming someone else than the signed-in user means the
    // session does not count (with prompt=none: login_required).
    let session = session.filter(|s| {
        !(p.login || p.select_account)
            && request
                .max_age
                .is_none_or(|max| now.saturating_sub(s.session.auth_time) <= max)
            && request
                .hint_subject
                .as_ref()
                .is_none_or(|sub| *sub == s.session.account_id)
    });
    let Some(session) = session else {
        if p.none {
            return Err(OAuthError::new(
                ErrorCode::LoginRequired,
                "the user is not signed in",
            ));
        }
        return Ok(Decision::Login);
    };
    // Keep in step with `stored_consent_matters`.
    let covered = request.client.first_party
        || consented
            .and_then(|c| scope::parse(c).ok())
            .is_some_and(|granted| {
                request
                    .consent_scope
                    .iter()
                    .all(|s| granted.iter().any(|g| g == s))
            });
    if covered && !p.consent {
        return Ok(Decision::Issue(session));
    }
    if p.none {
        return Err(OAuthError::new(
            ErrorCode::ConsentRequired,
            "the user has not consented",
        ));
    }
    Ok(Decision::Consent(session))
}

/// RFC 6749 §4.1.2: a code bound to this client, redirect URI, scope, nonce and PKCE
/// challenge, valid for 60 seconds, stored as a digest; a new grant for it to hang off. With
/// `consent`, the consent the person has just given is stored in the same write. A claimed
/// session ([`SessionUser::claimed`]) is checked by that write: if the store does not hold
/// it as claimed, live, with its user enabled, nothing is written (`NotFound`).
pub async fn issue_code(
    store: &dyn Store,
    request: &AuthorizeRequest,
    signed_in: &SessionUser,
    now: i64,
    (ip, agent): (Option<String>, Option<String>),
    consent: Option<ConsentGiven>,
) -> Result<PlainSecret, StoreError> {
    let (session, account_id) = (&signed_in.session, &signed_in.session.account_id);
    let code = PlainSecret::generate(CODE_PREFIX);
    let grant = GrantRecord {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: request.client.id.clone(),
        account_id: Some(account_id.clone()),
        scope: request.scope_str.clone(),
        auth_time: Some(session.auth_time),
        amr: session.amr.clone(),
        created_at: now,
        revoked_at: None,
        sid: session.sid.clone(),
        claims: request.claims.clone(),
    };
    let record = CodeRecord {
        digest: code.digest(),
        grant_id: grant.id.clone(),
        client_id: request.client.id.clone(),
        account_id: account_id.clone(),
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
        sid: session.sid.clone(),
        claims: request.claims.clone(),
    };
    let audit = AuditEvent::new(AuditKind::CodeIssued, format!("user:{account_id}"), now)
        .client(&request.client.id)
        .account(account_id)
        .from_request(ip, agent)
        .details(serde_json::json!({ "grant_id": grant.id, "scope": grant.scope }));
    match (consent, signed_in.claimed) {
        (consent, true) => {
            store
                .insert_code_in_session(consent.as_ref(), session, &grant, &record, &audit)
                .await?
        }
        (Some(consent), false) => {
            store
                .insert_code_with_consent(&consent, &grant, &record, &audit)
                .await?
        }
        (None, false) => store.insert_code(&grant, &record, &audit).await?,
    }
    Ok(code)
}
