//! Driving the authorization code flow as a browser and a client app would.

use std::collections::HashMap;

use base64::Engine;
use sha2::{Digest as _, Sha256};
use tessera::audit::{AuditEvent, AuditKind};
use tessera::crypto::token::{PlainSecret, CLIENT_SECRET_PREFIX};
use tessera::store::{AccessTokenFormat, AccountRecord, AuthMethod, ClientRecord, StandardClaims};

use super::TestServer;

pub const REDIRECT: &str = "https://app.example/cb";
pub const PASSWORD: &str = "correct horse battery";

/// A registered client and, if confidential, its secret.
pub struct TestClient {
    pub record: ClientRecord,
    pub secret: Option<String>,
}

impl TestServer {
    /// A confidential client (client_secret_basic) for `REDIRECT` with openid profile email.
    pub async fn confidential_client(&self, id: &str) -> TestClient {
        self.client_with(id, false, |_| {}).await
    }

    /// A public client (auth method none, PKCE required).
    pub async fn public_client(&self, id: &str) -> TestClient {
        self.client_with(id, true, |_| {}).await
    }

    pub async fn client_with(
        &self,
        id: &str,
        public: bool,
        change: impl FnOnce(&mut ClientRecord),
    ) -> TestClient {
        let secret = (!public).then(|| PlainSecret::generate(CLIENT_SECRET_PREFIX));
        let mut record = ClientRecord {
            id: id.to_owned(),
            name: format!("App {id}"),
            secret_digest: secret.as_ref().map(PlainSecret::digest),
            redirect_uris: vec![REDIRECT.to_owned(), "http://127.0.0.1:7777/cb".to_owned()],
            post_logout_redirect_uris: vec![],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            scope: "openid profile email".into(),
            token_endpoint_auth_method: if public {
                AuthMethod::None
            } else {
                AuthMethod::ClientSecretBasic
            },
            access_token_format: AccessTokenFormat::Opaque,
            may_introspect: false,
            first_party: false,
            // RFC 9700 §2.1.1: every client requires PKCE unless opted out.
            require_pkce: true,
            id_token_signed_response_alg: "RS256".into(),
            created_at: 0,
            updated_at: 0,
            rate_limit_per_sec: None,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            frontchannel_logout_uri: None,
            frontchannel_logout_session_required: false,
        };
        change(&mut record);
        let audit = AuditEvent::new(AuditKind::ClientCreated, "test", 0);
        self.state
            .store
            .insert_client(&record, &audit)
            .await
            .unwrap();
        TestClient {
            record,
            secret: secret.map(|s| s.expose().to_owned()),
        }
    }

    /// A client registered the way an operator does it, with `tessera client create` and
    /// `extra` options, for `REDIRECT`.
    pub async fn cli_client(&self, db: &super::TestDb, extra: &[&str]) -> TestClient {
        let mut args = vec!["client", "create", "--name", "CLI app"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--redirect-uri", REDIRECT, "--json"]);
        let out = db.tessera(&args).json();
        let id = out["client"]["id"].as_str().unwrap();
        let record = self.state.store.client(id).await.unwrap().unwrap();
        TestClient {
            record,
            secret: out["client_secret"].as_str().map(str::to_owned),
        }
    }

    /// A user with password `PASSWORD`.
    pub async fn user(&self, username: &str) -> AccountRecord {
        let hash = self.state.passwords.hash(PASSWORD.into()).await.unwrap();
        let account = AccountRecord {
            id: uuid::Uuid::new_v4().to_string(),
            username: username.to_owned(),
            password_hash: Some(hash),
            claims: StandardClaims::default(),
            disabled: false,
            failed_login_count: 0,
            roles: Vec::new(),
            groups: Vec::new(),
            created_at: 0,
            updated_at: 0,
        };
        let audit = AuditEvent::new(AuditKind::UserCreated, "test", 0);
        self.state
            .store
            .insert_account(&account, &audit)
            .await
            .unwrap();
        account
    }

    /// Marks the user disabled in the store (as `update_account` does: its sessions and
    /// tokens stay, and every step that reads them refuses a disabled user).
    pub async fn disable_user(&self, id: &str) {
        let store = self.state.store.as_ref();
        let mut account = store.account(id).await.unwrap().unwrap();
        account.disabled = true;
        let audit = AuditEvent::new(AuditKind::UserDisabled, "test", 0);
        store.update_account(&account, &audit).await.unwrap();
    }

    /// Runs the code flow in `browser` as "ada" (PKCE added to `url`) and exchanges the code;
    /// returns the token response.
    pub async fn code_flow(
        &self,
        browser: &Browser,
        client: &TestClient,
        url: AuthorizeUrl,
        pkce: &Pkce,
    ) -> serde_json::Value {
        let done = browser
            .authorize_through(&url.pkce(pkce).path(), "ada")
            .await;
        let code = done.redirect_params()["code"].clone();
        let res = self.redeem(client, &code, pkce).await;
        assert_eq!(res.status, 200, "{}", res.body);
        res.json()
    }

    /// `code` (issued for [`REDIRECT`] with `pkce`) at the token endpoint.
    pub async fn redeem(&self, client: &TestClient, code: &str, pkce: &Pkce) -> Reply {
        self.token(
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await
    }

    /// The discovery document (OIDC Discovery §4).
    pub async fn discovery(&self) -> serde_json::Value {
        let res = super::http()
            .get(self.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// The keys `/jwks` publishes now.
    pub async fn jwks(&self) -> Vec<josekit::jwk::Jwk> {
        let body: serde_json::Value = super::http()
            .get(self.url("/jwks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| josekit::jwk::Jwk::from_bytes(k.to_string().as_bytes()).unwrap())
            .collect()
    }

    /// Verifies a JWT against the key `/jwks` publishes now under its `kid`.
    pub async fn verify_jwt(
        &self,
        token: &str,
    ) -> (josekit::jwt::JwtPayload, josekit::jws::JwsHeader) {
        let header = josekit::jwt::decode_header(token).unwrap();
        let kid = header
            .claim("kid")
            .and_then(|v| v.as_str())
            .unwrap()
            .to_owned();
        let key = self
            .jwks()
            .await
            .into_iter()
            .find(|k| k.key_id() == Some(kid.as_str()))
            .expect("kid in JWKS");
        let verifier = tessera::crypto::keys::verifier(&key).unwrap();
        josekit::jwt::decode_with_verifier(token, verifier.as_ref()).unwrap()
    }

    pub fn browser(&self) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: self.base.clone(),
        }
    }

    /// `grant_type=refresh_token` with `refresh_token`, as `client`.
    pub async fn refresh(&self, client: &TestClient, refresh_token: &serde_json::Value) -> Reply {
        let token = refresh_token.as_str().expect("a refresh token");
        self.token(
            client,
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
        .await
    }

    /// POSTs a form to the token endpoint, authenticating as the client does.
    pub async fn token(&self, client: &TestClient, form: &[(&str, &str)]) -> Reply {
        self.token_like("/token", client, form).await
    }

    /// POSTs a form to `path` (/token, /introspect, /revoke), authenticating as the client
    /// does at the token endpoint.
    pub async fn token_like(
        &self,
        path: &str,
        client: &TestClient,
        form: &[(&str, &str)],
    ) -> Reply {
        let mut request = super::http().post(self.url(path));
        let mut form: Vec<(&str, &str)> = form.to_vec();
        match (&client.secret, client.record.token_endpoint_auth_method) {
            (Some(secret), AuthMethod::ClientSecretBasic) => {
                request = request.basic_auth(&client.record.id, Some(secret));
            }
            (Some(secret), _) => {
                form.push(("client_id", &client.record.id));
                form.push(("client_secret", secret));
            }
            (None, _) => form.push(("client_id", &client.record.id)),
        }
        Reply::from(request.form(&form).send().await.unwrap()).await
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub async fn from(res: reqwest::Response) -> Reply {
        Reply {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: res.text().await.unwrap(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> &str {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location ({}): {}", self.status, self.body))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The value of the form input named `name` on this page.
    pub fn input(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no input {name} in: {}", self.body));
        let tag_start = self.body[..start].rfind('<').unwrap();
        let tag_end = start + self.body[start..].find('>').unwrap();
        let tag = &self.body[tag_start..tag_end];
        let value = tag
            .split("value=\"")
            .nth(1)
            .unwrap_or("")
            .split('"')
            .next()
            .unwrap_or("");
        unescape(value)
    }

    /// The query parameters of the redirect this reply makes.
    pub fn redirect_params(&self) -> HashMap<String, String> {
        let url = url::Url::parse(self.location()).unwrap();
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

/// The `Cookie` header a browser with `jar` sends to `base`.
pub fn cookie_header(jar: &reqwest::cookie::Jar, base: &str) -> String {
    reqwest::cookie::CookieStore::cookies(jar, &base.parse().unwrap())
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Undoes HTML escaping of attribute values: numeric (`&#38;`, `&#x26;`) and the common
/// named entities.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
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

/// A browser: keeps cookies, follows no redirects.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
}

impl Browser {
    /// A browser at `base` whose cookies the test can read through the jar (to copy them
    /// into hand-made requests, or to look for them in a log).
    pub fn with_jar(base: &str) -> (Browser, std::sync::Arc<reqwest::cookie::Jar>) {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let browser = Browser {
            http: reqwest::Client::builder()
                .cookie_provider(std::sync::Arc::clone(&jar))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
        };
        (browser, jar)
    }

    pub async fn get(&self, path: &str) -> Reply {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        Reply::from(self.http.get(url).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        Reply::from(
            self.http
                .post(format!("{}{path}", self.base))
                .form(form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Submits the login form on `page`.
    pub async fn login(&self, page: &Reply, username: &str, password: &str) -> Reply {
        assert_eq!(page.status, 200, "not the login page: {}", page.body);
        self.post(
            "/login",
            &[
                ("username", username),
                ("password", password),
                ("csrf_token", &page.input("csrf_token")),
                ("authorize_query", &page.input("authorize_query")),
            ],
        )
        .await
    }

    /// Submits the consent form on `page` with `decision`.
    pub async fn consent(&self, page: &Reply, decision: &str) -> Reply {
        assert!(
            page.body.contains("name=\"decision\""),
            "not the consent page: {}",
            page.body
        );
        self.post(
            "/consent",
            &[
                ("decision", decision),
                ("csrf_token", &page.input("csrf_token")),
                ("authorize_query", &page.input("authorize_query")),
                ("signed_in", &page.input("signed_in")),
            ],
        )
        .await
    }

    /// Authorize, logging in and approving consent when asked, until the redirect to the
    /// client (or an error page) comes back: a 302 from `/authorize`, or the 303 that answers
    /// the login or the consent form.
    pub async fn authorize_through(&self, authorize: &str, username: &str) -> Reply {
        let mut reply = self.get(authorize).await;
        for _ in 0..4 {
            let next = if reply.status == 200 && reply.body.contains("name=\"password\"") {
                self.login(&reply, username, PASSWORD).await
            } else if reply.status == 200 && reply.body.contains("name=\"decision\"") {
                self.consent(&reply, "approve").await
            } else {
                return reply;
            };
            // A form's answer is the next page itself (the login's: the consent page,
            // decision 0050) or a 303, to the client or back to a page of the server.
            reply = match next.status {
                200 => next,
                303 if next.location().starts_with('/') => self.get(next.location()).await,
                303 => return next,
                _ => panic!("{}: {}", next.status, next.body),
            };
        }
        reply
    }
}

/// A PKCE verifier and its S256 challenge.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        Pkce::from_verifier(PlainSecret::generate("v-").expose().to_owned())
    }

    /// RFC 7636 Appendix B's verifier: the challenge `AuthorizeUrl::new` sends by default.
    pub fn fixed() -> Pkce {
        Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned())
    }

    fn from_verifier(verifier: String) -> Pkce {
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

/// An authorization request URL (path and query).
#[derive(Clone)]
pub struct AuthorizeUrl {
    pairs: Vec<(String, String)>,
}

impl AuthorizeUrl {
    /// `response_type=code`, the client, `REDIRECT`, `scope=openid profile`, a state, and the
    /// S256 challenge of [`Pkce::fixed`] (every client requires PKCE); `.pkce(..)` replaces it,
    /// `.without_pkce()` drops it.
    pub fn new(client: &TestClient) -> AuthorizeUrl {
        AuthorizeUrl::for_client_id(&client.record.id)
    }

    /// The same for a client known only by its id (one made with the CLI of a server in
    /// another process).
    pub fn for_client_id(client_id: &str) -> AuthorizeUrl {
        AuthorizeUrl {
            pairs: vec![
                ("response_type".into(), "code".into()),
                ("client_id".into(), client_id.to_owned()),
                ("redirect_uri".into(), REDIRECT.into()),
                ("scope".into(), "openid profile".into()),
                ("state".into(), "st-123".into()),
            ],
        }
        .pkce(&Pkce::fixed())
    }

    pub fn without_pkce(self) -> Self {
        self.remove("code_challenge")
            .remove("code_challenge_method")
    }

    pub fn pkce(self, pkce: &Pkce) -> Self {
        self.set("code_challenge", &pkce.challenge)
            .set("code_challenge_method", "S256")
    }

    /// Sets (or replaces) a parameter.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.pairs.retain(|(n, _)| n != name);
        self.pairs.push((name.into(), value.into()));
        self
    }

    /// Adds a parameter even if present (for duplicate tests).
    pub fn add(mut self, name: &str, value: &str) -> Self {
        self.pairs.push((name.into(), value.into()));
        self
    }

    pub fn remove(mut self, name: &str) -> Self {
        self.pairs.retain(|(n, _)| n != name);
        self
    }

    pub fn path(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.pairs {
            s.append_pair(k, v);
        }
        format!("/authorize?{}", s.finish())
    }
}

/// A gateway: a client that may introspect and gets tokens for itself only.
pub async fn gateway(server: &TestServer) -> TestClient {
    server
        .client_with("gateway", false, |c| {
            c.may_introspect = true;
            c.grant_types = vec!["client_credentials".into()];
            c.redirect_uris = vec![];
            c.scope = "gateway".into();
        })
        .await
}

/// Introspects `token` as `caller`; the answer must be a 200 that is never cached.
pub async fn introspect(
    server: &TestServer,
    gateway: &TestClient,
    token: &str,
) -> serde_json::Value {
    let res = server
        .token_like("/introspect", gateway, &[("token", token)])
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    res.json()
}

/// The only answer RFC 7662 §2.2 allows for anything not active.
pub fn inactive() -> serde_json::Value {
    serde_json::json!({ "active": false })
}

/// The `kid` in a JWT's header.
pub fn kid_of(jwt: &str) -> String {
    josekit::jwt::decode_header(jwt)
        .unwrap()
        .claim("kid")
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}
