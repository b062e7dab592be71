//! The server as operators and orchestrators see it: probes, request ids, limits, start-up
//! validation, store retry, HTTPS, graceful shutdown, and connection limits seen from raw TCP
//! (a slow or silent client is exactly what an HTTP client library will not play).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::serve;
use crate::support::{binary, http, run_binary, wait_healthy, TestDb, TestServer};

#[tokio::test]
async fn healthz_and_readyz_answer_on_every_backend() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let client = http();
        let res = client.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}", db.label);
        assert_eq!(
            res.json::<serde_json::Value>().await.unwrap()["status"],
            "ok"
        );
        let res = client.get(server.url("/readyz")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}", db.label);
        assert_eq!(
            res.json::<serde_json::Value>().await.unwrap()["status"],
            "ready"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_nosniff() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let res = http().get(server.url("/healthz")).send().await.unwrap();
    let id = res
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let res = http()
        .get(server.url("/no-such-path"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.headers().contains_key("x-request-id"));
    // A caller's own id is kept, so a gateway can correlate its logs with ours.
    let res = http()
        .get(server.url("/healthz"))
        .header("x-request-id", "gateway-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "gateway-123");
    server.stop().await;
}

#[tokio::test]
async fn oversized_request_body_is_refused_before_it_is_read() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let res = http()
        .post(server.url("/healthz"))
        .body(vec![b'a'; 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    server.stop().await;
}

#[tokio::test]
async fn binary_serves_with_no_subcommand_and_stops_gracefully_on_sigterm() {
    let db = TestDb::sqlite().await;
    let mut command = Command::new(binary());
    command.env_clear().envs(db.env()).stdout(Stdio::null());
    let server = serve::start(command).listening();
    wait_healthy(&http(), &server.url("/healthz")).await;
    let res = http().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let kek = db.dir.path().join("data").join("key-encryption-key");
    assert!(
        kek.exists(),
        "development key generated into the data folder"
    );

    let (status, log) = server.stop();
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(
        log.contains("key-encryption key"),
        "warns about the generated key: {log}"
    );
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn binary_refuses_invalid_configuration_with_one_line() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("TESSERA_ISSUER", "http://id.example.com")],
            "`issuer` (from $TESSERA_ISSUER): must use https",
        ),
        (&[("TESSERA_BIND", "localhost")], "`bind`"),
        (
            &[("DATABASE_URL", "mysql://db/x")],
            "`database_url` (from $DATABASE_URL)",
        ),
        (
            &[("DATABASE_URL", "postgres://u@h:port/db")],
            "malformed Postgres URL",
        ),
        (
            &[
                ("TESSERA_TLS_CERT", "/nonexistent.pem"),
                ("TESSERA_TLS_KEY", "/nonexistent.pem"),
            ],
            "`tls_cert`",
        ),
        (&[("TESSERA_LOG_FORMAT", "yaml")], "`log_format`"),
        (
            &[("TESSERA_KEY_ENCRYPTION_KEY", "dG9vIHNob3J0")],
            "`key_encryption_key`",
        ),
        (
            &[("TESSERA_ARGON2_MEMORY_KIB", "lots")],
            "`argon2_memory_kib`",
        ),
    ];
    for (vars, needle) in cases {
        let env: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let run = run_binary(&["serve"], &env, None);
        run.fails_with(needle);
        assert!(
            run.stderr().starts_with("error: invalid configuration: "),
            "{}",
            run.stderr()
        );
    }
}

#[test]
fn binary_reports_an_unreadable_tls_key_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let env = BTreeMap::from([
        (
            "TESSERA_DATA_DIR".to_owned(),
            dir.path().display().to_string(),
        ),
        ("TESSERA_TLS_CERT".to_owned(), cert.display().to_string()),
        (
            "TESSERA_TLS_KEY".to_owned(),
            dir.path().join("missing-key.pem").display().to_string(),
        ),
    ]);
    run_binary(&["serve"], &env, None).fails_with("`tls_key`");
}

#[test]
fn binary_retries_an_unreachable_store_then_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let env = BTreeMap::from([
        (
            "TESSERA_DATA_DIR".to_owned(),
            dir.path().display().to_string(),
        ),
        // Nothing listens on port 1: the connection is refused at once, every time.
        (
            "DATABASE_URL".to_owned(),
            "postgres://postgres@127.0.0.1:1/tessera".to_owned(),
        ),
        (
            "TESSERA_STORE_STARTUP_TIMEOUT_SECS".to_owned(),
            "2".to_owned(),
        ),
    ]);
    let run = run_binary(&["serve"], &env, None);
    let err = run.stderr();
    assert!(!run.ok());
    assert!(
        err.matches("store unreachable; retrying").count() >= 2,
        "{err}"
    );
    let last = err.trim_end().lines().last().unwrap();
    assert!(last.starts_with("error: store unavailable"), "{last}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn server_serves_https_with_the_configured_certificate() {
    let db = TestDb::sqlite().await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = db.dir.path().join("cert.pem");
    let key_path = db.dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let mut env = db.env();
    env.insert("TESSERA_TLS_CERT".into(), cert_path.display().to_string());
    env.insert("TESSERA_TLS_KEY".into(), key_path.display().to_string());
    env.insert("TESSERA_ISSUER".into(), "https://localhost".into());
    let config =
        tessera::Config::from_sources(Some(std::path::Path::new("/dev/null")), &env).unwrap();
    let server = TestServer::start_with(config).await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let res = client
        .get(format!("https://localhost:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Plain http on the TLS port gets no answer a client could mistake for success.
    let plain = http()
        .get(format!("http://localhost:{port}/healthz"))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_when_the_store_goes_away_while_healthz_stays_up() {
    // Only Postgres can be taken away from under a running server.
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let server = TestServer::start(&db).await;
    let client = http();
    assert_eq!(
        client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let base = std::env::var("TEST_DATABASE_URL").unwrap();
    let name = url::Url::parse(&db.url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
        .await
        .unwrap();
    sqlx::Executor::execute(
        &mut admin,
        format!("drop database {name} with (force)").as_str(),
    )
    .await
    .unwrap();
    let res = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["status"],
        "unavailable"
    );
    assert_eq!(
        client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "liveness does not depend on the store"
    );
    server.stop().await;
}

#[test]
fn json_log_format_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let env = BTreeMap::from([
        (
            "TESSERA_DATA_DIR".to_owned(),
            dir.path().display().to_string(),
        ),
        ("TESSERA_LOG_FORMAT".to_owned(), "json".to_owned()),
        (
            "DATABASE_URL".to_owned(),
            "postgres://postgres@127.0.0.1:1/tessera".to_owned(),
        ),
        (
            "TESSERA_STORE_STARTUP_TIMEOUT_SECS".to_owned(),
            "1".to_owned(),
        ),
    ]);
    let run = run_binary(&["serve"], &env, None);
    let err = run.stderr();
    let lines: Vec<&str> = err.trim_end().lines().collect();
    let (last, logs) = lines.split_last().unwrap();
    assert!(last.starts_with("error: "), "{err}");
    assert!(!logs.is_empty(), "{err}");
    for line in logs {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

/// A server for `db` with extra `TESSERA_*` settings.
async fn start_with_settings(db: &TestDb, settings: &[(&str, &str)]) -> TestServer {
    let mut env = db.env();
    for (name, value) in settings {
        env.insert((*name).to_owned(), (*value).to_owned());
    }
    let config = tessera::Config::from_sources(Some(Path::new("/dev/null")), &env).unwrap();
    TestServer::start_with(config).await
}

fn socket_addr(server: &TestServer) -> SocketAddr {
    server.base.trim_start_matches("http://").parse().unwrap()
}

const HEALTHZ_REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Reads one response with a `Content-Length` body and returns its head; the connection
/// stays open for the next request.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return head;
            }
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the server closes `stream` within `bound`.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut rest = Vec::new();
    // A reset counts as closed as much as an orderly end of stream does.
    tokio::time::timeout(bound, stream.read_to_end(&mut rest))
        .await
        .is_ok()
}

#[tokio::test]
async fn server_closes_connection_with_slow_headers_header_read_timeout() {
    for db in TestDb::all().await {
        let server = start_with_settings(&db, &[("TESSERA_HEADER_READ_TIMEOUT_SECS", "1")]).await;
        let started = Instant::now();
        let mut slow = TcpStream::connect(socket_addr(&server)).await.unwrap();
        // A request line and a header, but never the empty line that ends the head.
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();

        let res = http().get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}", db.label);

        assert!(
            closed_within(&mut slow, Duration::from_secs(10)).await,
            "{}: still open after 10 s",
            db.label
        );
        // Not refused at once: it is the timeout that closes it.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(900), "{}: {took:?}", db.label);
        server.stop().await;
    }
}

#[tokio::test]
async fn server_closes_silent_and_idle_connections_header_read_timeout() {
    for db in TestDb::all().await {
        let server = start_with_settings(&db, &[("TESSERA_HEADER_READ_TIMEOUT_SECS", "1")]).await;
        // Connects and never sends a byte.
        let mut silent = TcpStream::connect(socket_addr(&server)).await.unwrap();
        // One complete keep-alive request, then nothing.
        let mut idle = TcpStream::connect(socket_addr(&server)).await.unwrap();
        idle.write_all(HEALTHZ_REQUEST).await.unwrap();
        let head = read_response(&mut idle).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{}: {head}", db.label);

        for (name, stream) in [("silent", &mut silent), ("idle", &mut idle)] {
            assert!(
                closed_within(stream, Duration::from_secs(10)).await,
                "{}: {name} connection still open after 10 s",
                db.label
            );
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn server_bounds_concurrent_connections() {
    for db in TestDb::all().await {
        let server = start_with_settings(
            &db,
            &[
                ("TESSERA_MAX_CONNECTIONS", "2"),
                // Idle connections outlive the test, so only the limit decides who is served.
                ("TESSERA_HEADER_READ_TIMEOUT_SECS", "120"),
            ],
        )
        .await;
        let addr = socket_addr(&server);
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            conn.write_all(HEALTHZ_REQUEST).await.unwrap();
            let head = read_response(&mut conn).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{}: {head}", db.label);
            held.push(conn);
        }

        // The kernel completes the handshake from its backlog; the server must not take it.
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(HEALTHZ_REQUEST).await.unwrap();
        let mut byte = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
        assert!(
            early.is_err(),
            "{}: a third connection was served while two were open: {early:?}",
            db.label
        );

        drop(held.remove(0));
        let head = tokio::time::timeout(Duration::from_secs(10), read_response(&mut third))
            .await
            .unwrap_or_else(|_| panic!("{}: not served after a slot freed up", db.label));
        assert!(head.starts_with("HTTP/1.1 200"), "{}: {head}", db.label);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_start_of_several_instances_creates_one_key_per_algorithm() {
    // The race this guards against needs several instances on one shared store: Postgres.
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let config = || {
        let mut env = db.env();
        // Instances sharing a store share the key-encryption key (README).
        env.insert(
            "TESSERA_KEY_ENCRYPTION_KEY".into(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        );
        tessera::Config::from_sources(Some(Path::new("/dev/null")), &env).unwrap()
    };
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let config = config();
            tokio::spawn(async move { tessera::Server::bind(config).await.map(|_| ()) })
        })
        .collect();
    for start in starts {
        start.await.unwrap().unwrap();
    }
    let store = tessera::store::open(&db.database_url()).await.unwrap();
    let mut algs: Vec<String> = store
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.alg)
        .collect();
    algs.sort();
    assert_eq!(algs, ["ES256", "EdDSA", "RS256"]);
}
