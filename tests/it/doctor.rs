//! `tessera doctor`, run as a process against each backend: a clean deployment passes, and
//! each misconfiguration it exists for fails the run with a finding that names its section.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use tessera::crypto::kek::KEK_FILE;

use crate::support::{run_binary, Run, TestDb, TestServer};

/// A deployment as the server leaves it after its first start (migrated, a key-encryption
/// key file, first signing keys), with a confidential client and a user with a password.
async fn deployed(db: &TestDb) {
    TestServer::start(db).await.stop().await;
    db.tessera(&[
        "client",
        "create",
        "--id",
        "web",
        "--name",
        "Web",
        "--redirect-uri",
        "https://app.example/cb",
        "http://127.0.0.1:7000/cb",
    ])
    .succeeds();
    db.tessera_with_stdin(
        &["user", "create", "--username", "ada", "--password-stdin"],
        Some("correct horse battery staple\n"),
    )
    .succeeds();
}

/// `doctor --json` with `env`; the findings, whatever the exit code.
fn doctor(env: &BTreeMap<String, String>) -> (Run, Vec<Value>) {
    let run = run_binary(&["doctor", "--json"], env, None);
    let out: Value = serde_json::from_str(&run.stdout())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", run.stdout(), run.stderr()));
    let findings = out["findings"].as_array().unwrap().clone();
    (run, findings)
}

/// The findings of one check.
fn of<'a>(findings: &'a [Value], check: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["check"] == check).collect()
}

/// The one high finding of `check`, after asserting the run failed because of it.
fn high<'a>(run: &Run, findings: &'a [Value], check: &str) -> &'a Value {
    run.fails_with(check);
    let found: Vec<&Value> = of(findings, check)
        .into_iter()
        .filter(|f| f["severity"] == "high")
        .collect();
    assert_eq!(found.len(), 1, "{findings:#?}");
    found[0]
}

fn kek_file(db: &TestDb) -> PathBuf {
    db.dir.path().join("data").join(KEK_FILE)
}

#[tokio::test]
async fn doctor_passes_a_clean_loopback_deployment() {
    for db in TestDb::all().await {
        deployed(&db).await;
        let (run, findings) = doctor(&db.env());
        assert!(run.ok(), "{}: {}{}", db.label, run.stdout(), run.stderr());
        for f in &findings {
            assert_ne!(f["severity"], "high", "{}: {f}", db.label);
            assert!(
                !f["reference"].as_str().unwrap().is_empty(),
                "{}: {f}",
                db.label
            );
        }
        for check in [
            "argon2_parameters",
            "store",
            "kek_file",
            "signing_key_age",
            "client_pkce",
            "client_redirect_uri",
            "password_hashes",
            "trusted_proxies",
        ] {
            let found = of(&findings, check);
            assert!(
                !found.is_empty() && found.iter().all(|f| f["severity"] == "ok"),
                "{}: {check}: {found:#?}",
                db.label
            );
        }
        let clock = of(&findings, "clock_skew");
        let expected = if db.label == "postgres" { "ok" } else { "info" };
        assert_eq!(clock[0]["severity"], expected, "{}", db.label);
        // A loopback issuer on plain http is development: worth a word, not a failure.
        assert_eq!(of(&findings, "issuer")[0]["severity"], "low");

        let text = db.tessera(&["doctor"]);
        assert!(text.ok(), "{}{}", text.stdout(), text.stderr());
        assert!(
            text.stdout().contains("ok      store")
                && text.stdout().contains("[RFC 9700 §2.1.1]")
                && text.stdout().contains("0 high, 0 medium, 1 low"),
            "{}",
            text.stdout()
        );
    }
}

#[tokio::test]
async fn doctor_fails_on_a_redirect_uri_on_plain_http_off_loopback_rfc9700_2_6() {
    for db in TestDb::all().await {
        deployed(&db).await;
        // The CLI refuses such a URI; it can only come in behind its back.
        db.sql("update client set redirect_uris = '[\"http://app.example/cb\"]' where id = 'web'")
            .await;
        let (run, findings) = doctor(&db.env());
        let f = high(&run, &findings, "client_redirect_uri");
        assert_eq!(f["reference"], "RFC 9700 §2.6", "{}", db.label);
        assert_eq!(f["subject"], "web");
        assert!(f["message"]
            .as_str()
            .unwrap()
            .contains("http://app.example/cb"));
    }
}

#[cfg(unix)]
#[tokio::test]
async fn doctor_fails_on_a_key_encryption_key_file_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    for db in TestDb::all().await {
        deployed(&db).await;
        let path = kek_file(&db);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (run, findings) = doctor(&db.env());
        let f = high(&run, &findings, "kek_file");
        assert_eq!(
            f["reference"], "OWASP Cryptographic Storage Cheat Sheet: Key Storage",
            "{}",
            db.label
        );
        assert!(f["message"].as_str().unwrap().contains("mode 0644"), "{f}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::remove_file(&path).unwrap();
        let (run, findings) = doctor(&db.env());
        let f = high(&run, &findings, "kek_file");
        assert!(f["message"].as_str().unwrap().contains("missing"), "{f}");
    }
}

#[tokio::test]
async fn doctor_fails_on_argon2_below_owasps_minimum_in_config_and_in_stored_hashes() {
    for db in TestDb::all().await {
        deployed(&db).await;
        // Start-up's floor (memory × passes ≥ 35840 KiB) accepts this; OWASP's table asks
        // 46 MiB at one pass.
        let mut weak = db.env();
        weak.insert("TESSERA_ARGON2_MEMORY_KIB".into(), "35840".into());
        weak.insert("TESSERA_ARGON2_ITERATIONS".into(), "1".into());
        run_binary(
            &["user", "create", "--username", "bob", "--password-stdin"],
            &weak,
            Some("correct horse battery staple\n"),
        )
        .succeeds();

        let (run, findings) = doctor(&weak);
        let f = high(&run, &findings, "argon2_parameters");
        assert_eq!(
            f["reference"], "OWASP Password Storage Cheat Sheet: Argon2id",
            "{}",
            db.label
        );
        // With the configuration fixed, bob's hash stays as weak as it was made until he signs in.
        let (run, findings) = doctor(&db.env());
        let f = high(&run, &findings, "password_hashes");
        let message = f["message"].as_str().unwrap();
        assert!(
            message.starts_with("1 of 2 ") && message.contains("bob m=35840 t=1"),
            "{}: {message}",
            db.label
        );
        assert!(!message.contains("ada"), "{message}");
    }
}

#[tokio::test]
async fn doctor_reports_missing_migrations_and_applies_none() {
    for db in TestDb::all().await {
        // An empty database: the doctor neither migrates it nor, on SQLite, creates it.
        let (run, findings) = doctor(&db.env());
        let f = high(&run, &findings, "store");
        assert!(f["message"].as_str().is_some(), "{f}");
        if db.label == "sqlite" {
            assert!(!db.dir.path().join("tessera.db").exists());
        } else {
            let tables = db
                .number(
                    "select count(*) from information_schema.tables \
                     where table_name = '_sqlx_migrations'",
                )
                .await;
            assert_eq!(tables, 0, "the doctor created sqlx's table");
        }
        // None of the record checks ran on a schema they do not know.
        assert!(of(&findings, "client_pkce").is_empty());

        db.tessera(&["migrate"]).succeeds();
        let applied = db.number("select count(*) from _sqlx_migrations").await;
        db.sql(
            "delete from _sqlx_migrations \
             where version = (select max(version) from _sqlx_migrations)",
        )
        .await;
        let (run, findings) = doctor(&db.env());
        let f = high(&run, &findings, "store");
        let message = f["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("1 of {applied} migrations are not applied")),
            "{}: {message}",
            db.label
        );
        assert_eq!(
            db.number("select count(*) from _sqlx_migrations").await,
            applied - 1,
            "{}: the doctor applied a migration",
            db.label
        );
    }
}

#[tokio::test]
async fn doctor_fails_on_an_expired_tls_certificate() {
    let db = TestDb::sqlite().await;
    deployed(&db).await;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_path = db.dir.path().join("cert.pem");
    let key_path = db.dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let mut env = db.env();
    env.insert("TESSERA_TLS_CERT".into(), cert_path.display().to_string());
    env.insert("TESSERA_TLS_KEY".into(), key_path.display().to_string());
    env.insert("TESSERA_ISSUER".into(), "https://localhost".into());
    let (run, findings) = doctor(&env);
    let f = high(&run, &findings, "tls");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("expired at 2021-01-01"),
        "{f}"
    );
}

#[tokio::test]
async fn doctor_warns_without_failing_behind_a_proxy_without_trusted_proxies_rfc9700_4_13() {
    let db = TestDb::sqlite().await;
    deployed(&db).await;
    let mut env = db.env();
    env.insert("TESSERA_ISSUER".into(), "https://id.example.com".into());
    let (run, findings) = doctor(&env);
    assert!(run.ok(), "{}{}", run.stdout(), run.stderr());
    let proxies = of(&findings, "trusted_proxies");
    assert_eq!(proxies[0]["severity"], "medium");
    assert_eq!(proxies[0]["reference"], "RFC 9700 §4.13");
    // TLS is the proxy's job then, and the generated key file is worth a word in production.
    assert_eq!(of(&findings, "tls")[0]["severity"], "info");
    assert_eq!(of(&findings, "kek_file")[0]["severity"], "low");

    env.insert("TESSERA_TRUSTED_PROXIES".into(), "10.0.0.0/8".into());
    let (run, findings) = doctor(&env);
    assert!(run.ok());
    assert_eq!(of(&findings, "trusted_proxies")[0]["severity"], "ok");
}
