//! A real browser for page tests: headless Chromium driven over WebDriver by its own
//! chromedriver, both from Debian's packages (`.ci/run` installs them).
//!
//! Without them `Browser::start` returns `None` and says the test was skipped, so `cargo test`
//! works on a fresh machine; with `TESSERA_REQUIRE_BROWSER=1` (as in CI) it panics instead.
//! `TESSERA_CHROMIUM` and `TESSERA_CHROMEDRIVER` override the binaries' paths.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long to wait for an element, a URL or chromedriver itself.
const WAIT: Duration = Duration::from_secs(20);

/// One headless Chromium with its own chromedriver; both end when this is dropped.
pub struct Browser {
    client: Client,
    driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a Chromium session, or returns `None` (after saying so on
    /// stderr) when they are not installed and `TESSERA_REQUIRE_BROWSER` is not `1`.
    pub async fn start() -> Option<Browser> {
        let chromium = binary("TESSERA_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("TESSERA_CHROMEDRIVER", "/usr/bin/chromedriver");
        if let Some(missing) = [&chromium, &chromedriver]
            .into_iter()
            .find(|p| !p.is_file())
        {
            let required = std::env::var("TESSERA_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "TESSERA_REQUIRE_BROWSER=1 but {} is missing: install Debian's chromium and \
                 chromium-driver (.ci/run does)",
                missing.display()
            );
            // Straight to stderr, past the test harness's capture, so a plain `cargo test`
            // shows what did not run.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: chromium not installed (.ci/run installs it): no {}",
                missing.display()
            );
            return None;
        }

        let driver = Driver::spawn(&chromedriver).await;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // Tests run as root, where Chromium's sandbox refuses to start.
                    "--no-sandbox",
                    "--disable-gpu",
                    // Containers often have a tiny /dev/shm.
                    "--disable-dev-shm-usage",
                    "--window-size=1000,900",
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| panic!("no Chromium session through chromedriver: {e}"));
        Some(Browser { client, driver })
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// Types `text` into the (emptied) input matching `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.unwrap();
        input
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// Clicks the element matching `css` (a form's button) and waits until the browser has
    /// left the page: until then the old page's elements would still answer.
    pub async fn submit(&self, css: &str) {
        let old = self.find("html").await;
        self.click(css).await;
        let deadline = Instant::now() + WAIT;
        // The old document's root goes stale once the next page replaces it.
        while old.tag_name().await.is_ok() {
            assert!(Instant::now() < deadline, "{css} did not leave the page");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The visible text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// The current value of the form field matching `css` (what the person sees in it).
    pub async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// The current page's HTML.
    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    pub async fn url(&self) -> url::Url {
        self.client.current_url().await.unwrap()
    }

    /// Waits until the browser is at a URL starting with `prefix`, and returns it.
    pub async fn wait_for_url(&self, prefix: &str) -> url::Url {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.url().await;
            if url.as_str().starts_with(prefix) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "still at {url} after {WAIT:?}, not {prefix}…; page: {}",
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resizes the window (a screenshot shows only what fits in it).
    pub async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
    }

    /// Writes a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Ends the session (Chromium quits), then chromedriver.
    pub async fn close(self) {
        self.client.close().await.unwrap();
        drop(self.driver);
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!(
                "no {css} on {} ({e}); page: {}",
                self.url().await,
                self.source().await
            ),
        }
    }
}

fn binary(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// A chromedriver child in its own process group, so that dropping it also ends any Chromium
/// it started, even when a failed test never closed the session.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// Starts chromedriver on a port it picks as it binds (a port picked beforehand could be
    /// taken by another test before chromedriver bound it) and reads the port from what it
    /// prints: "ChromeDriver was started successfully on port N." Tried again when it exits
    /// at start (seen once in CI, with status 1, on a machine under the whole suite's load).
    async fn spawn(chromedriver: &Path) -> Driver {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Driver::try_spawn(chromedriver).await {
                Ok(driver) => return driver,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("chromedriver exited at start, three times: {failures:#?}")
    }

    async fn try_spawn(chromedriver: &Path) -> Result<Driver, String> {
        let mut child = Command::new(chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut driver = Driver {
            child,
            url: String::new(),
        };
        // What it printed, for the failure's message (the first lines are the ones that say).
        let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let (found, port) = std::sync::mpsc::channel();
        // Both read to the end, so that a full pipe never stalls chromedriver.
        let keep = printed.clone();
        let errors = std::thread::spawn(move || {
            for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
                if let Ok(mut printed) = keep.lock() {
                    if printed.len() < 20 {
                        printed.push(String::from_utf8_lossy(&line).into_owned());
                    }
                }
            }
        });
        let keep = printed.clone();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line);
                if let Ok(mut printed) = keep.lock() {
                    if printed.len() < 20 {
                        printed.push(line.clone().into_owned());
                    }
                }
                let port = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|rest| rest.trim_end_matches(['.', '\r']).parse::<u16>().ok());
                if let Some(port) = port {
                    if let Some(found) = found.take() {
                        let _ = found.send(port);
                    }
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        let port = loop {
            match port.try_recv() {
                Ok(port) => break port,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    let status = driver.child.wait();
                    let _ = errors.join();
                    let printed = printed.lock().map(|p| p.join("\n")).unwrap_or_default();
                    return Err(format!("{status:?}: {printed}"));
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver never said its port"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        driver.url = format!("http://127.0.0.1:{port}");
        Ok(driver)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (process_group(0)); `kill` because the crate
        // forbids unsafe code, and with it libc.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in for the client application at its redirect URI: answers every request with a
/// small 200 page, so the browser lands on a real page rather than a network error.
pub struct ClientApp {
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl ClientApp {
    pub async fn start() -> ClientApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = "<!doctype html><title>Client app</title><p>Back at the app.</p>";
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        ClientApp { base, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for ClientApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}
