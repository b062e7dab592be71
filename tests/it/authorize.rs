//! The authorization endpoint, login and consent, as a browser sees them: RFC 6749 §4.1,
//! RFC 7636, RFC 9207, RFC 9700, OIDC Core §3.1.2.

use crate::support::flow::{AuthorizeUrl, Pkce, PASSWORD, REDIRECT};
use crate::support::{TestDb, TestServer};

const ISSUER: &str = "http://127.0.0.1:8080";

async fn server() -> (TestDb, TestServer) {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    (db, server)
}

#[tokio::test]
async fn authorize_completes_login_and_consent_and_redirects_with_code_state_and_iss_rfc9207() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let client = server.confidential_client("web").await;
        server.user("ada").await;
        let browser = server.browser();
        let url = AuthorizeUrl::new(&client).pkce(&Pkce::new()).path();

        let login = browser.get(&url).await;
        assert_eq!(login.status, 200, "{}", db.label);
        assert!(
            login.body.contains("App web"),
            "login page names the application"
        );
        assert!(
            login.body.contains("name=\"username\"") && login.body.contains("name=\"password\"")
        );

        // The login form's answer is the consent page itself: no round trip back to
        // /authorize (decision 0050).
        let consent = browser.login(&login, "ada", PASSWORD).await;
        assert_eq!(consent.status, 200, "{}", db.label);
        assert!(
            consent.body.contains("value=\"approve\"") && consent.body.contains("value=\"deny\"")
        );
        assert!(
            consent.body.contains("Know who you are"),
            "scopes in plain words"
        );

        // The answer to the consent form carries the code: no round trip back to
        // /authorize; 303, since it answers a POST (RFC 9700 §4.12).
        let done = browser.consent(&consent, "approve").await;
        assert_eq!(done.status, 303, "{}", db.label);
        assert!(done.location().starts_with(&format!("{REDIRECT}?")));
        let params = done.redirect_params();
        assert!(params["code"].starts_with("tsc_"));
        assert_eq!(params["state"], "st-123");
        assert_eq!(params["iss"], ISSUER);
        server.stop().await;
    }
}

#[tokio::test]
async fn authorize_renders_page_for_unknown_client_rfc6749_4_1_2_1() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    for url in [
        AuthorizeUrl::new(&client).set("client_id", "nope").path(),
        AuthorizeUrl::new(&client).remove("client_id").path(),
        AuthorizeUrl::new(&client).add("client_id", "web").path(),
    ] {
        let page = server.browser().get(&url).await;
        assert_eq!(page.status, 400, "{url}");
        assert!(page.header("location").is_none(), "never a redirect: {url}");
        assert!(page
            .header("content-type")
            .unwrap()
            .starts_with("text/html"));
    }
}

#[tokio::test]
async fn authorize_renders_page_for_unregistered_redirect_uri_rfc6749_4_1_2_1() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    for bad in [
        "https://evil.example/cb",
        "https://app.example/cb/",
        "https://app.example:443/cb",
        "https://app.example/cb?x=1",
        "https://APP.example/cb",
    ] {
        let page = server
            .browser()
            .get(&AuthorizeUrl::new(&client).set("redirect_uri", bad).path())
            .await;
        assert_eq!(page.status, 400, "{bad}");
        assert!(
            page.header("location").is_none(),
            "never redirects to {bad}"
        );
    }
    // Two registered URIs: omitting redirect_uri is ambiguous, so it is an error page too.
    let page = server
        .browser()
        .get(&AuthorizeUrl::new(&client).remove("redirect_uri").path())
        .await;
    assert_eq!(page.status, 400);
    assert!(page.header("location").is_none());
    let page = server
        .browser()
        .get(
            &AuthorizeUrl::new(&client)
                .add("redirect_uri", REDIRECT)
                .path(),
        )
        .await;
    assert_eq!(
        page.status, 400,
        "a repeated redirect_uri cannot be trusted"
    );
}

#[tokio::test]
async fn authorize_redirects_errors_with_state_and_iss_once_the_redirect_is_verified_rfc6749_4_1_2_1(
) {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    let cases: Vec<(AuthorizeUrl, &str)> = vec![
        (
            AuthorizeUrl::new(&client).set("scope", "openid admin"),
            "invalid_scope",
        ),
        (
            AuthorizeUrl::new(&client).set("scope", "openid  profile"),
            "invalid_scope",
        ),
        (AuthorizeUrl::new(&client).remove("scope"), "invalid_scope"),
        (
            AuthorizeUrl::new(&client).set("response_type", "token"),
            "unsupported_response_type",
        ),
        (
            AuthorizeUrl::new(&client).remove("response_type"),
            "invalid_request",
        ),
        (
            AuthorizeUrl::new(&client).add("scope", "openid"),
            "invalid_request",
        ),
        (
            AuthorizeUrl::new(&client).set("prompt", "none login"),
            "invalid_request",
        ),
        (
            AuthorizeUrl::new(&client).set("prompt", "bogus"),
            "invalid_request",
        ),
        (
            AuthorizeUrl::new(&client).set("max_age", "-1"),
            "invalid_request",
        ),
        (
            AuthorizeUrl::new(&client).set("response_mode", "fragment"),
            "invalid_request",
        ),
        (
            AuthorizeUrl::new(&client).set("request", "eyJhbGciOiJub25lIn0.e30."),
            "request_not_supported",
        ),
        (
            AuthorizeUrl::new(&client).set("request_uri", "https://app.example/r"),
            "request_uri_not_supported",
        ),
    ];
    for (url, error) in cases {
        let res = server.browser().get(&url.path()).await;
        assert_eq!(res.status, 302, "{}", url.path());
        assert!(res.location().starts_with(REDIRECT));
        let p = res.redirect_params();
        assert_eq!(p["error"], error, "{}", url.path());
        assert!(!p["error_description"].is_empty());
        assert_eq!(p["state"], "st-123");
        assert_eq!(p["iss"], ISSUER);
        assert!(!p.contains_key("code"));
    }
}

#[tokio::test]
async fn authorize_ignores_unknown_parameters_rfc6749_3_1() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    let url = AuthorizeUrl::new(&client)
        .add("extra", "foobar")
        .add("extra", "again")
        .path();
    let page = server.browser().get(&url).await;
    assert_eq!(page.status, 200, "login page, not an error: {}", page.body);
}

#[tokio::test]
async fn authorize_requires_s256_pkce_for_public_clients_rfc9700_2_1_1() {
    let (_db, server) = server().await;
    let public = server.public_client("spa").await;
    let pkce = Pkce::new();
    let cases: Vec<(AuthorizeUrl, &str)> = vec![
        (
            AuthorizeUrl::new(&public).without_pkce(),
            "code_challenge is required",
        ),
        (
            AuthorizeUrl::new(&public)
                .pkce(&pkce)
                .set("code_challenge_method", "plain"),
            "S256",
        ),
        (
            AuthorizeUrl::new(&public)
                .without_pkce()
                .set("code_challenge", &pkce.challenge),
            "S256",
        ),
        (
            AuthorizeUrl::new(&public)
                .pkce(&pkce)
                .set("code_challenge", "short"),
            "43 characters",
        ),
    ];
    for (url, why) in cases {
        let res = server.browser().get(&url.path()).await;
        let p = res.redirect_params();
        assert_eq!(p["error"], "invalid_request", "{}", url.path());
        assert!(
            p["error_description"].contains(why),
            "{:?}",
            p["error_description"]
        );
    }
    // Confidential clients registered with --require-pkce are held to the same rule.
    let strict = server
        .client_with("strict", false, |c| c.require_pkce = true)
        .await;
    let res = server
        .browser()
        .get(&AuthorizeUrl::new(&strict).without_pkce().path())
        .await;
    assert_eq!(res.redirect_params()["error"], "invalid_request");
}

#[tokio::test]
async fn authorize_requires_pkce_from_every_client_by_default_rfc9700_2_1_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        // As `client create` registers it, with no PKCE option at all.
        let web = server.cli_client(&db, &["--id", "web"]).await;
        assert!(web.record.require_pkce, "{}", db.label);
        let res = server
            .browser()
            .get(
                &AuthorizeUrl::new(&web)
                    .without_pkce()
                    .set("nonce", "n-1")
                    .path(),
            )
            .await;
        let p = res.redirect_params();
        assert_eq!(p["error"], "invalid_request", "{}", db.label);
        assert!(p["error_description"].contains("code_challenge is required"));
        let page = server.browser().get(&AuthorizeUrl::new(&web).path()).await;
        assert_eq!(page.status, 200, "with PKCE: the login page");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_pkce_opt_out_needs_an_openid_nonce_rfc9700_2_1_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let legacy = server
            .cli_client(&db, &["--id", "legacy", "--pkce-optional"])
            .await;
        assert!(!legacy.record.require_pkce);
        // The opt-out is in the audit trail.
        let created = server
            .state
            .store
            .recent_audit(1)
            .await
            .unwrap()
            .remove(0)
            .event;
        assert_eq!(created.kind, "client_created");
        assert_eq!(created.details["require_pkce"], false, "{}", db.label);
        let no_pkce = AuthorizeUrl::new(&legacy).without_pkce();
        for url in [
            no_pkce.clone(),
            no_pkce.clone().set("nonce", "n-1").set("scope", "profile"),
        ] {
            let res = server.browser().get(&url.path()).await;
            assert_eq!(res.redirect_params()["error"], "invalid_request");
        }
        let res = server
            .browser()
            .get(&no_pkce.set("nonce", "n-1").path())
            .await;
        assert_eq!(
            res.status, 200,
            "OpenID nonce instead of PKCE: the login page"
        );
        // A public client can never opt out.
        db.tessera(&[
            "client",
            "create",
            "--id",
            "spa",
            "--name",
            "SPA",
            "--public",
            "--pkce-optional",
            "--redirect-uri",
            REDIRECT,
        ])
        .fails_with("a public client always requires PKCE");
        server.stop().await;
    }
}

#[tokio::test]
async fn authorize_prompt_none_never_shows_a_page_oidc_3_1_2_6() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    server.user("ada").await;
    let browser = server.browser();
    let none = AuthorizeUrl::new(&client).set("prompt", "none");
    let res = browser.get(&none.path()).await;
    assert_eq!(res.status, 302);
    assert_eq!(res.redirect_params()["error"], "login_required");

    // Signed in but no consent yet: consent_required, not a page.
    let login = browser.get(&AuthorizeUrl::new(&client).path()).await;
    browser.login(&login, "ada", PASSWORD).await;
    let res = browser.get(&none.path()).await;
    assert_eq!(res.redirect_params()["error"], "consent_required");
    assert_eq!(res.redirect_params()["iss"], ISSUER);
}

#[tokio::test]
async fn authorize_remembers_consent_and_session_then_issues_directly() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    server.user("ada").await;
    let browser = server.browser();
    let first = browser
        .authorize_through(&AuthorizeUrl::new(&client).path(), "ada")
        .await;
    assert!(first.redirect_params().contains_key("code"));
    let again = browser
        .get(&AuthorizeUrl::new(&client).set("prompt", "none").path())
        .await;
    assert!(
        again.redirect_params().contains_key("code"),
        "{:?}",
        again.redirect_params()
    );
    // A wider scope than consented asks again.
    let wider = browser
        .get(
            &AuthorizeUrl::new(&client)
                .set("scope", "openid profile email")
                .path(),
        )
        .await;
    assert_eq!(wider.status, 200);
    assert!(
        wider.body.contains("value=\"approve\""),
        "consent page for the new scope"
    );
    // prompt=consent asks even though consent was given.
    let forced = browser
        .get(&AuthorizeUrl::new(&client).set("prompt", "consent").path())
        .await;
    assert!(forced.body.contains("value=\"approve\""));
}

#[tokio::test]
async fn authorize_skips_consent_for_first_party_clients() {
    let (_db, server) = server().await;
    let client = server
        .client_with("portal", false, |c| c.first_party = true)
        .await;
    server.user("ada").await;
    let browser = server.browser();
    let login = browser.get(&AuthorizeUrl::new(&client).path()).await;
    // No consent to ask for: the login form's answer carries the code, by 303 since it
    // answers a POST (RFC 9700 §4.12).
    let done = browser.login(&login, "ada", PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(done.location().starts_with(&format!("{REDIRECT}?")));
    assert!(done.redirect_params().contains_key("code"));
    // The session cookie came with that redirect: the next request needs no sign-in.
    let silent = browser
        .get(&AuthorizeUrl::new(&client).set("prompt", "none").path())
        .await;
    assert_eq!(silent.status, 302, "{}", silent.body);
    assert!(silent.redirect_params().contains_key("code"));
}

/// A sign-in reads what the user consented to before (on both stores): a request it covers
/// gets the code in the login form's answer; one asking for more gets the consent page.
#[tokio::test]
async fn a_sign_in_issues_at_once_what_consent_given_before_covers_oidc_3_1_2_4() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let client = server.confidential_client("web").await;
        server.user("ada").await;
        server
            .browser()
            .authorize_through(&AuthorizeUrl::new(&client).path(), "ada")
            .await;
        // Another browser, so a sign-in again.
        let browser = server.browser();
        let login = browser.get(&AuthorizeUrl::new(&client).path()).await;
        let done = browser.login(&login, "ada", PASSWORD).await;
        assert_eq!(done.status, 303, "{}: {}", db.label, done.body);
        assert!(done.location().starts_with(&format!("{REDIRECT}?")));
        assert!(done.redirect_params().contains_key("code"));
        let browser = server.browser();
        let wider = AuthorizeUrl::new(&client).set("scope", "openid profile email");
        let login = browser.get(&wider.path()).await;
        let consent = browser.login(&login, "ada", PASSWORD).await;
        assert_eq!(consent.status, 200, "{}", db.label);
        assert!(
            consent.body.contains("name=\"decision\""),
            "{}",
            consent.body
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn authorize_prompt_login_forces_a_new_login_oidc_3_1_2_1() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    server.user("ada").await;
    let browser = server.browser();
    browser
        .authorize_through(&AuthorizeUrl::new(&client).path(), "ada")
        .await;
    let page = browser
        .get(&AuthorizeUrl::new(&client).set("prompt", "login").path())
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("name=\"password\""),
        "login page despite the session"
    );
    // After logging in again the request goes on, without asking for a login once more:
    // consent was given before, so the code comes with the login form's answer.
    let done = browser.login(&page, "ada", PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(done.location().starts_with(&format!("{REDIRECT}?")));
    assert!(done.redirect_params().contains_key("code"));
}

#[tokio::test]
async fn authorize_max_age_exceeded_forces_login_oidc_3_1_2_1() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    server.user("ada").await;
    let browser = server.browser();
    browser
        .authorize_through(&AuthorizeUrl::new(&client).path(), "ada")
        .await;
    let url = AuthorizeUrl::new(&client).set("max_age", "300").path();
    let fresh = browser.get(&url).await;
    assert_eq!(fresh.status, 302, "session younger than max_age: no login");
    server.state.clock.advance(301);
    let stale = browser.get(&url).await;
    assert_eq!(stale.status, 200);
    assert!(
        stale.body.contains("name=\"password\""),
        "login page once max_age has passed"
    );
    let none = browser
        .get(
            &AuthorizeUrl::new(&client)
                .set("max_age", "300")
                .set("prompt", "none")
                .path(),
        )
        .await;
    assert_eq!(none.redirect_params()["error"], "login_required");
}

#[tokio::test]
async fn consent_deny_redirects_access_denied_with_state_and_iss_rfc6749_4_1_2_1() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    server.user("ada").await;
    let browser = server.browser();
    let login = browser.get(&AuthorizeUrl::new(&client).path()).await;
    let consent = browser.login(&login, "ada", PASSWORD).await;
    let denied = browser.consent(&consent, "deny").await;
    assert_eq!(denied.status, 303);
    let p = denied.redirect_params();
    assert_eq!(p["error"], "access_denied");
    assert_eq!(p["state"], "st-123");
    assert_eq!(p["iss"], ISSUER);
    assert!(!p.contains_key("code"));
    let kinds = crate::support::audit_kinds(server.state.store.as_ref(), 5).await;
    assert_eq!(kinds[0], "consent_denied");
}

/// RFC 9700 §4.12: a redirect that answers a form post must not be a 307 (which would resend
/// the form, to the client). An approval answers with the code itself, by 303, and the code
/// is good at the token endpoint.
#[tokio::test]
async fn consent_approval_answers_with_the_code_by_303_never_307_rfc9700_4_12() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    server.user("ada").await;
    let browser = server.browser();
    let pkce = Pkce::new();
    let login = browser
        .get(&AuthorizeUrl::new(&client).pkce(&pkce).path())
        .await;
    let consent = browser.login(&login, "ada", PASSWORD).await;
    let approved = browser.consent(&consent, "approve").await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    assert!(approved.location().starts_with(&format!("{REDIRECT}?")));
    let code = approved.redirect_params()["code"].clone();
    let res = server.redeem(&client, &code, &pkce).await;
    assert_eq!(res.status, 200, "{}", res.body);
}

/// An approval whose session ended after the consent page was shown (a sign-out) or whose
/// user was disabled meanwhile issues nothing: the browser goes
/// back to `/authorize`, which asks for a sign-in (OIDC Core §3.1.2.3), on both stores.
#[tokio::test]
async fn consent_approval_after_the_session_ended_issues_nothing_oidc_3_1_2_3() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let client = server.confidential_client("web").await;
        let ada = server.user("ada").await;
        for ending in ["signed out", "disabled"] {
            let browser = server.browser();
            let login = browser.get(&AuthorizeUrl::new(&client).path()).await;
            let consent = browser.login(&login, "ada", PASSWORD).await;
            assert!(consent.body.contains("decision"), "{}", consent.body);
            match ending {
                "signed out" => {
                    db.rows("delete from session").await;
                }
                _ => server.disable_user(&ada.id).await,
            }
            let res = browser.consent(&consent, "approve").await;
            assert_eq!(res.status, 303, "{}: {ending}", db.label);
            assert!(
                res.location().starts_with("/authorize?"),
                "{}: {ending}: {}",
                db.label,
                res.location()
            );
            let written = db
                .rows("select (select count(*) from authorization_code) + (select count(*) from consent)")
                .await;
            assert_eq!(written, [[Some("0".to_owned())]], "{}: {ending}", db.label);
            let again = browser.get(res.location()).await;
            assert!(
                again.body.contains("name=\"password\""),
                "{}: {ending}",
                db.label
            );
        }
        server.stop().await;
    }
}

/// Decision 0055: the consent form claims the session it was shown for, and an approval
/// writes the code with it unread. The claim the page makes is exactly the stored session.
/// A claim the store does not hold (a stronger `amr`, a later or impossible `auth_time`
/// against `max_age`, another `sid`) or one that is not a claim at all never reaches a
/// token: the approval reads the session, and the code and the ID token carry the sign-in
/// that happened. A claim for another user (forged, or another browser's real one) sends
/// the browser back to `/authorize` with nothing stored: the page was not shown to whoever
/// is signed in. On both stores.
#[tokio::test]
async fn a_consent_form_claiming_another_sign_in_issues_only_what_the_session_holds() {
    use base64::Engine;
    use serde_json::{json, Value};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let decode =
        |value: String| -> Value { serde_json::from_slice(&b64.decode(value).unwrap()).unwrap() };
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let client = server.confidential_client("web").await;
        let ada = server.user("ada").await;
        let bob = server.user("bob").await;
        let url = |pkce: &Pkce| AuthorizeUrl::new(&client).pkce(pkce).set("max_age", "3600");
        // Bob's real claim, from his own consent page in his own browser.
        let bobs = server.browser();
        let login = bobs.get(&url(&Pkce::new()).path()).await;
        let bobs_claim = decode(bobs.login(&login, "bob", PASSWORD).await.input("signed_in"));
        // What each forgery sets in the claim (`""`: the whole claim).
        let forgeries = [
            ("as is", "", None),
            ("another user", "account_id", Some(json!(bob.id))),
            ("another browser's claim", "", Some(bobs_claim)),
            ("stronger amr", "amr", Some(json!(["pwd", "hwk"]))),
            ("later auth_time", "auth_time", Some(json!(i64::MAX))),
            ("impossible auth_time", "auth_time", Some(json!(i64::MIN))),
            ("another sid", "sid", Some(json!("someone-else"))),
            ("no sid", "sid", Some(json!(null))),
            ("not a claim", "", Some(json!("x"))),
        ];
        let bobs_events = format!(
            "select count(*) from audit_event where account_id = '{}'",
            bob.id
        );
        let named_bob = db.rows(&bobs_events).await;
        let adas_session = format!(
            "select account_id, auth_time, amr, created_at, expires_at, sid from session \
             where account_id = '{}'",
            ada.id
        );
        for (what, field, forged) in &forgeries {
            db.rows("delete from consent").await;
            let browser = server.browser();
            let pkce = Pkce::new();
            let login = browser.get(&url(&pkce).path()).await;
            let consent = browser.login(&login, "ada", PASSWORD).await;
            let mut claim = decode(consent.input("signed_in"));
            let stored = db.rows(&adas_session).await;
            let [row] = stored.as_slice() else {
                panic!("{}: {what}: one session: {stored:?}", db.label)
            };
            let text = |i: usize| row[i].clone().unwrap_or_default();
            let number = |i: usize| json!(text(i).parse::<i64>().unwrap());
            // The page claims the stored session, value for value, as the code's write
            // compares them (amr as the stored JSON text).
            assert_eq!(
                (
                    claim["account_id"].clone(),
                    claim["auth_time"].clone(),
                    serde_json::to_string(&claim["amr"]).unwrap(),
                    claim["created_at"].clone(),
                    claim["expires_at"].clone(),
                    claim["sid"].clone(),
                ),
                (
                    json!(text(0)),
                    number(1),
                    text(2),
                    number(3),
                    number(4),
                    json!(row[5])
                ),
                "{}: {what}",
                db.label
            );
            match (field, forged) {
                (_, None) => {}
                (&"", Some(whole)) => claim = whole.clone(),
                (field, Some(value)) => claim[*field] = value.clone(),
            }
            let forged = b64.encode(serde_json::to_vec(&claim).unwrap());
            let someone_else = claim
                .get("account_id")
                .is_some_and(|id| *id != json!(ada.id));
            for value in [forged.as_str(), "", "%%%", &"A".repeat(5_000)] {
                let res = browser
                    .post(
                        "/consent",
                        &[
                            ("decision", "approve"),
                            ("csrf_token", &consent.input("csrf_token")),
                            ("authorize_query", &consent.input("authorize_query")),
                            ("signed_in", value),
                        ],
                    )
                    .await;
                assert_eq!(res.status, 303, "{}: {what}: {}", db.label, res.body);
                if someone_else && value == forged {
                    assert!(
                        res.location().starts_with("/authorize?"),
                        "{}: {what}: {}",
                        db.label,
                        res.location()
                    );
                    let consents = db.rows("select count(*) from consent").await;
                    assert_eq!(consents, [[Some("0".to_owned())]], "{}: {what}", db.label);
                    continue;
                }
                let code = res.redirect_params()["code"].clone();
                let tokens = server.redeem(&client, &code, &pkce).await;
                assert_eq!(tokens.status, 200, "{}: {what}: {}", db.label, tokens.body);
                let id_token = tokens.json()["id_token"].as_str().unwrap().to_owned();
                let (claims, _) = server.verify_jwt(&id_token).await;
                assert_eq!(
                    claims.subject(),
                    Some(ada.id.as_str()),
                    "{}: {what}",
                    db.label
                );
                assert_eq!(
                    claims.claim("auth_time"),
                    Some(&number(1)),
                    "{}: {what}",
                    db.label
                );
                assert_eq!(
                    claims.claim("amr"),
                    Some(&serde_json::from_str::<Value>(&text(2)).unwrap()),
                    "{}: {what}",
                    db.label
                );
                assert_eq!(
                    claims.claim("sid"),
                    Some(&json!(row[5])),
                    "{}: {what}",
                    db.label
                );
            }
            let consents = db.rows("select account_id from consent").await;
            assert_eq!(consents, [[Some(ada.id.clone())]], "{}: {what}", db.label);
            // Nothing more was recorded in Bob's name.
            assert_eq!(
                db.rows(&bobs_events).await,
                named_bob,
                "{}: {what}",
                db.label
            );
            db.rows(&format!(
                "delete from session where account_id = '{}'",
                ada.id
            ))
            .await;
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn login_without_valid_csrf_token_is_refused_and_changes_nothing() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    server.user("ada").await;
    let browser = server.browser();
    let login = browser.get(&AuthorizeUrl::new(&client).path()).await;
    let query = login.input("authorize_query");
    for token in ["", "forged"] {
        let res = browser
            .post(
                "/login",
                &[
                    ("username", "ada"),
                    ("password", PASSWORD),
                    ("csrf_token", token),
                    ("authorize_query", &query),
                ],
            )
            .await;
        assert_eq!(res.status, 403, "token {token:?}");
        assert!(res.header("set-cookie").is_none(), "no session was started");
    }
    // Another browser's valid token is not valid here.
    let other = server
        .browser()
        .get(&AuthorizeUrl::new(&client).path())
        .await;
    let res = browser
        .post(
            "/login",
            &[
                ("username", "ada"),
                ("password", PASSWORD),
                ("csrf_token", &other.input("csrf_token")),
                ("authorize_query", &query),
            ],
        )
        .await;
    assert_eq!(res.status, 403);
    let still = browser.get(&AuthorizeUrl::new(&client).path()).await;
    assert!(still.body.contains("name=\"password\""), "still signed out");
    let kinds = crate::support::audit_kinds(server.state.store.as_ref(), 10).await;
    assert!(!kinds.iter().any(|k| k.starts_with("login_")), "{kinds:?}");
}

#[tokio::test]
async fn consent_without_valid_csrf_token_is_refused_and_stores_nothing() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    let ada = server.user("ada").await;
    let browser = server.browser();
    let login = browser.get(&AuthorizeUrl::new(&client).path()).await;
    let consent = browser.login(&login, "ada", PASSWORD).await;
    let res = browser
        .post(
            "/consent",
            &[
                ("decision", "approve"),
                ("csrf_token", "forged"),
                ("authorize_query", &consent.input("authorize_query")),
            ],
        )
        .await;
    assert_eq!(res.status, 403);
    assert_eq!(
        server.state.store.consent(&ada.id, "web").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn login_wrong_password_and_unknown_user_look_the_same_and_are_audited() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    let ada = server.user("ada").await;
    let browser = server.browser();
    let page = browser.get(&AuthorizeUrl::new(&client).path()).await;
    let wrong = browser.login(&page, "ada", "not the password").await;
    let unknown = browser.login(&page, "nobody", PASSWORD).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    let message = |r: &crate::support::flow::Reply| {
        r.body
            .split("role=\"alert\">")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(message(&wrong), message(&unknown));
    assert!(wrong
        .header("set-cookie")
        .is_none_or(|c| !c.contains("tessera_session")));
    let account = server.state.store.account(&ada.id).await.unwrap().unwrap();
    assert_eq!(account.failed_login_count, 1);
    let kinds = crate::support::audit_kinds(server.state.store.as_ref(), 5).await;
    assert_eq!(&kinds[..2], ["login_failed", "login_failed"]);

    // A disabled user gets the same answer, even with the right password.
    let mut disabled = account.clone();
    disabled.disabled = true;
    server
        .state
        .store
        .update_account(
            &disabled,
            &tessera::audit::AuditEvent::new(tessera::audit::AuditKind::UserDisabled, "test", 0),
        )
        .await
        .unwrap();
    let res = browser.login(&page, "ada", PASSWORD).await;
    assert_eq!(res.status, 401);
    assert_eq!(message(&res), message(&wrong));
}

#[tokio::test]
async fn login_sets_a_new_httponly_samesite_session_cookie_each_time() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    server.user("ada").await;
    let browser = server.browser();
    let mut values = Vec::new();
    for _ in 0..2 {
        let page = browser
            .get(&AuthorizeUrl::new(&client).set("prompt", "login").path())
            .await;
        let res = browser.login(&page, "ada", PASSWORD).await;
        let cookie = res
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("tessera_session="))
            .unwrap();
        assert!(
            cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Lax")
                && cookie.contains("Path=/"),
            "{cookie}"
        );
        assert!(!cookie.contains("Secure"), "http issuer: no Secure flag");
        values.push(cookie.split(';').next().unwrap().to_owned());
    }
    assert_ne!(values[0], values[1], "a new session value at every login");
}

#[tokio::test]
async fn html_pages_carry_the_security_headers() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    let page = server
        .browser()
        .get(&AuthorizeUrl::new(&client).path())
        .await;
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("form-action 'self' https://app.example"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(!page.body.contains("<script"), "no JavaScript");
    let error = server.browser().get("/authorize?client_id=nope").await;
    assert_eq!(error.header("x-frame-options"), Some("DENY"));
    let css = server.browser().get("/static/tessera.css").await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
}

#[tokio::test]
async fn authorize_accepts_post_like_get_oidc_3_1_2_1() {
    let (_db, server) = server().await;
    let client = server.confidential_client("web").await;
    let browser = server.browser();
    let path = AuthorizeUrl::new(&client).path();
    let query = path.trim_start_matches("/authorize?");
    let res = browser
        .http
        .post(server.url("/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(query.to_owned())
        .send()
        .await
        .unwrap();
    let page = crate::support::flow::Reply::from(res).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"password\""));
}

#[tokio::test]
async fn session_cookie_is_secure_with_host_prefix_under_an_https_issuer() {
    let db = TestDb::sqlite().await;
    let mut env = db.env();
    // As behind a TLS-terminating proxy: the issuer is https, the hop to us is not.
    env.insert("TESSERA_ISSUER".into(), "https://id.example.com".into());
    let config =
        tessera::Config::from_sources(Some(std::path::Path::new("/dev/null")), &env).unwrap();
    let server = TestServer::start_with(config).await;
    let client = server.confidential_client("web").await;
    server.user("ada").await;
    // No cookie jar: a Secure cookie would not be sent back over plain http.
    let http = crate::support::http();
    let page = crate::support::flow::Reply::from(
        http.get(server.url(&AuthorizeUrl::new(&client).path()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let csrf_cookie = page.header("set-cookie").unwrap().to_owned();
    assert!(
        csrf_cookie.starts_with("__Host-tessera_csrf=") && csrf_cookie.contains("; Secure"),
        "{csrf_cookie}"
    );
    let res = http
        .post(server.url("/login"))
        .header("cookie", csrf_cookie.split(';').next().unwrap())
        .form(&[
            ("username", "ada"),
            ("password", PASSWORD),
            ("csrf_token", &page.input("csrf_token")),
            ("authorize_query", &page.input("authorize_query")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "signed in: the consent page");
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok())
        .find(|c| c.contains("tessera_session="))
        .unwrap();
    assert!(
        cookie.starts_with("__Host-tessera_session=tsn_"),
        "{cookie}"
    );
    for attr in ["; Path=/", "; HttpOnly", "; SameSite=Lax", "; Secure"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    assert!(!cookie.contains("Domain="), "{cookie}");
}

/// Writes per whole code flow (authorize with `prompt=consent`, sign-in, consent, token), the
/// invariant docs/benchmarks.md states; a write is one transaction or one single-statement
/// write (`PoolStatus::writes`). Two belong to the sign-in (the login throttle's count, and
/// the session, which takes the attempt back from the throttle once the password is right),
/// then one for the consent with the code and its grant, and one for the code's redemption
/// with the tokens (decisions 0047 and 0053). A change that adds a write must change this
/// number, on purpose.
const WRITES_PER_CODE_FLOW: u64 = 4;

#[tokio::test]
async fn a_whole_code_flow_costs_a_fixed_number_of_writes() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let client = server
            .client_with("web", false, |c| {
                c.scope = "openid profile email offline_access".into();
            })
            .await;
        let url = AuthorizeUrl::new(&client)
            .set("scope", "openid profile email offline_access")
            .set("prompt", "consent");
        let writes = || server.state.store.pool_status().writes;
        let before = writes();
        let tokens = server
            .code_flow(&server.browser(), &client, url, &Pkce::new())
            .await;
        assert!(tokens["refresh_token"].is_string());
        assert_eq!(writes() - before, WRITES_PER_CODE_FLOW, "{}", db.label);
        server.stop().await;
    }
}
