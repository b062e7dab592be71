//! No secret in the log or the audit trail (issue 14, ASVS 5.0 V16.2.5): a whole flow
//! against the real binary logging everything it can, then every log line and every
//! `audit_event` row searched for each secret the flow handled.

use std::io::Read;
use std::process::{Command, Stdio};

use base64::Engine;

use crate::support::flow::{cookie_header, AuthorizeUrl, Browser, Pkce, Reply, PASSWORD, REDIRECT};
use crate::support::{binary, http, run_binary, serve, wait_healthy, TestDb};

const BYE: &str = "https://app.example/bye";
const WRONG_PASSWORD: &str = "wrong-horse-battery-7f3a";

/// The values that must never be written down, with what they are for the failure message.
#[derive(Default)]
struct Secrets(Vec<(&'static str, String)>);

impl Secrets {
    fn add(&mut self, what: &'static str, value: &str) {
        assert!(
            value.len() >= 8,
            "{what} is too short to look for: {value:?}"
        );
        self.0.push((what, value.to_owned()));
        // A JWT's signature is what makes it a credential; find it even if the rest is cut.
        if value.matches('.').count() == 2 {
            if let Some(signature) = value.rsplit('.').next() {
                self.0.push((what, signature.to_owned()));
            }
        }
        // The random part alone, in case something strips the `ts?_` prefix.
        if value.starts_with("ts") && value.get(3..4) == Some("_") {
            self.0.push((what, value[4..].to_owned()));
        }
    }

    /// The secrets that appear in `text`.
    fn found_in(&self, text: &str) -> Vec<&'static str> {
        self.0
            .iter()
            .filter(|(_, value)| text.contains(value.as_str()))
            .map(|(what, _)| *what)
            .collect()
    }
}

async fn call(base: &str, path: &str, id: &str, secret: &str, form: &[(&str, &str)]) -> Reply {
    let res = http()
        .post(format!("{base}{path}"))
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap();
    Reply::from(res).await
}

#[tokio::test]
async fn no_secret_reaches_the_log_or_the_audit_trail_asvs_16_2_5() {
    for db in TestDb::all().await {
        let mut env = db.env();
        // Everything every layer logs: requests, sqlx statements, rustls, the store.
        env.insert("TESSERA_LOG_FILTER".into(), "trace".into());
        // The configuration's secrets too: the key-encryption key, and a database password
        // (Postgres in the tests trusts every connection, so any password does).
        let mut secrets = Secrets::default();
        let kek_bytes = [
            uuid::Uuid::new_v4().into_bytes(),
            uuid::Uuid::new_v4().into_bytes(),
        ];
        let kek = base64::engine::general_purpose::STANDARD.encode(kek_bytes.concat());
        env.insert("TESSERA_KEY_ENCRYPTION_KEY".into(), kek.clone());
        secrets.add("the key-encryption key", &kek);
        if db.label == "postgres" {
            let mut url = url::Url::parse(&db.url).unwrap();
            url.set_password(Some("db-pass-4d1c9e")).unwrap();
            env.insert("DATABASE_URL".into(), url.to_string());
            secrets.add("the database password", "db-pass-4d1c9e");
        }
        // Every command of the operator's below runs with the server's configuration.
        let tessera = |args: &[&str], stdin: Option<&str>| run_binary(args, &env, stdin);
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .env_clear()
            .envs(&env)
            .stdout(Stdio::piped());
        let mut server = serve::start(command).listening();
        // Read stdout as it comes too: a full pipe would stall the server.
        let mut stdout = server.child().stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut log = Vec::new();
            stdout.read_to_end(&mut log).unwrap();
            String::from_utf8_lossy(&log).into_owned()
        });
        let base = server.base.clone();
        wait_healthy(&http(), &format!("{base}/healthz")).await;
        secrets.add("the password", PASSWORD);
        secrets.add("a wrong password", WRONG_PASSWORD);

        // An operator makes a user, a web app and a gateway.
        tessera(
            &["user", "create", "--username", "ada", "--password-stdin"],
            Some(PASSWORD),
        )
        .succeeds();
        let scope = "openid profile email offline_access";
        let web = tessera(
            &[
                "client",
                "create",
                "--id",
                "webapp-7",
                "--name",
                "Web",
                "--redirect-uri",
                REDIRECT,
                "--post-logout-redirect-uri",
                BYE,
                "--scope",
                scope,
                "--json",
            ],
            None,
        )
        .json();
        let web_secret = web["client_secret"].as_str().unwrap().to_owned();
        secrets.add("the client secret", &web_secret);
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("webapp-7:{web_secret}"));
        secrets.add("the Basic credentials", &basic);
        let gw = tessera(
            &[
                "client",
                "create",
                "--id",
                "gw",
                "--name",
                "Gateway",
                "--introspect",
                "--grant-type",
                "client_credentials",
                "--scope",
                "gateway",
                "--json",
            ],
            None,
        )
        .json();
        let gw_secret = gw["client_secret"].as_str().unwrap().to_owned();
        secrets.add("the gateway's secret", &gw_secret);

        // A person: a wrong password first, then the right one; consent; the code.
        let (browser, jar) = Browser::with_jar(&base);
        let pkce = Pkce::new();
        let url = AuthorizeUrl::for_client_id("webapp-7")
            .set("scope", scope)
            .set("prompt", "consent")
            .pkce(&pkce);
        let page = browser.get(&url.path()).await;
        let refused = browser.login(&page, "ada", WRONG_PASSWORD).await;
        assert_eq!(refused.status, 401, "{}", refused.body);
        let done = browser.authorize_through(&url.path(), "ada").await;
        let code = done.redirect_params()["code"].clone();
        secrets.add("the code", &code);
        secrets.add("the PKCE verifier", &pkce.verifier);
        let cookies = cookie_header(&jar, &base);
        let session = cookies
            .split("; ")
            .find_map(|c| c.strip_prefix("tessera_session="))
            .unwrap_or_else(|| panic!("no session cookie in {cookies}"));
        secrets.add("the session cookie", session);

        // The app: code for tokens, userinfo, a refresh.
        let res = call(
            &base,
            "/token",
            "webapp-7",
            &web_secret,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.body);
        let tokens = res.json();
        let access = tokens["access_token"].as_str().unwrap().to_owned();
        let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
        let id_token = tokens["id_token"].as_str().unwrap().to_owned();
        secrets.add("the access token", &access);
        secrets.add("the refresh token", &refresh);
        secrets.add("the ID token", &id_token);
        let res = http()
            .get(format!("{base}/userinfo"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let res = call(
            &base,
            "/token",
            "webapp-7",
            &web_secret,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.body);
        let rotated = res.json();
        let access2 = rotated["access_token"].as_str().unwrap().to_owned();
        let refresh2 = rotated["refresh_token"].as_str().unwrap().to_owned();
        secrets.add("the second access token", &access2);
        secrets.add("the second refresh token", &refresh2);
        if let Some(id2) = rotated["id_token"].as_str() {
            secrets.add("the second ID token", id2);
        }

        // The gateway introspects; the app revokes.
        for token in [&access, &access2, &refresh2] {
            let res = call(&base, "/introspect", "gw", &gw_secret, &[("token", token)]).await;
            assert_eq!(res.status, 200, "{}", res.body);
        }
        let res = call(
            &base,
            "/revoke",
            "webapp-7",
            &web_secret,
            &[("token", &refresh2), ("token_type_hint", "refresh_token")],
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.body);

        // The old refresh token again: reuse, which the server audits.
        let res = call(
            &base,
            "/token",
            "webapp-7",
            &web_secret,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        assert_eq!(res.status, 400, "{}", res.body);

        // An API key made on the account page and used at the gateway.
        let account = browser.get("/account").await;
        assert_eq!(account.status, 200, "{}", account.body);
        let made = browser
            .post(
                "/account/keys",
                &[
                    ("csrf_token", &account.input("csrf_token")),
                    ("label", "deploy"),
                    ("expires_in", "90d"),
                    ("scope_read", "on"),
                ],
            )
            .await;
        assert_eq!(made.status, 200, "{}", made.body);
        let start = made.body.find("id=\"new-key\">").unwrap() + "id=\"new-key\">".len();
        let key = made.body[start..start + 53].to_owned();
        assert!(key.starts_with("tsk_"), "{key}");
        secrets.add("the API key", &key);
        let res = call(&base, "/introspect", "gw", &gw_secret, &[("token", &key)]).await;
        assert_eq!(res.json()["active"], true, "{}", res.body);

        // Sign-out with the ID token as the hint, in the query string.
        let logout = format!(
            "/logout?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("id_token_hint", &id_token)
                .append_pair("post_logout_redirect_uri", BYE)
                .append_pair("state", "bye-1")
                .finish()
        );
        let res = browser.get(&logout).await;
        let res = if res.status == 200 {
            browser
                .post(
                    "/logout",
                    &[
                        ("csrf_token", &res.input("csrf_token")),
                        ("logout_query", &res.input("logout_query")),
                        ("confirm", "yes"),
                    ],
                )
                .await
        } else {
            res
        };
        assert!(res.location().starts_with(BYE), "{}", res.location());

        let (status, stderr) = server.stop();
        assert!(status.success(), "exit {status:?}");
        let log = [stdout.join().unwrap(), stderr].join("\n");

        // The search would find a secret that is there: the log and the trail hold the
        // flow, named by what is not secret.
        for benign in [
            "webapp-7",
            "token_issued",
            "login_failed",
            "api_key_created",
            "/token",
        ] {
            assert!(
                log.contains(benign),
                "{}: {benign} is not in the log",
                db.label
            );
        }
        let trail: String = db
            .rows("select * from audit_event")
            .await
            .iter()
            .map(|row| {
                row.iter()
                    .map(|c| c.as_deref().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join("\t")
            })
            .collect::<Vec<_>>()
            .join("\n");
        for benign in [
            "webapp-7",
            "login_failed",
            "login_succeeded",
            "consent_granted",
            "token_issued",
            "refresh_token_reuse",
            "token_revoked",
            "api_key_created",
            "logout",
        ] {
            assert!(
                trail.contains(benign),
                "{}: {benign} is not in the trail",
                db.label
            );
        }
        assert_eq!(
            secrets.found_in(&log),
            Vec::<&str>::new(),
            "{}: secrets in the log",
            db.label
        );
        assert_eq!(
            secrets.found_in(&trail),
            Vec::<&str>::new(),
            "{}: secrets in the audit trail",
            db.label
        );
    }
}
