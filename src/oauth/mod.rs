//! Protocol rules, independent of HTTP: plain inputs in, decisions out.

pub mod authorize;
pub mod claims;
pub mod consent;
pub mod credential;
pub mod discovery;
pub mod error;
pub mod grants;
pub mod id_token;
pub mod introspection;
pub mod logout;
pub mod params;
pub mod pkce;
pub mod redirect_uri;
pub mod revocation;
pub mod scope;
