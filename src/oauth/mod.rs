//! Protocol rules, independent of HTTP: plain inputs in, decisions out.
//!
//! Rules get a [`Context`] with exactly what they may use (the store, the signer, the token
//! policy, the issuer), never the whole application state.

pub mod acr;
pub mod api_keys;
pub mod authorize;
pub mod backchannel;
pub mod claims;
pub mod consent;
pub mod credential;
pub mod discovery;
pub mod error;
pub mod frontchannel;
pub mod grants;
pub mod id_token;
pub mod introspection;
pub mod login;
pub mod logout;
pub mod params;
pub mod pkce;
pub mod profile;
pub mod redirect_uri;
pub mod revocation;
pub mod scope;

/// What protocol rules need from the running server, and nothing else.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub store: &'a dyn crate::store::Store,
    pub signer: &'a crate::keys::Signer,
    pub tokens: &'a crate::config::TokenPolicy,
    /// The `iss` of everything Tessera signs.
    pub issuer: &'a str,
    /// The `aud` of JWT access tokens (RFC 9068 §3).
    pub default_resource: &'a str,
    /// Where the request came from (through the trusted-proxy rule) and its user agent, for
    /// the audit events it causes; none outside a request.
    pub source_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

impl Context<'_> {
    /// An audit event of this request: its source address and user agent filled in.
    pub fn audited(&self, event: crate::audit::AuditEvent) -> crate::audit::AuditEvent {
        event.from_request(
            self.source_ip.map(str::to_owned),
            self.user_agent.map(str::to_owned),
        )
    }
}
