//! The key-encryption key as operators meet it: a lost key is never silently replaced, a
//! wrong one stops start-up, one unusable signing key does not stop the others, and
//! `tessera kek rotate` moves every signing key to a new key at once.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use tessera::audit::{AuditEvent, AuditKind};
use tessera::config::Config;
use tessera::crypto::kek::{Kek, KEK_FILE};
use tessera::crypto::keys;
use tessera::Server;

use crate::support::flow::{kid_of, AuthorizeUrl, Pkce, TestClient, REDIRECT};
use crate::support::{http, run_binary, TestDb, TestServer};

fn kek_file(db: &TestDb) -> PathBuf {
    db.dir.path().join("data").join(KEK_FILE)
}

/// The test database's configuration with `key_encryption_key` set to `b64`.
fn config_with_kek(db: &TestDb, b64: &str) -> Config {
    let mut env = db.env();
    env.insert("TESSERA_KEY_ENCRYPTION_KEY".into(), b64.trim().into());
    Config::from_sources(Some(Path::new("/dev/null")), &env).unwrap()
}

/// Why the server refused to start, as `tessera serve` would print it.
async fn bind_error(config: Config) -> String {
    match Server::bind(config).await {
        Ok(_) => panic!("the server started"),
        Err(e) => format!("{e:#}"),
    }
}

/// The server's key set now.
async fn key_set(server: &TestServer) -> std::sync::Arc<keys::KeySet> {
    let state = &server.state;
    let now = state.clock.now();
    state.keys.current(state.store.as_ref(), now).await.unwrap()
}

/// The kids that sign now, by algorithm.
async fn signing_kids(server: &TestServer) -> Vec<String> {
    let set = key_set(server).await;
    set.active.values().map(|k| k.kid.clone()).collect()
}

async fn readyz(server: &TestServer) -> (StatusCode, serde_json::Value) {
    let res = http().get(server.url("/readyz")).send().await.unwrap();
    (res.status(), res.json().await.unwrap())
}

/// A client `id` whose ID tokens are signed with `alg`.
async fn client_for(server: &TestServer, id: &str, alg: &str) -> TestClient {
    server
        .client_with(id, false, |c| {
            c.id_token_signed_response_alg = alg.to_owned()
        })
        .await
}

/// The ID token of a code flow as "ada", verified against the JWKS.
async fn id_token(server: &TestServer, client: &TestClient) -> String {
    let body = server
        .code_flow(
            &server.browser(),
            client,
            AuthorizeUrl::new(client),
            &Pkce::new(),
        )
        .await;
    let token = body["id_token"].as_str().unwrap().to_owned();
    server.verify_jwt(&token).await;
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_when_kek_file_is_missing_but_keys_exist() {
    for db in TestDb::all().await {
        TestServer::start(&db).await.stop().await;
        let path = kek_file(&db);
        std::fs::remove_file(&path).unwrap();

        let err = bind_error(db.config()).await;
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(
            err.contains("restore the file from a backup or set TESSERA_KEY_ENCRYPTION_KEY"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!path.exists(), "{}: a new key was generated", db.label);

        // Every command that needs the key refuses the same way and changes nothing.
        for args in [
            &["keys", "rotate", "--alg", "ES256"][..],
            &["kek", "rotate"],
        ] {
            db.tessera(args)
                .fails_with("is missing but the store holds 3 signing keys");
        }
        assert!(!path.exists());
        let listed = db.tessera(&["keys", "list", "--json"]).json();
        assert_eq!(listed.as_array().unwrap().len(), 3, "{}", db.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_with_a_wrong_kek() {
    for db in TestDb::all().await {
        TestServer::start(&db).await.stop().await;
        let path = kek_file(&db);
        let right = std::fs::read_to_string(&path).unwrap();

        let err = bind_error(config_with_kek(&db, &Kek::generate().to_base64())).await;
        assert!(
            err.contains("wrong key-encryption key: none of the 3 stored signing keys decrypts")
                && err.contains("configured key_encryption_key"),
            "{}: {err}",
            db.label
        );

        std::fs::write(&path, Kek::generate().to_base64()).unwrap();
        let err = bind_error(db.config()).await;
        assert!(err.contains("wrong key-encryption key"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        db.tessera(&["keys", "rotate", "--alg", "ES256"])
            .fails_with("wrong key-encryption key");

        // With the right key back, it starts.
        std::fs::write(&path, right).unwrap();
        TestServer::start(&db).await.stop().await;
    }
}

#[tokio::test]
async fn undecryptable_key_is_skipped_and_others_still_sign() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        assert_eq!(readyz(&server).await.0, StatusCode::OK);

        // An ES256 key encrypted under some other key-encryption key becomes the active one.
        server.state.clock.advance(10);
        let now = server.state.clock.now();
        let stray = keys::generate("ES256", &Kek::generate(), now, now).unwrap();
        let audit = AuditEvent::new(AuditKind::KeyCreated, "test", now);
        server
            .state
            .store
            .insert_signing_key(&stray, &audit)
            .await
            .unwrap();
        server.state.keys.invalidate();

        let res = http().get(server.url("/jwks")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}", db.label);
        let published = server.jwks().await;
        assert_eq!(published.len(), 4);
        assert!(
            published
                .iter()
                .any(|k| k.key_id() == Some(stray.kid.as_str())),
            "its public half stays published"
        );
        for alg in ["RS256", "EdDSA"] {
            let token = id_token(&server, &client_for(&server, alg, alg).await).await;
            let header = josekit::jwt::decode_header(&token).unwrap();
            assert_eq!(header.claim("alg"), Some(&serde_json::json!(alg)));
        }
        let es256 = client_for(&server, "ES256", "ES256").await;
        let pkce = Pkce::new();
        let done = server
            .browser()
            .authorize_through(&AuthorizeUrl::new(&es256).pkce(&pkce).path(), "ada")
            .await;
        let code = done.redirect_params()["code"].clone();
        let res = server
            .token(
                &es256,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", &pkce.verifier),
                ],
            )
            .await;
        assert_eq!(res.status, 500, "{}", res.body);
        assert_eq!(res.json()["error"], "server_error");

        // Other algorithms still sign: ready, and the gap is reported.
        let (status, body) = readyz(&server).await;
        assert_eq!(status, StatusCode::OK, "{}", db.label);
        assert_eq!(body["status"], "ready");
        assert_eq!(body["degraded"], "no usable signing key for ES256");
        assert_eq!(key_set(&server).await.unusable, [stray.kid.as_str()]);
        let state = &server.state;
        assert!(state.keys.unusable_total() >= 1);

        // The operator's fix: a new ES256 key under the right key takes over signing.
        let now = state.clock.now();
        tessera::keys::create(
            state.store.as_ref(),
            &state.kek,
            "ES256",
            now,
            now + 1,
            "test",
        )
        .await
        .unwrap();
        state.clock.advance(2);
        state.keys.invalidate();
        assert_eq!(
            readyz(&server).await.1,
            serde_json::json!({ "status": "ready" })
        );
        id_token(&server, &client_for(&server, "ES256-again", "ES256").await).await;

        // When no algorithm can sign at all, the instance is not ready.
        let now = state.clock.now();
        let stranger = Kek::generate();
        for alg in ["RS256", "ES256", "EdDSA"] {
            let stray = keys::generate(alg, &stranger, now, now).unwrap();
            let audit = AuditEvent::new(AuditKind::KeyCreated, "test", now);
            state
                .store
                .insert_signing_key(&stray, &audit)
                .await
                .unwrap();
        }
        state.keys.invalidate();
        let (status, body) = readyz(&server).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{}", db.label);
        assert_eq!(body["status"], "unavailable");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kek_rotate_reencrypts_every_key_in_one_transaction() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let client = server.confidential_client("web").await;
        let kid_before = kid_of(&id_token(&server, &client).await);
        let signing_before = signing_kids(&server).await;
        server.stop().await;
        let path = kek_file(&db);
        let old = std::fs::read_to_string(&path).unwrap();

        // Bad input is refused before anything changes.
        let rotate_stdin = ["kek", "rotate", "--new-key-stdin"];
        db.tessera_with_stdin(&rotate_stdin, Some("dG9vIHNob3J0"))
            .fails_with("--new-key-stdin: expected base64 of 32 bytes");
        db.tessera_with_stdin(&rotate_stdin, Some(&old))
            .fails_with("is the current one");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), old);

        let out = db.tessera(&["kek", "rotate", "--json"]).json();
        assert_eq!(out["source"], "file", "{}", db.label);
        assert_eq!(out["kids"].as_array().unwrap().len(), 3);
        let new = out["new_key"].as_str().unwrap().to_owned();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), new);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let files: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, [KEK_FILE], "no temporary file left behind");
        let store = tessera::store::open(&db.database_url()).await.unwrap();
        let latest = store.recent_audit(1).await.unwrap();
        assert_eq!(latest[0].event.kind, "kek_rotated");
        assert_eq!(latest[0].event.details["kids"], out["kids"]);

        // After a restart the same keys sign, under the new key only.
        let server = TestServer::start(&db).await;
        assert_eq!(signing_kids(&server).await, signing_before);
        assert_eq!(kid_of(&id_token(&server, &client).await), kid_before);
        server.stop().await;
        let err = bind_error(config_with_kek(&db, &old)).await;
        assert!(err.contains("wrong key-encryption key"), "{err}");

        // A configured key: the new one comes from stdin, and the file is left alone.
        let next = Kek::generate().to_base64();
        let mut env = db.env();
        env.insert("TESSERA_KEY_ENCRYPTION_KEY".into(), new.clone());
        let out = run_binary(
            &["kek", "rotate", "--new-key-stdin", "--json"],
            &env,
            Some(&next),
        )
        .json();
        assert_eq!(out["source"], "configured");
        assert!(out["new_key"].is_null(), "a given key is not printed back");
        assert!(out["next_step"]
            .as_str()
            .unwrap()
            .contains("on every instance"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), new);
        let server = TestServer::start_with(config_with_kek(&db, &next)).await;
        assert_eq!(signing_kids(&server).await, signing_before);
        server.stop().await;
        let err = bind_error(config_with_kek(&db, &new)).await;
        assert!(err.contains("wrong key-encryption key"), "{err}");
    }
}
