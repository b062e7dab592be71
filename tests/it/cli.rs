//! The admin CLI, run as a process against each backend: it creates, lists, shows, updates
//! and deletes clients and users, and refuses bad input with one clear line and no change.

use std::time::Duration;

use tessera::crypto::token::Digest;
use tessera::store;

use crate::support::TestDb;

const WEB: &[&str] = &[
    "client",
    "create",
    "--id",
    "web",
    "--name",
    "Web App",
    "--redirect-uri",
    "https://app.example/cb",
    "http://127.0.0.1:7000/cb",
    "--scope",
    "openid profile email offline_access",
    "--json",
];

#[tokio::test]
async fn cli_client_lifecycle_create_list_show_update_delete() {
    for db in TestDb::all().await {
        let created = db.tessera(WEB).json();
        let c = &created["client"];
        assert_eq!(c["id"], "web", "{}", db.label);
        assert_eq!(c["token_endpoint_auth_method"], "client_secret_basic");
        assert_eq!(
            c["grant_types"],
            serde_json::json!(["authorization_code", "refresh_token"])
        );
        assert_eq!(c["access_token_format"], "opaque");
        assert!(c.get("secret_digest").is_none(), "digest never printed");

        let listed = db.tessera(&["client", "list", "--json"]).json();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        let shown = db.tessera(&["client", "show", "web", "--json"]).json();
        assert_eq!(&shown, c);

        let updated = db
            .tessera(&[
                "client",
                "update",
                "web",
                "--name",
                "Web 2",
                "--introspect",
                "true",
                "--redirect-uri",
                "https://new.example/cb",
                "--access-token-format",
                "jwt",
                "--json",
            ])
            .json();
        assert_eq!(updated["name"], "Web 2");
        assert_eq!(updated["may_introspect"], true);
        assert_eq!(
            updated["redirect_uris"],
            serde_json::json!(["https://new.example/cb"])
        );
        assert_eq!(updated["access_token_format"], "jwt");

        let human = db.tessera(&["client", "show", "web"]);
        assert!(
            human.ok() && human.stdout().contains("name: Web 2"),
            "{}",
            human.stdout()
        );

        db.tessera(&["client", "delete", "web"]).ok();
        db.tessera(&["client", "show", "web"])
            .fails_with("client `web` not found");
        assert_eq!(
            db.tessera(&["client", "list", "--json"]).json(),
            serde_json::json!([])
        );
    }
}

#[tokio::test]
async fn cli_client_secret_is_generated_printed_once_and_stored_as_digest() {
    for db in TestDb::all().await {
        let created = db.tessera(WEB).json();
        let secret = created["client_secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("tss_") && secret.len() == 47, "{secret}");
        let shown = db.tessera(&["client", "show", "web", "--json"]);
        assert!(!shown.stdout().contains(&secret[4..]), "secret shown again");

        let store = store::open(&db.database_url()).await.unwrap();
        let digest = store
            .client("web")
            .await
            .unwrap()
            .unwrap()
            .secret_digest
            .unwrap();
        assert_eq!(digest, Digest::of(&secret), "{}", db.label);

        let rotated = db
            .tessera(&["client", "rotate-secret", "web", "--json"])
            .json();
        let new_secret = rotated["client_secret"].as_str().unwrap();
        assert_ne!(new_secret, secret);
        let digest = store
            .client("web")
            .await
            .unwrap()
            .unwrap()
            .secret_digest
            .unwrap();
        assert!(
            digest.verify(new_secret) && !digest.verify(&secret),
            "{}",
            db.label
        );

        let supplied = "s".repeat(32);
        db.tessera(&["client", "rotate-secret", "web", "--secret", &supplied])
            .succeeds();
        let digest = store
            .client("web")
            .await
            .unwrap()
            .unwrap()
            .secret_digest
            .unwrap();
        assert!(digest.verify(&supplied));
    }
}

#[tokio::test]
async fn cli_public_client_has_no_secret_auth_none_and_requires_pkce() {
    for db in TestDb::all().await {
        let created = db
            .tessera(&[
                "client",
                "create",
                "--id",
                "spa",
                "--name",
                "SPA",
                "--public",
                "--redirect-uri",
                "com.example.app:/cb",
                "--json",
            ])
            .json();
        assert!(created["client_secret"].is_null(), "{}", db.label);
        assert_eq!(created["client"]["token_endpoint_auth_method"], "none");
        assert_eq!(created["client"]["require_pkce"], true);
        db.tessera(&["client", "rotate-secret", "spa"])
            .fails_with("public");
        db.tessera(&["client", "update", "spa", "--require-pkce", "false"])
            .fails_with("always requires PKCE");
    }
}

#[tokio::test]
async fn cli_client_bad_input_is_refused_with_one_line_and_changes_nothing() {
    for db in TestDb::all().await {
        db.tessera(WEB).json();
        let before = db.tessera(&["client", "show", "web", "--json"]).json();
        let cases: &[(&[&str], &str)] = &[
            (WEB, "client `web` already exists"),
            (
                &[
                    "client",
                    "create",
                    "--id",
                    "x",
                    "--name",
                    "X",
                    "--secret",
                    "too-short",
                    "--redirect-uri",
                    "https://a.example/cb",
                ],
                "at least 32 characters",
            ),
            (
                &[
                    "client",
                    "create",
                    "--id",
                    "x",
                    "--name",
                    "X",
                    "--redirect-uri",
                    "https://a.example/cb#frag",
                ],
                "must not have a fragment",
            ),
            (
                &[
                    "client",
                    "create",
                    "--id",
                    "x",
                    "--name",
                    "X",
                    "--redirect-uri",
                    "http://a.example/cb",
                ],
                "must use https",
            ),
            (
                &[
                    "client",
                    "create",
                    "--id",
                    "x",
                    "--name",
                    "X",
                    "--redirect-uri",
                    "javascript:alert(1)",
                ],
                "private-use",
            ),
            (
                &[
                    "client",
                    "create",
                    "--id",
                    "x",
                    "--name",
                    "X",
                    "--redirect-uri",
                    "/relative",
                ],
                "not an absolute URI",
            ),
            (
                &["client", "create", "--id", "x", "--name", "X"],
                "at least one --redirect-uri",
            ),
            (
                &[
                    "client",
                    "create",
                    "--id",
                    "bad id",
                    "--name",
                    "X",
                    "--redirect-uri",
                    "https://a.example/cb",
                ],
                "client id",
            ),
            (
                &[
                    "client",
                    "create",
                    "--id",
                    "x",
                    "--name",
                    "X",
                    "--public",
                    "--grant-type",
                    "client_credentials",
                ],
                "client_credentials",
            ),
            (
                &[
                    "client",
                    "create",
                    "--id",
                    "x",
                    "--name",
                    "X",
                    "--grant-type",
                    "password",
                    "--redirect-uri",
                    "https://a.example/cb",
                ],
                "grant type `password`",
            ),
            (
                &[
                    "client",
                    "create",
                    "--id",
                    "x",
                    "--name",
                    "X",
                    "--scope",
                    "a  b",
                    "--redirect-uri",
                    "https://a.example/cb",
                ],
                "--scope",
            ),
            (
                &[
                    "client",
                    "update",
                    "web",
                    "--redirect-uri",
                    "http://evil.example/cb",
                ],
                "must use https",
            ),
            (
                &["client", "update", "web", "--auth-method", "none"],
                "does not fit",
            ),
            (
                &["client", "update", "ghost", "--name", "G"],
                "client `ghost` not found",
            ),
            (&["client", "delete", "ghost"], "client `ghost` not found"),
        ];
        for (args, needle) in cases {
            db.tessera(args).fails_with(needle);
        }
        assert_eq!(
            db.tessera(&["client", "show", "web", "--json"]).json(),
            before,
            "{}",
            db.label
        );
        assert_eq!(
            db.tessera(&["client", "list", "--json"])
                .json()
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn cli_user_lifecycle_with_argon2id_password() {
    for db in TestDb::all().await {
        let created = db
            .tessera_with_stdin(
                &[
                    "user",
                    "create",
                    "--username",
                    "ada",
                    "--email",
                    "ada@example.com",
                    "--email-verified",
                    "--name",
                    "Ada Lovelace",
                    "--phone",
                    "+44 20 7946 0000",
                    "--password-stdin",
                    "--json",
                ],
                Some("correct horse battery\n"),
            )
            .json();
        let id = created["id"].as_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{}", db.label);
        assert_eq!(created["claims"]["email_verified"], true);
        assert!(created.get("password_hash").is_none(), "hash never printed");

        let store = store::open(&db.database_url()).await.unwrap();
        let hash = store
            .account(&id)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        let passwords = tessera::crypto::password::Passwords::new(&db.config().password).unwrap();
        assert!(passwords
            .verify("correct horse battery".into(), Some(hash.clone()))
            .await
            .unwrap());

        assert_eq!(
            db.tessera(&["user", "show", "ada", "--json"]).json()["id"],
            id.as_str()
        );
        assert_eq!(
            db.tessera(&["user", "show", &id, "--json"]).json()["username"],
            "ada"
        );
        let updated = db
            .tessera(&[
                "user",
                "update",
                "ada",
                "--username",
                "ada.l",
                "--email",
                "",
                "--locale",
                "en-GB",
                "--json",
            ])
            .json();
        assert_eq!(updated["username"], "ada.l");
        assert!(
            updated["claims"].get("email").is_none(),
            "empty value removes a claim"
        );
        assert_eq!(updated["claims"]["locale"], "en-GB");

        assert_eq!(
            db.tessera(&["user", "disable", "ada.l", "--json"]).json()["disabled"],
            true
        );
        assert_eq!(
            db.tessera(&["user", "enable", "ada.l", "--json"]).json()["disabled"],
            false
        );

        db.tessera_with_stdin(
            &["user", "set-password", "ada.l", "--password-stdin"],
            Some("another good one\n"),
        )
        .succeeds();
        let new_hash = store
            .account(&id)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .unwrap();
        assert_ne!(new_hash, hash);
        assert!(passwords
            .verify("another good one".into(), Some(new_hash))
            .await
            .unwrap());

        assert_eq!(
            db.tessera(&["user", "list", "--json"])
                .json()
                .as_array()
                .unwrap()
                .len(),
            1
        );
        db.tessera(&["user", "delete", "ada.l"]).succeeds();
        db.tessera(&["user", "show", &id]).fails_with("not found");
        let kinds = crate::support::audit_kinds(store.as_ref(), 20).await;
        assert_eq!(
            kinds,
            [
                "user_deleted",
                "user_password_set",
                "user_updated",
                "user_disabled",
                "user_updated",
                "user_created"
            ],
            "{}",
            db.label
        );
    }
}

#[tokio::test]
async fn cli_user_bad_input_is_refused_and_changes_nothing() {
    for db in TestDb::all().await {
        db.tessera_with_stdin(
            &["user", "create", "--username", "ada", "--password-stdin"],
            Some("long enough pw\n"),
        )
        .succeeds();
        let before = db.tessera(&["user", "list", "--json"]).json();
        let cases: &[(&[&str], Option<&str>, &str)] = &[
            (
                &["user", "create", "--username", "ada", "--password-stdin"],
                Some("long enough pw\n"),
                "username `ada` is taken",
            ),
            (
                &["user", "create", "--username", "bob", "--password-stdin"],
                Some("short\n"),
                "8 to 1024",
            ),
            (
                &["user", "create", "--username", "bob"],
                None,
                "no password given",
            ),
            (
                &["user", "create", "--username", "b b", "--no-password"],
                None,
                "username must be",
            ),
            (
                &[
                    "user",
                    "create",
                    "--username",
                    "bob",
                    "--no-password",
                    "--email",
                    "nope",
                ],
                None,
                "not an e-mail",
            ),
            (
                &[
                    "user",
                    "create",
                    "--username",
                    "bob",
                    "--no-password",
                    "--email-verified",
                ],
                None,
                "needs --email",
            ),
            (
                &["user", "update", "ghost", "--name", "G"],
                None,
                "user `ghost` not found",
            ),
            (
                &["user", "disable", "ghost"],
                None,
                "user `ghost` not found",
            ),
        ];
        for (args, stdin, needle) in cases {
            db.tessera_with_stdin(args, *stdin).fails_with(needle);
        }
        assert_eq!(
            db.tessera(&["user", "list", "--json"]).json(),
            before,
            "{}",
            db.label
        );
    }
}

#[tokio::test]
async fn cli_migrate_applies_migrations_and_is_idempotent() {
    for db in TestDb::all().await {
        for _ in 0..2 {
            let run = db.tessera(&["migrate"]);
            assert!(
                run.ok() && run.stdout().contains("migrations applied"),
                "{}{}",
                run.stdout(),
                run.stderr()
            );
        }
    }
}

/// OIDC Core §5.1 and §5.1.1: every standard claim can be set from the CLI, the address as
/// its structured parts, and malformed ones are refused with one line and no change.
#[tokio::test]
async fn cli_sets_every_standard_claim_and_refuses_malformed_ones_oidc_5_1() {
    for db in TestDb::all().await {
        let created = db.tessera_with_stdin(
            &[
                "user",
                "create",
                "--username",
                "ada",
                "--password-stdin",
                "--json",
            ],
            Some("a long enough password\n"),
        );
        assert!(created.ok(), "{}", created.stderr());
        let set = db.tessera(&[
            "user",
            "update",
            "ada",
            "--nickname",
            "Countess",
            "--middle-name",
            "Augusta",
            "--profile",
            "https://example.com/ada",
            "--picture",
            "https://example.com/ada.png",
            "--website",
            "https://ada.example",
            "--gender",
            "female",
            "--birthdate",
            "1815-12-10",
            "--zoneinfo",
            "Europe/London",
            "--locale",
            "en-GB",
            "--phone",
            "+44 20 7946 0000",
            "--phone-verified",
            "true",
            "--street-address",
            "12 St James's Square",
            "--locality",
            "London",
            "--postal-code",
            "SW1Y 4JH",
            "--country",
            "GB",
            "--json",
        ]);
        assert!(set.ok(), "{}: {}", db.label, set.stderr());
        let shown = db.tessera(&["user", "show", "ada", "--json"]).json();
        let c = &shown["claims"];
        assert_eq!(c["nickname"], "Countess", "{}", db.label);
        assert_eq!(c["birthdate"], "1815-12-10");
        assert_eq!(c["phone_number_verified"], true);
        assert_eq!(
            c["address"],
            serde_json::json!({
                "street_address": "12 St James's Square",
                "locality": "London",
                "postal_code": "SW1Y 4JH",
                "country": "GB"
            })
        );
        for bad in [
            ["--birthdate", "10/12/1815"],
            ["--picture", "javascript:alert(1)"],
            ["--website", "ada.example"],
        ] {
            let refused = db.tessera(&["user", "update", "ada", bad[0], bad[1]]);
            assert!(!refused.ok(), "{bad:?} accepted");
            assert!(refused.stderr().contains(bad[0]), "{}", refused.stderr());
        }
        let unchanged = db.tessera(&["user", "show", "ada", "--json"]).json();
        assert_eq!(unchanged["claims"], shown["claims"], "{}", db.label);
        // Emptying every part removes the address.
        let cleared = db.tessera(&[
            "user",
            "update",
            "ada",
            "--street-address",
            "",
            "--locality",
            "",
            "--postal-code",
            "",
            "--country",
            "",
        ]);
        assert!(cleared.ok(), "{}", cleared.stderr());
        let after = db.tessera(&["user", "show", "ada", "--json"]).json();
        assert!(after["claims"].get("address").is_none(), "{after}");
    }
}

/// Issue 15, session management: `tessera session list` shows a user's sessions by their
/// `sid` (the one in ID tokens); `session revoke` ends one (the browser must sign in again,
/// what it authorized lives on), and with `--grants` also revokes what it authorized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_and_revokes_sessions_by_sid() {
    use crate::support::flow::{gateway, introspect, AuthorizeUrl, Pkce};
    for db in TestDb::all().await {
        let server = crate::support::TestServer::start(&db).await;
        let web = server
            .client_with("web", false, |c| {
                c.scope = "openid offline_access".into();
            })
            .await;
        let gateway = gateway(&server).await;
        server.user("ada").await;
        let url = || {
            AuthorizeUrl::new(&web)
                .set("scope", "openid offline_access")
                .set("prompt", "consent")
        };
        let browser = server.browser();
        let first = server.code_flow(&browser, &web, url(), &Pkce::new()).await;
        let (claims, _) = server.verify_jwt(first["id_token"].as_str().unwrap()).await;
        let sid = claims.claim("sid").unwrap().as_str().unwrap().to_owned();

        let listed = db
            .tessera(&["session", "list", "--user", "ada", "--json"])
            .json();
        assert_eq!(
            listed.as_array().unwrap().len(),
            1,
            "{}: {listed}",
            db.label
        );
        assert_eq!(listed[0]["sid"], sid.as_str());

        // Ended alone: the browser signs in again, the tokens it got still work.
        let ended = db.tessera(&["session", "revoke", &sid, "--json"]).json();
        assert_eq!(ended["grants_revoked"], 0);
        let page = browser.get(&url().pkce(&Pkce::new()).path()).await;
        assert!(page.body.contains("name=\"password\""), "{}", db.label);
        let refresh = |tokens: &serde_json::Value| {
            let token = tokens["refresh_token"].as_str().unwrap().to_owned();
            let (server, web) = (&server, &web);
            async move {
                server
                    .token(
                        web,
                        &[("grant_type", "refresh_token"), ("refresh_token", &token)],
                    )
                    .await
            }
        };
        assert_eq!(refresh(&first).await.status, 200, "{}", db.label);

        // With --grants: what the session authorized is revoked too.
        let second = server.code_flow(&browser, &web, url(), &Pkce::new()).await;
        let (claims, _) = server
            .verify_jwt(second["id_token"].as_str().unwrap())
            .await;
        let sid2 = claims.claim("sid").unwrap().as_str().unwrap().to_owned();
        assert_ne!(sid2, sid);
        let ended = db
            .tessera(&["session", "revoke", &sid2, "--grants", "--json"])
            .json();
        assert_eq!(ended["grants_revoked"], 1, "{}", db.label);
        let refused = refresh(&second).await;
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert_eq!(refused.json()["error"], "invalid_grant");
        // Within the introspection cache's bound (decision 0022).
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let answer = introspect(&server, &gateway, second["access_token"].as_str().unwrap()).await;
        assert_eq!(answer["active"], false, "{}: {answer}", db.label);

        let unknown = db.tessera(&["session", "revoke", "no-such-sid"]);
        assert!(
            !unknown.ok() && unknown.stderr().contains("no session"),
            "{}",
            unknown.stderr()
        );
        let events = server.state.store.recent_audit(10).await.unwrap();
        let logout = events
            .iter()
            .find(|e| e.event.kind == "logout" && e.event.details["sid"] == sid2.as_str())
            .expect("an audited logout");
        assert_eq!(logout.event.actor, "cli");
        server.stop().await;
    }
}

/// The binary carries jemalloc's settings (`.cargo/config.toml`, decision 0020): a build
/// that lost them would keep a burst's freed memory ten seconds instead of half of one, in
/// eight arenas instead of one, and large blocks in every thread's cache.
#[test]
fn binary_returns_freed_memory_within_half_a_second() {
    let env = std::collections::BTreeMap::from([(
        "MALLOC_CONF".to_owned(),
        "confirm_conf:true".to_owned(),
    )]);
    let run = crate::support::run_binary(&["--version"], &env, None);
    run.succeeds();
    let compiled = run
        .stderr()
        .lines()
        .find(|l| l.contains("--with-malloc-conf"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no compiled-in jemalloc options:\n{}", run.stderr()));
    for option in [
        "background_thread:true",
        "narenas:1",
        "tcache_max:4096",
        "dirty_decay_ms:500",
        "muzzy_decay_ms:0",
    ] {
        assert!(compiled.contains(option), "{option} missing: {compiled}");
    }
}
