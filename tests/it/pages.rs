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
