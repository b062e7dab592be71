//! The sign-in and consent pages in a real browser (headless Chromium): what a person sees and
//! does, with the browser's own rules (CSP `form-action` on redirects, cookies) in force.
//!
//! SQLite only: these tests are about the pages and the browser; the flows behind them run on
//! every store in `authorize.rs`.

use crate::support::browser::{Browser, ClientApp};
use crate::support::flow::{AuthorizeUrl, Pkce, PASSWORD};
use crate::support::{TestDb, TestServer};

#[tokio::test]
async fn a_person_signs_in_and_consents_in_chromium() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let app = ClientApp::start().await;
    let redirect = app.url("/cb");
    let client = server
        .client_with("web", false, |c| c.redirect_uris = vec![redirect.clone()])
        .await;
    server.user("ada").await;
    let pkce = Pkce::new();
    let authorize = AuthorizeUrl::new(&client)
        .set("redirect_uri", &redirect)
        .pkce(&pkce)
        .path();

    browser.goto(&server.url(&authorize)).await;
    assert!(
        browser.text("h1").await.contains("App web"),
        "the sign-in page names the application"
    );
    browser.fill("#username", "ada").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;

    assert!(
        browser.text(".scopes").await.contains("Know who you are"),
        "the consent page lists the scopes in plain words"
    );
    let shot = db.dir.path().join("consent.png");
    browser.screenshot(&shot).await;
    assert!(std::fs::read(&shot)
        .unwrap()
        .starts_with(b"\x89PNG\r\n\x1a\n"));
    browser.click("button[value=approve]").await;

    let landed = browser.wait_for_url(&format!("{redirect}?")).await;
    assert!(
        browser.source().await.contains("Back at the app."),
        "the browser followed the redirect to the application"
    );
    let params: std::collections::HashMap<String, String> =
        landed.query_pairs().into_owned().collect();
    assert!(params["code"].starts_with("tsc_"), "{landed}");
    assert_eq!(params["state"], "st-123");

    // The code the browser carried back is one the application can redeem.
    let res = server
        .token(
            &client,
            &[
                ("grant_type", "authorization_code"),
                ("code", &params["code"]),
                ("redirect_uri", &redirect),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(res.json()["id_token"].is_string());

    browser.close().await;
    server.stop().await;
}

/// Set `TESSERA_SCREENSHOT_DIR=docs/screenshots` to refresh the documentation's pictures of the
/// account pages from the tests that take them.
pub(crate) fn screenshot_path(db: &TestDb, name: &str) -> std::path::PathBuf {
    match std::env::var_os("TESSERA_SCREENSHOT_DIR") {
        Some(dir) => std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(dir)
            .join(name),
        None => db.dir.path().join(name),
    }
}

#[tokio::test]
async fn a_person_makes_and_revokes_api_keys_on_the_account_page_in_chromium() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    server.user("ada").await;
    let gw = crate::support::flow::gateway(&server).await;

    browser.goto(&server.url("/account")).await;
    assert_eq!(browser.text("h1").await, "Sign in to your account");
    browser.fill("#username", "ada").await;
    browser.fill("#password", PASSWORD).await;
    browser.submit("button[type=submit]").await;
    assert_eq!(browser.text("h1").await, "Your API keys");
    assert!(browser.text(".empty").await.contains("no API keys yet"));

    // The first key: read only, 90 days (the default).
    browser.fill("#label", "deploy script").await;
    browser.click("input[name=scope_write]").await;
    browser.click("input[name=scope_roles]").await;
    browser.submit(".create-key button[type=submit]").await;
    let first = browser.text("#new-key").await;
    assert!(tessera::crypto::api_key::is_well_formed(&first), "{first}");
    assert!(browser
        .text(".new-key")
        .await
        .contains("it will not be shown again"));
    let answer = crate::support::flow::introspect(&server, &gw, &first).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["scope"], "read");

    // The second: every scope, never expires.
    browser.fill("#label", "CI pipeline").await;
    browser.click("#expires_in option[value=never]").await;
    browser.submit(".create-key button[type=submit]").await;
    let second = browser.text("#new-key").await;
    assert_ne!(first, second);
    let listed = browser.text(".keys").await;
    assert!(
        listed.contains("deploy script") && listed.contains("CI pipeline"),
        "{listed}"
    );
    assert!(
        !listed.contains(&first) && !listed.contains(&second),
        "keys are shown once"
    );
    // The list as the person sees it afterwards: both keys, the first one used.
    browser.goto(&server.url("/account")).await;
    browser.resize(1000, 1380).await;
    let shot = screenshot_path(&db, "account.png");
    browser.screenshot(&shot).await;
    browser.resize(1000, 900).await;
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"));

    // Revoke the first, confirming on the page that asks.
    let keys = server.state.store.api_keys(None).await.unwrap();
    let id = &keys.iter().find(|k| k.label == "deploy script").unwrap().id;
    browser
        .submit(&format!("li[data-key-id=\"{id}\"] button.danger"))
        .await;
    assert_eq!(browser.text("h1").await, "Revoke this API key?");
    browser.submit("button[value=yes]").await;
    assert_eq!(browser.text("h1").await, "Your API keys");
    let listed = browser.text(".keys").await;
    assert!(
        !listed.contains("deploy script") && listed.contains("CI pipeline"),
        "{listed}"
    );
    assert_eq!(
        crate::support::flow::introspect(&server, &gw, &first).await,
        crate::support::flow::inactive()
    );
    assert_eq!(
        crate::support::flow::introspect(&server, &gw, &second).await["active"],
        true
    );

    browser.close().await;
    server.stop().await;
}
