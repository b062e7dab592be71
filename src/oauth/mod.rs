//! Protocol rules, independent of HTTP: plain inputs in, decisions out.

pub mod redirect_uri;
pub mod scope;
