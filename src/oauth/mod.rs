//! Protocol rules, independent of HTTP: plain inputs in, decisions out.

pub mod authorize;
pub mod error;
pub mod grants;
pub mod params;
pub mod pkce;
pub mod redirect_uri;
pub mod scope;
