//! `/authorize` parameters: the raw query (or form body) through `Params::parse` and the whole
//! of `oauth::authorize::validate`, against a SQLite store with three registered clients;
//! then the pending request as the login and consent forms carry it (`forms::pending_query`)
//! must parse back to the same parameters and validate the same way.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tessera::audit::{AuditEvent, AuditKind};
use tessera::config::DatabaseUrl;
use tessera::crypto::token::Digest;
use tessera::http::forms::pending_query;
use tessera::oauth::authorize::{self, AuthorizeError, Decision, AUTHORIZE_PARAMS};
use tessera::oauth::params::{has_control, Params};
use tessera::oauth::scope;
use tessera::store::client_cache::ClientCache;
use tessera::store::{AccessTokenFormat, AuthMethod, ClientRecord, Store};

struct World {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn Store>,
    clients: ClientCache,
    registered: Vec<ClientRecord>,
}

fn client(
    id: &str,
    secret: Option<&str>,
    redirect_uris: &[&str],
    grant_types: &[&str],
    scope: &str,
    require_pkce: bool,
) -> ClientRecord {
    ClientRecord {
        id: id.to_owned(),
        name: id.to_owned(),
        secret_digest: secret.map(Digest::of),
        redirect_uris: redirect_uris.iter().map(|s| (*s).to_owned()).collect(),
        post_logout_redirect_uris: vec![],
        grant_types: grant_types.iter().map(|s| (*s).to_owned()).collect(),
        scope: scope.to_owned(),
        token_endpoint_auth_method: if secret.is_some() {
            AuthMethod::ClientSecretBasic
        } else {
            AuthMethod::None
        },
        access_token_format: AccessTokenFormat::Opaque,
        may_introspect: false,
        first_party: false,
        require_pkce,
        id_token_signed_response_alg: "RS256".to_owned(),
        created_at: 0,
        updated_at: 0,
        rate_limit_per_sec: None,
        backchannel_logout_uri: None,
        backchannel_logout_session_required: false,
        frontchannel_logout_uri: None,
        frontchannel_logout_session_required: false,
    }
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let path =
            std::env::temp_dir().join(format!("tessera-fuzz-authorize-{}.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let url: DatabaseUrl = format!("sqlite://{}?mode=rwc", path.display())
            .parse()
            .expect("url");
        let registered = vec![
            client(
                "spa",
                None,
                &["https://spa.example/cb"],
                &["authorization_code", "refresh_token"],
                "openid profile email offline_access",
                true,
            ),
            client(
                "web",
                Some("web-secret"),
                &[
                    "https://web.example/cb",
                    "https://web.example/cb?tenant=1",
                    "com.example.app:/oauth2redirect",
                    "http://127.0.0.1:7777/cb",
                ],
                &["authorization_code", "refresh_token"],
                "openid profile email api:read roles",
                false,
            ),
            client(
                "m2m",
                Some("m2m-secret"),
                &["https://m2m.example/cb"],
                &["client_credentials"],
                "api:read",
                true,
            ),
        ];
        let store = rt.block_on(async {
            let store = tessera::store::open(&url).await.expect("store");
            for c in &registered {
                let audit = AuditEvent::new(AuditKind::ClientCreated, "fuzz", 0);
                store.insert_client(c, &audit).await.expect("client");
            }
            store
        });
        World {
            rt,
            store,
            clients: ClientCache::default(),
            registered,
        }
    })
}

/// A short summary of an outcome, to compare two validations of the same request.
fn outcome(r: &Result<authorize::AuthorizeRequest, AuthorizeError>) -> String {
    match r {
        Ok(req) => format!(
            "ok {} {} {:?} {:?} {:?}",
            req.client.id, req.redirect.redirect_uri, req.redirect.state, req.scope_str, req.nonce
        ),
        Err(AuthorizeError::Page(e)) => format!("page {:?}", e.code),
        Err(AuthorizeError::Redirect(r, e)) => {
            format!("redirect {} {:?} {:?}", r.redirect_uri, r.state, e.code)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let params = Params::parse(data, AUTHORIZE_PARAMS);
    let result =
        w.rt.block_on(authorize::validate(w.store.as_ref(), &w.clients, &params));

    match &result {
        Ok(req) => {
            assert!(params.reject_malformed().is_ok());
            assert_eq!(params.get("response_type"), Some("code"));
            assert_eq!(params.get("client_id"), Some(req.client.id.as_str()));
            assert!(req
                .client
                .redirect_uris
                .contains(&req.redirect.redirect_uri));
            if req.redirect_uri_sent {
                assert_eq!(
                    params.get("redirect_uri"),
                    Some(req.redirect.redirect_uri.as_str())
                );
            }
            assert_eq!(params.get("scope"), Some(req.scope_str.as_str()));
            let allowed = scope::parse(&req.client.scope).expect("registered scope");
            for s in req.scope.iter() {
                assert!(allowed.iter().any(|a| a == s), "scope {s} not allowed");
            }
            if req.code_challenge.is_none() {
                // The only way without PKCE: a confidential client's opt-out with a nonce.
                assert!(!req.client.require_pkce && !req.client.is_public());
                assert!(req.nonce.is_some());
                assert!(req.scope.iter().any(|s| s == "openid"));
            }
            for v in [&req.redirect.state, &req.nonce, &req.login_hint]
                .into_iter()
                .flatten()
            {
                assert!(!has_control(v));
            }
            assert!(req.redirect.state.as_ref().is_none_or(|s| s.len() <= 2048));
            assert!(req.nonce.as_ref().is_none_or(|s| s.len() <= 2048));
            assert!(req.max_age.is_none_or(|m| m >= 0));
            // Nobody is signed in: a login page, or login_required for prompt=none.
            match authorize::decide(req, None, None, 1_000) {
                Ok(Decision::Login) => assert!(!req.prompt.none),
                Ok(_) => panic!("a decision other than login without a session"),
                Err(_) => assert!(req.prompt.none),
            }
        }
        Err(AuthorizeError::Redirect(redirect, _)) => {
            // An error only ever goes to a URI some client registered.
            assert!(w
                .registered
                .iter()
                .any(|c| c.redirect_uris.contains(&redirect.redirect_uri)));
        }
        Err(AuthorizeError::Page(_)) => {}
    }

    // The login and consent forms carry the request on; it must come back the same.
    for satisfied in [&[][..], &["login", "consent", "max_age"][..]] {
        let query = pending_query(&params, satisfied);
        let again = Params::parse(query.as_bytes(), AUTHORIZE_PARAMS);
        assert!(again.reject_malformed().is_ok(), "{query}");
        for name in AUTHORIZE_PARAMS {
            if satisfied.is_empty() || (*name != "prompt" && *name != "max_age") {
                assert_eq!(again.get(name), params.get(name), "{name} in {query}");
            }
        }
        if satisfied.is_empty() && params.reject_malformed().is_ok() {
            let second =
                w.rt.block_on(authorize::validate(w.store.as_ref(), &w.clients, &again));
            assert_eq!(outcome(&second), outcome(&result), "{query}");
        }
    }
});
