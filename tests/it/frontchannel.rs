//! OpenID Connect Front-Channel Logout 1.0: the signed-out page loads each relying party's
//! `frontchannel_logout_uri` in an iframe, with `iss` and `sid`; checked over plain HTTP and
//! in headless Chromium against a relying party running inside the test.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::browser::Browser as Chromium;
use crate::support::flow::{AuthorizeUrl, Browser, Pkce, Reply, TestClient, PASSWORD};
use crate::support::{http, page_headers_missing, TestDb, TestServer};

/// Every page's policy; the signed-out page adds to it and changes nothing else.
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                        form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const BYE: &str = "https://web.example/bye";

/// How long the test RP takes to answer its front-channel logout page: long enough that a
/// browser that did not wait for the iframe would be seen leaving too early.
const SLOW_LOGOUT_PAGE: Duration = Duration::from_millis(700);

/// A relying party: records every request (when, path and query) in order and answers each
/// with a small page, so the browser lands somewhere real; `/fcl` answers slowly.
#[derive(Clone)]
struct TestRp {
    base: String,
    requests: Arc<Mutex<Vec<(Instant, url::Url)>>>,
}

impl TestRp {
    async fn start() -> TestRp {
        let requests: Arc<Mutex<Vec<(Instant, url::Url)>>> = Arc::default();
        let seen = Arc::clone(&requests);
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let seen = Arc::clone(&seen);
            async move {
                let url = url::Url::parse(&format!("http://rp{uri}")).unwrap();
                let slow = url.path() == "/fcl";
                seen.lock().unwrap().push((Instant::now(), url));
                if slow {
                    tokio::time::sleep(SLOW_LOGOUT_PAGE).await;
                }
                axum::response::Html("<!doctype html><title>RP</title><p>Relying party.</p>")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestRp {
            base: format!("http://{addr}"),
            requests,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the RP was asked for, leaving out the icon Chromium asks each origin for.
    fn requests(&self) -> Vec<(Instant, url::Url)> {
        let all = self.requests.lock().unwrap().clone();
        all.into_iter()
            .filter(|(_, u)| u.path() != "/favicon.ico")
            .collect()
    }
}

fn query(url: &url::Url) -> Vec<(String, String)> {
    url.query_pairs().into_owned().collect()
}

fn logout_url(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    format!("/logout?{}", s.finish())
}

/// The `src` of each front-channel logout iframe on `page`, unescaped.
fn iframes(page: &Reply) -> Vec<String> {
    page.body
        .split("<iframe class=\"frontchannel-logout\" src=\"")
        .skip(1)
        .map(|rest| {
            let src = rest.split('"').next().unwrap();
            src.replace("&#38;", "&").replace("&amp;", "&")
        })
        .collect()
}

/// The page's CSP split into what every page has (to compare with [`PAGE_CSP`]) and the
/// values of its `frame-src` and `script-src`, if any.
fn csp_parts(page: &Reply) -> (String, Option<String>, Option<String>) {
    let csp = page.header("content-security-policy").unwrap();
    let (mut frames, mut scripts) = (None, None);
    let mut rest = Vec::new();
    for directive in csp.split("; ") {
        if let Some(v) = directive.strip_prefix("frame-src ") {
            frames = Some(v.to_owned());
        } else if let Some(v) = directive.strip_prefix("script-src ") {
            scripts = Some(v.to_owned());
        } else {
            rest.push(directive);
        }
    }
    (rest.join("; "), frames, scripts)
}

async fn sid_of(server: &TestServer, id_token: &str) -> String {
    let (claims, _) = server.verify_jwt(id_token).await;
    claims.claim("sid").unwrap().as_str().unwrap().to_owned()
}

/// "ada" signs in to `web` and `app` (both with a front-channel logout URI) and `plain`
/// (without) in one session; `other` has a URI but is never signed into. Returns the
/// browser, an ID token of `web` and the session's sid.
async fn signed_in_to_three(server: &TestServer) -> (Browser, String, String) {
    server.user("ada").await;
    let web = server
        .client_with("web", false, |c| {
            c.frontchannel_logout_uri = Some("https://web.example/fcl?x=1&y=a%20b".into());
            c.post_logout_redirect_uris = vec![BYE.into()];
        })
        .await;
    let app = server
        .client_with("app", false, |c| {
            c.frontchannel_logout_uri = Some("https://app.example:8443/logout".into());
            c.frontchannel_logout_session_required = true;
        })
        .await;
    let plain = server.client_with("plain", false, |_| {}).await;
    server
        .client_with("other", false, |c| {
            c.frontchannel_logout_uri = Some("https://other.example/fcl".into())
        })
        .await;
    let browser = server.browser();
    let tokens = server
        .code_flow(&browser, &web, AuthorizeUrl::new(&web), &Pkce::new())
        .await;
    for client in [&app, &plain] {
        server
            .code_flow(&browser, client, AuthorizeUrl::new(client), &Pkce::new())
            .await;
    }
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let sid = sid_of(server, &id_token).await;
    (browser, id_token, sid)
}

/// The iframe URLs the session's two clients must get: their own query kept, `iss` and `sid`
/// added, URL-encoded.
fn expected_frames(server: &TestServer, sid: &str) -> Vec<String> {
    let mut tail = url::form_urlencoded::Serializer::new(String::new());
    tail.append_pair("iss", server.state.config.issuer_str());
    tail.append_pair("sid", sid);
    let tail = tail.finish();
    vec![
        format!("https://app.example:8443/logout?{tail}"),
        format!("https://web.example/fcl?x=1&y=a%20b&{tail}"),
    ]
}

#[tokio::test]
async fn frontchannel_signed_out_page_frames_only_the_sessions_clients_frontchannel_logout_2() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let (browser, id_token, sid) = signed_in_to_three(&server).await;
        let page = browser
            .get(&logout_url(&[("id_token_hint", &id_token)]))
            .await;
        assert_eq!(page.status, 200, "{}: {}", db.label, page.body);
        assert_eq!(
            iframes(&page),
            expected_frames(&server, &sid),
            "{}: one iframe per client of the session with a URI, none for plain or other",
            db.label
        );
        assert!(page.body.contains(" hidden></iframe>"), "{}", page.body);
        assert_eq!(page_headers_missing(|h| page.header(h)), None);
        // Front-Channel §2 needs the page to frame them; nothing else is loosened.
        let (rest, frames, scripts) = csp_parts(&page);
        assert_eq!(scripts, None, "{}", db.label);
        assert_eq!(
            frames.as_deref(),
            Some("https://app.example:8443 https://web.example"),
            "{}",
            db.label
        );
        assert_eq!(rest, PAGE_CSP, "{}", db.label);
        assert!(
            !page.body.contains("<script"),
            "no redirect to run: no script"
        );
        // The session is gone, and with it the iframes: the next answer is the plain page.
        let again = browser
            .get(&logout_url(&[("id_token_hint", &id_token)]))
            .await;
        assert_eq!(again.status, 200);
        assert!(iframes(&again).is_empty(), "{}", again.body);
        assert_eq!(again.header("content-security-policy"), Some(PAGE_CSP));
        server.stop().await;
    }
}

#[tokio::test]
async fn frontchannel_page_runs_before_the_post_logout_redirect_frontchannel_logout_2() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let (browser, id_token, sid) = signed_in_to_three(&server).await;
        let page = browser
            .get(&logout_url(&[
                ("id_token_hint", &id_token),
                ("post_logout_redirect_uri", BYE),
                ("state", "s 9&x"),
            ]))
            .await;
        // A redirect would leave before the iframes load: the page comes first.
        assert_eq!(page.status, 200, "{}: {}", db.label, page.body);
        assert!(page.header("location").is_none());
        assert_eq!(iframes(&page), expected_frames(&server, &sid));
        assert!(
            page.body
                .contains(r#"<a id="continue" href="https://web.example/bye?state=s+9%26x">"#),
            "{}",
            page.body
        );
        let script = page
            .body
            .find(r#"<script src="/static/frontchannel-logout.js"></script>"#)
            .expect("the page's script");
        assert!(
            script < page.body.find("<iframe").unwrap(),
            "the script listens before any iframe can load"
        );
        let (rest, frames, scripts) = csp_parts(&page);
        assert_eq!(scripts.as_deref(), Some("'self'"), "no inline script");
        assert_eq!(
            frames.as_deref(),
            Some("https://app.example:8443 https://web.example")
        );
        assert_eq!(rest, PAGE_CSP);

        let js = http()
            .get(server.url("/static/frontchannel-logout.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(js.status(), 200);
        assert_eq!(
            js.headers()["content-type"],
            "text/javascript; charset=utf-8"
        );
        assert!(js.text().await.unwrap().contains("location.replace"));
        server.stop().await;
    }
}

/// RP-Initiated Logout §2: a logout the person confirms ends in the same page.
#[tokio::test]
async fn frontchannel_iframes_follow_a_confirmed_logout_frontchannel_logout_2() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let (browser, _id_token, sid) = signed_in_to_three(&server).await;
        let confirm = browser
            .get(&logout_url(&[
                ("client_id", "web"),
                ("post_logout_redirect_uri", BYE),
            ]))
            .await;
        assert!(
            confirm.body.contains("name=\"confirm\""),
            "{}",
            confirm.body
        );
        assert!(
            iframes(&confirm).is_empty(),
            "nothing before the person confirms"
        );
        assert_eq!(csp_parts(&confirm).1, None);
        let done = browser
            .post(
                "/logout",
                &[
                    ("confirm", "yes"),
                    ("csrf_token", &confirm.input("csrf_token")),
                    ("logout_query", &confirm.input("logout_query")),
                ],
            )
            .await;
        assert_eq!(done.status, 200, "{}: {}", db.label, done.body);
        assert_eq!(iframes(&done), expected_frames(&server, &sid));
        assert!(done
            .body
            .contains(&format!(r#"id="continue" href="{BYE}""#)));
        server.stop().await;
    }
}

#[tokio::test]
async fn clients_register_a_frontchannel_logout_uri_frontchannel_logout_2() {
    for db in TestDb::all().await {
        let create = |id: &'static str, uri: &'static str| {
            [
                "client",
                "create",
                "--id",
                id,
                "--name",
                "RP",
                "--redirect-uri",
                "https://rp.example/cb",
                "http://127.0.0.1:7777/cb",
                "--frontchannel-logout-uri",
                uri,
                "--json",
            ]
        };
        let out = db
            .tessera(&create("rp", "https://rp.example/fcl?x=1"))
            .json();
        assert_eq!(
            out["client"]["frontchannel_logout_uri"],
            "https://rp.example/fcl?x=1"
        );
        assert_eq!(out["client"]["frontchannel_logout_session_required"], false);
        db.tessera(&create("loop", "http://127.0.0.1:7777/fcl"))
            .json();
        for (uri, message) in [
            ("http://rp.example/fcl", "must use https"),
            ("https://rp.example/fcl#x", "must not have a fragment"),
            ("https://u:p@rp.example/fcl", "must not carry credentials"),
            ("/fcl", "is not an absolute URI"),
            // §2: the scheme, host and port of a registered redirect URI.
            ("https://other.example/fcl", "scheme, host and port"),
            ("https://rp.example:8443/fcl", "scheme, host and port"),
            ("http://127.0.0.1:7778/fcl", "scheme, host and port"),
        ] {
            db.tessera(&create("bad", uri)).fails_with(message);
            db.tessera(&create("bad", uri))
                .fails_with("--frontchannel-logout-uri");
        }
        db.tessera(&["client", "show", "bad"])
            .fails_with("client `bad` not found");

        db.tessera(&[
            "client",
            "update",
            "rp",
            "--frontchannel-logout-session-required",
            "true",
            "--json",
        ])
        .json();
        let shown = db.tessera(&["client", "show", "rp", "--json"]).json();
        assert_eq!(shown["frontchannel_logout_session_required"], true);
        // A new redirect URI elsewhere would leave the logout URI on no registered origin.
        db.tessera(&[
            "client",
            "update",
            "rp",
            "--redirect-uri",
            "https://moved.example/cb",
        ])
        .fails_with("scheme, host and port");
        db.tessera(&[
            "client",
            "update",
            "rp",
            "--frontchannel-logout-uri",
            "https://elsewhere.example/fcl",
        ])
        .fails_with("scheme, host and port");
        let unchanged = db.tessera(&["client", "show", "rp", "--json"]).json();
        assert_eq!(unchanged, shown, "{}: nothing written", db.label);
        let text = db.tessera(&["client", "show", "rp"]).stdout();
        assert!(
            text.contains("frontchannel_logout_uri: https://rp.example/fcl?x=1"),
            "{text}"
        );
        db.tessera(&[
            "client",
            "update",
            "rp",
            "--frontchannel-logout-uri",
            "none",
            "--json",
        ])
        .json();
        let shown = db.tessera(&["client", "show", "rp", "--json"]).json();
        assert!(shown["frontchannel_logout_uri"].is_null(), "{shown}");
    }
}

#[tokio::test]
async fn discovery_advertises_frontchannel_logout_with_session_frontchannel_logout_3() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let doc = server.discovery().await;
    assert_eq!(doc["frontchannel_logout_supported"], true);
    assert_eq!(doc["frontchannel_logout_session_supported"], true);
    server.stop().await;
}

/// Signs "ada" in to `client` in Chromium through the real code flow, lands at the RP's
/// redirect URI and redeems the code; returns the ID token.
async fn sign_in_in_chromium(
    server: &TestServer,
    chromium: &Chromium,
    client: &TestClient,
    redirect: &str,
) -> String {
    let pkce = Pkce::new();
    let authorize = AuthorizeUrl::new(client)
        .set("redirect_uri", redirect)
        .pkce(&pkce)
        .path();
    chromium.goto(&server.url(&authorize)).await;
    chromium.fill("#username", "ada").await;
    chromium.fill("#password", PASSWORD).await;
    chromium.click("button[type=submit]").await;
    let landed = chromium.wait_for_url(&format!("{redirect}?")).await;
    let code = landed
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let res = server
        .token(
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.json()["id_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn frontchannel_iframes_carry_iss_and_sid_frontchannel_logout_2() {
    for db in TestDb::all().await {
        let Some(chromium) = Chromium::start().await else {
            return;
        };
        let server = TestServer::start(&db).await;
        let rp = TestRp::start().await;
        let redirect = rp.url("/cb");
        let bye = rp.url("/bye");
        server.user("ada").await;
        let client = server
            .client_with("web", false, |c| {
                c.redirect_uris = vec![redirect.clone()];
                c.post_logout_redirect_uris = vec![bye.clone()];
                c.frontchannel_logout_uri = Some(rp.url("/fcl?x=1"));
                // No consent page: this test is about logout.
                c.first_party = true;
            })
            .await;
        let id_token = sign_in_in_chromium(&server, &chromium, &client, &redirect).await;
        let sid = sid_of(&server, &id_token).await;

        chromium
            .goto(&server.url(&logout_url(&[
                ("id_token_hint", &id_token),
                ("post_logout_redirect_uri", &bye),
                ("state", "s-1"),
            ])))
            .await;
        // The page's script goes on to the RP once the iframe has loaded.
        let landed = chromium.wait_for_url(&format!("{bye}?")).await;
        assert_eq!(query(&landed), [("state".into(), "s-1".into())]);

        let requests = rp.requests();
        let paths: Vec<&str> = requests.iter().map(|(_, u)| u.path()).collect();
        assert_eq!(
            paths,
            ["/cb", "/fcl", "/bye"],
            "{}: the iframe loaded before the browser left",
            db.label
        );
        assert_eq!(
            query(&requests[1].1),
            [
                ("x".into(), "1".into()),
                ("iss".into(), server.state.config.issuer_str().to_owned()),
                ("sid".into(), sid.clone()),
            ],
            "{}",
            db.label
        );
        // The script waited for the iframe's load event, not for its own timeout (5 s).
        let waited = requests[2].0 - requests[1].0;
        assert!(
            waited >= SLOW_LOGOUT_PAGE && waited < Duration::from_secs(4),
            "{}: left {waited:?} after the iframe was requested",
            db.label
        );
        // Signed out at the OP too: a new authorization asks for the password again.
        chromium
            .goto(
                &server.url(
                    &AuthorizeUrl::new(&client)
                        .set("redirect_uri", &redirect)
                        .path(),
                ),
            )
            .await;
        assert!(chromium.source().await.contains("name=\"password\""));
        chromium.close().await;
        server.stop().await;
    }
}
