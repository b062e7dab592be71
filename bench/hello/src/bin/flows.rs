//! The benchmark's load generator for the whole code flow (bench/bench.py `flows`): C
//! concurrent browsers for SECONDS seconds, browser i signing in as USERNAME_PREFIX<i>. Each
//! flow is a fresh browser (a new keep-alive connection, no cookies): `GET /authorize` with
//! PKCE and `prompt=consent` → login page → `POST /login` → consent page → `POST /consent` →
//! the redirect with the code → `POST /token`. A 503 (the password-hash queue is full) is an
//! error after which that browser waits 1 s, as a user would; any other failure is an error
//! and the next flow starts at once. Prints one JSON object, the keys of the wrk workloads:
//! ops, per_s, p50_ms, p99_ms (per flow), non_2xx (failed flows), socket_errors, bad_answers
//! and error_kinds.
//!
//! Usage: `flows PORT CLIENT_ID C SECONDS USERNAME_PREFIX REDIRECT_URI`, with the client's
//! secret in `BENCH_CLIENT_SECRET` and the users' password in `BENCH_PASSWORD`.
//!
//! All browsers share one thread: the server under test has the same cores.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, LOCATION, SET_COOKIE};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpStream;

/// bench.py's `basic()` quotes with Python's `urllib.parse.quote(safe='')`: every byte but
/// letters, digits and `_.-~`.
const QUOTE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// As a browser would follow them: the login, the consent and the redirects between them
/// take six.
const MAX_STEPS: usize = 8;

struct Config {
    port: u16,
    host: String,
    client_id: String,
    authorization: String,
    username_prefix: String,
    password: String,
    redirect_uri: String,
    deadline: Instant,
}

/// Why a flow failed, counted by kind.
enum Failure {
    /// An answer the flow cannot go on from, as bench.py's `FlowError`: the step and the status.
    Http { at: String, status: u16 },
    /// The connection failed, on a fresh one too.
    Io(String),
}

impl Failure {
    fn http(at: &str, status: StatusCode) -> Self {
        Failure::Http {
            at: at.to_owned(),
            status: status.as_u16(),
        }
    }

    fn kind(&self) -> String {
        match self {
            Failure::Http { at, status } => format!("{at} {status}"),
            Failure::Io(kind) => kind.clone(),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(format!("{:?}", e.kind()))
    }
}

impl From<hyper::Error> for Failure {
    fn from(e: hyper::Error) -> Self {
        // The kind of the underlying I/O error when there is one (a reset, a refusal), so
        // that the counts group by cause rather than by message.
        let mut source = e.source();
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                return Failure::Io(format!("{:?}", io.kind()));
            }
            source = s.source();
        }
        Failure::Io(e.to_string())
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// One browser: a keep-alive connection, opened on first use, and a cookie jar.
struct Browser<'a> {
    cfg: &'a Config,
    conn: Option<SendRequest<Full<Bytes>>>,
    jar: Vec<(String, String)>,
}

impl<'a> Browser<'a> {
    fn new(cfg: &'a Config) -> Self {
        Browser {
            cfg,
            conn: None,
            jar: Vec::new(),
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.cfg.port)).await?;
        // A request's head and body go out in one write, and nothing waits on a delayed ACK.
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        // The connection's own errors reach the request in flight through the sender; the
        // task ends, closing the socket, when the browser drops the sender.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// As bench.py's `Browser.request`: one more try on a new connection when the first
    /// fails (a keep-alive connection the server closed meanwhile).
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        form: Option<String>,
        authorization: Option<&str>,
    ) -> Result<Answer, Failure> {
        let body = form.map(Bytes::from);
        let mut tries = 0;
        let answer = loop {
            match self
                .send(method.clone(), path, body.clone(), authorization)
                .await
            {
                Ok(answer) => break answer,
                Err(e) => {
                    self.conn = None;
                    tries += 1;
                    if tries == 2 {
                        return Err(e);
                    }
                }
            }
        };
        for cookie in answer.headers.get_all(SET_COOKIE) {
            let Ok(cookie) = cookie.to_str() else {
                continue;
            };
            let pair = cookie.split(';').next().unwrap_or("");
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = name.trim();
            self.jar.retain(|(n, _)| n != name);
            let expired = cookie
                .to_ascii_lowercase()
                .replace(' ', "")
                .contains("max-age=0");
            if !expired {
                self.jar.push((name.to_owned(), value.trim().to_owned()));
            }
        }
        Ok(answer)
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        authorization: Option<&str>,
    ) -> Result<Answer, Failure> {
        let sender = match self.conn.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await?,
        };
        let sender = self.conn.insert(sender);
        sender.ready().await?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.cfg.host);
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
            request = request.header(COOKIE, cookies.join("; "));
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| Failure::Io(format!("request {path}: {e}")))?;
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// The value of `<input ... name="NAME" value="...">`, as askama escaped it.
fn hidden(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let len = page[start..].find('"')?;
    Some(unescape(&page[start..start + len]))
}

/// HTML character references: askama writes `&#34;` `&#38;` `&#39;` `&#60;` `&#62;`; the
/// named and hexadecimal forms are read too, should the templates ever write them.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "lt" => Some('<'),
                "gt" => Some('>'),
                _ => {
                    let code = match entity.strip_prefix('#') {
                        Some(hex) if hex.starts_with(['x', 'X']) => {
                            u32::from_str_radix(&hex[1..], 16).ok()
                        }
                        Some(dec) => dec.parse().ok(),
                        None => None,
                    };
                    code.and_then(char::from_u32)
                }
            };
            c.map(|c| (c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn random_token(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// authorize → login form → consent form → code → token, as bench.py's `code_flow`.
async fn code_flow(cfg: &Config, username: &str) -> Result<(), Failure> {
    let mut browser = Browser::new(cfg);
    // As bench.py: `secrets.token_urlsafe` of 48 bytes for the verifier, 12 for the others.
    let mut random = [0u8; 72];
    getrandom::getrandom(&mut random).map_err(|e| Failure::Io(format!("getrandom: {e}")))?;
    let verifier = random_token(&random[..48]);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &cfg.client_id)
        .append_pair("redirect_uri", &cfg.redirect_uri)
        .append_pair("scope", "openid offline_access")
        .append_pair("state", &random_token(&random[48..60]))
        .append_pair("nonce", &random_token(&random[60..]))
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("prompt", "consent")
        .finish();
    let mut path = format!("/authorize?{query}");
    let mut method = Method::GET;
    let mut form = None;
    let mut code = None;
    for _ in 0..MAX_STEPS {
        let answer = browser.request(method, &path, form.take(), None).await?;
        if answer.status == StatusCode::FOUND || answer.status == StatusCode::SEE_OTHER {
            let location = answer
                .headers
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("");
            if location.starts_with(&cfg.redirect_uri) {
                let query = location.split_once('?').map_or("", |(_, q)| q);
                let query = query.split('#').next().unwrap_or("");
                code = form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned());
                if code.is_none() {
                    return Err(Failure::http("redirect without code", answer.status));
                }
                break;
            }
            path = location.to_owned();
            method = Method::GET;
            continue;
        }
        if answer.status != StatusCode::OK {
            let at = path.split('?').next().unwrap_or("");
            return Err(Failure::http(at, answer.status));
        }
        let page = std::str::from_utf8(&answer.body).unwrap_or("");
        let (Some(csrf), Some(pending)) =
            (hidden(page, "csrf_token"), hidden(page, "authorize_query"))
        else {
            return Err(Failure::http("page without form", answer.status));
        };
        let mut fields = form_urlencoded::Serializer::new(String::new());
        if page.contains("name=\"password\"") {
            path = "/login".to_owned();
            fields
                .append_pair("username", username)
                .append_pair("password", &cfg.password);
        } else {
            path = "/consent".to_owned();
            fields.append_pair("decision", "approve");
        }
        fields
            .append_pair("csrf_token", &csrf)
            .append_pair("authorize_query", &pending);
        // The consent form's claim of its session (decision 0055), sent as a browser sends
        // every hidden input of the form.
        if let Some(claim) = hidden(page, "signed_in") {
            fields.append_pair("signed_in", &claim);
        }
        method = Method::POST;
        form = Some(fields.finish());
    }
    let Some(code) = code else {
        return Err(Failure::Http {
            at: "too many steps".to_owned(),
            status: 0,
        });
    };
    let token_form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", &cfg.redirect_uri)
        .append_pair("code_verifier", &verifier)
        .finish();
    let answer = browser
        .request(
            Method::POST,
            "/token",
            Some(token_form),
            Some(&cfg.authorization),
        )
        .await?;
    if answer.status != StatusCode::OK {
        return Err(Failure::http("/token", answer.status));
    }
    let token: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|_| Failure::http("/token not JSON", answer.status))?;
    if token.get("access_token").is_none() {
        return Err(Failure::http("/token without access_token", answer.status));
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    latencies: Vec<f64>,
    kinds: BTreeMap<String, u64>,
}

async fn browse(cfg: Arc<Config>, i: usize) -> Tally {
    let username = format!("{}{i}", cfg.username_prefix);
    let mut tally = Tally::default();
    while Instant::now() < cfg.deadline {
        let start = Instant::now();
        match code_flow(&cfg, &username).await {
            Ok(()) => {
                tally.ok += 1;
                tally.latencies.push(start.elapsed().as_secs_f64());
            }
            Err(failure) => {
                tally.errors += 1;
                *tally.kinds.entry(failure.kind()).or_default() += 1;
                if matches!(failure, Failure::Http { status: 503, .. }) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
    tally
}

/// bench.py's `pct`, Python's `round` (half to even) included, so that both give the same
/// flow for the same latencies.
fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64 + 0.5).round_ties_even() as i64 - 1;
    let k = rank.clamp(0, sorted.len() as i64 - 1) as usize;
    Some(sorted[k])
}

/// Python's `round(x, digits)`: the decimal nearest to the exact binary value.
fn round_to(x: f64, digits: usize) -> f64 {
    format!("{x:.digits$}").parse().unwrap_or(x)
}

fn usage() -> String {
    "usage: flows PORT CLIENT_ID C SECONDS USERNAME_PREFIX REDIRECT_URI \
     (BENCH_CLIENT_SECRET and BENCH_PASSWORD in the environment)"
        .to_owned()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, client_id, c, secs, username_prefix, redirect_uri] = args.as_slice() else {
        return Err(usage().into());
    };
    let port: u16 = port.parse().map_err(|_| usage())?;
    let c: usize = c.parse().map_err(|_| usage())?;
    let secs: f64 = secs.parse().map_err(|_| usage())?;
    // From the environment rather than the command line, which every process can read.
    let secret = std::env::var("BENCH_CLIENT_SECRET").map_err(|_| usage())?;
    let password = std::env::var("BENCH_PASSWORD").map_err(|_| usage())?;
    let quote = |s: &str| percent_encoding::utf8_percent_encode(s, QUOTE).to_string();
    let authorization = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", quote(client_id), quote(&secret)))
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let t0 = Instant::now();
    let cfg = Arc::new(Config {
        port,
        host: format!("127.0.0.1:{port}"),
        client_id: client_id.clone(),
        authorization,
        username_prefix: username_prefix.clone(),
        password,
        redirect_uri: redirect_uri.clone(),
        deadline: t0 + Duration::from_secs_f64(secs),
    });
    let mut total = Tally::default();
    runtime.block_on(async {
        let browsers: Vec<_> = (0..c)
            .map(|i| tokio::spawn(browse(cfg.clone(), i)))
            .collect();
        for browser in browsers {
            let tally = browser.await?;
            total.ok += tally.ok;
            total.errors += tally.errors;
            total.latencies.extend(tally.latencies);
            for (kind, n) in tally.kinds {
                *total.kinds.entry(kind).or_default() += n;
            }
        }
        Ok::<_, tokio::task::JoinError>(())
    })?;
    let elapsed = t0.elapsed().as_secs_f64();

    total.latencies.sort_by(f64::total_cmp);
    let ms = |p: f64| pct(&total.latencies, p).map(|s| round_to(s * 1000.0, 1));
    let out = serde_json::json!({
        "ops": total.ok,
        "per_s": round_to(total.ok as f64 / elapsed, 2),
        "p50_ms": ms(50.0),
        "p99_ms": ms(99.0),
        "non_2xx": total.errors,
        "socket_errors": 0,
        "bad_answers": 0,
        "error_kinds": total.kinds,
    });
    println!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_what_askama_writes() {
        assert_eq!(
            unescape("a&#38;b&#34;c&#39;d&#60;e&#62;f&amp;&quot;&#x27;&#x2F;&lt;&gt;"),
            "a&b\"c'd<e>f&\"'/<>"
        );
        assert_eq!(unescape("a & b &bogus; &#;"), "a & b &bogus; &#;");
        let page = r#"<input type="hidden" name="authorize_query" value="a=1&#38;b=%2F">"#;
        assert_eq!(
            hidden(page, "authorize_query").as_deref(),
            Some("a=1&b=%2F")
        );
        assert_eq!(hidden(page, "csrf_token"), None);
    }

    #[test]
    fn percentiles_as_python() {
        // Python: pct([1, 2, 3, 4], 50) == 2 (round(2.5) == 2), pct(range(1, 11), 50) == 6.
        assert_eq!(pct(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.0));
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(pct(&ten, 50.0), Some(6.0));
        assert_eq!(pct(&ten, 99.0), Some(10.0));
        assert_eq!(pct(&[], 50.0), None);
        assert_eq!(round_to(12.25, 1), 12.2);
        assert_eq!(round_to(80.333, 2), 80.33);
    }
}
