//! Test fixtures: fresh databases, an in-process server, the binary.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};
use tempfile::TempDir;
use tessera::app::AppState;
use tessera::config::Config;
use tessera::Server;
use tokio::sync::oneshot;

pub mod browser;
pub mod drop_database;
pub mod flow;
pub mod raw;
pub mod serve;

/// One fresh, empty database: a SQLite file in a temp folder, or a new Postgres database.
pub struct TestDb {
    pub label: &'static str,
    pub url: String,
    /// Holds the SQLite file (and anything else a test puts there) until the test ends.
    pub dir: TempDir,
}

/// A Postgres test database goes when its test ends, so that `cargo test` against a
/// developer's server (the README's command) leaves nothing behind; `.ci/run` also drops what
/// a killed run left. A server process of the test may still hold connections, and is killed
/// right after anyway (a test's servers are declared after its database, so they drop first).
impl Drop for TestDb {
    fn drop(&mut self) {
        if let (Some(name), Ok(base)) = (self.postgres_name(), std::env::var("TEST_DATABASE_URL")) {
            drop_database::drop_database(&base, &name);
        }
    }
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("tessera.db").display()
        );
        TestDb {
            label: "sqlite",
            url,
            dir,
        }
    }

    /// A new database on the server named by `TEST_DATABASE_URL`, if it is set.
    pub async fn postgres() -> Option<TestDb> {
        let base = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|s| !s.is_empty())?;
        let name = format!("tessera_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("TEST_DATABASE_URL is set but unreachable: {e}"));
        conn.execute(format!("create database {name}").as_str())
            .await
            .unwrap();
        conn.close().await.unwrap();
        let mut url = url::Url::parse(&base).unwrap();
        url.set_path(&name);
        Some(TestDb {
            label: "postgres",
            url: url.to_string(),
            dir: tempfile::tempdir().unwrap(),
        })
    }

    /// The Postgres database's name (`None` on SQLite).
    fn postgres_name(&self) -> Option<String> {
        if self.label != "postgres" {
            return None;
        }
        let url = url::Url::parse(&self.url).ok()?;
        Some(url.path().trim_start_matches('/').to_owned())
    }

    /// SQLite always, plus Postgres when `TEST_DATABASE_URL` is set.
    pub async fn all() -> Vec<TestDb> {
        let mut dbs = vec![TestDb::sqlite().await];
        dbs.extend(TestDb::postgres().await);
        dbs
    }

    /// Every row `sql` selects, each column as text (integers written out, NULL as `None`):
    /// for tests that look into the database past the store's own methods.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        use sqlx::{Connection, Row};
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url).await.unwrap();
        let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        rows.iter()
            .map(|row| {
                (0..row.columns().len())
                    .map(|i| match row.try_get::<Option<String>, _>(i) {
                        Ok(text) => text,
                        Err(_) => row
                            .try_get::<Option<i64>, _>(i)
                            .unwrap()
                            .map(|n| n.to_string()),
                    })
                    .collect()
            })
            .collect()
    }

    /// A stored digest as a SQL literal of this store's bytes type, for plain SQL in tests.
    pub fn digest_literal(&self, digest: &tessera::crypto::token::Digest) -> String {
        let hex = digest.to_hex();
        match self.label {
            "postgres" => format!("'\\x{hex}'::bytea"),
            _ => format!("x'{hex}'"),
        }
    }

    pub fn database_url(&self) -> tessera::config::DatabaseUrl {
        self.url.parse().unwrap()
    }

    /// The environment a server or CLI process needs to use this database, with the cheapest
    /// password hashing the configuration accepts (OWASP's 7168 KiB × 5), so tests stay fast.
    pub fn env(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("DATABASE_URL".into(), self.url.clone()),
            (
                "TESSERA_DATA_DIR".into(),
                self.dir.path().join("data").display().to_string(),
            ),
            ("TESSERA_BIND".into(), "127.0.0.1:0".into()),
            // Every server its own admin port, so parallel tests never collide.
            ("TESSERA_ADMIN_BIND".into(), "127.0.0.1:0".into()),
            ("TESSERA_ARGON2_MEMORY_KIB".into(), "7168".into()),
            ("TESSERA_ARGON2_ITERATIONS".into(), "5".into()),
            // Every test speaks from loopback, faster than any person: the rate-limit tests
            // set their own limits.
            ("TESSERA_RATE_LIMIT_ADDRESS_PER_SEC".into(), "100000".into()),
        ])
    }

    pub fn config(&self) -> Config {
        Config::from_sources(Some(Path::new("/dev/null")), &self.env()).unwrap()
    }

    /// Runs the `tessera` binary against this database.
    pub fn tessera(&self, args: &[&str]) -> Run {
        self.tessera_with_stdin(args, None)
    }

    pub fn tessera_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        run_binary(args, &self.env(), stdin)
    }

    /// Runs one SQL statement on this database directly, as someone with database access
    /// and nothing else would (tampering, counting); returns the rows it changed.
    pub async fn sql(&self, statement: &str) -> u64 {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url).await.unwrap();
        let done = sqlx::query(statement).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        done.rows_affected()
    }

    /// The one integer a query answers (a count, a max).
    pub async fn number(&self, query: &str) -> i64 {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url).await.unwrap();
        let n: Option<i64> = sqlx::query_scalar(query)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        n.unwrap_or(0)
    }
}

/// What a run of the binary produced.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.output.status.success()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// Parses stdout as JSON, failing the test with both streams shown if it is not.
    pub fn json(&self) -> serde_json::Value {
        assert!(
            self.ok(),
            "command failed: {}{}",
            self.stdout(),
            self.stderr()
        );
        serde_json::from_str(&self.stdout())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout()))
    }
    /// Asserts success, for commands whose output the test does not read.
    pub fn succeeds(&self) {
        assert!(
            self.ok(),
            "command failed: {}{}",
            self.stdout(),
            self.stderr()
        );
    }
    /// Asserts the command failed with exactly one line on stderr containing `needle`.
    pub fn fails_with(&self, needle: &str) {
        let err = self.stderr();
        assert!(
            !self.ok(),
            "expected failure, got success: {}",
            self.stdout()
        );
        assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "more than one line: {err:?}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tessera"))
}

pub fn run_binary(args: &[&str], env: &BTreeMap<String, String>, stdin: Option<&str>) -> Run {
    let mut child = Command::new(binary())
        .args(args)
        .env_clear()
        .envs(env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    Run {
        output: child.wait_with_output().unwrap(),
    }
}

/// The real server, in this process, on an ephemeral port.
pub struct TestServer {
    pub base: String,
    /// The admin listener's base URL (`/metrics`), when it is on.
    pub admin: Option<String>,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start(db: &TestDb) -> TestServer {
        TestServer::start_with(db.config()).await
    }

    pub async fn start_with(config: Config) -> TestServer {
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr().unwrap();
        let admin = server.admin_addr().map(|a| format!("http://{a}"));
        let state = server.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            admin,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// The kinds of the newest `n` audit events, newest first.
pub async fn audit_kinds(store: &dyn tessera::store::Store, n: i64) -> Vec<String> {
    store
        .recent_audit(n)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.kind)
        .collect()
}

/// Why a page's answer lacks the headers every HTML response carries (`http::pages`), if it
/// does: a CSP that forbids framing, scripts and plugins, no framing for older browsers, no
/// sniffing, no referrer, no caching. `header` reads a response header by name.
pub fn page_headers_missing<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
    let csp = header("content-security-policy").unwrap_or("");
    for directive in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        if !csp.contains(directive) {
            return Some(format!("CSP {csp:?} lacks {directive}"));
        }
    }
    let fixed = [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ];
    fixed
        .into_iter()
        .find(|(name, value)| header(name) != Some(*value))
        .map(|(name, value)| format!("{name} is {:?}, not {value:?}", header(name)))
}

/// An HTTP client as a browser-less client app would use: no redirects followed.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Waits until `url` answers 200 (a server child process has started).
pub async fn wait_healthy(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = client.get(url).send().await {
            if res.status() == reqwest::StatusCode::OK {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "server at {url} never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
