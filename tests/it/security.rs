//! Fixes from the outside security review (issue 9): each test is named after the rule the
//! defect broke, and runs on every store.

use crate::support::flow::{
    gateway, inactive, introspect, AuthorizeUrl, Pkce, TestClient, PASSWORD, REDIRECT,
};
use crate::support::{http, TestDb, TestServer};

const SCOPE: &str = "openid profile offline_access api";

async fn app(server: &TestServer, id: &str, may_introspect: bool) -> TestClient {
    server
        .client_with(id, false, |c| {
            c.scope = SCOPE.into();
            c.may_introspect = may_introspect;
        })
        .await
}

#[tokio::test]
async fn introspect_refresh_token_is_inactive_to_other_resource_servers_rfc7662_4() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let web = app(&server, "web", true).await;
        let gw = gateway(&server).await;
        let url = AuthorizeUrl::new(&web).set("scope", SCOPE);
        let tokens = server
            .code_flow(&server.browser(), &web, url, &Pkce::new())
            .await;
        let refresh = tokens["refresh_token"].as_str().unwrap();
        let access = tokens["access_token"].as_str().unwrap();

        // A gateway shown a (stolen) refresh token must not take it for a bearer token.
        assert_eq!(
            introspect(&server, &gw, refresh).await,
            inactive(),
            "{}",
            db.label
        );
        // Its own client may check it, and is told what it is.
        let own = introspect(&server, &web, refresh).await;
        assert_eq!(own["active"], true, "{}: {own}", db.label);
        assert_eq!(own["token_type"], "refresh_token");
        // RFC 7662 §2.2: every active answer carries token_type.
        let at = introspect(&server, &gw, access).await;
        assert_eq!(at["active"], true);
        assert_eq!(at["token_type"], "Bearer");
        server.stop().await;
    }
}

/// Signs "ada" in through the code flow with offline_access; returns the browser (holding
/// her session) and the token response.
async fn signed_in(
    server: &TestServer,
    web: &TestClient,
) -> (crate::support::flow::Browser, serde_json::Value) {
    let browser = server.browser();
    let url = AuthorizeUrl::new(web).set("scope", SCOPE);
    let tokens = server.code_flow(&browser, web, url, &Pkce::new()).await;
    (browser, tokens)
}

/// Everything issued before is dead: the session no longer counts at /authorize, the
/// refresh token is refused, the access token is inactive and refused at /userinfo.
async fn assert_nothing_survives(
    server: &TestServer,
    web: &TestClient,
    browser: &crate::support::flow::Browser,
    tokens: &serde_json::Value,
    label: &str,
) {
    let page = browser.get(&AuthorizeUrl::new(web).path()).await;
    assert_eq!(page.status, 200, "{label}: {}", page.body);
    assert!(
        page.body.contains("name=\"password\""),
        "{label}: the old session must not sign her in"
    );
    let refresh = server
        .token(
            web,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(refresh.status, 400, "{label}: {}", refresh.body);
    assert_eq!(refresh.json()["error"], "invalid_grant");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(introspect(server, web, access).await, inactive(), "{label}");
    let userinfo = http()
        .get(server.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 401, "{label}");
}

async fn last_event(server: &TestServer, kind: &str) -> serde_json::Value {
    let events = server.state.store.recent_audit(20).await.unwrap();
    let event = events
        .into_iter()
        .find(|e| e.event.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} event"));
    event.event.details
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_disable_ends_sessions_and_grants_and_enable_restores_nothing_asvs_7_4_2() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let web = app(&server, "web", true).await;
        let (browser, tokens) = signed_in(&server, &web).await;

        db.tessera(&["user", "disable", "ada"]).succeeds();
        let details = last_event(&server, "user_disabled").await;
        assert_eq!(details["sessions_ended"], 1, "{}: {details}", db.label);
        assert_eq!(details["grants_revoked"], 1);
        assert_eq!(details["tokens_revoked"], 2, "access and refresh token");
        db.tessera(&["user", "enable", "ada"]).succeeds();

        assert_nothing_survives(&server, &web, &browser, &tokens, db.label).await;
        // She can sign in again, afresh.
        let again = server
            .code_flow(
                &server.browser(),
                &web,
                AuthorizeUrl::new(&web).set("scope", SCOPE),
                &Pkce::new(),
            )
            .await;
        assert!(again["access_token"].is_string());
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_set_password_ends_sessions_and_grants_asvs_7_4_3() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let web = app(&server, "web", true).await;
        let (browser, tokens) = signed_in(&server, &web).await;

        db.tessera_with_stdin(
            &["user", "set-password", "ada", "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
        .succeeds();
        let details = last_event(&server, "user_password_set").await;
        assert_eq!(details["sessions_ended"], 1, "{}: {details}", db.label);
        assert_eq!(details["grants_revoked"], 1);

        assert_nothing_survives(&server, &web, &browser, &tokens, db.label).await;

        // A code issued just before the reset, still in flight, yields nothing after it.
        let pkce = Pkce::new();
        let url = AuthorizeUrl::new(&web).pkce(&pkce).set("scope", SCOPE);
        let done = server.browser().authorize_through(&url.path(), "ada").await;
        let code = done.redirect_params()["code"].clone();
        db.tessera_with_stdin(
            &["user", "set-password", "ada", "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
        .succeeds();
        assert_eq!(
            last_event(&server, "user_password_set").await["codes_revoked"],
            1
        );
        let res = server
            .token(
                &web,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", &pkce.verifier),
                ],
            )
            .await;
        assert_eq!(res.status, 400, "{}: {}", db.label, res.body);
        assert_eq!(res.json()["error"], "invalid_grant");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_delete_ends_sessions_and_grants_asvs_7_4_2() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let web = app(&server, "web", true).await;
        let (_browser, tokens) = signed_in(&server, &web).await;

        db.tessera(&["user", "delete", "ada"]).succeeds();
        let details = last_event(&server, "user_deleted").await;
        assert_eq!(details["sessions_ended"], 1, "{}: {details}", db.label);
        assert_eq!(details["grants_revoked"], 1);
        for token in ["access_token", "refresh_token"] {
            let t = tokens[token].as_str().unwrap();
            assert_eq!(introspect(&server, &web, t).await, inactive());
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn nul_and_control_characters_are_invalid_request_not_server_error_rfc6749_appendix_a() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let web = app(&server, "web", true).await;
        let label = db.label;

        // /token: a NUL in client_id (form) is invalid_request; in Basic, invalid_client.
        let res = http()
            .post(server.url("/token"))
            .form(&[("grant_type", "client_credentials"), ("client_id", "\0")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{label}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{label}: {body}");
        let res = http()
            .post(server.url("/token"))
            .basic_auth("web%00", Some("secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{label}");
        // /introspect and /revoke: the token parameter.
        for path in ["/introspect", "/revoke"] {
            let res = server.token_like(path, &web, &[("token", "tsa_\0")]).await;
            assert_eq!(res.status, 400, "{label} {path}: {}", res.body);
            assert_eq!(res.json()["error"], "invalid_request");
        }
        // /authorize: client_id cannot be trusted, so an error page and no redirect.
        let browser = server.browser();
        let res = browser
            .get("/authorize?response_type=code&client_id=%00")
            .await;
        assert_eq!(res.status, 400, "{label}: {}", res.body);
        assert!(res.header("location").is_none());
        let res = browser
            .get(&AuthorizeUrl::new(&web).set("state", "a\u{1}b").path())
            .await;
        assert_eq!(res.redirect_params()["error"], "invalid_request", "{label}");
        // The login form: a NUL in the username is a 400 page, never a store error.
        let page = browser.get(&AuthorizeUrl::new(&web).path()).await;
        let res = browser.login(&page, "ada\0", PASSWORD).await;
        assert_eq!(res.status, 400, "{label}: {}", res.body);
        // /logout
        let res = browser.get("/logout?client_id=%00").await;
        assert!(res.status < 500, "{label}: {}", res.status);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_public_cannot_introspect_rfc7662_2_1() {
    for db in TestDb::all().await {
        db.tessera(&[
            "client",
            "create",
            "--id",
            "spa",
            "--name",
            "SPA",
            "--public",
            "--introspect",
            "--redirect-uri",
            REDIRECT,
        ])
        .fails_with("a public client cannot introspect");
        db.tessera(&[
            "client",
            "create",
            "--id",
            "spa",
            "--name",
            "SPA",
            "--public",
            "--redirect-uri",
            REDIRECT,
        ])
        .succeeds();
        db.tessera(&["client", "update", "spa", "--introspect", "true"])
            .fails_with("a public client cannot introspect");
        let show = db.tessera(&["client", "show", "spa", "--json"]).json();
        assert_eq!(show["may_introspect"], false, "{}", db.label);
        // A public client registered with the right before it was refused cannot use it.
        let server = TestServer::start(&db).await;
        let legacy = server
            .client_with("legacy-spa", true, |c| c.may_introspect = true)
            .await;
        let res = server
            .token_like("/introspect", &legacy, &[("token", "tsa_anything")])
            .await;
        assert_eq!(res.status, 403, "{}: {}", db.label, res.body);
        assert_eq!(res.json()["error"], "unauthorized_client");
        server.stop().await;
    }
}

#[tokio::test]
async fn id_token_hint_refuses_jwt_access_tokens_rfc8725_3_11() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let internal = server
            .client_with("internal", false, |c| {
                c.scope = SCOPE.into();
                c.access_token_format = tessera::store::AccessTokenFormat::Jwt;
            })
            .await;
        let browser = server.browser();
        let url = AuthorizeUrl::new(&internal).set("scope", SCOPE);
        let tokens = server
            .code_flow(&browser, &internal, url, &Pkce::new())
            .await;
        let at = tokens["access_token"].as_str().unwrap();
        let id_token = tokens["id_token"].as_str().unwrap();

        // RFC 9068 §3: the access token's audience is the resource, never the client id
        // an ID token is addressed to.
        let (at_claims, _) = server.verify_jwt(at).await;
        let (id_claims, _) = server.verify_jwt(id_token).await;
        assert_eq!(id_claims.audience(), Some(vec!["internal"]));
        assert_eq!(
            at_claims.audience(),
            Some(vec![server.state.config.default_resource.as_str()])
        );
        assert!(!at_claims.audience().unwrap().contains(&"internal"));

        // Logout: an access token is no ID token; nobody is signed out by it.
        let res = browser.get(&format!("/logout?id_token_hint={at}")).await;
        assert_eq!(res.status, 400, "{}: {}", db.label, res.body);
        // /authorize: the same; the session still stands.
        let res = browser
            .get(
                &AuthorizeUrl::new(&internal)
                    .set("id_token_hint", at)
                    .set("prompt", "none")
                    .path(),
            )
            .await;
        assert_eq!(
            res.redirect_params()["error"],
            "invalid_request",
            "{}",
            db.label
        );
        let res = browser
            .get(&AuthorizeUrl::new(&internal).set("prompt", "none").path())
            .await;
        assert!(
            res.redirect_params().contains_key("code"),
            "{}: still signed in",
            db.label
        );
        // And the other way round: an ID token is no access token.
        let userinfo = http()
            .get(server.url("/userinfo"))
            .bearer_auth(id_token)
            .send()
            .await
            .unwrap();
        assert_eq!(userinfo.status(), 401);
        let gw = gateway(&server).await;
        assert_eq!(introspect(&server, &gw, id_token).await, inactive());
        // The real ID token still works as a hint: signed out without a confirmation page.
        let res = browser
            .get(&format!("/logout?id_token_hint={id_token}"))
            .await;
        assert_eq!(res.status, 200);
        assert!(!res.body.contains("csrf_token"), "{}", res.body);
        server.stop().await;
    }
}

#[tokio::test]
async fn authorize_max_age_0_logs_in_once_then_continues_oidc_3_1_2_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let web = server
            .client_with("web", false, |c| c.first_party = true)
            .await;
        let browser = server.browser();
        let pkce = Pkce::new();
        let url = AuthorizeUrl::new(&web).pkce(&pkce).set("max_age", "0");
        let page = browser.get(&url.path()).await;
        // The sign-in satisfies max_age=0: the login form's answer carries the code (a
        // first-party client: no consent to ask for), not the login page again.
        let done = browser.login(&page, "ada", PASSWORD).await;
        assert_eq!(done.status, 303, "{}: {}", db.label, done.body);
        let login_time = server.state.clock.now();
        let code = done.redirect_params()["code"].clone();
        let tokens = server
            .token(
                &web,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", &pkce.verifier),
                ],
            )
            .await;
        assert_eq!(tokens.status, 200, "{}", tokens.body);
        let (claims, _) = server
            .verify_jwt(tokens.json()["id_token"].as_str().unwrap())
            .await;
        let auth_time = claims.claim("auth_time").unwrap().as_i64().unwrap();
        assert!(
            (login_time - 1..=login_time).contains(&auth_time),
            "{auth_time}"
        );
        // A new request with max_age=0, a second later, asks for a login again.
        server.state.clock.advance(1);
        let again = browser.get(&url.path()).await;
        assert!(again.body.contains("name=\"password\""), "{}", db.label);
        server.stop().await;
    }
}

/// The login form's answer is a page (the consent page, decision 0050), which the browser's
/// history keeps as the answer to the form: sent again from there after a logout (Back and
/// "send again", the next person at a shared computer), the form with its password must
/// sign no one in. The sign-in ended the CSRF cookie the form was sent with.
#[tokio::test]
async fn a_login_form_sent_again_after_its_sign_in_signs_no_one_in_asvs_3_3_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let web = server.confidential_client("web").await;
        server.user("ada").await;
        let browser = server.browser();
        let page = browser.get(&AuthorizeUrl::new(&web).path()).await;
        let form = [
            ("username", "ada".to_owned()),
            ("password", PASSWORD.to_owned()),
            ("csrf_token", page.input("csrf_token")),
            ("authorize_query", page.input("authorize_query")),
        ];
        let send = || async {
            let res = browser
                .http
                .post(server.url("/login"))
                .form(&form)
                .send()
                .await
                .unwrap();
            crate::support::flow::Reply::from(res).await
        };
        let consent = send().await;
        assert_eq!(consent.status, 200, "{}: {}", db.label, consent.body);
        let done = browser.consent(&consent, "approve").await;
        assert_eq!(done.status, 303, "{}", done.body);
        // Signed out (every session of the store gone), then the form again.
        db.rows("delete from session").await;
        let again = send().await;
        assert_eq!(again.status, 403, "{}: {}", db.label, again.body);
        assert_eq!(db.number("select count(*) from session").await, 0);
        // A new login page works as ever.
        let page = browser.get(&AuthorizeUrl::new(&web).path()).await;
        let res = browser.login(&page, "ada", PASSWORD).await;
        assert_eq!(res.status, 303, "{}: {}", db.label, res.body);
        server.stop().await;
    }
}

#[tokio::test]
async fn authorize_requires_redirect_uri_in_openid_requests_oidc_3_1_2_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let one = server
            .client_with("one", false, |c| c.redirect_uris = vec![REDIRECT.into()])
            .await;
        let res = server
            .browser()
            .get(&AuthorizeUrl::new(&one).remove("redirect_uri").path())
            .await;
        assert_eq!(res.status, 400, "{}", db.label);
        assert!(
            res.header("location").is_none(),
            "an error page, no redirect"
        );
        // Plain OAuth may still omit it when exactly one is registered (RFC 6749 §3.1.2.3).
        let res = server
            .browser()
            .get(
                &AuthorizeUrl::new(&one)
                    .remove("redirect_uri")
                    .set("scope", "profile")
                    .path(),
            )
            .await;
        assert_eq!(res.status, 200, "{}: {}", db.label, res.body);
        server.stop().await;
    }
}

fn https_config(db: &TestDb) -> tessera::Config {
    let mut env = db.env();
    env.insert("TESSERA_ISSUER".into(), "https://id.example.com".into());
    tessera::Config::from_sources(Some(std::path::Path::new("/dev/null")), &env).unwrap()
}

/// One request of each kind of answer: successes, the pages' errors, the client API's JSON
/// errors, a Bearer challenge, the framework's own refusals (no route, a method the route
/// lacks, a body over the limit). `(method, path, content type, body, answered with a page)`;
/// a body of `BIG` is one over `request_body_limit`.
const EVERY_KIND_OF_ANSWER: &[(&str, &str, &str, &str, bool)] = &[
    ("GET", "/healthz", "", "", false),
    ("GET", "/.well-known/openid-configuration", "", "", false),
    ("GET", "/jwks", "", "", false),
    ("GET", "/static/tessera.css", "", "", false),
    ("GET", "/static/frontchannel-logout.js", "", "", false),
    ("GET", "/account", "", "", true),
    ("GET", "/authorize", "", "", true),
    (
        "GET",
        "/authorize?client_id=nobody&response_type=code",
        "",
        "",
        true,
    ),
    ("GET", "/logout?id_token_hint=not-a-jwt", "", "", true),
    ("POST", "/login", FORM, "username=ada", true),
    ("POST", "/account/keys", FORM, "label=x", true),
    ("POST", "/token", FORM, "grant_type=password", false),
    ("POST", "/token", "application/json", "{}", false),
    ("POST", "/introspect", FORM, "token=x", false),
    ("GET", "/userinfo", "", "", false),
    ("GET", "/no-such-page", "", "", true),
    ("GET", "/token/", "", "", true),
    ("PUT", "/token", "", "", false),
    ("DELETE", "/authorize", "", "", true),
    ("PATCH", "/jwks", "", "", false),
    ("POST", "/login", FORM, "BIG", true),
    ("POST", "/revoke", FORM, "BIG", false),
];

const FORM: &str = "application/x-www-form-urlencoded";

/// Sends one of [`EVERY_KIND_OF_ANSWER`].
async fn answer_of(
    server: &TestServer,
    (method, path, content_type, body, _): (&str, &str, &str, &str, bool),
) -> reqwest::Response {
    let body = if body == "BIG" {
        format!("token={}", "x".repeat(70 * 1024))
    } else {
        body.to_owned()
    };
    let mut request = http().request(method.parse().unwrap(), server.url(path));
    if !content_type.is_empty() {
        request = request.header("content-type", content_type);
    }
    request.body(body).send().await.unwrap()
}

/// The request timeout's own 503: a body announced and never sent.
async fn timed_out(server: &TestServer) -> crate::support::raw::RawResponse {
    let request = crate::support::raw::RawRequest {
        method: "POST".into(),
        target: b"/token".to_vec(),
        headers: vec![
            ("content-type".into(), FORM.as_bytes().to_vec()),
            ("content-length".into(), b"100".to_vec()),
        ],
        body: b"grant_type=".to_vec(),
    };
    let res = crate::support::raw::send(server.base.trim_start_matches("http://"), &request).await;
    assert_eq!(res.status, 503, "{}", res.text());
    res
}

#[tokio::test]
async fn every_answer_carries_hsts_under_an_https_issuer_errors_included_rfc6797_7_1() {
    let db = TestDb::sqlite().await;
    let mut config = https_config(&db);
    config.request_timeout = std::time::Duration::from_secs(1);
    let server = TestServer::start_with(config).await;
    for &request in EVERY_KIND_OF_ANSWER {
        let res = answer_of(&server, request).await;
        assert_eq!(
            res.headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=31536000"),
            "{request:?}: {}",
            res.status()
        );
    }
    let res = timed_out(&server).await;
    assert_eq!(
        res.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    assert_eq!(res.header("x-frame-options"), Some("DENY"));
    server.stop().await;
    // A loopback http issuer (development): no HSTS, which would pin localhost to https.
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    for &request in EVERY_KIND_OF_ANSWER {
        let res = answer_of(&server, request).await;
        assert!(
            res.headers().get("strict-transport-security").is_none(),
            "{request:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn error_pages_and_404s_carry_the_headers_of_every_page_rfc7034_2() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    for &request in EVERY_KIND_OF_ANSWER {
        let res = answer_of(&server, request).await;
        let status = res.status();
        let headers = res.headers().clone();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let content_type = header("content-type").unwrap_or("").to_owned();
        let body = res.text().await.unwrap();
        // A browser may be shown any answer, JSON and empty ones too: none may be framed,
        // sniffed, or leak the URL it came from.
        assert_eq!(
            header("x-frame-options"),
            Some("DENY"),
            "{request:?} {status}"
        );
        assert_eq!(
            header("x-content-type-options"),
            Some("nosniff"),
            "{request:?}"
        );
        assert_eq!(
            header("referrer-policy"),
            Some("no-referrer"),
            "{request:?}"
        );
        let csp = header("content-security-policy").unwrap_or("");
        assert!(
            csp.contains("frame-ancestors 'none'"),
            "{request:?}: {csp:?}"
        );
        if request.4 {
            // The pages, their errors, every 404 and the 405s of page routes: the styled
            // page, with all the headers of a page.
            assert!(
                content_type.starts_with("text/html"),
                "{request:?}: {content_type}"
            );
            assert!(body.contains("<html"), "{request:?}: {body}");
            let missing = crate::support::page_headers_missing(header);
            assert_eq!(missing, None, "{request:?} {status}");
        }
    }
    // The 404 is the styled page, and says what happened.
    let res = http()
        .get(server.url("/no-such-page"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.text().await.unwrap().contains("not found"));
    server.stop().await;
}

#[tokio::test]
async fn login_csrf_token_is_keyed_with_a_server_secret_owasp_csrf() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    server.user("ada").await;
    let web = server.confidential_client("web").await;
    let browser = server.browser();
    let page = browser.get(&AuthorizeUrl::new(&web).path()).await;
    let cookie = page
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    // The unkeyed token anyone could compute from a cookie they planted.
    use base64::Engine;
    use sha2::Digest;
    let unkeyed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(format!("tessera-csrf:{cookie}")));
    assert_ne!(unkeyed, page.input("csrf_token"));
    let res = browser
        .post(
            "/login",
            &[
                ("username", "ada"),
                ("password", PASSWORD),
                ("csrf_token", &unkeyed),
                ("authorize_query", &page.input("authorize_query")),
            ],
        )
        .await;
    assert_eq!(res.status, 403);
    let res = browser.login(&page, "ada", PASSWORD).await;
    assert_eq!(res.status, 200, "the keyed token works: {}", res.body);
    assert!(res.body.contains("name=\"decision\""), "the consent page");
    server.stop().await;
}

#[tokio::test]
async fn failed_login_audit_never_stores_an_unknown_username_as_typed_asvs_16_2_5() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let web = server.confidential_client("web").await;
        let browser = server.browser();
        let page = browser.get(&AuthorizeUrl::new(&web).path()).await;
        // Someone typed their password into the username field.
        let typed = "Tr0ub4dor&3-but-longer";
        for _ in 0..2 {
            assert_eq!(browser.login(&page, typed, "x").await.status, 401);
        }
        assert_eq!(browser.login(&page, "ada", "wrong").await.status, 401);
        let events = server.state.store.recent_audit(3).await.unwrap();
        let details: Vec<String> = events.iter().map(|e| e.event.details.to_string()).collect();
        assert_eq!(events[0].event.details["username"], "ada", "{details:?}");
        for e in &events[1..] {
            assert_eq!(e.event.kind, "login_failed");
            let text = e.event.details.to_string();
            assert!(!text.contains(typed), "{}: {text}", db.label);
            assert_eq!(
                e.event.details["unknown_username_tag"]
                    .as_str()
                    .unwrap()
                    .len(),
                16
            );
        }
        // The same unknown name gives the same tag: repeated tries are visible.
        assert_eq!(
            events[1].event.details["unknown_username_tag"],
            events[2].event.details["unknown_username_tag"]
        );
        server.stop().await;
    }
}

/// The source address the newest audit event recorded, after a failed login that claims to
/// come from 203.0.113.7 through `X-Forwarded-For`.
async fn audited_source_of_spoofed_login(server: &TestServer, client: &str) -> Option<String> {
    let web = server.confidential_client(client).await;
    let browser = server.browser();
    let page = browser.get(&AuthorizeUrl::new(&web).path()).await;
    let res = browser
        .http
        .post(server.url("/login"))
        .header("x-forwarded-for", "198.51.100.9, 203.0.113.7")
        .form(&[
            ("username", "nobody"),
            ("password", "wrong password"),
            ("csrf_token", &page.input("csrf_token")),
            ("authorize_query", &page.input("authorize_query")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let events = server.state.store.recent_audit(1).await.unwrap();
    assert_eq!(events[0].event.kind, "login_failed");
    events[0].event.source_ip.clone()
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    for db in TestDb::all().await {
        // By default no proxy is trusted: the header is the client's word, and ignored.
        let server = TestServer::start(&db).await;
        let source = audited_source_of_spoofed_login(&server, "direct").await;
        assert_eq!(source.as_deref(), Some("127.0.0.1"), "{}", db.label);
        server.stop().await;
        // Behind a trusted proxy (here: loopback), the right-most untrusted address counts.
        let mut env = db.env();
        env.insert("TESSERA_TRUSTED_PROXIES".into(), "127.0.0.0/8, ::1".into());
        let config =
            tessera::Config::from_sources(Some(std::path::Path::new("/dev/null")), &env).unwrap();
        let server = TestServer::start_with(config).await;
        let source = audited_source_of_spoofed_login(&server, "proxied").await;
        assert_eq!(source.as_deref(), Some("203.0.113.7"), "{}", db.label);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_answers_503_with_retry_after_when_the_hash_queue_is_full() {
    let db = TestDb::sqlite().await;
    let mut env = db.env();
    // One check at a time and one waiting: a burst of 24 must overflow it.
    env.insert("TESSERA_PASSWORD_HASH_CONCURRENCY".into(), "1".into());
    env.insert("TESSERA_PASSWORD_HASH_QUEUE".into(), "1".into());
    // This test is about the queue, not about brute-force protection.
    env.insert("TESSERA_LOGIN_FAILURES_BEFORE_DELAY".into(), "1000".into());
    env.insert(
        "TESSERA_LOGIN_FAILURES_PER_ADDRESS_BEFORE_DELAY".into(),
        "1000".into(),
    );
    let config =
        tessera::Config::from_sources(Some(std::path::Path::new("/dev/null")), &env).unwrap();
    let server = TestServer::start_with(config).await;
    server.user("ada").await;
    let answers = wrong_logins_at_once(&server, 24).await;
    let busy: Vec<_> = answers.iter().filter(|r| r.status() == 503).collect();
    let checked = answers.iter().filter(|r| r.status() == 401).count();
    assert!(!busy.is_empty(), "the queue bound was never reached");
    assert!(checked >= 1, "some attempts were checked");
    assert_eq!(busy.len() + checked, 24, "only 401 and 503 answers");
    for r in busy {
        assert_eq!(r.headers()["retry-after"], "1");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_login_turned_away_busy_does_not_count_as_a_failure() {
    let db = TestDb::sqlite().await;
    let mut env = db.env();
    env.insert("TESSERA_PASSWORD_HASH_CONCURRENCY".into(), "1".into());
    env.insert("TESSERA_PASSWORD_HASH_QUEUE".into(), "1".into());
    // No blocks in the way: the test reads the counts themselves.
    env.insert("TESSERA_LOGIN_FAILURES_BEFORE_DELAY".into(), "1000".into());
    env.insert(
        "TESSERA_LOGIN_FAILURES_PER_ADDRESS_BEFORE_DELAY".into(),
        "1000".into(),
    );
    let config =
        tessera::Config::from_sources(Some(std::path::Path::new("/dev/null")), &env).unwrap();
    let server = TestServer::start_with(config).await;
    server.user("ada").await;
    let answers = logins_at_once(&server, 24, PASSWORD).await;
    let busy = answers.iter().filter(|r| r.status() == 503).count();
    assert!(busy >= 1, "the queue bound was never reached");
    assert!(answers
        .iter()
        .all(|r| [200, 503].contains(&r.status().as_u16())));
    // Every attempt counts until it proves itself; the signed-in ones were taken back, and
    // the busy ones — never checked — must be too: no failure is left for the username or
    // the address.
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    let left: Option<i64> = sqlx::query_scalar("select sum(failures) from login_throttle")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left.unwrap_or(0), 0, "{busy} busy refusals");
    server.stop().await;
}

/// One sign-in attempt on the login page of a fresh authorization request.
async fn try_login(
    server: &TestServer,
    client: &TestClient,
    username: &str,
    password: &str,
) -> u16 {
    let browser = server.browser();
    let page = browser.get(&AuthorizeUrl::new(client).path()).await;
    let res = browser.login(&page, username, password).await;
    // Signed in: the login form's answer is the consent page (decision 0050).
    if res.status == 200 {
        assert!(res.body.contains("name=\"decision\""), "{}", res.body);
    }
    if res.status == 429 {
        let wait: u64 = res.header("retry-after").unwrap().parse().unwrap();
        assert!(wait >= 1, "Retry-After {wait}");
        assert!(
            res.body.contains("Too many failed sign-ins"),
            "{}",
            res.body
        );
    }
    res.status
}

/// The statuses of a fixed sequence of attempts for `username`: five free failures, a sixth
/// that starts a one-second wait, then each wait sat out and failed again (2 s, 4 s, 8 s),
/// 24 attempts during the last wait, and the right password once it is over. The clock is
/// moved, never slept on (a wait of n seconds lasts into the n+1st whole second).
async fn throttle_sequence(server: &TestServer, client: &TestClient, username: &str) -> Vec<u16> {
    let clock = &server.state.clock;
    let wrong = "wrong password";
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(try_login(server, client, username, wrong).await);
    }
    statuses.push(try_login(server, client, username, wrong).await);
    for wait in [1, 2, 4] {
        clock.advance(wait + 1);
        statuses.push(try_login(server, client, username, wrong).await);
        statuses.push(try_login(server, client, username, PASSWORD).await);
    }
    for _ in 0..24 {
        statuses.push(try_login(server, client, username, wrong).await);
    }
    clock.advance(8 + 1);
    statuses.push(try_login(server, client, username, PASSWORD).await);
    statuses
}

#[tokio::test]
async fn login_failures_meet_a_growing_wait_without_a_password_hash_asvs_6_3_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = server.user("ada").await;
        let web = server.confidential_client("web").await;
        let statuses = throttle_sequence(&server, &web, "ada").await;
        let mut expected = vec![401; 6];
        expected.push(429);
        // After each wait one more failure doubles it, so even the right password waits…
        expected.extend([401, 429, 401, 429, 401, 429]);
        expected.extend([429; 24]);
        // …and after the wait it works.
        expected.push(200);
        assert_eq!(statuses, expected, "{}", db.label);
        // The refused attempts were never checked: no hash, no failed-login count.
        let account = server.state.store.account(&ada.id).await.unwrap().unwrap();
        assert_eq!(account.failed_login_count, 0, "reset by the success");
        let events = server.state.store.recent_audit(100).await.unwrap();
        let count = |kind: &str| events.iter().filter(|e| e.event.kind == kind).count();
        assert_eq!(count("login_failed"), 9, "{}", db.label);
        assert_eq!(count("login_throttled"), 28);
        assert!(count("login_blocked") >= 1);
        let blocked = events
            .iter()
            .find(|e| e.event.kind == "login_blocked")
            .unwrap();
        assert_eq!(blocked.event.source_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(blocked.event.account_id.as_deref(), Some(ada.id.as_str()));
        // A success starts the count afresh: five free failures again.
        for _ in 0..5 {
            assert_eq!(try_login(&server, &web, "ada", "wrong password").await, 401);
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn login_throttle_treats_an_unknown_username_like_a_known_one_asvs_6_3_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let web = server.confidential_client("web").await;
        let known = throttle_sequence(&server, &web, "ada").await;
        let unknown = throttle_sequence(&server, &web, "nobody").await;
        // The same page statuses, up to the last attempt, where only "ada" has that password.
        assert_eq!(
            known[..known.len() - 1],
            unknown[..unknown.len() - 1],
            "{}",
            db.label
        );
        assert_eq!(unknown.last(), Some(&401));
        server.stop().await;
    }
}

#[tokio::test]
async fn login_throttle_per_address_spans_usernames_asvs_6_3_1() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    server.user("ada").await;
    let web = server.confidential_client("web").await;
    // Twenty failures for twenty different names from one address…
    for i in 0..20 {
        let name = format!("user{i}");
        assert_eq!(try_login(&server, &web, &name, "wrong password").await, 401);
    }
    // …the twenty-first starts the address's wait, which then holds for every name.
    assert_eq!(
        try_login(&server, &web, "user20", "wrong password").await,
        401
    );
    assert_eq!(try_login(&server, &web, "ada", PASSWORD).await, 429);
    server.state.clock.advance(2);
    assert_eq!(try_login(&server, &web, "ada", PASSWORD).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn login_throttle_is_shared_by_instances_on_one_store() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let mut env = db.env();
    env.insert(
        "TESSERA_KEY_ENCRYPTION_KEY".into(),
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
    );
    let config =
        || tessera::Config::from_sources(Some(std::path::Path::new("/dev/null")), &env).unwrap();
    let first = TestServer::start_with(config()).await;
    let second = TestServer::start_with(config()).await;
    first.user("ada").await;
    let web = first.confidential_client("web").await;
    for _ in 0..6 {
        assert_eq!(try_login(&first, &web, "ada", "wrong password").await, 401);
    }
    // The other instance knows: the account's state is in the shared store.
    assert_eq!(try_login(&second, &web, "ada", PASSWORD).await, 429);
    second.state.clock.advance(2);
    assert_eq!(try_login(&second, &web, "ada", PASSWORD).await, 200);
    first.stop().await;
    second.stop().await;
}

fn config_with(db: &TestDb, settings: &[(&str, &str)]) -> tessera::Config {
    let mut env = db.env();
    for (k, v) in settings {
        env.insert((*k).into(), (*v).into());
    }
    tessera::Config::from_sources(Some(std::path::Path::new("/dev/null")), &env).unwrap()
}

fn assert_rate_limited(status: u16, headers: &reqwest::header::HeaderMap, policy: &str) {
    assert_eq!(status, 429);
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait >= 1);
    let policy_header = headers["ratelimit-policy"].to_str().unwrap();
    assert!(
        policy_header.starts_with(&format!("\"{policy}\";q=")),
        "{policy_header}"
    );
    assert!(headers["ratelimit"].to_str().unwrap().contains(";r=0;t="));
}

#[tokio::test]
async fn client_endpoints_answer_429_over_the_clients_rate_and_recover_rfc6585_4() {
    for db in TestDb::all().await {
        let server = TestServer::start_with(config_with(
            &db,
            &[("TESSERA_RATE_LIMIT_CLIENT_PER_SEC", "3")],
        ))
        .await;
        let label = db.label;
        // Each endpoint with a client of its own, so each limit is seen to trip.
        for (i, path) in ["/token", "/introspect", "/revoke"].into_iter().enumerate() {
            let gw = server
                .client_with(&format!("gw{i}"), false, |c| {
                    c.may_introspect = true;
                    c.grant_types = vec!["client_credentials".into()];
                    c.redirect_uris = vec![];
                    c.scope = "gateway".into();
                })
                .await;
            let form: &[(&str, &str)] = if path == "/token" {
                &[("grant_type", "client_credentials")]
            } else {
                &[("token", "tsa_unknown")]
            };
            let mut statuses = Vec::new();
            let mut limited = None;
            for _ in 0..5 {
                let res = server.token_like(path, &gw, form).await;
                statuses.push(res.status);
                if res.status == 429 {
                    limited = Some(res);
                }
            }
            assert_eq!(&statuses[..3], [200, 200, 200], "{label} {path}");
            let res = limited.unwrap_or_else(|| panic!("{path}: never limited"));
            assert_rate_limited(res.status, &res.headers, "client");
            assert_eq!(res.json()["error"], "temporarily_unavailable");
            assert_eq!(res.header("cache-control"), Some("no-store"));
        }
        // /userinfo, per the token's client (this token lacks openid: 403 until limited).
        let gw = server
            .client_with("gw-userinfo", false, |c| {
                c.grant_types = vec!["client_credentials".into()];
                c.redirect_uris = vec![];
                c.scope = "gateway".into();
            })
            .await;
        let token = server
            .token(&gw, &[("grant_type", "client_credentials")])
            .await
            .json()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let res = http()
                .get(server.url("/userinfo"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            statuses.push(res.status().as_u16());
            if res.status() == 429 {
                assert_rate_limited(429, res.headers(), "client");
            }
        }
        assert_eq!(&statuses[..3], [403, 403, 403], "{label}");
        assert_eq!(statuses[4], 429, "{label}");
        // Recovery: the limit is a rate, so a second later the client is served again.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let res = http()
            .get(server.url("/userinfo"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "served again after a second");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_own_rate_limit_overrides_the_default() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        db.tessera(&[
            "client",
            "create",
            "--id",
            "batch",
            "--name",
            "Batch job",
            "--grant-type",
            "client_credentials",
            "--scope",
            "reports",
            "--rate-limit",
            "2/s",
            "--json",
        ])
        .succeeds();
        let record = server.state.store.client("batch").await.unwrap().unwrap();
        assert_eq!(record.rate_limit_per_sec, Some(2), "{}", db.label);
        db.tessera(&["client", "update", "batch", "--rate-limit", "fast"])
            .fails_with("not a rate");
        db.tessera(&["client", "update", "batch", "--rate-limit", "default"])
            .succeeds();
        let record = server.state.store.client("batch").await.unwrap().unwrap();
        assert_eq!(record.rate_limit_per_sec, None);
        server.stop().await;
    }
}

#[tokio::test]
async fn pages_answer_429_with_the_styled_page_over_the_address_rate_rfc6585_4() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start_with(config_with(
        &db,
        &[("TESSERA_RATE_LIMIT_ADDRESS_PER_SEC", "2")],
    ))
    .await;
    let web = server.confidential_client("web").await;
    let browser = server.browser();
    let url = AuthorizeUrl::new(&web).path();
    let mut last = None;
    for _ in 0..4 {
        last = Some(browser.get(&url).await);
    }
    let res = last.unwrap();
    assert_rate_limited(res.status, &res.headers, "address");
    assert!(res.body.contains("Too many requests"), "{}", res.body);
    assert!(res.header("content-type").unwrap().starts_with("text/html"));
    // The allowance is per address, across the pages.
    for path in ["/logout", "/login", "/consent"] {
        let res = if path == "/logout" {
            browser.get(path).await
        } else {
            browser.post(path, &[("x", "y")]).await
        };
        assert_eq!(res.status, 429, "{path}");
    }
    // Discovery and the keys are not pages: they stay reachable.
    let res = browser.get("/.well-known/openid-configuration").await;
    assert_eq!(res.status, 200);
    // And the pages recover.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(browser.get(&url).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn over_limit_requests_get_a_clean_4xx_in_the_endpoints_format() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let web = server.confidential_client("web").await;
        let label = db.label;
        // A body over request_body_limit: JSON at the client API, the page at the pages.
        let big = "token=".to_owned() + &"x".repeat(70 * 1024);
        let res = http()
            .post(server.url("/introspect"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 413, "{label}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
        let res = http()
            .post(server.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 413);
        assert!(res.text().await.unwrap().contains("too large"));
        // A parameter over 16 KiB, and over 128 parameters: invalid_request.
        let long = "y".repeat(17 * 1024);
        let res = server
            .token_like("/revoke", &web, &[("token", &long)])
            .await;
        assert_eq!(res.status, 400, "{label}: {}", res.body);
        assert!(res.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("longer"));
        let many: Vec<(String, String)> = (0..200).map(|i| (format!("x{i}"), "1".into())).collect();
        let mut form: Vec<(&str, &str)> =
            many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        form.push(("token", "tsa_x"));
        let res = server.token_like("/revoke", &web, &form).await;
        assert_eq!(res.status, 400);
        assert!(res.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("more than 128"));
        // Request headers over 16 KiB: 431, and the server goes on serving.
        let res = http()
            .get(server.url("/healthz"))
            .header("x-padding", "z".repeat(20 * 1024))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 431, "{label}");
        let res = http().get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_cannot_slip_past_the_login_throttle_asvs_6_3_1() {
    for db in TestDb::all().await {
        let server =
            TestServer::start_with(config_with(&db, &[("TESSERA_PASSWORD_HASH_QUEUE", "100")]))
                .await;
        server.user("ada").await;
        let answers = wrong_logins_at_once(&server, 20).await;
        let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
        let checked = statuses.iter().filter(|s| **s == 401).count();
        let refused = statuses.iter().filter(|s| **s == 429).count();
        assert_eq!(checked + refused, 20, "{}: {statuses:?}", db.label);
        // Five free failures and the one that starts the wait; nothing more got a hash.
        assert!(checked <= 6, "{}: {checked} passwords checked", db.label);
        let events = server.state.store.recent_audit(100).await.unwrap();
        let failed = events
            .iter()
            .filter(|e| e.event.kind == "login_failed")
            .count();
        assert_eq!(failed, checked);
        server.stop().await;
    }
}

#[tokio::test]
async fn guessing_tokens_at_userinfo_is_limited_per_address_rfc6585_4() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start_with(config_with(
        &db,
        &[("TESSERA_RATE_LIMIT_ADDRESS_PER_SEC", "3")],
    ))
    .await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let res = http()
            .get(server.url("/userinfo"))
            .bearer_auth(format!("tsa_guess{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            assert_rate_limited(429, res.headers(), "address");
        }
    }
    assert_eq!(&statuses[..3], [401, 401, 401]);
    assert_eq!(statuses[4], 429, "{statuses:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_stranger_cannot_keep_a_user_out_of_her_own_browser_asvs_6_3_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let web = server.confidential_client("web").await;
        // Ada signs in once in her browser: it becomes a known device for "ada".
        let hers = server.browser();
        let page = hers.get(&AuthorizeUrl::new(&web).path()).await;
        assert_eq!(hers.login(&page, "ada", PASSWORD).await.status, 200);
        // A stranger fails for her name until the wait starts.
        for _ in 0..6 {
            assert_eq!(try_login(&server, &web, "ada", "guess").await, 401);
        }
        assert_eq!(try_login(&server, &web, "ada", PASSWORD).await, 429);
        // In her own browser the per-username wait does not apply.
        let page = hers
            .get(&AuthorizeUrl::new(&web).set("prompt", "login").path())
            .await;
        let res = hers.login(&page, "ada", PASSWORD).await;
        assert_eq!(res.status, 200, "{}: {}", db.label, res.body);
        // The cookie is bound to the name: for another name it proves nothing.
        server.user("bob").await;
        for _ in 0..6 {
            assert_eq!(try_login(&server, &web, "bob", "guess").await, 401);
        }
        let page = hers
            .get(&AuthorizeUrl::new(&web).set("prompt", "login").path())
            .await;
        assert_eq!(hers.login(&page, "bob", PASSWORD).await.status, 429);
        server.stop().await;
    }
}

/// `n` wrong passwords for "ada", sent at once from one browser (its clones share the cookie
/// jar, so every attempt carries the CSRF cookie of the one login page).
async fn wrong_logins_at_once(server: &TestServer, n: usize) -> Vec<reqwest::Response> {
    logins_at_once(server, n, "wrong password").await
}

/// `n` sign-ins as "ada" with `password`, sent at once from one browser.
async fn logins_at_once(server: &TestServer, n: usize, password: &str) -> Vec<reqwest::Response> {
    let web = server.confidential_client("web").await;
    let browser = server.browser();
    let page = browser.get(&AuthorizeUrl::new(&web).path()).await;
    let (csrf, query) = (page.input("csrf_token"), page.input("authorize_query"));
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..n {
        let form = [
            ("username", "ada".to_owned()),
            ("password", password.to_owned()),
            ("csrf_token", csrf.clone()),
            ("authorize_query", query.clone()),
        ];
        let request = browser.http.post(server.url("/login")).form(&form);
        attempts.spawn(async move { request.send().await.unwrap() });
    }
    attempts.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_client_secret_stops_working_within_the_client_cache_bound() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let mut gw = gateway(&server).await;
        let form = [("token", "tsa_anything")];
        assert_eq!(
            server.token_like("/introspect", &gw, &form).await.status,
            200
        );
        let rotated = db
            .tessera(&["client", "rotate-secret", "gateway", "--json"])
            .json();
        tokio::time::sleep(
            tessera::store::client_cache::MAX_AGE + std::time::Duration::from_millis(100),
        )
        .await;
        let old = server.token_like("/introspect", &gw, &form).await;
        assert_eq!(old.status, 401, "{}: the old secret is refused", db.label);
        gw.secret = rotated["client_secret"].as_str().map(str::to_owned);
        assert_eq!(
            server.token_like("/introspect", &gw, &form).await.status,
            200
        );
        server.stop().await;
    }
}

/// Issue 14: a password hash made under weaker argon2 parameters than the configured ones
/// (here 7168 KiB × 4 against the tests' 7168 KiB × 5) is replaced at the next successful
/// sign-in, the person stays signed in and can sign in again, and a wrong password upgrades
/// nothing. OWASP Password Storage Cheat Sheet, "Upgrading legacy hashes".
#[tokio::test]
async fn a_password_hash_under_weaker_argon2_parameters_is_upgraded_at_sign_in() {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let web = app(&server, "web", false).await;
        let mut ada = server.user("ada").await;
        let weak = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(7168, 4, 1, None).unwrap(),
        )
        .hash_password(
            crate::support::flow::PASSWORD.as_bytes(),
            &SaltString::generate(&mut OsRng),
        )
        .unwrap()
        .to_string();
        ada.password_hash = Some(weak.clone());
        let audit =
            tessera::audit::AuditEvent::new(tessera::audit::AuditKind::UserUpdated, "test", 0);
        server
            .state
            .store
            .update_account(&ada, &audit)
            .await
            .unwrap();
        let stored = || async {
            let a = server.state.store.account(&ada.id).await.unwrap().unwrap();
            a.password_hash.unwrap()
        };

        // A wrong password: nothing changes.
        let browser = server.browser();
        let page = browser.get(&AuthorizeUrl::new(&web).path()).await;
        let refused = browser.login(&page, "ada", "not the password").await;
        assert_eq!(refused.status, 401, "{}", db.label);
        assert_eq!(stored().await, weak, "{}", db.label);

        let (_, tokens) = signed_in(&server, &web).await;
        assert!(tokens["access_token"].is_string());
        let upgraded = stored().await;
        assert!(
            upgraded.contains("m=7168,t=5,p=1"),
            "{}: {upgraded}",
            db.label
        );
        last_event(&server, "user_password_rehashed").await;
        // The same password still works, and is not hashed again.
        signed_in(&server, &web).await;
        assert_eq!(stored().await, upgraded, "{}", db.label);
        server.stop().await;
    }
}
