//! Fixed endpoint paths: read by the router (`http`) and by the discovery document (`oauth`),
//! so neither layer has to import the other for them.

pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
/// On the admin listener only (`admin_bind`), never on the public one.
pub const METRICS: &str = "/metrics";
pub const AUTHORIZE: &str = "/authorize";
pub const TOKEN: &str = "/token";
pub const LOGIN: &str = "/login";
pub const CONSENT: &str = "/consent";
pub const STYLESHEET: &str = "/static/tessera.css";
/// The signed-out page's script: on to the post-logout redirect once the front-channel
/// logout iframes have loaded.
pub const FRONTCHANNEL_SCRIPT: &str = "/static/frontchannel-logout.js";
pub const JWKS: &str = "/jwks";
pub const LOGOUT: &str = "/logout";
pub const INTROSPECT: &str = "/introspect";
pub const REVOKE: &str = "/revoke";
pub const USERINFO: &str = "/userinfo";
pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
pub const OAUTH_METADATA: &str = "/.well-known/oauth-authorization-server";
pub const ACCOUNT: &str = "/account";
pub const ACCOUNT_LOGIN: &str = "/account/login";
pub const ACCOUNT_PROFILE: &str = "/account/profile";
pub const ACCOUNT_KEYS: &str = "/account/keys";
pub const ACCOUNT_KEYS_REVOKE: &str = "/account/keys/revoke";
pub const ACCOUNT_KEYS_REGENERATE: &str = "/account/keys/regenerate";
pub const APIKEYS_REVOKE_LEAKED: &str = "/apikeys/revoke-leaked";
