//! Safe failure (issue 14): the store going away mid-traffic. A real Postgres server of the
//! test's own is stopped and started again while clients keep asking for tokens; a SQLite
//! file is locked by another process. Every answer is a 200 or a 503 in the endpoint's error
//! format, the server recovers by itself, and afterwards every token has its audit event and
//! the audit chain verifies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::flow::{gateway, introspect, TestClient};
use crate::support::{TestDb, TestServer};

/// A Postgres cluster of this test's own, in a temp folder, so that it can be stopped
/// without disturbing the tests that share the machine's server.
struct OwnPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnPostgres {
    /// `None` when the machine has no Postgres server binaries (then the test is skipped,
    /// except in CI, which sets TEST_DATABASE_URL and has them).
    fn start() -> Option<OwnPostgres> {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("pg_ctl").exists())
            .collect();
        versions.sort();
        let bin = versions.pop()?;
        let dir = tempfile::tempdir().unwrap();
        let pg = OwnPostgres {
            bin,
            dir,
            // Only the name of its socket file: it listens on no TCP port, which another
            // test could take while it is down.
            port: 5432,
        };
        if is_root() {
            // initdb and postgres refuse to run as root: the cluster belongs to `postgres`.
            let chown = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .unwrap();
            assert!(chown.success());
        }
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "--auth=trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        pg.start_again();
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let output = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        }
        .unwrap();
        assert!(
            output.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses= -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    fn stop(&self, mode: &str) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "stop"]);
    }

    fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/{database}?host={}",
            self.port,
            self.dir.path().display()
        )
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new(if is_root() { "runuser" } else { "true" })
            .args(if is_root() {
                vec!["-u", "postgres", "--"]
            } else {
                vec![]
            })
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// What the traffic saw: each answer's status, error code and token.
#[derive(Default)]
struct Seen {
    answers: Vec<(u16, Option<String>, Option<String>)>,
}

/// Asks for client_credentials tokens every 20 ms until `stop`.
fn traffic(
    server: Arc<TestServer>,
    client: Arc<TestClient>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            let res = server
                .token(&client, &[("grant_type", "client_credentials")])
                .await;
            let body: serde_json::Value =
                serde_json::from_str(&res.body).unwrap_or(serde_json::Value::Null);
            seen.answers.push((
                res.status,
                body["error"].as_str().map(str::to_owned),
                body["access_token"].as_str().map(str::to_owned),
            ));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    })
}

/// Every answer a 200 with a token or a 503 `temporarily_unavailable`; returns the tokens.
fn only_tokens_or_unavailable(seen: &Seen, label: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for (status, error, token) in &seen.answers {
        match (status, error, token) {
            (200, None, Some(t)) => tokens.push(t.clone()),
            (503, Some(e), None) if e == "temporarily_unavailable" => {}
            other => panic!("{label}: answered {other:?} while the store was away"),
        }
    }
    tokens
}

/// After the outage: one token row per token_issued event (no half-written issuance), every
/// token a client received is live, and the audit chain verifies.
async fn consistent(server: &TestServer, db: &TestDb, gateway: &TestClient, tokens: &[String]) {
    let rows = db.number("select count(*) from token").await;
    let events = db
        .number("select count(*) from audit_event where kind = 'token_issued'")
        .await;
    assert_eq!(
        rows, events,
        "{}: a token without its event, or the reverse",
        db.label
    );
    assert!(rows >= tokens.len() as i64, "{}", db.label);
    for t in tokens.iter().step_by(10) {
        let answer = introspect(server, gateway, t).await;
        assert_eq!(answer["active"], true, "{}: {answer}", db.label);
    }
    let verify = db.tessera(&["audit", "verify", "--json"]);
    assert!(verify.ok(), "{}: {}", db.label, verify.stderr());
}

// Two workers: pg_ctl blocks the test's own while the server and the traffic go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_mid_traffic_answers_503_recovers_and_loses_nothing() {
    let required = std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty());
    let Some(pg) = OwnPostgres::start() else {
        assert!(
            !required,
            "CI needs the Postgres server binaries for this test"
        );
        eprintln!("skipped: no Postgres server binaries");
        return;
    };
    {
        use sqlx::{Connection, Executor};
        let mut admin = sqlx::PgConnection::connect(&pg.url("postgres"))
            .await
            .unwrap();
        admin.execute("create database tessera").await.unwrap();
    }
    let db = TestDb {
        label: "postgres (stopped and started)",
        url: pg.url("tessera"),
        dir: tempfile::tempdir().unwrap(),
    };
    let server = Arc::new(TestServer::start(&db).await);
    let gateway = Arc::new(gateway(&server).await);
    let stop = Arc::new(AtomicBool::new(false));
    let running = traffic(Arc::clone(&server), Arc::clone(&gateway), Arc::clone(&stop));

    tokio::time::sleep(Duration::from_millis(800)).await;
    // `fast`: open connections are cut mid-session, as when the server goes down.
    pg.stop("fast");
    // Longer than the pool's acquire timeout (5 s), which retries a refused connection
    // until then: a shorter outage only delays answers, this one must be answered 503.
    tokio::time::sleep(Duration::from_millis(6500)).await;
    pg.start_again();
    // Recovers by itself: tokens flow again without anyone restarting Tessera.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = server
            .token(&gateway, &[("grant_type", "client_credentials")])
            .await;
        if res.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not recovered 20 s after Postgres came back: {}",
            res.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = running.await.unwrap();
    let unavailable = seen.answers.iter().filter(|a| a.0 == 503).count();
    assert!(
        unavailable > 0,
        "the outage was never seen ({} answers)",
        seen.answers.len()
    );
    let tokens = only_tokens_or_unavailable(&seen, db.label);
    assert!(!tokens.is_empty());
    // Let the sealer catch up on what was written before and after the outage.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    consistent(&server, &db, &gateway, &tokens).await;
    Arc::into_inner(server).unwrap().stop().await;
    drop(pg);
}

#[tokio::test]
async fn a_sqlite_file_locked_by_another_process_answers_503_and_recovers_when_released() {
    use sqlx::{Connection, Executor};
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let gateway = gateway(&server).await;
    let before = server
        .token(&gateway, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(before.status, 200);
    let issued = before.json()["access_token"].as_str().unwrap().to_owned();

    let path: &Path = &db.dir.path().join("tessera.db");
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    other.execute("begin exclusive").await.unwrap();
    let locked = server
        .token(&gateway, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(locked.status, 503, "{}", locked.body);
    assert_eq!(locked.json()["error"], "temporarily_unavailable");
    // Reads go on: the write lock leaves WAL readers alone.
    assert_eq!(introspect(&server, &gateway, &issued).await["active"], true);
    other.execute("rollback").await.unwrap();
    other.close().await.unwrap();

    let after = server
        .token(&gateway, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(after.status, 200, "{}", after.body);
    let tokens = vec![
        issued,
        after.json()["access_token"].as_str().unwrap().to_owned(),
    ];
    tokio::time::sleep(Duration::from_millis(1200)).await;
    consistent(&server, &db, &gateway, &tokens).await;
    server.stop().await;
}
