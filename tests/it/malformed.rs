//! Safe failure (issue 14): every public endpoint, sent malformed input over real HTTP, on
//! every store, answers a clean 4xx (or the success it documents for that request) in its own
//! format — RFC 6749 §5.2 JSON at the client API (RFC 7009 §2.2.1, RFC 7662 §2.3), RFC 6750 §3
//! challenges at `/userinfo`, the styled HTML page with its security headers at the pages —
//! never a 5xx, and writes nothing.
//!
//! The battery is two tables: [`targets`] (each endpoint with a request that reaches its
//! deepest checks yet changes nothing) and [`cases`] (what is done to that request). Every
//! case runs against every target; a new endpoint or a new kind of garbage is one entry.

use std::collections::BTreeMap;

use base64::Engine;
use tessera::store::AuthMethod;
use url::form_urlencoded::byte_serialize;

use crate::support::flow::{
    cookie_header, gateway, AuthorizeUrl, Browser, Reply, TestClient, PASSWORD, REDIRECT,
};
use crate::support::raw::{send, RawRequest, RawResponse};
use crate::support::{TestDb, TestServer};

/// How an endpoint answers errors on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// RFC 6749 §5.2: a JSON object with a registered `error`, never cached.
    OAuthJson,
    /// RFC 6750 §3: `WWW-Authenticate: Bearer …` for token problems; JSON (§5.2's shape) for
    /// what is not about the token (method, size, rate).
    Bearer,
    /// The styled HTML page, with the headers every page carries.
    Page,
    /// Metadata, keys and probes: JSON, and errors in §5.2's shape.
    Json,
}

/// What a target's request may get short of an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Success {
    /// Nothing: every answer is a 4xx.
    None,
    /// 200 with a page (a sign-in form, a confirmation, the signed-out page).
    Page,
    /// 200 with a page, or a redirect carrying an error to the client (`/authorize`).
    PageOrErrorRedirect,
    /// 303 on to `/authorize`, or a redirect carrying an error to the client.
    ContinueOrErrorRedirect,
    /// 200 `{"active":false}` (RFC 7662 §2.2).
    Inactive,
    /// 200 with an empty body (RFC 7009 §2.2).
    Revoked,
    /// 200 with a JSON object.
    Json,
    /// 200 with the stylesheet.
    Stylesheet,
}

/// One endpoint and a harmless request to it.
struct Target {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    /// The parameters, names and form-encoded values: the query of a GET, the body of a POST.
    params: Vec<(String, Vec<u8>)>,
    /// Headers besides the body's content type (credentials, cookies).
    headers: Vec<(String, Vec<u8>)>,
    /// A body that is not a form (JSON), sent as it is, with its content type.
    body: Option<(&'static str, Vec<u8>)>,
    format: Format,
    success: Success,
    /// The statuses the request gets unchanged.
    untouched: &'static [u16],
}

impl Target {
    fn new(name: &'static str, method: &'static str, path: &'static str) -> Target {
        Target {
            name,
            method,
            path,
            params: Vec::new(),
            headers: Vec::new(),
            body: None,
            format: Format::Page,
            success: Success::None,
            untouched: &[],
        }
    }

    fn param(mut self, name: &str, value: &str) -> Target {
        let encoded: String = byte_serialize(value.as_bytes()).collect();
        self.params.push((name.to_owned(), encoded.into_bytes()));
        self
    }

    fn header(mut self, name: &str, value: &[u8]) -> Target {
        self.headers.push((name.to_owned(), value.to_vec()));
        self
    }

    fn basic(self, client: &TestClient) -> Target {
        let pair = format!(
            "{}:{}",
            client.record.id,
            client.secret.as_deref().unwrap_or("")
        );
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        );
        self.header("authorization", value.as_bytes())
    }

    /// How the endpoint answers, and the statuses of the request as it is: a check that the
    /// request gets as far as it should, so the cases test the endpoint, not the way in.
    fn answers(mut self, format: Format, success: Success, untouched: &'static [u16]) -> Target {
        self.format = format;
        self.success = success;
        self.untouched = untouched;
        self
    }

    fn is_get(&self) -> bool {
        self.method == "GET"
    }

    /// The request with `params` in place of the target's own.
    fn request(&self, params: &[(String, Vec<u8>)]) -> RawRequest {
        let mut encoded = Vec::new();
        for (i, (name, value)) in params.iter().enumerate() {
            if i > 0 {
                encoded.push(b'&');
            }
            encoded.extend_from_slice(name.as_bytes());
            encoded.push(b'=');
            encoded.extend_from_slice(value);
        }
        let mut target = self.path.as_bytes().to_vec();
        let mut headers = self.headers.clone();
        let mut body = Vec::new();
        if self.is_get() {
            if !encoded.is_empty() {
                target.push(b'?');
                target.extend_from_slice(&encoded);
            }
        } else if let Some((content_type, json)) = &self.body {
            headers.push(("content-type".into(), content_type.as_bytes().to_vec()));
            body = json.clone();
        } else {
            headers.push((
                "content-type".into(),
                b"application/x-www-form-urlencoded".to_vec(),
            ));
            body = encoded;
        }
        RawRequest {
            method: self.method.to_owned(),
            target,
            headers,
            body,
        }
    }

    /// The parameters as a JSON object, for the "form sent as JSON" cases.
    fn params_as_json(&self) -> Vec<u8> {
        let object: serde_json::Map<String, serde_json::Value> = self
            .params
            .iter()
            .map(|(name, value)| {
                let plain: String = url::form_urlencoded::parse(&[&b"v="[..], value].concat())
                    .map(|(_, v)| v.into_owned())
                    .collect();
                (name.clone(), serde_json::Value::String(plain))
            })
            .collect();
        serde_json::to_vec(&object).unwrap()
    }
}

/// What a case does to a target's request.
enum Change {
    /// Each parameter's value in turn becomes these bytes, written as they are (already
    /// encoded, or deliberately not).
    EachValue(fn() -> Vec<u8>),
    /// Each parameter in turn is sent this many times.
    EachRepeated(usize),
    /// The body is replaced, with this content type (`None`: no `Content-Type` at all).
    Body(Option<&'static [u8]>, fn(&Target) -> Vec<u8>),
    /// Only the content type changes (`None`: removed).
    ContentType(Option<&'static [u8]>),
    /// Another method, with the same query and body.
    Method(&'static str),
    /// A header is set (replacing the target's own of that name).
    Header(&'static str, &'static [u8]),
    /// The request is sent as it is, with these bytes added to its path.
    PathSuffix(&'static [u8]),
}

struct Case {
    name: &'static str,
    change: Change,
}

fn case(name: &'static str, change: Change) -> Case {
    Case { name, change }
}

impl Case {
    /// How `target` must answer this case: in its own format, except where the case sends
    /// the request to a path no route serves, which gets the 404 page.
    fn expects(&self, target: &Target) -> (Format, Success) {
        match self.change {
            Change::PathSuffix(suffix) if !suffix.is_empty() => (Format::Page, Success::None),
            _ => (target.format, target.success),
        }
    }
}

const MIB: usize = 1024 * 1024;

/// What is done to every target's request.
fn cases() -> Vec<Case> {
    use Change::*;
    vec![
        case("unchanged", PathSuffix(b"")),
        // Values: injection-looking, badly encoded, not UTF-8, odd unicode, large, empty.
        case("SQL-looking value", EachValue(|| b"'+or+1%3D1+--".to_vec())),
        case(
            "SQL-looking value, quoted",
            EachValue(|| b"%22%3B+drop+table+token%3B+--".to_vec()),
        ),
        case("bad percent-encoding %zz", EachValue(|| b"%zz".to_vec())),
        case("lone %", EachValue(|| b"%".to_vec())),
        case("truncated escape %C", EachValue(|| b"abc%C".to_vec())),
        case("invalid UTF-8 %C3%28", EachValue(|| b"%C3%28".to_vec())),
        case(
            "overlong UTF-8 %C0%AF",
            EachValue(|| b"%C0%AF%C0%AF".to_vec()),
        ),
        case(
            "UTF-16 surrogate %ED%A0%80",
            EachValue(|| b"%ED%A0%80".to_vec()),
        ),
        case(
            "raw bytes, not UTF-8",
            EachValue(|| b"\xff\xfe\xc3".to_vec()),
        ),
        case("NUL %00", EachValue(|| b"a%00b".to_vec())),
        case(
            "CRLF and a header",
            EachValue(|| b"x%0D%0ASet-Cookie%3A+injected%3D1".to_vec()),
        ),
        case("RTL override", EachValue(|| b"%E2%80%AEtxt.exe".to_vec())),
        case("emoji", EachValue(|| b"%F0%9F%94%91%F0%9F%98%80".to_vec())),
        case(
            "zero-width and BOM",
            EachValue(|| b"%E2%80%8B%EF%BB%BF".to_vec()),
        ),
        case(
            "markup",
            EachValue(|| b"%3Cscript%3Ealert(1)%3C%2Fscript%3E".to_vec()),
        ),
        // JWT-shaped: the ID token hints, the assertions a client might try.
        case(
            "unsigned JWT",
            EachValue(|| b"eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIiwiaXNzIjoiaHR0cDovL3gifQ.".to_vec()),
        ),
        case(
            "JWT with an injected kid",
            EachValue(|| {
                b"eyJhbGciOiJSUzI1NiIsImtpZCI6Iicgb3IgMT0xIC0tIn0.eyJzdWIiOiIxIn0.c2ln".to_vec()
            }),
        ),
        case("empty value", EachValue(Vec::new)),
        case("17 KiB value", EachValue(|| vec![b'a'; 17 * 1024])),
        case("1 MiB value", EachValue(|| vec![b'a'; MIB])),
        // Repetition.
        case("parameter twice", EachRepeated(2)),
        case("parameter 1000 times", EachRepeated(1000)),
        // Bodies that are not the form the endpoint reads.
        case(
            "empty body",
            Body(Some(b"application/x-www-form-urlencoded"), |_| Vec::new()),
        ),
        case(
            "form sent as JSON",
            Body(Some(b"application/json"), Target::params_as_json),
        ),
        case(
            "truncated JSON",
            Body(Some(b"application/json"), |_| {
                b"{\"token\": \"tsk_".to_vec()
            }),
        ),
        case(
            "JSON of the wrong types",
            Body(Some(b"application/json"), |_| {
                b"{\"token\": 1, \"client_id\": [null]}".to_vec()
            }),
        ),
        case(
            "JSON with a NUL",
            Body(Some(b"application/json"), |_| {
                b"{\"token\": \"a\\u0000b\"}".to_vec()
            }),
        ),
        case(
            "deeply nested JSON",
            Body(Some(b"application/json"), |_| {
                let mut v = vec![b'['; 10_000];
                v.extend(vec![b']'; 10_000]);
                v
            }),
        ),
        case(
            "multipart/form-data",
            Body(Some(b"multipart/form-data; boundary=XyZ"), |t| {
                let mut body = Vec::new();
                for (name, value) in &t.params {
                    body.extend_from_slice(
                        format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                            .as_bytes(),
                    );
                    body.extend_from_slice(value);
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(b"--XyZ--\r\n");
                body
            }),
        ),
        case(
            "form body, not UTF-8",
            Body(Some(b"application/x-www-form-urlencoded"), |_| {
                b"\xff\xfe=\x00\x01&\xc3=\xc3\x28".to_vec()
            }),
        ),
        case(
            "form body of 5000 pairs",
            Body(Some(b"application/x-www-form-urlencoded"), |_| {
                b"a=1&".repeat(5000)
            }),
        ),
        case(
            "1 MiB body",
            Body(Some(b"application/x-www-form-urlencoded"), |_| {
                vec![b'a'; MIB]
            }),
        ),
        // Content types.
        case("no content type", ContentType(None)),
        case(
            "JSON content type on a form",
            ContentType(Some(b"application/json")),
        ),
        case("text/plain", ContentType(Some(b"text/plain"))),
        case("garbage content type", ContentType(Some(b";;;=/"))),
        case(
            "content type not ASCII",
            ContentType(Some(b"application/x-www-form-urlencoded; charset=\xff")),
        ),
        case(
            "form content type in capitals",
            ContentType(Some(b"APPLICATION/X-WWW-FORM-URLENCODED; charset=UTF-8")),
        ),
        // Methods.
        case("PUT", Method("PUT")),
        case("DELETE", Method("DELETE")),
        case("PATCH", Method("PATCH")),
        case("OPTIONS", Method("OPTIONS")),
        case("a made-up method", Method("BREW")),
        // Headers.
        case(
            "Authorization not ASCII",
            Header("authorization", b"Basic \xff\xfe"),
        ),
        case(
            "Authorization garbage",
            Header("authorization", b"Basic !!!"),
        ),
        case(
            "Authorization scheme only",
            Header("authorization", b"Bearer"),
        ),
        case(
            "Authorization SQL-looking bearer",
            Header("authorization", b"Bearer ' or 1=1 --"),
        ),
        case(
            "Basic with bad escapes",
            Header("authorization", b"Basic JVpaOiVDMyUyOA=="),
        ),
        case(
            "Cookie garbage",
            Header("cookie", b"tessera_session=\xff\xfe; tessera_csrf=%00; =;;"),
        ),
        case(
            "User-Agent not ASCII",
            Header("user-agent", b"\xf0\x9f\x94\x91 \xff"),
        ),
        case(
            "X-Forwarded-For garbage",
            Header("x-forwarded-for", b"' or 1=1 --, 999.1.1.1"),
        ),
        case(
            "Accept garbage",
            Header("accept", b"application/token-introspection+jwt;q=\xff, */*"),
        ),
        // A chunked body whose chunk size is not hex: the handler cannot read it.
        case(
            "broken chunked body",
            Header("transfer-encoding", b"chunked"),
        ),
        // The path itself.
        case("path with a NUL", PathSuffix(b"%00")),
        case("path with a trailing slash", PathSuffix(b"/")),
        case(
            "path with a dot segment",
            PathSuffix(b"/..%2f..%2fetc%2fpasswd"),
        ),
    ]
}

/// The requests `change` makes of `target`, each with a label.
fn requests(target: &Target, change: &Change) -> Vec<(String, RawRequest)> {
    let base = target.request(&target.params);
    let one = |r: RawRequest| vec![(String::new(), r)];
    match change {
        Change::EachValue(value) => {
            let value = value();
            (0..target.params.len())
                .map(|i| {
                    let mut params = target.params.clone();
                    params[i].1 = value.clone();
                    (format!(" in `{}`", params[i].0), target.request(&params))
                })
                .collect()
        }
        Change::EachRepeated(n) => (0..target.params.len())
            .map(|i| {
                let mut params = target.params.clone();
                let repeated = params[i].clone();
                params.splice(i..=i, std::iter::repeat_n(repeated, *n));
                (
                    format!(" of `{}`", target.params[i].0),
                    target.request(&params),
                )
            })
            .collect(),
        Change::Body(content_type, body) => {
            let mut r = base;
            r.set_header("content-type", *content_type);
            r.body = body(target);
            one(r)
        }
        Change::ContentType(content_type) => {
            let mut r = base;
            r.set_header("content-type", *content_type);
            one(r)
        }
        Change::Method(method) => {
            let mut r = base;
            r.method = (*method).to_owned();
            one(r)
        }
        Change::Header(name, value) => {
            let mut r = base;
            r.set_header(name, Some(*value));
            if *name == "transfer-encoding" {
                // A chunk size that is not hex: the body cannot be read.
                r.body = b"zz\r\nabc\r\n0\r\n\r\n".to_vec();
            }
            one(r)
        }
        Change::PathSuffix(suffix) => {
            let mut r = base;
            let (path, query) = match r.target.iter().position(|&b| b == b'?') {
                Some(i) => r.target.split_at(i),
                None => (&r.target[..], &b""[..]),
            };
            r.target = [path, suffix, query].concat();
            one(r)
        }
    }
}

/// Error codes RFC 6749 §5.2, RFC 7009 §2.2.1 and OIDC Core §3.1.2.6 register.
const REGISTERED: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "unsupported_token_type",
    "temporarily_unavailable",
];

/// Why `res` is not an acceptable answer to `req`, if it is not: errors in `format`, any
/// other answer one that `success` allows.
fn judge(
    (format, success): (Format, Success),
    req: &RawRequest,
    res: &RawResponse,
) -> Result<(), String> {
    // Refused by the HTTP layer before any route: a bare 4xx is all it can say.
    if res.header("x-request-id").is_none() {
        return match res.status {
            400..=499 => Ok(()),
            s => Err(format!("{s} without reaching the service")),
        };
    }
    if res.status >= 500 {
        return Err(format!("{}: {}", res.status, res.text()));
    }
    if res.header("x-content-type-options") != Some("nosniff") {
        return Err("no X-Content-Type-Options: nosniff".into());
    }
    if res
        .headers
        .iter()
        .any(|(n, v)| n == "set-cookie" && v.contains("injected"))
    {
        return Err("a header was injected".into());
    }
    if res.status >= 400 {
        return error_format(format, req, res);
    }
    let location = res.header("location").unwrap_or("");
    let to_client_with_error = location.starts_with(&format!("{REDIRECT}?"))
        && location.contains("error=")
        && !location.contains("code=");
    let ok = match (success, res.status) {
        (Success::Page, 200) => page(res).map(|()| true)?,
        (Success::PageOrErrorRedirect, 200) => page(res).map(|()| true)?,
        (Success::PageOrErrorRedirect, 302 | 303) => to_client_with_error,
        (Success::ContinueOrErrorRedirect, 303) => {
            location.starts_with("/authorize?") || to_client_with_error
        }
        (Success::Inactive, 200) => res.body == br#"{"active":false}"#,
        (Success::Revoked, 200) => res.body.is_empty(),
        (Success::Json, 200) => {
            serde_json::from_slice::<serde_json::Value>(&res.body).is_ok_and(|v| v.is_object())
        }
        (Success::Stylesheet, 200) => res
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/css")),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "unexpected {} (location {location:?}): {}",
            res.status,
            res.text()
        ))
    }
}

/// Whether a 4xx is in `target`'s format.
fn error_format(format: Format, req: &RawRequest, res: &RawResponse) -> Result<(), String> {
    match format {
        Format::OAuthJson => {
            let error = oauth_json(res)?;
            if !REGISTERED.contains(&error.as_str()) {
                return Err(format!("unregistered error {error:?}"));
            }
            // RFC 6749 §5.2: a client that tried the Authorization header gets a challenge.
            let tried_header = req
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
            if res.status == 401 && tried_header && res.header("www-authenticate").is_none() {
                return Err("401 without WWW-Authenticate".into());
            }
            Ok(())
        }
        Format::Bearer => match res.status {
            400 | 401 | 403 => {
                let challenge = res.header("www-authenticate").unwrap_or("");
                if !challenge.starts_with("Bearer") {
                    return Err(format!(
                        "{} without a Bearer challenge ({challenge:?}): {}",
                        res.status,
                        res.text()
                    ));
                }
                Ok(())
            }
            _ => oauth_json(res).map(drop),
        },
        Format::Json => oauth_json(res).map(drop),
        Format::Page => page(res),
    }
}

/// The `error` of an RFC 6749 §5.2 body, checked for shape and cache rule.
fn oauth_json(res: &RawResponse) -> Result<String, String> {
    let content_type = res.header("content-type").unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(format!(
            "{} as {content_type:?}, not JSON: {:?}",
            res.status,
            res.text()
        ));
    }
    let body: serde_json::Value = serde_json::from_slice(&res.body)
        .map_err(|e| format!("{} body is not JSON ({e}): {}", res.status, res.text()))?;
    let error = body["error"]
        .as_str()
        .ok_or_else(|| format!("no `error` in {body}"))?;
    if res.header("cache-control") != Some("no-store") {
        return Err("an error answer without Cache-Control: no-store".into());
    }
    Ok(error.to_owned())
}

/// A styled page, with the headers every page carries, that reflects nothing as markup.
fn page(res: &RawResponse) -> Result<(), String> {
    let content_type = res.header("content-type").unwrap_or("");
    if !content_type.starts_with("text/html") {
        return Err(format!(
            "{} as {content_type:?}, not a page: {:?}",
            res.status,
            res.text()
        ));
    }
    let body = res.text();
    if !body.contains("<html") {
        return Err(format!("{} is not a whole page: {body}", res.status));
    }
    if body.contains("<script>alert(1)</script>") {
        return Err("markup from the request is on the page".into());
    }
    match crate::support::page_headers_missing(|name| res.header(name)) {
        Some(missing) => Err(format!("{}: {missing}", res.status)),
        None => Ok(()),
    }
}

/// Row counts of every table a refused request must leave alone, and of the audit trail by
/// kind. Failed sign-ins are recorded by design (and feed the throttle), so those kinds are
/// left out.
async fn written(db: &TestDb) -> BTreeMap<String, String> {
    let mut counts = BTreeMap::new();
    for table in [
        "client",
        "account",
        "session",
        "consent",
        "oauth_grant",
        "authorization_code",
        "token",
        "signing_key",
    ] {
        let rows = db.rows(&format!("select count(*) from {table}")).await;
        counts.insert(table.to_owned(), format!("{:?}", rows[0][0]));
    }
    let kinds = db
        .rows(
            "select kind, count(*) from audit_event \
             where kind not in ('login_failed', 'login_throttled', 'login_blocked') \
             group by kind order by kind",
        )
        .await;
    counts.insert("audit_event".into(), format!("{kinds:?}"));
    counts
}

fn cookie_of(jar: &reqwest::cookie::Jar, server: &TestServer) -> Vec<u8> {
    cookie_header(jar, &server.base).into_bytes()
}

/// The id of the API key on the account page (there is one).
fn key_id_on(page: &Reply) -> String {
    let marker = "data-key-id=\"";
    let start = page
        .body
        .find(marker)
        .unwrap_or_else(|| panic!("no key on: {}", page.body))
        + marker.len();
    page.body[start..].split('"').next().unwrap().to_owned()
}

/// Every public endpoint, each with a request that gets as far as it can without changing
/// anything: wrong passwords, unknown codes and tokens, a key that may not be made (the
/// one key allowed exists), confirmations not given.
async fn targets(server: &TestServer) -> Vec<Target> {
    server.user("ada").await;
    let web = server.confidential_client("web").await;
    let post = server
        .client_with("post", false, |c| {
            c.token_endpoint_auth_method = AuthMethod::ClientSecretPost
        })
        .await;
    let public = server.public_client("pub").await;
    let gw = gateway(server).await;

    // A person signed in at the account page, holding the one key they may have.
    let (signed_in, jar) = Browser::with_jar(&server.base);
    let form = signed_in.get("/account").await;
    let res = signed_in
        .post(
            "/account/login",
            &[
                ("username", "ada"),
                ("password", PASSWORD),
                ("csrf_token", &form.input("csrf_token")),
            ],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    let account = signed_in.get("/account").await;
    let account_csrf = account.input("csrf_token");
    let made = signed_in
        .post(
            "/account/keys",
            &[
                ("csrf_token", &account_csrf),
                ("label", "deploy"),
                ("expires_in", "90d"),
                ("scope_read", "on"),
            ],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let key_id = key_id_on(&signed_in.get("/account").await);
    let account_cookie = cookie_of(&jar, server);

    // A browser nobody signed in at, with a sign-in page open (its CSRF cookie and token).
    let (anonymous, jar) = Browser::with_jar(&server.base);
    let authorize = AuthorizeUrl::new(&web)
        .set("nonce", "n-1")
        .set("max_age", "300")
        .set("login_hint", "ada")
        .set("ui_locales", "en")
        .set("display", "page")
        .set("acr_values", "0");
    let login_page = anonymous.get(&authorize.path()).await;
    assert_eq!(login_page.status, 200, "{}", login_page.body);
    let csrf = login_page.input("csrf_token");
    let pending = login_page.input("authorize_query");
    let cookie = cookie_of(&jar, server);
    let authorize_query = authorize.path();
    let authorize_pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(authorize_query.trim_start_matches("/authorize?").as_bytes())
            .into_owned()
            .collect();

    let mut authorize_get = Target::new("authorize GET", "GET", "/authorize").answers(
        Format::Page,
        Success::PageOrErrorRedirect,
        &[200],
    );
    let mut authorize_post = Target::new("authorize POST", "POST", "/authorize").answers(
        Format::Page,
        Success::PageOrErrorRedirect,
        &[200],
    );
    // Signed in, without consent yet: as far as the consent page (the code needs consent).
    let mut authorize_signed_in = Target::new("authorize GET, signed in", "GET", "/authorize")
        .header("cookie", &account_cookie)
        .answers(Format::Page, Success::PageOrErrorRedirect, &[200]);
    for (name, value) in &authorize_pairs {
        authorize_get = authorize_get.param(name, value);
        authorize_post = authorize_post.param(name, value);
        authorize_signed_in = authorize_signed_in.param(name, value);
    }
    // A key that passes the checksum but was never issued: the leak report looks it up.
    let unknown_key = tessera::crypto::api_key::generate().expose().to_owned();
    let code = [
        ("grant_type", "authorization_code"),
        ("code", "tsc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ("redirect_uri", REDIRECT),
        (
            "code_verifier",
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        ),
    ];
    let mut token_basic = Target::new("token, code, Basic", "POST", "/token")
        .basic(&web)
        .answers(Format::OAuthJson, Success::None, &[400]);
    let mut token_public = Target::new("token, code, public client", "POST", "/token")
        .param("client_id", &public.record.id)
        .answers(Format::OAuthJson, Success::None, &[400]);
    for (name, value) in code {
        token_basic = token_basic.param(name, value);
        token_public = token_public.param(name, value);
    }

    vec![
        authorize_get,
        authorize_post,
        authorize_signed_in,
        Target::new("login", "POST", "/login")
            .header("cookie", &cookie)
            .param("username", "ada")
            .param("password", "not the password")
            .param("csrf_token", &csrf)
            .param("authorize_query", &pending)
            .answers(Format::Page, Success::ContinueOrErrorRedirect, &[401]),
        Target::new("consent", "POST", "/consent")
            .header("cookie", &cookie)
            .param("decision", "approve")
            .param("csrf_token", &csrf)
            .param("authorize_query", &pending)
            .answers(Format::Page, Success::ContinueOrErrorRedirect, &[303]),
        Target::new("consent, signed in", "POST", "/consent")
            .header("cookie", &account_cookie)
            .param("decision", "maybe")
            .param("csrf_token", &account_csrf)
            .param("authorize_query", &pending)
            .answers(Format::Page, Success::ContinueOrErrorRedirect, &[400]),
        token_basic,
        token_public,
        Target::new("token, refresh, client_secret_post", "POST", "/token")
            .param("grant_type", "refresh_token")
            .param(
                "refresh_token",
                "tsr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            )
            .param("scope", "openid")
            .param("client_id", &post.record.id)
            .param("client_secret", post.secret.as_deref().unwrap())
            .answers(Format::OAuthJson, Success::None, &[400]),
        Target::new("introspect", "POST", "/introspect")
            .basic(&gw)
            .param("token", "tsa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .param("token_type_hint", "access_token")
            .answers(Format::OAuthJson, Success::Inactive, &[200]),
        Target::new("revoke", "POST", "/revoke")
            .basic(&web)
            .param("token", "tsr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .param("token_type_hint", "refresh_token")
            .answers(Format::OAuthJson, Success::Revoked, &[200]),
        Target::new("userinfo GET", "GET", "/userinfo")
            .header(
                "authorization",
                b"Bearer tsa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            )
            .param("schema", "openid")
            .answers(Format::Bearer, Success::None, &[401]),
        Target::new("userinfo POST", "POST", "/userinfo")
            .param(
                "access_token",
                "tsa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            )
            .answers(Format::Bearer, Success::None, &[401]),
        Target::new("logout GET", "GET", "/logout")
            .param("client_id", &web.record.id)
            .param("state", "s-1")
            .param("ui_locales", "en")
            .answers(Format::Page, Success::Page, &[200]),
        Target::new("logout POST", "POST", "/logout")
            .param("client_id", &web.record.id)
            .param("state", "s-1")
            .answers(Format::Page, Success::Page, &[200]),
        Target::new("logout confirmation", "POST", "/logout")
            .header("cookie", &cookie)
            .param("csrf_token", &csrf)
            .param("logout_query", "client_id=web&state=s-1")
            .param("confirm", "yes")
            .answers(Format::Page, Success::Page, &[200]),
        Target::new("jwks", "GET", "/jwks")
            .param("kid", "x")
            .answers(Format::Json, Success::Json, &[200]),
        Target::new("discovery", "GET", "/.well-known/openid-configuration")
            .param("x", "1")
            .answers(Format::Json, Success::Json, &[200]),
        Target::new("metadata", "GET", "/.well-known/oauth-authorization-server")
            .param("x", "1")
            .answers(Format::Json, Success::Json, &[200]),
        Target::new("account", "GET", "/account")
            .header("cookie", &account_cookie)
            .param("x", "1")
            .answers(Format::Page, Success::Page, &[200]),
        Target::new("account sign-in", "POST", "/account/login")
            .header("cookie", &cookie)
            .param("username", "ada")
            .param("password", "not the password")
            .param("csrf_token", &csrf)
            .answers(Format::Page, Success::None, &[401, 429]),
        Target::new("API key create", "POST", "/account/keys")
            .header("cookie", &account_cookie)
            .param("csrf_token", &account_csrf)
            .param("label", "another")
            .param("expires_in", "30d")
            .param("scope_read", "on")
            .answers(Format::Page, Success::None, &[409]),
        Target::new("API key revoke", "POST", "/account/keys/revoke")
            .header("cookie", &account_cookie)
            .param("csrf_token", &account_csrf)
            .param("key_id", &key_id)
            .param("confirm", "no")
            .answers(Format::Page, Success::Page, &[200]),
        Target::new("API key regenerate", "POST", "/account/keys/regenerate")
            .header("cookie", &account_cookie)
            .param("csrf_token", &account_csrf)
            .param("key_id", &key_id)
            .param("confirm", "no")
            .answers(Format::Page, Success::Page, &[200]),
        Target::new("leak report, form", "POST", "/apikeys/revoke-leaked")
            .param("token", &unknown_key)
            .answers(Format::OAuthJson, Success::Json, &[200]),
        Target {
            body: Some((
                "application/json",
                format!(r#"[{{"token": "{unknown_key}"}}, {{"token": "tsk_AAAA"}}]"#).into_bytes(),
            )),
            ..Target::new("leak report, JSON", "POST", "/apikeys/revoke-leaked").answers(
                Format::OAuthJson,
                Success::Json,
                &[200],
            )
        },
        Target::new("healthz", "GET", "/healthz").answers(Format::Json, Success::Json, &[200]),
        Target::new("readyz", "GET", "/readyz").answers(Format::Json, Success::Json, &[200]),
        Target::new("stylesheet", "GET", "/static/tessera.css")
            .param("v", "1")
            .answers(Format::Json, Success::Stylesheet, &[200]),
        Target::new("unknown path", "GET", "/no-such-page")
            .param("x", "1")
            .answers(Format::Page, Success::None, &[404]),
    ]
}

#[tokio::test]
async fn every_endpoint_answers_malformed_input_with_a_clean_4xx_in_its_format_rfc6749_5_2() {
    for db in TestDb::all().await {
        let mut env = db.env();
        // One key per person: the key that exists makes every create a refusal.
        env.insert("TESSERA_API_KEY_MAX_PER_USER".into(), "1".into());
        let config =
            tessera::Config::from_sources(Some(std::path::Path::new("/dev/null")), &env).unwrap();
        let server = TestServer::start_with(config).await;
        let addr = server.base.trim_start_matches("http://").to_owned();
        let targets = targets(&server).await;
        let before = written(&db).await;

        let mut failures = Vec::new();
        let mut sent = 0;
        for target in &targets {
            for case in cases() {
                for (label, request) in requests(target, &case.change) {
                    let res = send(&addr, &request).await;
                    sent += 1;
                    let untouched = matches!(case.change, Change::PathSuffix(b""));
                    if untouched && !target.untouched.contains(&res.status) {
                        failures.push(format!(
                            "{} unchanged: {} instead of {:?}: {}",
                            target.name,
                            res.status,
                            target.untouched,
                            res.text()
                        ));
                    }
                    if let Err(why) = judge(case.expects(target), &request, &res) {
                        failures.push(format!(
                            "{} / {}{label}: {why}\n    {}",
                            target.name,
                            case.name,
                            request.describe()
                        ));
                    }
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{}: {} of {sent} answers were not clean:\n{}",
            db.label,
            failures.len(),
            failures.join("\n")
        );
        assert_eq!(
            written(&db).await,
            before,
            "{}: a refused request wrote",
            db.label
        );
        // And the server is still serving.
        let res = crate::support::http()
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        server.stop().await;
    }
}
