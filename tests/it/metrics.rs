//! Prometheus metrics (issue 14, decision 0021): served on the admin listener only, guarded
//! by a bearer token when one is configured, and moving with traffic.
//!
//! Every server in this test binary shares one process-wide recorder, so figures are sums
//! over all tests running at once: the tests read, make traffic, read again and assert an
//! increase, never an absolute value.

use std::collections::BTreeMap;

use crate::support::flow::{gateway, AuthorizeUrl, Pkce};
use crate::support::{http, run_binary, TestDb, TestServer};

/// The value of the sample `series` (name and labels exactly as rendered), 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse::<f64>().unwrap())
        .next()
        .unwrap_or(0.0)
}

pub async fn scrape(server: &TestServer) -> String {
    let admin = server.admin.as_deref().expect("admin listener on");
    let res = http().get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

#[tokio::test]
async fn public_port_answers_404_for_metrics() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let res = http().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(!res.text().await.unwrap().contains("tessera_"));
    server.stop().await;
}

#[tokio::test]
async fn admin_port_serves_prometheus_text_with_pool_and_hashing_gauges() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let admin = server.admin.clone().unwrap();
        assert_ne!(admin, server.base, "a listener of its own");
        let res = http().get(format!("{admin}/metrics")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{}", db.label);
        assert_eq!(
            res.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = res.text().await.unwrap();
        for line in [
            "# TYPE tessera_logins_total counter",
            "# TYPE tessera_db_pool_connections gauge",
            "# TYPE tessera_password_hash_queue_depth gauge",
        ] {
            assert!(text.contains(line), "{}: no {line} in\n{text}", db.label);
        }
        assert!(sample(&text, "tessera_db_pool_max_connections") >= 1.0);
        // Only /metrics lives there.
        let res = http().get(format!("{admin}/token")).send().await.unwrap();
        assert_eq!(res.status(), 404);
        server.stop().await;
    }
}

/// Memory as the allocator sees it (issue 13): what is live, what it keeps resident, and how
/// much of the live bytes are only the threads' caches. The bench reads them to tell a leak
/// (allocated grows at rest) from memory not given back.
#[tokio::test]
async fn metrics_report_the_allocators_live_and_resident_bytes() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let text = scrape(&server).await;
    for line in [
        "# TYPE tessera_memory_allocated_bytes gauge",
        "# TYPE tessera_memory_allocator_resident_bytes gauge",
        "# TYPE tessera_memory_allocator_thread_cache_bytes gauge",
    ] {
        assert!(text.contains(line), "no {line} in\n{text}");
    }
    let allocated = sample(&text, "tessera_memory_allocated_bytes");
    let resident = sample(&text, "tessera_memory_allocator_resident_bytes");
    // A running server has at least its caches, pools and buffers live: well over 100 KiB.
    assert!(allocated > 100_000.0, "allocated {allocated}");
    assert!(
        resident >= allocated,
        "resident {resident} < allocated {allocated}"
    );
    let cached = sample(&text, "tessera_memory_allocator_thread_cache_bytes");
    assert!(
        (0.0..=allocated).contains(&cached),
        "thread caches {cached}, allocated {allocated}"
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_tokens_failed_logins_and_requests_by_route_template() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let gw = gateway(&server).await;
        let app = server.confidential_client("metrics-app").await;
        server.user("ada").await;
        let before = scrape(&server).await;

        let res = server
            .token(&gw, &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(res.status, 200, "{}", res.body);
        let browser = server.browser();
        let page = browser.get(&AuthorizeUrl::new(&app).path()).await;
        let refused = browser.login(&page, "ada", "not the password").await;
        assert_eq!(refused.status, 401, "{}", refused.body);
        let (hashes_before, cpu_before) = (
            sample(&before, "tessera_password_hashes_total"),
            sample(&before, "tessera_password_hash_cpu_microseconds_total"),
        );
        // A path nobody routes: counted, but never as a label of its own.
        let probe = format!("/probe-{}", uuid::Uuid::new_v4().simple());
        let res = http().get(server.url(&probe)).send().await.unwrap();
        assert_eq!(res.status(), 404);

        let after = scrape(&server).await;
        for (series, by) in [
            (
                r#"tessera_tokens_issued_total{grant_type="client_credentials"}"#,
                1.0,
            ),
            (r#"tessera_logins_total{result="failed"}"#, 1.0),
            (r#"tessera_audit_events_total{kind="login_failed"}"#, 1.0),
            (
                r#"tessera_http_requests_total{route="/token",method="POST",status="200"}"#,
                1.0,
            ),
            (
                r#"tessera_http_requests_total{route="/login",method="POST",status="401"}"#,
                1.0,
            ),
            (
                r#"tessera_http_requests_total{route="unmatched",method="GET",status="404"}"#,
                1.0,
            ),
            (
                r#"tessera_http_request_duration_seconds_count{route="/token",method="POST",status="200"}"#,
                1.0,
            ),
        ] {
            let (was, is) = (sample(&before, series), sample(&after, series));
            assert!(
                is >= was + by,
                "{}: {series} went from {was} to {is}",
                db.label
            );
        }
        assert!(!after.contains(&probe), "raw paths never become labels");
        // The refused password was hashed: counted, with the CPU its thread spent on it.
        let hashes = sample(&after, "tessera_password_hashes_total");
        assert!(
            hashes >= hashes_before + 1.0,
            "{}: hashes went from {hashes_before} to {hashes}",
            db.label
        );
        assert!(
            sample(&after, "tessera_password_hash_cpu_microseconds_total") > cpu_before,
            "{}: no hashing CPU counted",
            db.label
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn metrics_count_rate_limit_trips() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let gw = server
        .client_with("metrics-limited", false, |c| {
            c.grant_types = vec!["client_credentials".into()];
            c.redirect_uris = vec![];
            c.rate_limit_per_sec = Some(1);
        })
        .await;
    let series = r#"tessera_rate_limit_trips_total{limit="client"}"#;
    let before = sample(&scrape(&server).await, series);
    let mut limited = 0;
    for _ in 0..3 {
        let res = server
            .token(&gw, &[("grant_type", "client_credentials")])
            .await;
        if res.status == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 1, "never limited");
    let after = sample(&scrape(&server).await, series);
    assert!(after >= before + f64::from(limited), "{before} -> {after}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_require_the_configured_bearer_token_rfc6750_3() {
    let db = TestDb::sqlite().await;
    let token = "0123456789abcdef".repeat(4);
    let mut env = db.env();
    env.insert("TESSERA_METRICS_BEARER_TOKEN".into(), token.clone());
    let config =
        tessera::Config::from_sources(Some(std::path::Path::new("/dev/null")), &env).unwrap();
    let server = TestServer::start_with(config).await;
    let url = format!("{}/metrics", server.admin.as_deref().unwrap());

    let res = http().get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer realm=\"tessera-metrics\""
    );
    assert!(!res.text().await.unwrap().contains("tessera_"));

    let res = http()
        .get(&url)
        .bearer_auth(format!("{token}0"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));

    let res = http().get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("tessera_logins_total"));
    server.stop().await;
}

#[test]
fn server_refuses_a_non_loopback_admin_bind_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let env = BTreeMap::from([
        (
            "TESSERA_DATA_DIR".to_owned(),
            dir.path().display().to_string(),
        ),
        ("TESSERA_BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ("TESSERA_ADMIN_BIND".to_owned(), "0.0.0.0:0".to_owned()),
    ]);
    let run = run_binary(&["serve"], &env, None);
    run.fails_with("`admin_bind` (from $TESSERA_ADMIN_BIND): 0.0.0.0:0 is not a loopback address");
    assert!(
        run.stderr().contains("metrics_bearer_token"),
        "{}",
        run.stderr()
    );
}

#[tokio::test]
async fn admin_listener_can_be_turned_off() {
    let db = TestDb::sqlite().await;
    let mut env = db.env();
    env.insert("TESSERA_ADMIN_BIND".into(), "off".into());
    let config =
        tessera::Config::from_sources(Some(std::path::Path::new("/dev/null")), &env).unwrap();
    let server = TestServer::start_with(config).await;
    assert!(server.admin.is_none());
    let res = http().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    server.stop().await;
}

/// docs/grafana-dashboard.json reads what Tessera exports, under the names it exports.
#[test]
fn grafana_dashboard_reads_only_metrics_tessera_exports() {
    use tessera::metrics::*;

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exported = [
        HTTP_REQUESTS,
        HTTP_REQUEST_DURATION,
        TOKENS_ISSUED,
        LOGINS,
        RATE_LIMIT_TRIPS,
        AUDIT_EVENTS,
        AUDIT_APPEND,
        STORE_ERRORS,
        DB_POOL_CONNECTIONS,
        DB_POOL_MAX_CONNECTIONS,
        PASSWORD_HASH_RUNNING,
        PASSWORD_HASH_QUEUE_DEPTH,
    ];
    let mut read = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("tessera_"));
            for name in names {
                let name = name.strip_suffix("_bucket").unwrap_or(name);
                assert!(exported.contains(&name), "{name} is not exported");
                read.insert(name.to_owned());
            }
        }
    }
    for needed in [
        HTTP_REQUESTS,
        HTTP_REQUEST_DURATION,
        TOKENS_ISSUED,
        LOGINS,
        RATE_LIMIT_TRIPS,
        STORE_ERRORS,
        DB_POOL_CONNECTIONS,
        PASSWORD_HASH_QUEUE_DEPTH,
    ] {
        assert!(read.contains(needed), "no panel reads {needed}");
    }
}

/// Refreshes are counted by how they were rotated (decisions 0043, 0052): a plain refresh
/// is one write that also reads the old token (`at_once`), and one with a narrower `scope`
/// takes the read, checks and write (`steps`).
#[tokio::test]
async fn metrics_count_refresh_rotations_by_path() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let scope = "openid offline_access";
        let client = server
            .client_with("rotating", false, |c| c.scope = scope.into())
            .await;
        let url = AuthorizeUrl::new(&client).set("scope", scope);
        let tokens = server
            .code_flow(&server.browser(), &client, url, &Pkce::new())
            .await;
        let series = |path| format!(r#"tessera_refresh_rotations_total{{path="{path}"}}"#);
        let refresh = |token: String, scope: Option<&'static str>| {
            let (server, client) = (&server, &client);
            async move {
                let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", &token)];
                form.extend(scope.map(|s| ("scope", s)));
                let res = server.token(client, &form).await;
                assert_eq!(res.status, 200, "{}", res.body);
                res.json()["refresh_token"].as_str().unwrap().to_owned()
            }
        };
        let fast = "at_once";

        let before = scrape(&server).await;
        let next = refresh(tokens["refresh_token"].as_str().unwrap().into(), None).await;
        let after = scrape(&server).await;
        let (was, is) = (
            sample(&before, &series(fast)),
            sample(&after, &series(fast)),
        );
        assert!(
            is >= was + 1.0,
            "{}: {fast} went from {was} to {is}",
            db.label
        );

        let before = scrape(&server).await;
        refresh(next, Some("openid")).await;
        let after = scrape(&server).await;
        let (was, is) = (
            sample(&before, &series("steps")),
            sample(&after, &series("steps")),
        );
        assert!(
            is >= was + 1.0,
            "{}: steps went from {was} to {is}",
            db.label
        );
        server.stop().await;
    }
}

/// Code exchanges are counted by how they were redeemed (decisions 0047, 0053): a code for
/// an opaque access token is one write that also reads and consumes the code (`at_once`),
/// on both stores, and one for a JWT access token takes the consumption, checks and token
/// write (`steps`).
#[tokio::test]
async fn metrics_count_code_redemptions_by_path() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let opaque = server.client_with("opaque", false, |_| {}).await;
        let jwt = server
            .client_with("jwt", false, |c| {
                c.access_token_format = tessera::store::AccessTokenFormat::Jwt
            })
            .await;
        let series = |path| format!(r#"tessera_code_redemptions_total{{path="{path}"}}"#);
        for (client, path) in [(&opaque, "at_once"), (&jwt, "steps")] {
            let before = scrape(&server).await;
            let tokens = server
                .code_flow(
                    &server.browser(),
                    client,
                    AuthorizeUrl::new(client),
                    &Pkce::new(),
                )
                .await;
            assert!(tokens["access_token"].is_string(), "{tokens}");
            let after = scrape(&server).await;
            let (was, is) = (
                sample(&before, &series(path)),
                sample(&after, &series(path)),
            );
            // Other tests' code flows count into the same recorder meanwhile.
            assert!(
                is >= was + 1.0,
                "{}: {} by {path}",
                db.label,
                client.record.id
            );
        }
        server.stop().await;
    }
}

/// The token writer's writes are timed and sized (decision 0031's batches): a
/// client_credentials token is one write of one, on both stores.
#[tokio::test]
async fn metrics_time_and_size_the_token_writers_writes() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let gw = gateway(&server).await;
        let before = scrape(&server).await;
        let res = server
            .token(&gw, &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(res.status, 200, "{}", res.body);
        let after = scrape(&server).await;
        // Other tests' servers write tokens into the same recorder meanwhile: at least this
        // one write, of one issue, is counted.
        let added = |series: &str| sample(&after, series) - sample(&before, series);
        let label = &db.label;
        assert!(added("tessera_token_write_seconds_count") >= 1.0, "{label}");
        assert!(added("tessera_token_write_seconds_sum") > 0.0, "{label}");
        assert!(added("tessera_token_write_size_count") >= 1.0, "{label}");
        assert!(
            added("tessera_token_write_size_sum") >= added("tessera_token_write_size_count"),
            "{label}"
        );
        assert!(
            added(r#"tessera_token_write_size_bucket{le="1"}"#) >= 1.0,
            "{label}"
        );
        server.stop().await;
    }
}

/// SQLite's write-ahead log checkpoints are timed: the passive ones, which run beside the
/// writers, and the restart's hold on the write turn, which every writer waits out (a
/// round every 125 ms, a restart every 4 s).
#[tokio::test]
async fn metrics_time_sqlite_checkpoints_and_the_write_turn_a_restart_holds() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let gw = gateway(&server).await;
    let passive = r#"tessera_sqlite_checkpoint_seconds_count{kind="passive"}"#;
    let restart = r#"tessera_sqlite_checkpoint_seconds_count{kind="restart"}"#;
    let before = scrape(&server).await;
    let res = server
        .token(&gw, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = scrape(&server).await;
        if sample(&now, passive) > sample(&before, passive)
            && sample(&now, restart) > sample(&before, restart)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint timed:\n{now}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.stop().await;
}
