//! The provider metadata: OIDC Discovery 1.0 §3 and RFC 8414 §2. It lists what the server
//! really does and no more; a test checks each value against behaviour.

use serde_json::{json, Value};

use super::grants::GrantType;
use super::{acr, claims, introspection, scope};
use crate::crypto::keys::ALGS;
use crate::paths;

/// Client authentication at the token, introspection and revocation endpoints.
const AUTH_METHODS: &[&str] = &["client_secret_basic", "client_secret_post", "none"];

pub fn metadata(issuer: &str) -> Value {
    let url = |path: &str| format!("{issuer}{path}");
    json!({
        "issuer": issuer,
        "authorization_endpoint": url(paths::AUTHORIZE),
        "token_endpoint": url(paths::TOKEN),
        "userinfo_endpoint": url(paths::USERINFO),
        "jwks_uri": url(paths::JWKS),
        "end_session_endpoint": url(paths::LOGOUT),
        "introspection_endpoint": url(paths::INTROSPECT),
        "revocation_endpoint": url(paths::REVOKE),
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_signing_alg_values_supported": [introspection::ANSWER_ALG],
        "scopes_supported": scope::supported(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GrantType::names(),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ALGS,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_supported": claims::supported(),
        "acr_values_supported": acr::SUPPORTED,
        "claims_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "ui_locales_supported": ["en"],
        // OIDC Back-Channel Logout 1.0 §2.1: logout tokens are POSTed to the clients of an
        // ending session, and always carry its `sid` when it has one.
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        // OIDC Front-Channel Logout 1.0 §3: the signed-out page loads each client's
        // `frontchannel_logout_uri` in an iframe, always with `iss` and `sid`.
        "frontchannel_logout_supported": true,
        "frontchannel_logout_session_supported": true,
    })
}
