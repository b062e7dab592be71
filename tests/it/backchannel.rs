//! OpenID Connect Back-Channel Logout 1.0: logout tokens POSTed to the relying parties of an
//! ending session, checked by a relying party running inside the test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use crate::support::flow::{AuthorizeUrl, Pkce};
use crate::support::{TestDb, TestServer};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A relying party's back-channel logout endpoint: answers 503 to the first `failures`
/// POSTs, 200 after, and records every `logout_token` with the path it came to.
#[derive(Clone)]
struct TestRp {
    base: String,
    failures: Arc<AtomicUsize>,
    posts: Arc<Mutex<Vec<(String, String)>>>,
}

#[derive(Clone)]
struct RpState {
    failures: Arc<AtomicUsize>,
    posts: Arc<Mutex<Vec<(String, String)>>>,
}

async fn receive(
    State(rp): State<RpState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    assert_eq!(
        headers["content-type"], "application/x-www-form-urlencoded",
        "§2.5: a form POST"
    );
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    rp.posts
        .lock()
        .unwrap()
        .push((uri.path().to_owned(), token));
    let failing = rp
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

impl TestRp {
    async fn start(failures: usize) -> TestRp {
        let state = RpState {
            failures: Arc::new(AtomicUsize::new(failures)),
            posts: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestRp {
            base: format!("http://{addr}"),
            failures: state.failures,
            posts: state.posts,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The POSTs so far, once there are at least `n` (or after `within`).
    async fn posts(&self, n: usize, within: Duration) -> Vec<(String, String)> {
        let until = tokio::time::Instant::now() + within;
        loop {
            let posts = self.posts.lock().unwrap().clone();
            if posts.len() >= n || tokio::time::Instant::now() >= until {
                return posts;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Signs "ada" in to `web` and `app` (both with a back-channel logout URI at `rp`) and `plain`
/// (without) in one browser session; returns the browser, an ID token of `web` and the sid.
async fn signed_in_to_three(
    server: &TestServer,
    rp: &TestRp,
) -> (crate::support::flow::Browser, String, String) {
    server.user("ada").await;
    let web = server
        .client_with("web", false, |c| {
            c.backchannel_logout_uri = Some(rp.url("/web/bcl?x=1"))
        })
        .await;
    let app = server
        .client_with("app", false, |c| {
            c.backchannel_logout_uri = Some(rp.url("/app/bcl"));
            c.backchannel_logout_session_required = true;
            c.id_token_signed_response_alg = "ES256".into();
        })
        .await;
    let plain = server.client_with("plain", false, |_| {}).await;
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
    let (claims, _) = server.verify_jwt(&id_token).await;
    let sid = claims.claim("sid").unwrap().as_str().unwrap().to_owned();
    (browser, id_token, sid)
}

/// Checks a logout token as an RP must (§2.6) and returns it claims.
async fn check_logout_token(
    server: &TestServer,
    token: &str,
    client_id: &str,
    sub: &str,
    sid: &str,
) -> josekit::jwt::JwtPayload {
    let (claims, header) = server.verify_jwt(token).await;
    assert_eq!(
        header.claim("typ").and_then(|t| t.as_str()),
        Some("logout+jwt")
    );
    assert_eq!(claims.issuer(), Some(server.state.config.issuer_str()));
    assert_eq!(claims.audience(), Some(vec![client_id]));
    assert_eq!(claims.subject(), Some(sub));
    assert_eq!(claims.claim("sid").and_then(|s| s.as_str()), Some(sid));
    assert_eq!(
        claims.claim("events"),
        Some(&serde_json::json!({ EVENT: {} }))
    );
    assert!(claims.claim("nonce").is_none(), "§2.4: no nonce");
    assert!(claims.jwt_id().is_some_and(|j| !j.is_empty()));
    let iat = claims.claim("iat").and_then(|v| v.as_i64()).unwrap();
    let exp = claims.claim("exp").and_then(|v| v.as_i64()).unwrap();
    assert_eq!(exp - iat, 120);
    claims
}

#[tokio::test]
async fn logout_token_is_posted_to_each_client_of_the_session_backchannel_logout_2_5() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let rp = TestRp::start(0).await;
        let (browser, id_token, sid) = signed_in_to_three(&server, &rp).await;
        let ada = server
            .state
            .store
            .account_by_username("ada")
            .await
            .unwrap()
            .unwrap();
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("id_token_hint", &id_token);
        let res = browser.get(&format!("/logout?{}", query.finish())).await;
        assert_eq!(res.status, 200, "{}: {}", db.label, res.body);

        let mut posts = rp.posts(2, Duration::from_secs(10)).await;
        posts.sort();
        let paths: Vec<&str> = posts.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["/app/bcl", "/web/bcl"], "{}", db.label);
        let app = check_logout_token(&server, &posts[0].1, "app", &ada.id, &sid).await;
        let web = check_logout_token(&server, &posts[1].1, "web", &ada.id, &sid).await;
        assert_ne!(app.jwt_id(), web.jwt_id(), "each token its own jti");
        let alg = |t: &str| {
            josekit::jwt::decode_header(t)
                .unwrap()
                .claim("alg")
                .cloned()
        };
        assert_eq!(alg(&posts[0].1), Some(serde_json::json!("ES256")));
        assert_eq!(alg(&posts[1].1), Some(serde_json::json!("RS256")));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rp.posts(3, Duration::ZERO).await.len(), 2, "one POST each");
        server.stop().await;
    }
}

#[tokio::test]
async fn logout_token_is_retried_until_the_client_answers_2xx_backchannel_logout_2_8() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let rp = TestRp::start(1).await;
        server.user("ada").await;
        let web = server
            .client_with("web", false, |c| {
                c.backchannel_logout_uri = Some(rp.url("/bcl"))
            })
            .await;
        let browser = server.browser();
        let tokens = server
            .code_flow(&browser, &web, AuthorizeUrl::new(&web), &Pkce::new())
            .await;
        let id_token = tokens["id_token"].as_str().unwrap();
        let (claims, _) = server.verify_jwt(id_token).await;
        let sid = claims.claim("sid").unwrap().as_str().unwrap().to_owned();
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("id_token_hint", id_token);
        let res = browser.get(&format!("/logout?{}", query.finish())).await;
        assert_eq!(res.status, 200, "{}", res.body);

        let posts = rp.posts(2, Duration::from_secs(10)).await;
        assert_eq!(posts.len(), 2, "{}: a 503, then the retry", db.label);
        assert_eq!(posts[0].1, posts[1].1, "the same token again");
        assert_eq!(rp.failures.load(Ordering::SeqCst), 0);
        let sub = claims.subject().unwrap().to_owned();
        check_logout_token(&server, &posts[1].1, "web", &sub, &sid).await;
        server.stop().await;
    }
}

#[tokio::test]
async fn clients_register_a_backchannel_logout_uri_backchannel_logout_2_2() {
    let db = TestDb::sqlite().await;
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
            "--backchannel-logout-uri",
            uri,
            "--json",
        ]
    };
    let out = db.tessera(&create("rp", "https://rp.example/bcl")).json();
    assert_eq!(
        out["client"]["backchannel_logout_uri"],
        "https://rp.example/bcl"
    );
    assert_eq!(out["client"]["backchannel_logout_session_required"], false);
    db.tessera(&create("rp2", "http://rp.example/bcl"))
        .fails_with("must use https");
    db.tessera(&create("rp3", "https://rp.example/bcl#x"))
        .fails_with("fragment");

    db.tessera(&[
        "client",
        "update",
        "rp",
        "--backchannel-logout-session-required",
        "true",
        "--json",
    ])
    .json();
    let shown = db.tessera(&["client", "show", "rp", "--json"]).json();
    assert_eq!(shown["backchannel_logout_session_required"], true);
    assert_eq!(shown["backchannel_logout_uri"], "https://rp.example/bcl");
    db.tessera(&[
        "client",
        "update",
        "rp",
        "--backchannel-logout-uri",
        "none",
        "--json",
    ])
    .json();
    let shown = db.tessera(&["client", "show", "rp", "--json"]).json();
    assert!(shown["backchannel_logout_uri"].is_null(), "{shown}");
}

// Several threads: the CLI process POSTs to the test RP, which must keep serving meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_revoke_sends_logout_tokens_itself_backchannel_logout_2_5() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let rp = TestRp::start(0).await;
    let (_browser, _id_token, sid) = signed_in_to_three(&server, &rp).await;
    let env = db.env();
    let revoke_sid = sid.clone();
    let out = tokio::task::spawn_blocking(move || {
        crate::support::run_binary(&["session", "revoke", &revoke_sid, "--json"], &env, None)
    })
    .await
    .unwrap()
    .json();
    assert_eq!(out["clients_notified"], 2, "{out}");
    let mut posts = rp.posts(2, Duration::from_secs(1)).await;
    posts.sort();
    let ada = server
        .state
        .store
        .account_by_username("ada")
        .await
        .unwrap()
        .unwrap();
    check_logout_token(&server, &posts[0].1, "app", &ada.id, &sid).await;
    check_logout_token(&server, &posts[1].1, "web", &ada.id, &sid).await;
    server.stop().await;
}

/// Back-Channel Logout §2.7: disabling a user ends every session of theirs, and each client
/// the sessions signed into hears of it, from the CLI process that made the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_disable_sends_logout_tokens_for_every_session_backchannel_logout_2_7() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let rp = TestRp::start(0).await;
    let (_browser, _id_token, sid) = signed_in_to_three(&server, &rp).await;
    let env = db.env();
    let out = tokio::task::spawn_blocking(move || {
        crate::support::run_binary(&["user", "disable", "ada", "--json"], &env, None)
    })
    .await
    .unwrap();
    assert!(out.ok(), "{}", out.stderr());
    let mut posts = rp.posts(2, Duration::from_secs(1)).await;
    posts.sort();
    let ada = server
        .state
        .store
        .account_by_username("ada")
        .await
        .unwrap()
        .unwrap();
    assert!(ada.disabled);
    check_logout_token(&server, &posts[0].1, "app", &ada.id, &sid).await;
    check_logout_token(&server, &posts[1].1, "web", &ada.id, &sid).await;
    server.stop().await;
}
