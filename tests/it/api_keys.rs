//! API keys (docs/api-keys.md) and role claims: made on the account page and with the CLI,
//! checked by a gateway through introspection exactly like opaque access tokens, revoked by
//! their owner, an operator or a leak report.

use serde_json::{json, Value};
use tessera::store::{AccessTokenFormat, AccountRecord};

use crate::support::flow::{
    gateway, inactive, introspect, AuthorizeUrl, Browser, Pkce, Reply, TestClient, PASSWORD,
};
use crate::support::{audit_kinds, TestDb, TestServer};

/// Gives `user` roles and groups, as `tessera user update --add-role` does.
async fn with_roles(server: &TestServer, user: &AccountRecord, roles: &[&str], groups: &[&str]) {
    let mut account = user.clone();
    account.roles = roles.iter().map(|r| r.to_string()).collect();
    account.groups = groups.iter().map(|g| g.to_string()).collect();
    let audit = tessera::audit::AuditEvent::new(tessera::audit::AuditKind::UserUpdated, "test", 0);
    server
        .state
        .store
        .update_account(&account, &audit)
        .await
        .unwrap();
}

/// Signs in on the account page through its form; returns the page with the keys.
pub(crate) async fn account_sign_in(browser: &Browser, username: &str) -> Reply {
    let form = browser.get("/account").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(
        form.body.contains("action=\"/account/login\""),
        "{}",
        form.body
    );
    let res = browser
        .post(
            "/account/login",
            &[
                ("username", username),
                ("password", PASSWORD),
                ("csrf_token", &form.input("csrf_token")),
            ],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(res.location(), "/account");
    let page = browser.get("/account").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Your API keys"), "{}", page.body);
    page
}

/// Submits the create form on `page`.
async fn create_on_page(browser: &Browser, page: &Reply, label: &str, scopes: &[&str]) -> Reply {
    let csrf = page.input("csrf_token");
    let fields: Vec<String> = scopes.iter().map(|s| format!("scope_{s}")).collect();
    let mut form = vec![
        ("csrf_token", csrf.as_str()),
        ("label", label),
        ("expires_in", "90d"),
    ];
    form.extend(fields.iter().map(|f| (f.as_str(), "on")));
    browser.post("/account/keys", &form).await
}

/// The key a page shows once.
fn shown_key(page: &Reply) -> String {
    let start = page
        .body
        .find("id=\"new-key\">")
        .unwrap_or_else(|| panic!("no new key on: {}", page.body))
        + "id=\"new-key\">".len();
    let key = &page.body[start..start + 53];
    assert!(key.starts_with("tsk_"), "{key}");
    key.to_owned()
}

/// The id of the key labelled `label` on the account page.
fn key_id_on_page(page: &Reply, label: &str) -> String {
    let at = page
        .body
        .find(&format!("<span class=\"key-label\">{label}</span>"))
        .unwrap_or_else(|| panic!("no key {label} on: {}", page.body));
    let before = &page.body[..at];
    let start = before.rfind("data-key-id=\"").unwrap() + "data-key-id=\"".len();
    before[start..].split('"').next().unwrap().to_owned()
}

async fn key_count(server: &TestServer, owner: &str) -> usize {
    let keys = server.state.store.api_keys(Some(owner)).await.unwrap();
    keys.iter().filter(|k| k.revoked_at.is_none()).count()
}

#[tokio::test]
async fn api_key_made_on_the_account_page_is_introspected_then_revoked_there() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = server.user("ada").await;
        with_roles(&server, &ada, &["admin", "billing"], &["ops"]).await;
        let gw = gateway(&server).await;
        let browser = server.browser();
        let page = account_sign_in(&browser, "ada").await;
        assert!(page.body.contains("no API keys yet"), "{}", page.body);

        let created = create_on_page(&browser, &page, "deploy bot", &["read", "roles"]).await;
        assert_eq!(created.status, 200, "{}", created.body);
        assert_eq!(created.header("cache-control"), Some("no-store"));
        assert!(created.body.contains("will not be shown again"));
        let key = shown_key(&created);
        // Shown once: the list shows only its start.
        let list = browser.get("/account").await;
        assert!(!list.body.contains(&key));
        assert!(
            list.body.contains(&format!("{}…", &key[..10])),
            "{}",
            list.body
        );
        let id = key_id_on_page(&list, "deploy bot");

        let answer = introspect(&server, &gw, &key).await;
        assert_eq!(answer["active"], true, "{answer}");
        assert_eq!(answer["sub"], ada.id.as_str());
        assert_eq!(answer["username"], "ada");
        assert_eq!(answer["scope"], "read roles");
        assert_eq!(answer["token_type"], "api_key");
        assert_eq!(answer["jti"], id.as_str());
        assert_eq!(answer["roles"], json!(["admin", "billing"]));
        assert_eq!(answer["groups"], json!(["ops"]));
        let iat = answer["iat"].as_i64().unwrap();
        assert_eq!(answer["exp"].as_i64().unwrap() - iat, 90 * 86_400);
        assert!(answer.get("client_id").is_none(), "{answer}");
        let used = server.state.store.api_key(&id).await.unwrap().unwrap();
        assert!(used.last_used_at.is_some(), "last use recorded");

        // Revoking asks first, and asking changes nothing.
        let list = browser.get("/account").await;
        let csrf = list.input("csrf_token");
        let ask = browser
            .post(
                "/account/keys/revoke",
                &[("csrf_token", &csrf), ("key_id", &id)],
            )
            .await;
        assert_eq!(ask.status, 200, "{}", ask.body);
        assert!(ask.body.contains("Revoke this API key?"), "{}", ask.body);
        assert_eq!(introspect(&server, &gw, &key).await["active"], true);
        let done = browser
            .post(
                "/account/keys/revoke",
                &[
                    ("csrf_token", &ask.input("csrf_token")),
                    ("key_id", &id),
                    ("confirm", "yes"),
                ],
            )
            .await;
        assert_eq!(done.status, 303, "{}", done.body);
        assert_eq!(introspect(&server, &gw, &key).await, inactive());
        // The dead key's use is audited once a minute, not at every retry.
        assert_eq!(introspect(&server, &gw, &key).await, inactive());
        let kinds = audit_kinds(server.state.store.as_ref(), 10).await;
        let after = kinds
            .iter()
            .filter(|k| *k == "api_key_used_after_revocation")
            .count();
        assert_eq!(after, 1, "{kinds:?}");
        assert!(kinds.contains(&"api_key_revoked".to_owned()), "{kinds:?}");
        assert!(kinds.contains(&"api_key_created".to_owned()), "{kinds:?}");
        assert!(!browser.get("/account").await.body.contains("deploy bot"));
        server.stop().await;
    }
}

#[tokio::test]
async fn api_key_regenerate_replaces_the_key_under_the_same_label() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let gw = gateway(&server).await;
        let browser = server.browser();
        let page = account_sign_in(&browser, "ada").await;
        let old = shown_key(&create_on_page(&browser, &page, "ci", &["write"]).await);
        let list = browser.get("/account").await;
        let id = key_id_on_page(&list, "ci");
        let ask = browser
            .post(
                "/account/keys/regenerate",
                &[("csrf_token", &list.input("csrf_token")), ("key_id", &id)],
            )
            .await;
        assert!(
            ask.body.contains("Regenerate this API key?"),
            "{}",
            ask.body
        );
        let done = browser
            .post(
                "/account/keys/regenerate",
                &[
                    ("csrf_token", &ask.input("csrf_token")),
                    ("key_id", &id),
                    ("confirm", "yes"),
                ],
            )
            .await;
        assert_eq!(done.status, 200, "{}", done.body);
        let new = shown_key(&done);
        assert_ne!(new, old);
        assert_eq!(introspect(&server, &gw, &old).await, inactive());
        let answer = introspect(&server, &gw, &new).await;
        assert_eq!(answer["active"], true);
        assert_eq!(answer["scope"], "write");
        assert!(
            answer.get("roles").is_none(),
            "no roles without the roles scope"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_through_the_cli_is_introspected_listed_and_revoked() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = server.user("ada").await;
        let gw = gateway(&server).await;
        db.tessera(&[
            "user",
            "update",
            "ada",
            "--add-role",
            "admin",
            "--add-group",
            "ops",
        ])
        .succeeds();
        let run = db.tessera(&[
            "apikey",
            "create",
            "--user",
            "ada",
            "--label",
            "nightly",
            "--scope",
            "read,roles",
            "--expires-in",
            "30d",
            "--json",
        ]);
        run.succeeds();
        let out = run.json();
        let key = out["key"].as_str().unwrap().to_owned();
        let id = out["id"].as_str().unwrap().to_owned();
        assert!(tessera::crypto::api_key::is_well_formed(&key));

        let answer = introspect(&server, &gw, &key).await;
        assert_eq!(answer["active"], true, "{answer}");
        assert_eq!(answer["sub"], ada.id.as_str());
        assert_eq!(answer["scope"], "read roles");
        assert_eq!(answer["roles"], json!(["admin"]));
        assert_eq!(answer["groups"], json!(["ops"]));
        assert_eq!(answer["jti"], id.as_str());

        // RFC 9701: the signed answer carries the same claims.
        let res = crate::support::http()
            .post(server.url("/introspect"))
            .basic_auth(&gw.record.id, gw.secret.as_deref())
            .header("accept", "application/token-introspection+jwt")
            .form(&[("token", key.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let jwt = res.text().await.unwrap();
        let (claims, _) = server.verify_jwt(&jwt).await;
        let inner = claims.claim("token_introspection").unwrap();
        assert_eq!(inner["token_type"], "api_key");
        assert_eq!(inner["roles"], json!(["admin"]));

        // The list never shows the key, only its start.
        let list = db.tessera(&["apikey", "list", "--user", "ada"]);
        list.succeeds();
        assert!(list.stdout().contains(&id), "{}", list.stdout());
        assert!(list.stdout().contains(&key[..10]));
        assert!(!list.stdout().contains(&key));
        let listed = db.tessera(&["apikey", "list", "--json"]).json();
        assert!(!listed.to_string().contains(&key));

        db.tessera(&["apikey", "revoke", &id]).succeeds();
        assert_eq!(introspect(&server, &gw, &key).await, inactive());
        db.tessera(&["apikey", "revoke", &id])
            .fails_with("already revoked");
        db.tessera(&["apikey", "revoke", "key_nope"])
            .fails_with("not found");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_cli_refuses_bad_input_and_changes_nothing() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = server.user("ada").await;
        let create = |extra: &[&str]| {
            let mut args = vec!["apikey", "create", "--user", "ada"];
            args.extend_from_slice(extra);
            db.tessera(&args)
        };
        create(&["--label", "a", "--scope", "admin"]).fails_with("scope");
        create(&["--label", "a", "--expires-in", "5m"]).fails_with("--expires-in");
        create(&["--label", "   "]).fails_with("label");
        db.tessera(&["apikey", "create", "--user", "nobody", "--label", "a"])
            .fails_with("not found");
        assert_eq!(key_count(&server, &ada.id).await, 0);
        create(&["--label", "a"]).succeeds();
        create(&["--label", "a"]).fails_with("already an unrevoked key labelled");
        assert_eq!(key_count(&server, &ada.id).await, 1);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_expired_or_of_a_disabled_user_is_inactive_and_audited_rfc7662_2_2() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = server.user("ada").await;
        server.user("bob").await;
        let gw = gateway(&server).await;
        let store = server.state.store.as_ref();
        let policy = &server.state.config.api_keys;
        let now = server.state.clock.now();
        let new = |label| tessera::oauth::api_keys::NewKey {
            label,
            scopes: None,
            ttl_secs: Some(3600),
        };
        // Made two hours ago for one hour.
        let (expired, _) = tessera::oauth::api_keys::create(
            store,
            policy,
            &ada,
            new("old"),
            None,
            &Default::default(),
            now - 7200,
        )
        .await
        .unwrap();
        assert_eq!(introspect(&server, &gw, expired.expose()).await, inactive());
        assert_eq!(
            audit_kinds(store, 1).await,
            ["api_key_used_after_expiry"],
            "expired-key use is audited"
        );

        let run = db.tessera(&[
            "apikey", "create", "--user", "bob", "--label", "b", "--json",
        ]);
        let bobs = run.json()["key"].as_str().unwrap().to_owned();
        assert_eq!(introspect(&server, &gw, &bobs).await["active"], true);
        db.tessera(&["user", "disable", "bob"]).succeeds();
        assert_eq!(introspect(&server, &gw, &bobs).await, inactive());
        assert_eq!(
            audit_kinds(store, 1).await,
            ["api_key_used_by_disabled_user"]
        );
        // Enabling the user brings nothing back (decision 0012).
        db.tessera(&["apikey", "create", "--user", "bob", "--label", "c"])
            .fails_with("disabled");
        db.tessera(&["user", "enable", "bob"]).succeeds();
        assert_eq!(introspect(&server, &gw, &bobs).await, inactive());
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_with_a_wrong_checksum_is_inactive_without_a_lookup_rfc7662_2_2() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let gw = gateway(&server).await;
        let run = db.tessera(&[
            "apikey", "create", "--user", "ada", "--label", "k", "--json",
        ]);
        let key = run.json()["key"].as_str().unwrap().to_owned();
        let mut typo = key.clone().into_bytes();
        typo[20] = if typo[20] == b'x' { b'y' } else { b'x' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(introspect(&server, &gw, &typo).await, inactive());
        assert_eq!(introspect(&server, &gw, &key[..52]).await, inactive());

        // Proof that no lookup happens: a live access token stored under the digest of the
        // mistyped value is still not found.
        let record = tessera::store::TokenRecord {
            digest: tessera::crypto::token::Digest::of(&typo),
            kind: tessera::store::TokenKind::Access,
            jti: "planted".into(),
            grant_id: None,
            client_id: Some(gw.record.id.clone()),
            account_id: None,
            scope: "gateway".into(),
            label: None,
            previous_digest: None,
            created_at: 0,
            expires_at: None,
            used_at: None,
            revoked_at: None,
        };
        let audit = tessera::audit::AuditEvent::new(tessera::audit::AuditKind::TokenIssued, "t", 0);
        server
            .state
            .store
            .insert_tokens(&[record], &audit)
            .await
            .unwrap();
        assert_eq!(introspect(&server, &gw, &typo).await, inactive());
        server.stop().await;
    }
}

#[tokio::test]
async fn api_key_page_refuses_label_clash_and_keys_past_the_limit() {
    for db in TestDb::all().await {
        let mut config = db.config();
        config.api_keys.max_per_user = 2;
        let server = TestServer::start_with(config).await;
        let ada = server.user("ada").await;
        let browser = server.browser();
        let page = account_sign_in(&browser, "ada").await;
        assert_eq!(
            create_on_page(&browser, &page, "one", &["read"])
                .await
                .status,
            200
        );
        let clash = create_on_page(&browser, &page, "one", &["read"]).await;
        assert_eq!(clash.status, 409, "{}", clash.body);
        assert!(
            clash.body.contains("already an unrevoked key labelled"),
            "{}",
            clash.body
        );
        assert!(!clash.body.contains("id=\"new-key\""));
        assert_eq!(key_count(&server, &ada.id).await, 1);
        let none = create_on_page(&browser, &page, "none", &[]).await;
        assert_eq!(none.status, 400, "no scope chosen: {}", none.body);
        assert_eq!(
            create_on_page(&browser, &page, "two", &["read"])
                .await
                .status,
            200
        );
        let third = create_on_page(&browser, &page, "three", &["read"]).await;
        assert_eq!(third.status, 409, "{}", third.body);
        assert!(
            third.body.contains("2 live keys is the most"),
            "{}",
            third.body
        );
        assert_eq!(key_count(&server, &ada.id).await, 2);
        server.stop().await;
    }
}

#[tokio::test]
async fn api_key_forms_without_csrf_token_change_nothing_owasp_csrf() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = server.user("ada").await;
        let gw = gateway(&server).await;
        let browser = server.browser();
        let page = account_sign_in(&browser, "ada").await;
        let key = shown_key(&create_on_page(&browser, &page, "k", &["read"]).await);
        let id = key_id_on_page(&browser.get("/account").await, "k");

        // Missing, empty and forged tokens alike.
        for csrf in [None, Some(""), Some("forged")] {
            let with = |mut form: Vec<(&'static str, String)>| {
                if let Some(token) = csrf {
                    form.push(("csrf_token", token.to_owned()));
                }
                form
            };
            let create = with(vec![
                ("label", "sneaky".into()),
                ("scope_read", "on".into()),
            ]);
            let change = with(vec![("key_id", id.clone()), ("confirm", "yes".into())]);
            for (path, form) in [
                ("/account/keys", create),
                ("/account/keys/revoke", change.clone()),
                ("/account/keys/regenerate", change),
            ] {
                let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let res = browser.post(path, &form).await;
                assert_eq!(res.status, 403, "{path} {csrf:?}: {}", res.body);
            }
        }
        // The sign-in form too: a login CSRF would sign the victim into the attacker's account.
        let login = server
            .browser()
            .post(
                "/account/login",
                &[("username", "ada"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(login.status, 403);
        assert_eq!(key_count(&server, &ada.id).await, 1);
        assert_eq!(introspect(&server, &gw, &key).await["active"], true);
        server.stop().await;
    }
}

#[tokio::test]
async fn api_key_of_another_user_cannot_be_revoked_or_regenerated() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = server.user("ada").await;
        server.user("bob").await;
        let gw = gateway(&server).await;
        let ada_browser = server.browser();
        let page = account_sign_in(&ada_browser, "ada").await;
        let key = shown_key(&create_on_page(&ada_browser, &page, "mine", &["read"]).await);
        let id = key_id_on_page(&ada_browser.get("/account").await, "mine");

        let bob = server.browser();
        let bobs_page = account_sign_in(&bob, "bob").await;
        let csrf = bobs_page.input("csrf_token");
        for path in ["/account/keys/revoke", "/account/keys/regenerate"] {
            let res = bob
                .post(
                    path,
                    &[("csrf_token", &csrf), ("key_id", &id), ("confirm", "yes")],
                )
                .await;
            assert_eq!(res.status, 404, "{path}: {}", res.body);
        }
        assert_eq!(introspect(&server, &gw, &key).await["active"], true);
        assert_eq!(key_count(&server, &ada.id).await, 1);
        // Without a session, the forms lead to the sign-in page.
        let stranger = server.browser();
        let form = stranger.get("/account").await;
        let res = stranger
            .post(
                "/account/keys/revoke",
                &[
                    ("csrf_token", &form.input("csrf_token")),
                    ("key_id", &id),
                    ("confirm", "yes"),
                ],
            )
            .await;
        assert_eq!(res.status, 303);
        assert_eq!(introspect(&server, &gw, &key).await["active"], true);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_reported_as_leaked_is_revoked_and_the_answer_says_nothing() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let gw = gateway(&server).await;
        let run = db.tessera(&[
            "apikey", "create", "--user", "ada", "--label", "k", "--json",
        ]);
        let key = run.json()["key"].as_str().unwrap().to_owned();
        let unknown = tessera::crypto::api_key::generate();
        let report = |body: Value| {
            let url = server.url("/apikeys/revoke-leaked");
            async move {
                let res = crate::support::http()
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (res.status().as_u16(), res.text().await.unwrap())
            }
        };
        let for_unknown =
            report(json!([{ "token": unknown.expose(), "type": "tessera_api_key" }])).await;
        let for_garbage = report(json!({ "token": "tsk_nonsense" })).await;
        let for_key = report(json!([{ "token": key, "type": "tessera_api_key" }])).await;
        assert_eq!(for_key, (200, r#"{"received":1}"#.to_owned()));
        assert_eq!(
            for_unknown, for_key,
            "same answer whether or not the key exists"
        );
        assert_eq!(for_garbage, for_key);
        assert_eq!(introspect(&server, &gw, &key).await, inactive());
        let events = server.state.store.recent_audit(5).await.unwrap();
        let revoked = events
            .iter()
            .find(|e| e.event.kind == "api_key_revoked")
            .expect("the leak revocation is audited");
        assert_eq!(revoked.event.details["reason"], "reported_leaked");
        // A form works too; a body that is neither is refused in OAuth's error format.
        let res = crate::support::http()
            .post(server.url("/apikeys/revoke-leaked"))
            .form(&[("token", key.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let res = crate::support::http()
            .post(server.url("/apikeys/revoke-leaked"))
            .body("token")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        assert_eq!(
            res.json::<Value>().await.unwrap()["error"],
            "invalid_request"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn roles_scope_releases_roles_in_jwt_access_tokens_and_introspection_not_id_tokens_rfc9068_2_2_3_1(
) {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = server.user("ada").await;
        with_roles(&server, &ada, &["admin"], &["ops", "dev"]).await;
        let gw = gateway(&server).await;
        let client: TestClient = server
            .client_with("internal", false, |c| {
                c.scope = "openid roles api".into();
                c.access_token_format = AccessTokenFormat::Jwt;
            })
            .await;
        let opaque: TestClient = server
            .client_with("web", false, |c| c.scope = "openid roles api".into())
            .await;

        let url = AuthorizeUrl::new(&client).set("scope", "openid roles");
        let tokens = server
            .code_flow(&server.browser(), &client, url, &Pkce::new())
            .await;
        let (claims, _) = server
            .verify_jwt(tokens["access_token"].as_str().unwrap())
            .await;
        assert_eq!(claims.claim("roles").unwrap(), &json!(["admin"]));
        assert_eq!(claims.claim("groups").unwrap(), &json!(["ops", "dev"]));
        let (id_claims, _) = server
            .verify_jwt(tokens["id_token"].as_str().unwrap())
            .await;
        assert!(
            id_claims.claim("roles").is_none(),
            "ID tokens do not carry roles"
        );

        let url = AuthorizeUrl::new(&opaque).set("scope", "openid roles");
        let tokens = server
            .code_flow(&server.browser(), &opaque, url, &Pkce::new())
            .await;
        let answer = introspect(&server, &gw, tokens["access_token"].as_str().unwrap()).await;
        assert_eq!(answer["roles"], json!(["admin"]));

        // Without the scope, no roles.
        let url = AuthorizeUrl::new(&opaque).set("scope", "openid api");
        let tokens = server
            .code_flow(&server.browser(), &opaque, url, &Pkce::new())
            .await;
        let answer = introspect(&server, &gw, tokens["access_token"].as_str().unwrap()).await;
        assert_eq!(answer["active"], true);
        assert!(answer.get("roles").is_none(), "{answer}");
        server.stop().await;
    }
}

#[tokio::test]
async fn api_keys_never_appear_in_log_lines_or_audit_records() {
    for db in TestDb::all().await {
        let mut env = db.env();
        // Everything every layer logs, request and store internals included.
        env.insert("TESSERA_LOG_FILTER".into(), "trace".into());
        let mut command = std::process::Command::new(crate::support::binary());
        command
            .env_clear()
            .envs(&env)
            .stdout(std::process::Stdio::null());
        let server = crate::support::serve::start(command).listening();
        let base = server.base.clone();
        crate::support::wait_healthy(&crate::support::http(), &format!("{base}/healthz")).await;
        db.tessera_with_stdin(
            &["user", "create", "--username", "ada", "--password-stdin"],
            Some(PASSWORD),
        )
        .succeeds();
        let gw = db
            .tessera(&[
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
            ])
            .json();
        let gw_secret = gw["client_secret"].as_str().unwrap().to_owned();
        let introspect = |key: String| {
            let (url, secret) = (format!("{base}/introspect"), gw_secret.clone());
            async move {
                let res = crate::support::http()
                    .post(url)
                    .basic_auth("gw", Some(secret))
                    .form(&[("token", key)])
                    .send()
                    .await
                    .unwrap();
                res.json::<Value>().await.unwrap()
            }
        };

        // A key made on the page, used, revoked there, used again.
        let browser = Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.clone(),
        };
        let page = account_sign_in(&browser, "ada").await;
        let from_page = shown_key(&create_on_page(&browser, &page, "page", &["read"]).await);
        assert_eq!(introspect(from_page.clone()).await["active"], true);
        let list = browser.get("/account").await;
        let id = key_id_on_page(&list, "page");
        let csrf = list.input("csrf_token");
        let form = [
            ("csrf_token", csrf.as_str()),
            ("key_id", &id),
            ("confirm", "yes"),
        ];
        assert_eq!(
            browser.post("/account/keys/revoke", &form).await.status,
            303
        );
        assert_eq!(introspect(from_page.clone()).await, inactive());

        // A key made with the CLI, used, reported as leaked, used again.
        let run = db.tessera(&[
            "apikey", "create", "--user", "ada", "--label", "cli", "--json",
        ]);
        let from_cli = run.json()["key"].as_str().unwrap().to_owned();
        assert_eq!(introspect(from_cli.clone()).await["active"], true);
        let res = crate::support::http()
            .post(format!("{base}/apikeys/revoke-leaked"))
            .json(&json!({ "token": from_cli }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(introspect(from_cli.clone()).await, inactive());

        let (status, log) = server.stop();
        assert!(status.success(), "exit {status:?}");
        assert!(
            log.contains("api_key_revoked"),
            "audit events are logged: {log}"
        );
        let store = tessera::store::open(&db.database_url()).await.unwrap();
        let trail = serde_json::to_string(&store.recent_audit(1000).await.unwrap()).unwrap();
        assert!(trail.contains("api_key_created") && trail.contains("reported_leaked"));
        for key in [&from_page, &from_cli] {
            // The random part alone, in case something strips the prefix.
            let secret = &key[4..47];
            assert!(!log.contains(secret), "the key is in the log");
            assert!(!trail.contains(secret), "the key is in the audit trail");
        }
    }
}

#[tokio::test]
async fn api_key_revoked_at_one_instance_is_inactive_at_another_at_once() {
    for db in TestDb::all().await {
        let one = TestServer::start(&db).await;
        let other = TestServer::start(&db).await;
        one.user("ada").await;
        let gw = gateway(&one).await;
        let browser = one.browser();
        let page = account_sign_in(&browser, "ada").await;
        let key = shown_key(&create_on_page(&browser, &page, "k", &["read"]).await);
        assert_eq!(introspect(&other, &gw, &key).await["active"], true);
        let list = browser.get("/account").await;
        let id = key_id_on_page(&list, "k");
        let form = [
            ("csrf_token", list.input("csrf_token")),
            ("key_id", id),
            ("confirm", "yes".to_owned()),
        ];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            browser.post("/account/keys/revoke", &form).await.status,
            303
        );
        // No cache anywhere: the very next check at the other instance sees it.
        assert_eq!(introspect(&other, &gw, &key).await, inactive());
        one.stop().await;
        other.stop().await;
    }
}

#[tokio::test]
async fn account_sign_in_is_throttled_like_the_login_page_asvs_6_3_1() {
    for db in TestDb::all().await {
        let mut config = db.config();
        config.login_throttle.per_username = 2;
        let server = TestServer::start_with(config).await;
        server.user("ada").await;
        let browser = server.browser();
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let form = browser.get("/account").await;
            let res = browser
                .post(
                    "/account/login",
                    &[
                        ("username", "ada"),
                        ("password", "wrong password"),
                        ("csrf_token", &form.input("csrf_token")),
                    ],
                )
                .await;
            statuses.push(res.status);
            if res.status == 429 {
                assert!(res.header("retry-after").is_some());
                assert!(
                    res.body.contains("Too many failed sign-ins"),
                    "{}",
                    res.body
                );
            }
        }
        // As at /login: the failures past the allowance start a wait (security.rs).
        assert_eq!(statuses, [401, 401, 401, 429], "{}", db.label);
        let kinds = audit_kinds(server.state.store.as_ref(), 1).await;
        assert_eq!(kinds, ["login_throttled"]);
        server.stop().await;
    }
}
