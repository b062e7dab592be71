//! Several instances over one Postgres database (issue 13, docs/scaling.md): two real
//! `tessera serve` processes on different ports, started at the same moment, must behave as one
//! server. Postgres only: that is the store instances share.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::flow::{AuthorizeUrl, Browser, Pkce, Reply, TestClient, PASSWORD, REDIRECT};
use crate::support::serve::{self, ServerProcess, Starting};
use crate::support::{binary, http, wait_healthy, TestDb};

/// What docs/scaling.md promises: a revocation anywhere shows in every instance's
/// introspection answers within a second (decision 0022).
const BOUND: Duration = Duration::from_secs(1);

/// A `tessera serve` child process (its `base` through `ServerProcess`); killed when dropped.
struct Instance(ServerProcess);

impl std::ops::Deref for Instance {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.0
    }
}

/// Starts `tessera serve` with `env`; `Starting::listening` then waits for its address.
fn start(env: &BTreeMap<String, String>) -> Starting {
    let mut command = Command::new(binary());
    command
        .arg("serve")
        .env_clear()
        .envs(env)
        .env("TESSERA_LOG_FILTER", "warn,tessera::server=info")
        .stdout(Stdio::null());
    serve::start(command)
}

impl Instance {
    fn browser(&self) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: self.base.clone(),
        }
    }

    /// POSTs `form` to `path`, authenticating as `client` with HTTP Basic.
    async fn call(&self, path: &str, client: &TestClient, form: &[(&str, &str)]) -> Reply {
        let res = http()
            .post(format!("{}{path}", self.base))
            .basic_auth(&client.record.id, client.secret.as_deref())
            .form(form)
            .send()
            .await
            .unwrap();
        Reply::from(res).await
    }

    async fn introspect(&self, gateway: &TestClient, token: &str) -> Value {
        let res = self.call("/introspect", gateway, &[("token", token)]).await;
        assert_eq!(res.status, 200, "{}", res.body);
        res.json()
    }

    /// Signs ada in at this instance for `client` and `scope`, and redeems the code at
    /// `redeem_at`: the token endpoint's reply, and the form that redeemed the code.
    async fn code_flow(
        &self,
        redeem_at: &Instance,
        client: &TestClient,
        scope: &str,
    ) -> (Reply, [(&'static str, String); 4]) {
        let pkce = Pkce::new();
        let url = AuthorizeUrl::new(client).set("scope", scope).pkce(&pkce);
        let done = self.browser().authorize_through(&url.path(), "ada").await;
        let form = [
            ("grant_type", "authorization_code".to_owned()),
            ("code", done.redirect_params()["code"].clone()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", pkce.verifier.clone()),
        ];
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        (redeem_at.call("/token", client, &pairs).await, form)
    }

    /// Polls introspection of `token` until it is inactive; fails if that takes `bound`.
    async fn inactive_within(&self, gateway: &TestClient, token: &str, bound: Duration) {
        let since = Instant::now();
        while self.introspect(gateway, token).await["active"] == true {
            assert!(
                since.elapsed() < bound,
                "{} still says active after {bound:?}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn jwks_kids(&self) -> Vec<String> {
        let jwks: Value = http()
            .get(format!("{}/jwks", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A client made with the CLI, read back from the store.
async fn cli_client(db: &TestDb, args: &[&str]) -> TestClient {
    let out = db.tessera(args).json();
    let id = out["client"]["id"].as_str().unwrap();
    let store = tessera::store::open(&db.database_url()).await.unwrap();
    TestClient {
        record: store.client(id).await.unwrap().unwrap(),
        secret: out["client_secret"].as_str().map(str::to_owned),
    }
}

/// A confidential client `web` for `REDIRECT` and `scope`, made with the CLI.
async fn cli_web(db: &TestDb, scope: &str) -> TestClient {
    let args = [
        "client",
        "create",
        "--id",
        "web",
        "--name",
        "Web",
        "--redirect-uri",
        REDIRECT,
        "--scope",
        scope,
        "--json",
    ];
    cli_client(db, &args).await
}

/// A gateway client `gw` that may introspect, made with the CLI.
async fn cli_gateway(db: &TestDb) -> TestClient {
    let args = [
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
    ];
    cli_client(db, &args).await
}

#[tokio::test]
async fn two_instances_on_one_postgres_act_as_one_server() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let mut env = db.env();
    // Instances sharing a store share the key-encryption key (README, docs/scaling.md).
    env.insert(
        "TESSERA_KEY_ENCRYPTION_KEY".into(),
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
    );
    // Both start at once on an empty database: migrations and first-start keys race.
    let (a, b) = (start(&env), start(&env));
    let (a, b) = (Instance(a.listening()), Instance(b.listening()));
    wait_healthy(&http(), &format!("{}/readyz", a.base)).await;
    wait_healthy(&http(), &format!("{}/readyz", b.base)).await;
    let store = tessera::store::open(&db.database_url()).await.unwrap();
    let mut algs: Vec<String> = store
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.alg)
        .collect();
    algs.sort();
    assert_eq!(
        algs,
        ["ES256", "EdDSA", "RS256"],
        "one first key per algorithm"
    );
    let mut kids_a = a.jwks_kids().await;
    let mut kids_b = b.jwks_kids().await;
    kids_a.sort();
    kids_b.sort();
    assert_eq!(kids_a, kids_b);

    let dbe = &db;
    dbe.tessera_with_stdin(
        &["user", "create", "--username", "ada", "--password-stdin"],
        Some(PASSWORD),
    )
    .succeeds();
    let web = cli_web(dbe, "openid profile offline_access").await;
    let gateway = cli_gateway(dbe).await;

    // A code issued by A is redeemed at B.
    let (tokens, form) = a.code_flow(&b, &web, "openid profile offline_access").await;
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let tokens = tokens.json();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // A token issued by B is active at A (twice: the second answer may come from A's
    // cache), and inactive there within the documented bound once B revokes it.
    for _ in 0..2 {
        assert_eq!(a.introspect(&gateway, &access).await["active"], true);
    }
    let revoked = b.call("/revoke", &web, &[("token", access.as_str())]).await;
    assert_eq!(revoked.status, 200);
    a.inactive_within(&gateway, &access, BOUND).await;

    // A refresh token rotated at A is detected as reused at B, which ends the grant.
    let rotate = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    let rotated = a.call("/token", &web, &rotate).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_refresh = rotated.json()["refresh_token"].as_str().unwrap().to_owned();
    let reused = b.call("/token", &web, &rotate).await;
    assert_eq!(reused.status, 400);
    assert_eq!(reused.json()["error"], "invalid_grant");
    let after = [
        ("grant_type", "refresh_token"),
        ("refresh_token", new_refresh.as_str()),
    ];
    assert_eq!(
        a.call("/token", &web, &after).await.status,
        400,
        "grant revoked"
    );
    // The code, spent at B, cannot be redeemed at A either.
    assert_eq!(a.call("/token", &web, &form).await.status, 400);

    // A key rotation made through one is served in the JWKS of both (each reloads its key
    // set at most every `keys::CACHE_SECS`).
    let rotate = ["keys", "rotate", "--alg", "ES256", "--json"];
    let rotated = crate::support::run_binary(&rotate, &env, None).json();
    let kid = rotated["kid"].as_str().unwrap().to_owned();
    let deadline = Instant::now()
        + Duration::from_secs(u64::try_from(tessera::keys::CACHE_SECS).unwrap() + 10);
    for instance in [&a, &b] {
        while !instance.jwks_kids().await.contains(&kid) {
            assert!(
                Instant::now() < deadline,
                "{kid} never published at {}",
                instance.base
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Decision 0022: every instance keeps introspection answers, and a revocation made anywhere
/// — through another instance, by the CLI, by plain SQL while an instance's change listener
/// has lost its connection — shows at every instance within the bound.
#[tokio::test]
async fn revocations_reach_every_instances_introspection_cache_within_one_second() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let env = db.env();
    db.tessera_with_stdin(
        &["user", "create", "--username", "ada", "--password-stdin"],
        Some(PASSWORD),
    )
    .succeeds();
    let gateway = cli_gateway(&db).await;
    let (a, b) = (start(&env), start(&env));
    let (a, b) = (Instance(a.listening()), Instance(b.listening()));
    wait_healthy(&http(), &format!("{}/readyz", a.base)).await;
    wait_healthy(&http(), &format!("{}/readyz", b.base)).await;

    // Access tokens of ada's, issued at A.
    let web = cli_web(&db, "openid").await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let (reply, _) = a.code_flow(&a, &web, "openid").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        tokens.push(reply.json()["access_token"].as_str().unwrap().to_owned());
    }
    let cached = |t: &str| {
        let t = t.to_owned();
        let (a, b, gateway) = (&a, &b, &gateway);
        async move {
            for instance in [a, b] {
                for _ in 0..2 {
                    assert_eq!(instance.introspect(gateway, &t).await["active"], true);
                }
            }
        }
    };

    // Revoked through A: inactive at B within the bound, at A at once.
    cached(&tokens[0]).await;
    let revoked = a
        .call("/revoke", &web, &[("token", tokens[0].as_str())])
        .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(a.introspect(&gateway, &tokens[0]).await["active"], false);
    b.inactive_within(&gateway, &tokens[0], BOUND).await;

    // By plain SQL while B's change listener has just lost its connection: B must stop
    // trusting its cache by itself.
    cached(&tokens[1]).await;
    let admin = sqlx::PgPool::connect(db.database_url().as_str())
        .await
        .unwrap();
    let killed: i64 = sqlx::query_scalar(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity \
         where datname = current_database() and query ilike 'listen%'",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(killed, 2, "one change listener per instance");
    sqlx::query("update token set revoked_at = 1 where digest = $1")
        .bind(
            tessera::crypto::token::Digest::of(&tokens[1])
                .as_bytes()
                .to_vec(),
        )
        .execute(&admin)
        .await
        .unwrap();
    for instance in [&a, &b] {
        instance.inactive_within(&gateway, &tokens[1], BOUND).await;
    }

    // The user disabled by the CLI: every token of theirs, at both.
    cached(&tokens[2]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // the listeners are back
    db.tessera(&["user", "disable", "ada"]).succeeds();
    for instance in [&a, &b] {
        instance.inactive_within(&gateway, &tokens[2], BOUND).await;
    }
}
