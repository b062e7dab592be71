//! The token endpoint for `authorization_code`: RFC 6749 §2.3, §4.1.3, §5; RFC 7636 §4.6;
//! RFC 9700 §2.1.1.

use base64::Engine;
use tessera::crypto::token::Digest;

use crate::support::flow::{AuthorizeUrl, Browser, Pkce, TestClient, REDIRECT};
use crate::support::{TestDb, TestServer};

/// Runs the browser part of the flow and returns the code.
async fn code_for(browser: &Browser, url: &AuthorizeUrl) -> String {
    let done = browser.authorize_through(&url.path(), "ada").await;
    assert!(done.location().starts_with(REDIRECT), "{}", done.body);
    done.redirect_params()["code"].clone()
}

async fn setup(db: &TestDb) -> (TestServer, TestClient, Browser) {
    let server = TestServer::start(db).await;
    let client = server.confidential_client("web").await;
    server.user("ada").await;
    let browser = server.browser();
    (server, client, browser)
}

fn exchange<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ]
}

#[tokio::test]
async fn token_exchanges_code_with_pkce_for_confidential_and_public_clients_rfc6749_4_1_3() {
    for db in TestDb::all().await {
        let (server, confidential, browser) = setup(&db).await;
        let public = server.public_client("spa").await;
        for client in [&confidential, &public] {
            let pkce = Pkce::new();
            let code = code_for(&browser, &AuthorizeUrl::new(client).pkce(&pkce)).await;
            let res = server.token(client, &exchange(&code, &pkce.verifier)).await;
            assert_eq!(
                res.status, 200,
                "{} {}: {}",
                db.label, client.record.id, res.body
            );
            let body = res.json();
            let token = body["access_token"].as_str().unwrap();
            assert!(token.starts_with("tsa_") && token.len() == 47, "{token}");
            assert_eq!(body["token_type"], "Bearer");
            assert_eq!(body["expires_in"], 3600);
            assert_eq!(body["scope"], "openid profile");
            assert_eq!(res.header("cache-control"), Some("no-store"));
            assert_eq!(res.header("pragma"), Some("no-cache"));
            // Only the digest is stored, bound to the client and user.
            let stored = server
                .state
                .store
                .token(&Digest::of(token))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(stored.client_id.as_deref(), Some(client.record.id.as_str()));
            assert!(stored.is_active(server.state.clock.now()));
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn token_client_secret_post_and_form_urlencoded_basic_credentials_rfc6749_2_3_1() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    server.user("ada").await;
    let browser = server.browser();
    let post = server
        .client_with("poster", false, |c| {
            c.token_endpoint_auth_method = tessera::store::AuthMethod::ClientSecretPost
        })
        .await;
    let pkce = Pkce::new();
    let code = code_for(&browser, &AuthorizeUrl::new(&post).pkce(&pkce)).await;
    assert_eq!(
        server
            .token(&post, &exchange(&code, &pkce.verifier))
            .await
            .status,
        200
    );

    // A client id and secret with characters that form-urlencoding changes.
    let secret = "s3cret:with+plus%and space and more characters";
    let mut odd = server.client_with("odd id", false, |_| {}).await;
    let mut record = odd.record.clone();
    record.secret_digest = Some(Digest::of(secret));
    server
        .state
        .store
        .update_client(
            &record,
            &tessera::audit::AuditEvent::new(tessera::audit::AuditKind::ClientUpdated, "test", 0),
        )
        .await
        .unwrap();
    odd.secret = Some(secret.to_owned());
    let code = code_for(&browser, &AuthorizeUrl::new(&odd).pkce(&pkce)).await;
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        encode("odd id"),
        encode(secret)
    ));
    let res = crate::support::http()
        .post(server.url("/token"))
        .header("authorization", format!("Basic {basic}"))
        .form(&exchange(&code, &pkce.verifier))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn token_refuses_bad_client_authentication_with_401_invalid_client_rfc6749_5_2() {
    let db = TestDb::sqlite().await;
    let (server, client, browser) = setup(&db).await;
    let pkce = Pkce::new();
    let code = code_for(&browser, &AuthorizeUrl::new(&client).pkce(&pkce)).await;
    let form = exchange(&code, &pkce.verifier);
    let http = crate::support::http();

    // Wrong secret over Basic: 401 with a Basic challenge.
    let res = http
        .post(server.url("/token"))
        .basic_auth("web", Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_client"
    );
    // Unknown client: the same answer.
    let res = http
        .post(server.url("/token"))
        .basic_auth("ghost", Some("x"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The right secret, but by a method the client is not registered for.
    let mut post_form = form.clone();
    let secret = client.secret.clone().unwrap();
    post_form.extend([("client_id", "web"), ("client_secret", secret.as_str())]);
    let res = http
        .post(server.url("/token"))
        .form(&post_form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        !res.headers().contains_key("www-authenticate"),
        "no Basic attempted"
    );
    // A confidential client cannot pass as public by leaving the secret out.
    let mut none_form = form.clone();
    none_form.push(("client_id", "web"));
    assert_eq!(
        http.post(server.url("/token"))
            .form(&none_form)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Two methods at once: invalid_request (RFC 6749 §2.3).
    let res = http
        .post(server.url("/token"))
        .basic_auth("web", Some(&secret))
        .form(&post_form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_request"
    );
    // None of these consumed the code.
    assert_eq!(server.token(&client, &form).await.status, 200);
}

#[tokio::test]
async fn token_malformed_requests_are_invalid_request_in_json_rfc6749_5_2() {
    let db = TestDb::sqlite().await;
    let (server, client, _browser) = setup(&db).await;
    let http = crate::support::http();
    let secret = client.secret.clone().unwrap();
    // Wrong content type.
    let res = http
        .post(server.url("/token"))
        .basic_auth("web", Some(&secret))
        .json(&serde_json::json!({ "grant_type": "authorization_code", "code": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_request"
    );
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("grant_type", "authorization_code"),
                ("code", "a"),
                ("code", "b"),
            ],
            "invalid_request",
        ),
        (&[("grant_type", "authorization_code")], "invalid_request"),
        (&[("code", "x")], "invalid_request"),
        (
            &[("grant_type", "password"), ("username", "u")],
            "unsupported_grant_type",
        ),
    ];
    for (form, error) in cases {
        let res = server.token(&client, form).await;
        assert_eq!(res.status, 400, "{form:?}");
        assert_eq!(res.json()["error"], *error, "{form:?}");
        assert!(res.json()["error_description"].is_string());
        assert_eq!(res.header("cache-control"), Some("no-store"));
    }
}

#[tokio::test]
async fn token_rejects_wrong_missing_or_downgraded_pkce_rfc7636_4_6() {
    for db in TestDb::all().await {
        let (server, client, browser) = setup(&db).await;
        let pkce = Pkce::new();
        for verifier in [Some(Pkce::new().verifier), None] {
            let code = code_for(&browser, &AuthorizeUrl::new(&client).pkce(&pkce)).await;
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
            ];
            if let Some(v) = &verifier {
                form.push(("code_verifier", v));
            }
            let res = server.token(&client, &form).await;
            assert_eq!(res.status, 400);
            assert_eq!(
                res.json()["error"],
                "invalid_grant",
                "verifier {verifier:?}"
            );
        }
        // RFC 9700 §2.1.1: a code issued without a challenge (only a legacy client opted out of
        // PKCE gets one, for an OpenID request with a nonce) cannot be redeemed with a verifier.
        let legacy = server
            .client_with("legacy", false, |c| c.require_pkce = false)
            .await;
        let no_pkce = AuthorizeUrl::new(&legacy)
            .without_pkce()
            .set("nonce", "n-1");
        let code = code_for(&browser, &no_pkce).await;
        let res = server
            .token(&legacy, &exchange(&code, &pkce.verifier))
            .await;
        assert_eq!(res.json()["error"], "invalid_grant");
        // Nor with a malformed one, which answers no challenge (decision 0047: it must not
        // pass for "no verifier").
        let code = code_for(&browser, &no_pkce).await;
        let res = server.token(&legacy, &exchange(&code, "short")).await;
        assert_eq!(res.json()["error"], "invalid_grant", "{}", db.label);
        // A code that failed its check stays spent: the right verifier after a wrong one
        // gets nothing (RFC 6749 §4.1.2, a thief who guessed wrong cannot try again).
        let code = code_for(&browser, &AuthorizeUrl::new(&client).pkce(&pkce)).await;
        let wrong = server
            .token(&client, &exchange(&code, &Pkce::new().verifier))
            .await;
        assert_eq!(wrong.json()["error"], "invalid_grant", "{}", db.label);
        let right = server
            .token(&client, &exchange(&code, &pkce.verifier))
            .await;
        assert_eq!(right.status, 400, "{}: {}", db.label, right.body);
        assert_eq!(right.json()["error"], "invalid_grant");
        // Without a verifier, the same kind of code works (PKCE is optional for this client).
        let code = code_for(&browser, &no_pkce).await;
        let res = server
            .token(
                &legacy,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                ],
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.body);
        server.stop().await;
    }
}

#[tokio::test]
async fn token_rejects_reused_code_and_revokes_its_tokens_rfc6749_4_1_2() {
    for db in TestDb::all().await {
        let (server, client, browser) = setup(&db).await;
        let pkce = Pkce::new();
        let code = code_for(&browser, &AuthorizeUrl::new(&client).pkce(&pkce)).await;
        let first = server
            .token(&client, &exchange(&code, &pkce.verifier))
            .await;
        assert_eq!(first.status, 200);
        let token = first.json()["access_token"].as_str().unwrap().to_owned();
        let second = server
            .token(&client, &exchange(&code, &pkce.verifier))
            .await;
        assert_eq!(second.status, 400, "{}", db.label);
        assert_eq!(second.json()["error"], "invalid_grant");
        let stored = server
            .state
            .store
            .token(&Digest::of(&token))
            .await
            .unwrap()
            .unwrap();
        assert!(
            stored.revoked_at.is_some(),
            "{}: the first token died with its grant",
            db.label
        );
        assert!(!stored.is_active(server.state.clock.now()));
        let kinds = crate::support::audit_kinds(server.state.store.as_ref(), 3).await;
        assert_eq!(kinds[0], "authorization_code_reuse");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_parallel_redemptions_of_one_code_succeed_at_most_once_rfc6749_4_1_2() {
    for db in TestDb::all().await {
        let (server, client, browser) = setup(&db).await;
        let pkce = Pkce::new();
        let code = code_for(&browser, &AuthorizeUrl::new(&client).pkce(&pkce)).await;
        let secret = client.secret.clone().unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (url, code, verifier, secret) = (
                server.url("/token"),
                code.clone(),
                pkce.verifier.clone(),
                secret.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let res = crate::support::http()
                    .post(url)
                    .basic_auth("web", Some(secret))
                    .form(&exchange(&code, &verifier))
                    .send()
                    .await
                    .unwrap();
                (res.status().as_u16(), res.text().await.unwrap())
            }));
        }
        let mut replies = Vec::new();
        for t in tasks {
            replies.push(t.await.unwrap());
        }
        let ok = replies.iter().filter(|(status, _)| *status == 200).count();
        assert_eq!(ok, 1, "{}: {replies:?}", db.label);
        for (status, body) in replies.iter().filter(|(s, _)| *s != 200) {
            assert_eq!(*status, 400, "{body}");
            assert!(body.contains("invalid_grant"), "{body}");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn token_rejects_expired_code_rfc6749_4_1_2() {
    for db in TestDb::all().await {
        let (server, client, browser) = setup(&db).await;
        let pkce = Pkce::new();
        let code = code_for(&browser, &AuthorizeUrl::new(&client).pkce(&pkce)).await;
        server.state.clock.advance(61);
        let res = server
            .token(&client, &exchange(&code, &pkce.verifier))
            .await;
        assert_eq!(res.status, 400);
        assert_eq!(res.json()["error"], "invalid_grant");
        server.stop().await;
    }
}

#[tokio::test]
async fn token_rejects_code_issued_to_another_client_rfc6749_4_1_3() {
    for db in TestDb::all().await {
        let (server, client, browser) = setup(&db).await;
        let other = server.confidential_client("other").await;
        let pkce = Pkce::new();
        let code = code_for(&browser, &AuthorizeUrl::new(&client).pkce(&pkce)).await;
        let res = server.token(&other, &exchange(&code, &pkce.verifier)).await;
        assert_eq!(res.status, 400);
        assert_eq!(res.json()["error"], "invalid_grant");
        server.stop().await;
    }
}

#[tokio::test]
async fn token_requires_the_same_redirect_uri_as_the_authorization_request_rfc6749_4_1_3() {
    for db in TestDb::all().await {
        let (server, client, browser) = setup(&db).await;
        let pkce = Pkce::new();
        for redirect in [Some("http://127.0.0.1:7777/cb"), None] {
            let code = code_for(&browser, &AuthorizeUrl::new(&client).pkce(&pkce)).await;
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("code_verifier", pkce.verifier.as_str()),
            ];
            if let Some(r) = redirect {
                form.push(("redirect_uri", r));
            }
            let res = server.token(&client, &form).await;
            assert_eq!(res.json()["error"], "invalid_grant", "{redirect:?}");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn token_refuses_code_of_a_user_disabled_since_authorization() {
    for db in TestDb::all().await {
        let (server, client, browser) = setup(&db).await;
        let pkce = Pkce::new();
        let code = code_for(&browser, &AuthorizeUrl::new(&client).pkce(&pkce)).await;
        let ada = server
            .state
            .store
            .account_by_username("ada")
            .await
            .unwrap()
            .unwrap();
        server.disable_user(&ada.id).await;
        let res = server
            .token(&client, &exchange(&code, &pkce.verifier))
            .await;
        assert_eq!(res.json()["error"], "invalid_grant");
        server.stop().await;
    }
}

/// The code exchange and the refresh of a client deleted a moment ago (still cached for up
/// to a second): a client error in the spec's format, never a 500, whichever of the token
/// lookup or the token write notices first.
#[tokio::test]
async fn code_and_refresh_for_a_client_deleted_a_moment_ago_are_client_errors_rfc6749_5_2() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let client = server
            .client_with("web", false, |c| c.scope = "openid offline_access".into())
            .await;
        server.user("ada").await;
        let browser = server.browser();
        let offline = || {
            AuthorizeUrl::new(&client)
                .set("scope", "openid offline_access")
                .set("prompt", "consent")
        };
        let first = server
            .code_flow(&browser, &client, offline(), &Pkce::new())
            .await;
        let pkce = Pkce::new();
        let code = code_for(&browser, &offline().pkce(&pkce)).await;
        let audit =
            tessera::audit::AuditEvent::new(tessera::audit::AuditKind::ClientDeleted, "test", 0);
        server
            .state
            .store
            .delete_client(&client.record.id, &audit)
            .await
            .unwrap();
        for res in [
            server
                .token(&client, &exchange(&code, &pkce.verifier))
                .await,
            server.refresh(&client, &first["refresh_token"]).await,
        ] {
            assert!(
                matches!(
                    (res.status, res.json()["error"].as_str()),
                    (400, Some("invalid_grant")) | (401, Some("invalid_client"))
                ),
                "{}: {} {}",
                db.label,
                res.status,
                res.body
            );
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn client_credentials_for_a_client_deleted_a_moment_ago_is_invalid_client_rfc6749_5_2() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let gw = crate::support::flow::gateway(&server).await;
        let form = [("grant_type", "client_credentials")];
        // Authenticated once, so this instance holds the client for up to a second.
        assert_eq!(server.token(&gw, &form).await.status, 200);
        let audit =
            tessera::audit::AuditEvent::new(tessera::audit::AuditKind::ClientDeleted, "test", 0);
        server
            .state
            .store
            .delete_client(&gw.record.id, &audit)
            .await
            .unwrap();
        // Within the cache's second and after it alike: invalid_client, never a 500.
        let res = server.token(&gw, &form).await;
        assert_eq!(res.status, 401, "{}: {}", db.label, res.body);
        assert_eq!(res.json()["error"], "invalid_client");
        server.stop().await;
    }
}
