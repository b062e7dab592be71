//! `/account/profile`: a person edits their own standard claims (OIDC Core §5.1, §5.1.1) in a
//! real browser and over HTTP, on every store: what is saved reaches `/userinfo`, what is
//! refused changes nothing, and the e-mail address and phone number stay the operator's.

use serde_json::json;
use tessera::audit::{AuditEvent, AuditKind};
use tessera::store::AccountRecord;

use crate::api_keys::account_sign_in;
use crate::support::browser;
use crate::support::flow::{AuthorizeUrl, Browser, Pkce, Reply, PASSWORD};
use crate::support::{page_headers_missing, TestDb, TestServer};

/// Ada, with an e-mail address and a phone number the operator verified.
async fn ada(server: &TestServer) -> AccountRecord {
    let mut ada = server.user("ada").await;
    ada.claims.email = Some("ada@example.com".into());
    ada.claims.email_verified = Some(true);
    ada.claims.phone_number = Some("+44 20 7946 0000".into());
    ada.claims.phone_number_verified = Some(true);
    let audit = AuditEvent::new(AuditKind::UserUpdated, "test", 0);
    server
        .state
        .store
        .update_account(&ada, &audit)
        .await
        .unwrap();
    ada
}

async fn stored(server: &TestServer, id: &str) -> AccountRecord {
    server.state.store.account(id).await.unwrap().unwrap()
}

async fn audit_count(server: &TestServer) -> usize {
    server.state.store.recent_audit(1_000).await.unwrap().len()
}

/// Signed in on the account page, at the profile form.
async fn profile_form(server: &TestServer) -> (Browser, Reply) {
    let (browser, _) = Browser::with_jar(&server.base);
    account_sign_in(&browser, "ada").await;
    let page = browser.get("/account/profile").await;
    assert_eq!(page.status, 200, "{}", page.body);
    (browser, page)
}

/// Posts `fields` with the page's CSRF token and the version of the claims it shows.
async fn save(browser: &Browser, page: &Reply, fields: &[(&str, &str)]) -> Reply {
    let csrf = page.input("csrf_token");
    let version = page.input("version");
    let mut form = vec![("csrf_token", csrf.as_str()), ("version", version.as_str())];
    form.extend_from_slice(fields);
    browser.post("/account/profile", &form).await
}

#[tokio::test]
async fn a_person_edits_their_profile_on_the_account_page_in_chromium_oidc_5_1() {
    for db in TestDb::all().await {
        let Some(chromium) = browser::Browser::start().await else {
            return;
        };
        let server = TestServer::start(&db).await;
        let ada = ada(&server).await;
        let client = server
            .client_with("web", false, |c| {
                c.scope = "openid profile email address".into()
            })
            .await;

        chromium.goto(&server.url("/account")).await;
        chromium.fill("#username", "ada").await;
        chromium.fill("#password", PASSWORD).await;
        chromium.submit("button[type=submit]").await;
        chromium.submit("a[href=\"/account/profile\"]").await;
        assert_eq!(chromium.text("h1").await, "Your profile", "{}", db.label);
        let email = chromium.text("#email").await;
        assert!(email.contains("ada@example.com"), "{email}");
        assert!(
            chromium.source().await.contains("Your administrator sets"),
            "the e-mail address is shown, not offered for editing"
        );

        let entries = [
            ("#name", "Ada Lovelace"),
            ("#given_name", "Ada"),
            ("#middle_name", "Augusta"),
            ("#family_name", "Lovelace"),
            ("#nickname", "Countess"),
            ("#preferred_username", "ada.lovelace"),
            ("#website", "https://ada.example/"),
            ("#gender", "female"),
            ("#birthdate", "1815-12-10"),
            ("#zoneinfo", "Europe/London"),
            ("#locale", "en-GB"),
            ("#street_address", "12 St James's Square\nSt James's"),
            ("#locality", "London"),
            ("#postal_code", "SW1Y 4JH"),
            ("#country", "United Kingdom"),
        ];
        for (field, value) in entries {
            chromium.fill(field, value).await;
        }
        // A day that does not exist: the form comes back saying so, the entries kept.
        chromium.fill("#birthdate", "1815-02-30").await;
        chromium.submit("form.profile button[type=submit]").await;
        assert_eq!(chromium.text("h1").await, "Your profile");
        let said = chromium.text("#birthdate-error").await;
        assert!(said.starts_with("Birthdate must be YYYY-MM-DD"), "{said}");
        assert!(chromium
            .text("[role=alert]")
            .await
            .contains("was not saved"));
        assert_eq!(chromium.value("#birthdate").await, "1815-02-30");
        assert_eq!(chromium.value("#street_address").await, entries[11].1);
        if db.label == "sqlite" {
            chromium.resize(1000, 3000).await;
            let shot = crate::pages::screenshot_path(&db, "profile.png");
            chromium.screenshot(&shot).await;
            chromium.resize(1000, 900).await;
            assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"));
        }
        chromium.fill("#birthdate", "1815-12-10").await;
        server.state.clock.advance(60);
        let saving = server.state.clock.now();
        chromium.submit("form.profile button[type=submit]").await;
        assert_eq!(chromium.url().await.path(), "/account");
        assert_eq!(
            chromium.text(".notice").await,
            "Your profile was saved.",
            "{}",
            db.label
        );

        // What the person sees when they come back.
        chromium.goto(&server.url("/account/profile")).await;
        for (field, value) in entries {
            assert_eq!(chromium.value(field).await, value, "{field} {}", db.label);
        }
        chromium.close().await;

        // What an application sees, through the code flow and /userinfo.
        let saved = stored(&server, &ada.id).await;
        assert!(saved.updated_at > ada.updated_at, "{}", db.label);
        assert!((saving..=server.state.clock.now()).contains(&saved.updated_at));
        let scope = AuthorizeUrl::new(&client).set("scope", "openid profile address");
        let body = server
            .code_flow(&server.browser(), &client, scope, &Pkce::new())
            .await;
        let token = body["access_token"].as_str().unwrap();
        let info: serde_json::Value = crate::support::http()
            .get(server.url("/userinfo"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let expected = json!({
            "sub": ada.id,
            "name": "Ada Lovelace",
            "given_name": "Ada",
            "middle_name": "Augusta",
            "family_name": "Lovelace",
            "nickname": "Countess",
            "preferred_username": "ada.lovelace",
            "website": "https://ada.example/",
            "gender": "female",
            "birthdate": "1815-12-10",
            "zoneinfo": "Europe/London",
            "locale": "en-GB",
            "updated_at": saved.updated_at,
            "address": {
                "street_address": "12 St James's Square\nSt James's",
                "locality": "London",
                "postal_code": "SW1Y 4JH",
                "country": "United Kingdom",
            },
        });
        assert_eq!(info, expected, "{}", db.label);
        server.stop().await;
    }
}

#[tokio::test]
async fn account_profile_saves_audits_and_removes_emptied_claims_oidc_5_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = ada(&server).await;
        let (browser, page) = profile_form(&server).await;
        assert_eq!(
            page_headers_missing(|name| page.header(name)),
            None,
            "the profile page carries the pages' security headers"
        );
        assert_eq!(page.input("preferred_username"), "");
        assert!(page.body.contains("if empty, “ada”"), "{}", page.body);

        server.state.clock.advance(10);
        let saving = server.state.clock.now();
        let fields = [
            ("name", "Ada Lovelace"),
            ("street_address", "1 Main Street\r\nFlat 2"),
            ("locality", "London"),
        ];
        let res = save(&browser, &page, &fields).await;
        assert_eq!(res.status, 303, "{}: {}", db.label, res.body);
        assert_eq!(res.location(), "/account?profile=saved");
        let account = browser.get(res.location()).await;
        assert!(account.body.contains("Your profile was saved."));
        let saved = stored(&server, &ada.id).await;
        assert_eq!(saved.claims.name.as_deref(), Some("Ada Lovelace"));
        let address = saved.claims.address.clone().unwrap();
        assert_eq!(
            address.street_address.as_deref(),
            Some("1 Main Street\nFlat 2")
        );
        assert_eq!(
            saved.claims.email, ada.claims.email,
            "untouched claims stay"
        );
        assert_eq!(saved.claims.email_verified, Some(true));
        assert!((saving..=server.state.clock.now()).contains(&saved.updated_at));
        assert_eq!(saved.password_hash, ada.password_hash);

        // One event, by the person, from their browser, naming what changed and not to what.
        let event = &server.state.store.recent_audit(1).await.unwrap()[0].event;
        assert_eq!(event.kind, "user_updated", "{}", db.label);
        assert_eq!(event.actor, format!("user:{}", ada.id));
        assert_eq!(event.account_id.as_deref(), Some(ada.id.as_str()));
        assert_eq!(event.source_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            event.details,
            json!({ "claims": ["name", "street_address", "locality"] })
        );
        let events = audit_count(&server).await;

        // The same values again: nothing to save, nothing recorded, `updated_at` stays.
        server.state.clock.advance(10);
        let page = browser.get("/account/profile").await;
        let res = save(&browser, &page, &fields).await;
        assert_eq!(res.location(), "/account?profile=unchanged", "{}", res.body);
        assert_eq!(stored(&server, &ada.id).await, saved, "{}", db.label);
        assert_eq!(audit_count(&server).await, events);

        // An emptied field removes its claim; the address goes with its last part.
        let clearing = server.state.clock.now();
        let page = browser.get("/account/profile").await;
        let res = save(
            &browser,
            &page,
            &[("name", " "), ("street_address", ""), ("locality", "")],
        )
        .await;
        assert_eq!(res.status, 303, "{}", res.body);
        let cleared = stored(&server, &ada.id).await;
        assert_eq!(cleared.claims.name, None, "{}", db.label);
        assert_eq!(cleared.claims.address, None);
        assert!((clearing..=server.state.clock.now()).contains(&cleared.updated_at));
        server.stop().await;
    }
}

#[tokio::test]
async fn account_profile_refuses_invalid_values_with_400_and_writes_nothing_oidc_5_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = ada(&server).await;
        let (browser, page) = profile_form(&server).await;
        let long = "x".repeat(257);
        let cases = [
            (
                "website",
                "javascript:alert(1)",
                "Website is not an http(s) URL",
            ),
            ("picture", "ada.png", "Picture is not an http(s) URL"),
            ("birthdate", "10/12/1815", "Birthdate must be YYYY-MM-DD"),
            ("birthdate", "1815-02-30", "Birthdate must be YYYY-MM-DD"),
            (
                "nickname",
                long.as_str(),
                "Nickname is longer than 256 characters",
            ),
            ("locale", "en GB", "Language is not a language tag"),
            (
                "given_name",
                "Ada\u{7}",
                "Given name contains a control character",
            ),
        ];
        let before = stored(&server, &ada.id).await;
        let events = audit_count(&server).await;
        for (field, value, message) in cases {
            let res = save(&browser, &page, &[("name", "Changed"), (field, value)]).await;
            assert_eq!(res.status, 400, "{field}={value} {}", db.label);
            assert!(res.body.contains(message), "{message}: {}", res.body);
            assert!(res.body.contains("aria-invalid=\"true\""));
            assert_eq!(res.input(field), value, "the entry is kept");
            assert_eq!(res.input("name"), "Changed", "the other entries too");
            assert_eq!(page_headers_missing(|name| res.header(name)), None);
            assert_eq!(
                stored(&server, &ada.id).await,
                before,
                "{field} {}",
                db.label
            );
        }
        assert_eq!(audit_count(&server).await, events, "nothing recorded");
        server.stop().await;
    }
}

#[tokio::test]
async fn account_profile_cannot_change_email_phone_or_their_verification_oidc_5_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = ada(&server).await;
        let (browser, page) = profile_form(&server).await;
        assert!(
            !page.body.contains("name=\"email\"") && !page.body.contains("name=\"phone_number\""),
            "no field offers them"
        );
        let before = stored(&server, &ada.id).await;
        let events = audit_count(&server).await;
        for crafted in [
            ("email", "eve@example.com"),
            ("email", ""),
            ("email_verified", "false"),
            ("phone_number", "+1 555 0100"),
            ("phone_number_verified", "false"),
            ("roles", "admin"),
            ("name", "twice"), // a field sent twice
        ] {
            let res = save(&browser, &page, &[("name", "Eve"), crafted]).await;
            assert_eq!(res.status, 400, "{crafted:?} {}", db.label);
            assert!(res.body.contains("not sent correctly"), "{}", res.body);
            assert_eq!(stored(&server, &ada.id).await, before, "{crafted:?}");
        }
        assert_eq!(audit_count(&server).await, events);
        server.stop().await;
    }
}

#[tokio::test]
async fn account_profile_without_the_csrf_token_or_a_session_changes_nothing_owasp_csrf() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = ada(&server).await;
        let (browser, _) = profile_form(&server).await;
        let before = stored(&server, &ada.id).await;
        for csrf in ["wrong", ""] {
            let res = browser
                .post(
                    "/account/profile",
                    &[("csrf_token", csrf), ("name", "Mallory")],
                )
                .await;
            assert_eq!(res.status, 403, "{csrf:?} {}", db.label);
            assert!(res.body.contains("This form has expired"), "{}", res.body);
        }
        let res = browser
            .post("/account/profile", &[("name", "Mallory")])
            .await;
        assert_eq!(res.status, 403);

        // A browser with a form token but no session is sent to sign in.
        let (stranger, _) = Browser::with_jar(&server.base);
        let form = stranger.get("/account").await;
        let csrf = form.input("csrf_token");
        let res = stranger
            .post(
                "/account/profile",
                &[("csrf_token", &csrf), ("name", "Mallory")],
            )
            .await;
        assert_eq!(res.status, 303, "{}", res.body);
        assert_eq!(res.location(), "/account");
        assert_eq!(
            stranger.get("/account/profile").await.location(),
            "/account"
        );
        assert_eq!(stored(&server, &ada.id).await, before, "{}", db.label);
        server.stop().await;
    }
}

#[tokio::test]
async fn account_profile_filled_before_a_change_elsewhere_is_asked_again_with_409() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = ada(&server).await;
        let (browser, page) = profile_form(&server).await;
        // While the form is open, the operator names her.
        let mut named = stored(&server, &ada.id).await;
        named.claims.name = Some("Ada King".into());
        let audit = AuditEvent::new(AuditKind::UserUpdated, "cli", 0);
        server
            .state
            .store
            .update_account(&named, &audit)
            .await
            .unwrap();
        let events = audit_count(&server).await;

        let res = save(&browser, &page, &[("name", ""), ("nickname", "Countess")]).await;
        assert_eq!(res.status, 409, "{}: {}", db.label, res.body);
        assert!(res.body.contains("changed elsewhere"), "{}", res.body);
        assert_eq!(res.input("nickname"), "Countess", "the entries are kept");
        assert_eq!(stored(&server, &ada.id).await, named, "{}", db.label);
        assert_eq!(audit_count(&server).await, events);

        // Saved from the page that said so, it is the person's considered choice.
        let res = save(&browser, &res, &[("name", ""), ("nickname", "Countess")]).await;
        assert_eq!(res.status, 303, "{}", res.body);
        let saved = stored(&server, &ada.id).await;
        assert_eq!(saved.claims.name, None, "{}", db.label);
        assert_eq!(saved.claims.nickname.as_deref(), Some("Countess"));
        server.stop().await;
    }
}
