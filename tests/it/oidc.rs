//! OpenID Connect: discovery, JWKS, ID tokens, userinfo, key rotation. OIDC Core 1.0,
//! Discovery 1.0, RFC 7517, RFC 8414, RFC 6750.

use josekit::jwk::Jwk;
use tessera::crypto::keys;

use crate::support::flow::{kid_of, AuthorizeUrl, Browser, Pkce, TestClient, PASSWORD, REDIRECT};
use crate::support::{http, TestDb, TestServer};

async fn jwks(server: &TestServer) -> Vec<Jwk> {
    server.jwks().await
}

async fn verify(
    server: &TestServer,
    token: &str,
) -> (josekit::jwt::JwtPayload, josekit::jws::JwsHeader) {
    server.verify_jwt(token).await
}

/// Code flow through to the token response, in a new browser.
async fn tokens(
    server: &TestServer,
    client: &TestClient,
    url: AuthorizeUrl,
    pkce: &Pkce,
) -> serde_json::Value {
    server.code_flow(&server.browser(), client, url, pkce).await
}

async fn tokens_in(
    server: &TestServer,
    browser: &Browser,
    client: &TestClient,
    url: AuthorizeUrl,
    pkce: &Pkce,
) -> serde_json::Value {
    server.code_flow(browser, client, url, pkce).await
}

#[tokio::test]
async fn discovery_advertises_only_what_the_server_does_oidc_discovery_3() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let http = http();
    let doc: serde_json::Value = http
        .get(server.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rfc8414: serde_json::Value = http
        .get(server.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc, rfc8414);
    // Exactly these members: a new one is a new promise, to be added here with its test.
    let mut members: Vec<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(
        members,
        [
            "acr_values_supported",
            "authorization_endpoint",
            "authorization_response_iss_parameter_supported",
            "backchannel_logout_session_supported",
            "backchannel_logout_supported",
            "claims_parameter_supported",
            "claims_supported",
            "code_challenge_methods_supported",
            "end_session_endpoint",
            "frontchannel_logout_session_supported",
            "frontchannel_logout_supported",
            "grant_types_supported",
            "id_token_signing_alg_values_supported",
            "introspection_endpoint",
            "introspection_endpoint_auth_methods_supported",
            "introspection_signing_alg_values_supported",
            "issuer",
            "jwks_uri",
            "prompt_values_supported",
            "request_parameter_supported",
            "request_uri_parameter_supported",
            "response_modes_supported",
            "response_types_supported",
            "revocation_endpoint",
            "revocation_endpoint_auth_methods_supported",
            "scopes_supported",
            "subject_types_supported",
            "token_endpoint",
            "token_endpoint_auth_methods_supported",
            "ui_locales_supported",
            "userinfo_endpoint",
        ]
    );
    let issuer = server.state.config.issuer_str();
    assert_eq!(doc["issuer"], issuer);
    // Every advertised endpoint exists on this server (an error for an empty request, not 404).
    for (field, method) in [
        ("authorization_endpoint", "GET"),
        ("token_endpoint", "POST"),
        ("userinfo_endpoint", "GET"),
        ("jwks_uri", "GET"),
        ("end_session_endpoint", "GET"),
    ] {
        let url = doc[field].as_str().unwrap();
        assert!(url.starts_with(issuer), "{field}: {url}");
        let path = &url[issuer.len()..];
        let req = if method == "GET" {
            http.get(server.url(path))
        } else {
            http.post(server.url(path))
        };
        let status = req.send().await.unwrap().status();
        assert_ne!(status, 404, "{field} {path}");
    }
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(doc["request_parameter_supported"], false);
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256", "ES256", "EdDSA"])
    );
    for field in ["introspection_endpoint", "revocation_endpoint"] {
        let url = doc[field].as_str().unwrap();
        let status = http
            .post(url.replace(issuer, &server.base))
            .send()
            .await
            .unwrap()
            .status();
        assert_ne!(status, 404, "{field}");
    }
}

#[tokio::test]
async fn jwks_publishes_public_keys_with_kid_alg_and_use_rfc7517() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let res = http().get(server.url("/jwks")).send().await.unwrap();
    let cache = res.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(cache.contains("max-age=300"), "{cache}");
    let body: serde_json::Value = res.json().await.unwrap();
    let keys = body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "one per algorithm on first start");
    for key in keys {
        for field in ["kid", "kty", "alg"] {
            assert!(key[field].is_string(), "{field}: {key}");
        }
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                key.get(private).is_none(),
                "private member {private} published: {key}"
            );
        }
    }
}

#[tokio::test]
async fn id_token_verifies_against_the_jwks_for_every_advertised_alg_oidc_3_1_3_7() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = server.user("ada").await;
        for alg in keys::ALGS {
            let client = server
                .client_with(&format!("c-{alg}"), false, |c| {
                    c.id_token_signed_response_alg = (*alg).to_owned()
                })
                .await;
            let body = tokens(
                &server,
                &client,
                AuthorizeUrl::new(&client).set("nonce", "n-0S6_WzA2Mj"),
                &Pkce::new(),
            )
            .await;
            let id_token = body["id_token"].as_str().unwrap();
            let (claims, header) = verify(&server, id_token).await;
            assert_eq!(header.algorithm(), Some(*alg), "{}", db.label);
            assert_eq!(header.token_type(), Some("JWT"));
            assert_eq!(claims.issuer(), Some(server.state.config.issuer_str()));
            assert_eq!(claims.subject(), Some(ada.id.as_str()));
            assert_eq!(claims.audience(), Some(vec![client.record.id.as_str()]));
            assert_eq!(
                claims.claim("nonce"),
                Some(&serde_json::json!("n-0S6_WzA2Mj"))
            );
            let iat = claims.claim("iat").unwrap().as_i64().unwrap();
            assert_eq!(claims.claim("exp").unwrap().as_i64().unwrap(), iat + 3600);
            assert!(claims.claim("auth_time").unwrap().as_i64().unwrap() <= iat);
            assert_eq!(claims.claim("amr"), Some(&serde_json::json!(["pwd"])));
            let at_hash = keys::half_hash(alg, body["access_token"].as_str().unwrap());
            assert_eq!(
                claims.claim("at_hash"),
                Some(&serde_json::json!(at_hash)),
                "{alg}"
            );
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn id_token_only_for_openid_and_nonce_only_when_sent_oidc_3_1_3_6() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    server.user("ada").await;
    let client = server
        .client_with("web", false, |c| c.scope = "openid profile api".into())
        .await;
    let without_nonce = tokens(&server, &client, AuthorizeUrl::new(&client), &Pkce::new()).await;
    let (claims, _) = verify(&server, without_nonce["id_token"].as_str().unwrap()).await;
    assert!(claims.claim("nonce").is_none());
    let plain_oauth = tokens(
        &server,
        &client,
        AuthorizeUrl::new(&client).set("scope", "api"),
        &Pkce::new(),
    )
    .await;
    assert!(plain_oauth.get("id_token").is_none(), "{plain_oauth}");
}

#[tokio::test]
async fn userinfo_returns_sub_and_the_claims_of_the_granted_scopes_oidc_5_3() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let mut ada = server.user("ada").await;
        ada.claims.email = Some("ada@example.com".into());
        ada.claims.email_verified = Some(true);
        ada.claims.name = Some("Ada Lovelace".into());
        server
            .state
            .store
            .update_account(
                &ada,
                &tessera::audit::AuditEvent::new(tessera::audit::AuditKind::UserUpdated, "test", 0),
            )
            .await
            .unwrap();
        let client = server.confidential_client("web").await;
        let body = tokens(
            &server,
            &client,
            AuthorizeUrl::new(&client).set("scope", "openid email"),
            &Pkce::new(),
        )
        .await;
        let token = body["access_token"].as_str().unwrap();
        let res = http()
            .get(server.url("/userinfo"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", db.label);
        assert_eq!(res.headers()["cache-control"], "no-store");
        let info: serde_json::Value = res.json().await.unwrap();
        assert_eq!(info["sub"], ada.id.as_str());
        assert_eq!(info["email"], "ada@example.com");
        assert_eq!(info["email_verified"], true);
        assert!(
            info.get("name").is_none(),
            "profile was not granted: {info}"
        );
        // POST with the token in the form body (RFC 6750 §2.2).
        let res = http()
            .post(server.url("/userinfo"))
            .form(&[("access_token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        server.stop().await;
    }
}

#[tokio::test]
async fn userinfo_errors_use_bearer_challenges_rfc6750_3() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    server.user("ada").await;
    let client = server
        .client_with("web", false, |c| c.scope = "openid profile api".into())
        .await;
    let body = tokens(&server, &client, AuthorizeUrl::new(&client), &Pkce::new()).await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    let api_only = tokens(
        &server,
        &client,
        AuthorizeUrl::new(&client).set("scope", "api"),
        &Pkce::new(),
    )
    .await;
    let http = http();
    let challenge = |res: &reqwest::Response| {
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned()
    };

    let res = http.get(server.url("/userinfo")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        challenge(&res),
        "Bearer realm=\"tessera\"",
        "no error attributes without a token"
    );
    let res = http
        .get(server.url("/userinfo"))
        .bearer_auth("tsa_forged")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(challenge(&res).contains("error=\"invalid_token\""));
    let res = http
        .get(server.url("/userinfo"))
        .bearer_auth(api_only["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(challenge(&res).contains("error=\"insufficient_scope\""));
    let res = http
        .post(server.url("/userinfo"))
        .bearer_auth(&token)
        .form(&[("access_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(challenge(&res).contains("error=\"invalid_request\""));
    let res = http
        .get(server.url("/userinfo"))
        .header("authorization", format!("Basic {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // Expired.
    server.state.clock.advance(3601);
    let res = http
        .get(server.url("/userinfo"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(challenge(&res).contains("invalid_token"));
}

#[tokio::test]
async fn key_rotation_never_signs_with_a_key_missing_from_a_fresh_jwks() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    server.user("ada").await;
    let client = server.confidential_client("web").await;
    let before = tokens(&server, &client, AuthorizeUrl::new(&client), &Pkce::new()).await;
    let old_kid = kid_of(before["id_token"].as_str().unwrap());

    // Rotate: the new key is published at once but does not sign until the lead time passes.
    let lead = server.state.config.tokens.key_rotation_lead;
    let now = server.state.clock.now();
    let new = tessera::keys::create(
        server.state.store.as_ref(),
        &server.state.kek,
        "RS256",
        now,
        now + lead,
        "test",
    )
    .await
    .unwrap();
    server.state.keys.invalidate();
    let kids = |keys: Vec<Jwk>| {
        keys.into_iter()
            .map(|k| k.key_id().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        kids(jwks(&server).await).contains(&new.kid),
        "published before it signs"
    );
    let during = tokens(&server, &client, AuthorizeUrl::new(&client), &Pkce::new()).await;
    assert_eq!(kid_of(during["id_token"].as_str().unwrap()), old_kid);
    verify(&server, during["id_token"].as_str().unwrap()).await;

    // After the lead time the new key signs; the old one is still published for its tokens.
    server.state.clock.advance(lead + 1);
    let after = tokens(&server, &client, AuthorizeUrl::new(&client), &Pkce::new()).await;
    assert_eq!(kid_of(after["id_token"].as_str().unwrap()), new.kid);
    verify(&server, after["id_token"].as_str().unwrap()).await;
    assert!(
        kids(jwks(&server).await).contains(&old_kid),
        "old key kept while its tokens live"
    );

    // Once every token the old key signed has expired, it leaves the JWKS.
    server
        .state
        .clock
        .advance(server.state.config.tokens.max_ttl() + 1);
    let published = kids(jwks(&server).await);
    assert!(!published.contains(&old_kid), "{published:?}");
    assert!(published.contains(&new.kid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_keys_list_and_rotate() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let listed = db.tessera(&["keys", "list", "--json"]).json();
    let states: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["active", "active", "active"]);
    let rotated = db
        .tessera(&["keys", "rotate", "--alg", "ES256", "--json"])
        .json();
    assert_eq!(rotated["state"], "next");
    let listed = db.tessera(&["keys", "list", "--json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 4);
    db.tessera(&["keys", "rotate", "--alg", "HS256"])
        .fails_with("--alg must be one of");
    server.stop().await;
}

const BYE: &str = "https://app.example/bye";

async fn logout_setup() -> (TestDb, TestServer, TestClient, Browser, String) {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    server.user("ada").await;
    let client = server
        .client_with("web", false, |c| {
            c.post_logout_redirect_uris = vec![BYE.to_owned()]
        })
        .await;
    let browser = server.browser();
    let body = tokens_in(
        &server,
        &browser,
        &client,
        AuthorizeUrl::new(&client),
        &Pkce::new(),
    )
    .await;
    let id_token = body["id_token"].as_str().unwrap().to_owned();
    (db, server, client, browser, id_token)
}

async fn signed_in(browser: &Browser, client: &TestClient) -> bool {
    let res = browser
        .get(&AuthorizeUrl::new(client).set("prompt", "none").path())
        .await;
    res.redirect_params().contains_key("code")
}

fn logout_url(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    format!("/logout?{}", s.finish())
}

#[tokio::test]
async fn logout_with_hint_ends_the_session_and_redirects_to_the_registered_uri_rp_initiated_logout_2(
) {
    let (_db, server, client, browser, id_token) = logout_setup().await;
    assert!(signed_in(&browser, &client).await);
    // Even an expired hint identifies the user (§2).
    server.state.clock.advance(7200);
    let res = browser
        .get(&logout_url(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", BYE),
            ("state", "s-9"),
        ]))
        .await;
    assert_eq!(res.status, 302, "{}", res.body);
    assert_eq!(res.location(), format!("{BYE}?state=s-9"));
    let cleared = res.header("set-cookie").unwrap();
    assert!(
        cleared.starts_with("tessera_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert!(
        !signed_in(&browser, &client).await,
        "the session is gone from the store"
    );
    let kinds = crate::support::audit_kinds(server.state.store.as_ref(), 3).await;
    assert_eq!(kinds[0], "logout");
}

#[tokio::test]
async fn logout_never_redirects_to_an_unregistered_uri_rp_initiated_logout_3() {
    let (_db, _server, client, browser, id_token) = logout_setup().await;
    for uri in [
        "https://evil.example/bye",
        "https://app.example/bye/",
        REDIRECT,
    ] {
        let res = browser
            .get(&logout_url(&[
                ("id_token_hint", &id_token),
                ("post_logout_redirect_uri", uri),
            ]))
            .await;
        assert_eq!(res.status, 200, "{uri}");
        assert!(res.header("location").is_none(), "no redirect to {uri}");
        assert!(res.body.contains("signed out"));
    }
    assert!(!signed_in(&browser, &client).await);
}

#[tokio::test]
async fn logout_without_a_hint_for_this_user_asks_for_confirmation_with_csrf() {
    let (_db, _server, client, browser, _id_token) = logout_setup().await;
    let page = browser
        .get(&logout_url(&[
            ("client_id", "web"),
            ("post_logout_redirect_uri", BYE),
        ]))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"confirm\""), "{}", page.body);
    // Browsers apply form-action to the redirect after the confirmation is posted.
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("form-action 'self' https://app.example"),
        "{csp}"
    );
    assert!(
        signed_in(&browser, &client).await,
        "nothing happens before confirmation"
    );
    let forged = browser
        .post(
            "/logout",
            &[
                ("confirm", "yes"),
                ("csrf_token", "forged"),
                ("logout_query", &page.input("logout_query")),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(signed_in(&browser, &client).await);
    let done = browser
        .post(
            "/logout",
            &[
                ("confirm", "yes"),
                ("csrf_token", &page.input("csrf_token")),
                ("logout_query", &page.input("logout_query")),
            ],
        )
        .await;
    assert_eq!(done.status, 303);
    assert_eq!(done.location(), BYE);
    assert!(!signed_in(&browser, &client).await);
}

#[tokio::test]
async fn logout_refuses_a_forged_hint_or_a_client_it_was_not_issued_to() {
    let (_db, server, client, browser, id_token) = logout_setup().await;
    server.confidential_client("other").await;
    let forged = format!("{}x", &id_token[..id_token.len() - 1]);
    let res = browser
        .get(&logout_url(&[("id_token_hint", &forged)]))
        .await;
    assert_eq!(res.status, 400);
    let res = browser
        .get(&logout_url(&[
            ("id_token_hint", &id_token),
            ("client_id", "other"),
        ]))
        .await;
    assert_eq!(res.status, 400);
    assert!(
        signed_in(&browser, &client).await,
        "a refused request changes nothing"
    );
}

#[tokio::test]
async fn authorize_id_token_hint_for_another_user_with_prompt_none_is_login_required_oidc_3_1_2_1()
{
    let (_db, server, client, browser, ada_token) = logout_setup().await;
    server.user("bob").await;
    let bob_browser = server.browser();
    let login = bob_browser.get(&AuthorizeUrl::new(&client).path()).await;
    bob_browser.login(&login, "bob", PASSWORD).await;
    let bob = tokens_in(
        &server,
        &bob_browser,
        &client,
        AuthorizeUrl::new(&client),
        &Pkce::new(),
    )
    .await;
    let bob_token = bob["id_token"].as_str().unwrap();

    let none = AuthorizeUrl::new(&client).set("prompt", "none");
    let same = browser
        .get(&none.clone().set("id_token_hint", &ada_token).path())
        .await;
    assert!(
        same.redirect_params().contains_key("code"),
        "{:?}",
        same.redirect_params()
    );
    let other = browser
        .get(&none.clone().set("id_token_hint", bob_token).path())
        .await;
    assert_eq!(other.redirect_params()["error"], "login_required");
    let invalid = browser
        .get(&none.set("id_token_hint", "not.a.jwt").path())
        .await;
    assert_eq!(invalid.redirect_params()["error"], "invalid_request");
    // Without prompt=none, a hint for someone else shows the login page.
    let page = browser
        .get(
            &AuthorizeUrl::new(&client)
                .set("id_token_hint", bob_token)
                .path(),
        )
        .await;
    assert!(page.body.contains("name=\"password\""));
}

#[tokio::test]
async fn id_token_auth_time_is_the_new_login_when_max_age_forced_one_oidc_3_1_2_1() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    server.user("ada").await;
    let client = server.confidential_client("web").await;
    let browser = server.browser();
    let first = tokens_in(
        &server,
        &browser,
        &client,
        AuthorizeUrl::new(&client),
        &Pkce::new(),
    )
    .await;
    let (claims, _) = verify(&server, first["id_token"].as_str().unwrap()).await;
    let first_auth = claims.claim("auth_time").unwrap().as_i64().unwrap();

    server.state.clock.advance(400);
    let url = AuthorizeUrl::new(&client).set("max_age", "300");
    let again = tokens_in(&server, &browser, &client, url, &Pkce::new()).await;
    let (claims, _) = verify(&server, again["id_token"].as_str().unwrap()).await;
    let second_auth = claims.claim("auth_time").unwrap().as_i64().unwrap();
    assert!(
        second_auth >= first_auth + 400,
        "{first_auth} -> {second_auth}"
    );
    let iat = claims.claim("iat").unwrap().as_i64().unwrap();
    assert!(iat - second_auth <= 300, "within max_age");
}

#[tokio::test]
async fn userinfo_refuses_a_token_whose_grant_was_revoked_rfc6750_3_1() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    server.user("ada").await;
    let client = server.confidential_client("web").await;
    let pkce = Pkce::new();
    let done = server
        .browser()
        .authorize_through(&AuthorizeUrl::new(&client).pkce(&pkce).path(), "ada")
        .await;
    let code = done.redirect_params()["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    let token = server.token(&client, &form).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        http()
            .get(server.url("/userinfo"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Replaying the code revokes its grant, and with it this token.
    assert_eq!(server.token(&client, &form).await.status, 400);
    let res = http()
        .get(server.url("/userinfo"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
}

/// NIST SP 800-63B AAL1, the level a password sign-in proves (decision 0024).
const AAL1: &str = "http://idmanagement.gov/ns/assurance/aal/1";

#[tokio::test]
async fn id_token_carries_acr_and_amr_of_the_sign_in_oidc_2_rfc8176() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let client = server.confidential_client("web").await;
        server.user("ada").await;
        // acr_values is a preference (Core §3.1.2.1): one that cannot be met changes nothing.
        for url in [
            AuthorizeUrl::new(&client),
            AuthorizeUrl::new(&client).set("acr_values", &format!("urn:example:mfa {AAL1}")),
            AuthorizeUrl::new(&client).set("acr_values", "urn:example:mfa"),
        ] {
            let t = tokens(&server, &client, url, &Pkce::new()).await;
            let (claims, _) = verify(&server, t["id_token"].as_str().unwrap()).await;
            assert_eq!(
                claims.claim("acr"),
                Some(&serde_json::json!(AAL1)),
                "{}",
                db.label
            );
            assert_eq!(claims.claim("amr"), Some(&serde_json::json!(["pwd"])));
        }
        let metadata = server.discovery().await;
        assert_eq!(metadata["acr_values_supported"], serde_json::json!([AAL1]));
        server.stop().await;
    }
}

#[tokio::test]
async fn an_essential_acr_that_cannot_be_met_is_unmet_authentication_requirements_oidc_5_5_1_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let client = server.confidential_client("web").await;
        server.user("ada").await;
        let claims = r#"{"id_token":{"acr":{"essential":true,"values":["urn:example:mfa"]}}}"#;
        let url = AuthorizeUrl::new(&client)
            .pkce(&Pkce::new())
            .set("claims", claims)
            .set("state", "s-1");
        let res = server.browser().get(&url.path()).await;
        assert_eq!(res.status, 302, "{}: {}", db.label, res.body);
        let params = res.redirect_params();
        assert_eq!(params["error"], "unmet_authentication_requirements");
        assert_eq!(params["state"], "s-1");
        assert!(!params.contains_key("code"));

        // The level Tessera proves, asked for as essential, is met.
        let met = format!(r#"{{"id_token":{{"acr":{{"essential":true,"value":"{AAL1}"}}}}}}"#);
        let t = tokens(
            &server,
            &client,
            AuthorizeUrl::new(&client).set("claims", &met),
            &Pkce::new(),
        )
        .await;
        let (claims, _) = verify(&server, t["id_token"].as_str().unwrap()).await;
        assert_eq!(
            claims.claim("acr"),
            Some(&serde_json::json!(AAL1)),
            "{}",
            db.label
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn a_malformed_claims_parameter_is_invalid_request_oidc_5_5() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let client = server.confidential_client("web").await;
    for claims in [
        "not json",
        "[]",
        r#"{"id_token":"acr"}"#,
        r#"{"userinfo":{"email":true}}"#,
    ] {
        let url = AuthorizeUrl::new(&client)
            .pkce(&Pkce::new())
            .set("claims", claims);
        let res = server.browser().get(&url.path()).await;
        assert_eq!(res.status, 302, "{claims}: {}", res.body);
        assert_eq!(
            res.redirect_params()["error"],
            "invalid_request",
            "{claims}"
        );
    }
    server.stop().await;
}

async fn sid_of(server: &TestServer, tokens: &serde_json::Value) -> String {
    let (claims, _) = server
        .verify_jwt(tokens["id_token"].as_str().unwrap())
        .await;
    claims
        .claim("sid")
        .and_then(|s| s.as_str())
        .unwrap()
        .to_owned()
}

/// OIDC Back-Channel Logout 1.0 §2 (and Front-Channel §2): ID tokens carry the session's
/// `sid`, the same for every client the browser signs into, kept when a refresh makes a new
/// ID token, and different for another session.
#[tokio::test]
async fn id_tokens_carry_the_sessions_sid_backchannel_logout_2() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let web = server
            .client_with("web", false, |c| {
                c.scope = "openid offline_access".into();
            })
            .await;
        let other = server.confidential_client("other").await;
        server.user("ada").await;
        let browser = server.browser();
        let url = AuthorizeUrl::new(&web)
            .set("scope", "openid offline_access")
            .set("prompt", "consent");
        let first = tokens_in(&server, &browser, &web, url, &Pkce::new()).await;
        let sid = sid_of(&server, &first).await;
        assert!(sid.len() >= 22, "{}: {sid}", db.label);
        let second = tokens_in(
            &server,
            &browser,
            &other,
            AuthorizeUrl::new(&other),
            &Pkce::new(),
        )
        .await;
        assert_eq!(
            sid_of(&server, &second).await,
            sid,
            "{}: one session, one sid",
            db.label
        );
        let refreshed = server.refresh(&web, &first["refresh_token"]).await;
        assert_eq!(refreshed.status, 200, "{}", refreshed.body);
        assert_eq!(
            sid_of(&server, &refreshed.json()).await,
            sid,
            "{}",
            db.label
        );
        let elsewhere = tokens(
            &server,
            &web,
            AuthorizeUrl::new(&web).set("scope", "openid"),
            &Pkce::new(),
        )
        .await;
        assert_ne!(
            sid_of(&server, &elsewhere).await,
            sid,
            "{}: another session",
            db.label
        );
        server.stop().await;
    }
}
