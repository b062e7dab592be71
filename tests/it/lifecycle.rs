//! The token lifecycle: refresh rotation (RFC 6749 §6, RFC 9700 §4.14), client credentials
//! (§4.4), introspection (RFC 7662, RFC 9701), revocation (RFC 7009), JWT access tokens
//! (RFC 9068).

use tessera::store::AccessTokenFormat;

use crate::support::flow::{gateway, inactive, introspect, AuthorizeUrl, Pkce, TestClient};
use crate::support::{http, TestDb, TestServer};

const SCOPE: &str = "openid profile offline_access api";

async fn app_client(server: &TestServer, id: &str) -> TestClient {
    server
        .client_with(id, false, |c| c.scope = SCOPE.into())
        .await
}

/// An app client that may also introspect (to check its own refresh tokens).
async fn introspecting_app_client(server: &TestServer, id: &str) -> TestClient {
    server
        .client_with(id, false, |c| {
            c.scope = SCOPE.into();
            c.may_introspect = true;
        })
        .await
}

/// Runs the code flow for `scope` (user "ada" must exist) and returns the token response.
async fn code_tokens(server: &TestServer, client: &TestClient, scope: &str) -> serde_json::Value {
    let url = AuthorizeUrl::new(client).set("scope", scope);
    server
        .code_flow(&server.browser(), client, url, &Pkce::new())
        .await
}

async fn refresh(
    server: &TestServer,
    client: &TestClient,
    token: &str,
    scope: Option<&str>,
) -> crate::support::flow::Reply {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    server.token(client, &form).await
}

#[tokio::test]
async fn refresh_token_only_with_offline_access_for_openid_requests_oidc_11() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let client = app_client(&server, "web").await;
        let without = code_tokens(&server, &client, "openid profile").await;
        assert!(without.get("refresh_token").is_none(), "{without}");
        let with = code_tokens(&server, &client, "openid offline_access").await;
        assert!(with["refresh_token"].as_str().unwrap().starts_with("tsr_"));
        let plain = code_tokens(&server, &client, "api").await;
        assert!(
            plain["refresh_token"].is_string(),
            "plain OAuth: the client's refresh_token grant suffices"
        );
        let no_grant = server
            .client_with("nogrant", false, |c| {
                c.scope = SCOPE.into();
                c.grant_types = vec!["authorization_code".into()];
            })
            .await;
        let none = code_tokens(&server, &no_grant, "openid offline_access").await;
        assert!(none.get("refresh_token").is_none());
        server.stop().await;
    }
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_grant_rfc9700_4_14_2() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let client = introspecting_app_client(&server, "web").await;
        let gw = gateway(&server).await;
        let first = code_tokens(&server, &client, SCOPE).await;
        let r1 = first["refresh_token"].as_str().unwrap().to_owned();
        let second = refresh(&server, &client, &r1, None).await;
        assert_eq!(second.status, 200, "{}: {}", db.label, second.body);
        let second = second.json();
        let r2 = second["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(r1, r2, "a new refresh token at every use");
        assert_eq!(second["scope"], SCOPE);
        assert_eq!(
            introspect(&server, &gw, &r1).await,
            inactive(),
            "the old one is spent"
        );
        // RFC 7662 §4: a live refresh token is active only to its own client.
        assert_eq!(introspect(&server, &client, &r2).await["active"], true);
        assert_eq!(introspect(&server, &gw, &r2).await, inactive());

        // Replaying the spent token: invalid_grant, and everything from the grant dies.
        let replay = refresh(&server, &client, &r1, None).await;
        assert_eq!(replay.status, 400);
        assert_eq!(replay.json()["error"], "invalid_grant");
        for token in [
            &r2,
            second["access_token"].as_str().unwrap(),
            first["access_token"].as_str().unwrap(),
        ] {
            assert_eq!(
                introspect(&server, &gw, token).await,
                inactive(),
                "{}",
                db.label
            );
        }
        assert_eq!(
            refresh(&server, &client, &r2, None).await.json()["error"],
            "invalid_grant"
        );
        let kinds = crate::support::audit_kinds(server.state.store.as_ref(), 10).await;
        assert!(
            kinds.contains(&"refresh_token_reuse".to_owned()),
            "{kinds:?}"
        );
        server.stop().await;
    }
}

/// A refresh writes the rows and the event the code exchange wrote, but for the grant type
/// and the new token ids: on Postgres in one statement that builds them from the old token
/// (decision 0043), on SQLite from the server's own read. Same text in the event's details.
#[tokio::test]
async fn refresh_writes_the_tokens_and_event_the_code_exchange_wrote() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let client = app_client(&server, "web").await;
        let first = code_tokens(&server, &client, SCOPE).await;
        let second = refresh(
            &server,
            &client,
            first["refresh_token"].as_str().unwrap(),
            None,
        )
        .await;
        assert_eq!(second.status, 200, "{}: {}", db.label, second.body);

        let events = db
            .rows(
                "select actor, client_id, account_id, source_ip, user_agent, details \
                 from audit_event where kind = 'token_issued' order by id",
            )
            .await;
        let [code, rotated] = &events[..] else {
            panic!("{}: {events:?}", db.label);
        };
        assert_eq!(code[..5], rotated[..5], "{}", db.label);
        let jti = |details: &Option<String>| {
            let v: serde_json::Value = serde_json::from_str(details.as_deref().unwrap()).unwrap();
            v["jti"].as_str().unwrap().to_owned()
        };
        let (code_details, rotated_details) = (&code[5], &rotated[5]);
        let expected = code_details
            .as_deref()
            .unwrap()
            .replace("\"authorization_code\"", "\"refresh_token\"")
            .replace(&jti(code_details), &jti(rotated_details));
        assert_eq!(
            rotated_details.as_deref(),
            Some(&expected[..]),
            "{}",
            db.label
        );

        // Each pair: the same grant, user, client, scope and lifetimes; the new refresh
        // token names the one it replaced.
        let tokens = db
            .rows(
                "select kind, grant_id, account_id, client_id, scope, \
                 expires_at - created_at, cast(previous_digest is null as integer), \
                 cast(used_at is null as integer), jti \
                 from token order by kind, previous_digest is not null, jti",
            )
            .await;
        let [a1, a2, r1, r2] = &tokens[..] else {
            panic!("{}: {tokens:?}", db.label);
        };
        assert_eq!(a1[..7], a2[..7], "{}", db.label);
        let mut jtis = [jti(code_details), jti(rotated_details)];
        jtis.sort();
        assert_eq!(
            [a1[8].clone(), a2[8].clone()],
            jtis.map(Some),
            "{}",
            db.label
        );
        assert_eq!(r1[..6], r2[..6], "{}", db.label);
        assert_eq!(r2[6].as_deref(), Some("0"), "{}: previous digest", db.label);
        assert_eq!(
            r1[7].as_deref(),
            Some("0"),
            "{}: the old one spent",
            db.label
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_used_concurrently_succeeds_at_most_once_rfc9700_4_14_2() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let client = app_client(&server, "web").await;
        let first = code_tokens(&server, &client, SCOPE).await;
        let token = first["refresh_token"].as_str().unwrap().to_owned();
        let secret = client.secret.clone().unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (url, token, secret) = (server.url("/token"), token.clone(), secret.clone());
            tasks.push(tokio::spawn(async move {
                let res = http()
                    .post(url)
                    .basic_auth("web", Some(secret))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", token.as_str()),
                    ])
                    .send()
                    .await
                    .unwrap();
                (res.status().as_u16(), res.text().await.unwrap())
            }));
        }
        let mut replies = Vec::new();
        for t in tasks {
            replies.push(t.await.unwrap());
        }
        let ok = replies.iter().filter(|(s, _)| *s == 200).count();
        assert!(ok <= 1, "{}: {replies:?}", db.label);
        assert!(
            replies
                .iter()
                .filter(|(s, _)| *s != 200)
                .all(|(s, b)| *s == 400 && b.contains("invalid_grant")),
            "{replies:?}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn refresh_scope_may_narrow_but_never_widen_and_id_token_keeps_auth_time_rfc6749_6() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let client = app_client(&server, "web").await;
        let first = code_tokens(&server, &client, "openid offline_access api").await;
        let r1 = first["refresh_token"].as_str().unwrap();
        let wider = refresh(
            &server,
            &client,
            r1,
            Some("openid offline_access api profile"),
        )
        .await;
        assert_eq!(wider.status, 400);
        assert_eq!(wider.json()["error"], "invalid_scope");
        server.state.clock.advance(100);
        let narrower = refresh(&server, &client, r1, Some("api")).await;
        assert_eq!(narrower.status, 200, "{}", narrower.body);
        let body = narrower.json();
        assert_eq!(body["scope"], "api");
        // The new refresh token keeps the grant's scope (RFC 6749 §6).
        let again = refresh(
            &server,
            &client,
            body["refresh_token"].as_str().unwrap(),
            Some("openid offline_access"),
        )
        .await;
        assert_eq!(again.status, 200, "{}", again.body);
        // OIDC Core §12.2: a new ID token with the original auth_time and no nonce.
        let id = again.json()["id_token"].as_str().unwrap().to_owned();
        let payload: serde_json::Value = {
            use base64::Engine;
            let part = id.split('.').nth(1).unwrap();
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .unwrap(),
            )
            .unwrap()
        };
        let first_payload: serde_json::Value = {
            use base64::Engine;
            let part = first["id_token"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap();
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(payload["auth_time"], first_payload["auth_time"]);
        assert!(payload["iat"].as_i64().unwrap() > first_payload["iat"].as_i64().unwrap());
        assert!(payload.get("nonce").is_none());
        server.stop().await;
    }
}

#[tokio::test]
async fn refresh_is_bound_to_its_client_and_stops_for_disabled_users_rfc6749_10_4() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = server.user("ada").await;
        let client = app_client(&server, "web").await;
        let other = app_client(&server, "other").await;
        let first = code_tokens(&server, &client, SCOPE).await;
        let r1 = first["refresh_token"].as_str().unwrap();
        let stolen = refresh(&server, &other, r1, None).await;
        assert_eq!(stolen.json()["error"], "invalid_grant");
        assert_eq!(
            refresh(&server, &client, r1, None).await.status,
            200,
            "a foreign client's attempt did not spend it"
        );

        let second = code_tokens(&server, &client, SCOPE).await;
        server.disable_user(&ada.id).await;
        let res = refresh(
            &server,
            &client,
            second["refresh_token"].as_str().unwrap(),
            None,
        )
        .await;
        assert_eq!(res.json()["error"], "invalid_grant");
        server.stop().await;
    }
}

#[tokio::test]
async fn refresh_token_for_a_deleted_client_is_gone() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let client = introspecting_app_client(&server, "web").await;
        let gw = gateway(&server).await;
        let first = code_tokens(&server, &client, SCOPE).await;
        server
            .state
            .store
            .delete_client(
                "web",
                &tessera::audit::AuditEvent::new(
                    tessera::audit::AuditKind::ClientDeleted,
                    "test",
                    0,
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            introspect(&server, &gw, first["refresh_token"].as_str().unwrap()).await,
            inactive()
        );
        let presented = first["refresh_token"].as_str().unwrap();
        // The token went with the client at once; the client's own credentials work for at
        // most `client_cache::MAX_AGE` more (docs/scaling.md), and then not at all.
        let at_once = refresh(&server, &client, presented, None).await;
        assert!(
            (at_once.status == 400 && at_once.json()["error"] == "invalid_grant")
                || at_once.status == 401,
            "{}",
            at_once.body
        );
        tokio::time::sleep(
            tessera::store::client_cache::MAX_AGE + std::time::Duration::from_millis(100),
        )
        .await;
        assert_eq!(refresh(&server, &client, presented, None).await.status, 401);
        server.stop().await;
    }
}

#[tokio::test]
async fn refresh_token_idle_and_absolute_lifetimes_are_enforced() {
    for db in TestDb::all().await {
        let mut env = db.env();
        env.insert("TESSERA_REFRESH_TOKEN_IDLE_TTL_SECS".into(), "600".into());
        env.insert(
            "TESSERA_REFRESH_TOKEN_ABSOLUTE_TTL_SECS".into(),
            "1000".into(),
        );
        let config =
            tessera::Config::from_sources(Some(std::path::Path::new("/dev/null")), &env).unwrap();
        let server = TestServer::start_with(config).await;
        server.user("ada").await;
        let client = app_client(&server, "web").await;
        let mut token = code_tokens(&server, &client, SCOPE).await["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
        // Idle: unused for longer than 600 s, a token expires.
        let idle = code_tokens(&server, &client, SCOPE).await["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
        for step in [500, 450] {
            server.state.clock.advance(step);
            let res = refresh(&server, &client, &token, None).await;
            assert_eq!(res.status, 200, "{}", res.body);
            token = res.json()["refresh_token"].as_str().unwrap().to_owned();
        }
        assert_eq!(
            refresh(&server, &client, &idle, None).await.json()["error"],
            "invalid_grant",
            "idle for 950 s"
        );
        // Absolute: 1000 s after authorization, even a freshly rotated token stops.
        server.state.clock.advance(60);
        assert_eq!(
            refresh(&server, &client, &token, None).await.json()["error"],
            "invalid_grant"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn client_credentials_grants_the_client_its_own_scopes_only_rfc6749_4_4() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let gw = gateway(&server).await;
        let service = server
            .client_with("svc", false, |c| {
                c.grant_types = vec!["client_credentials".into()];
                c.redirect_uris = vec![];
                c.scope = "openid reports:read reports:write".into();
            })
            .await;
        let res = server
            .token(
                &service,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "reports:read"),
                ],
            )
            .await;
        assert_eq!(res.status, 200, "{}: {}", db.label, res.body);
        let body = res.json();
        assert!(
            body.get("refresh_token").is_none(),
            "RFC 6749 §4.4.3: no refresh token"
        );
        assert!(body.get("id_token").is_none());
        assert_eq!(body["scope"], "reports:read");
        assert_eq!(res.header("cache-control"), Some("no-store"));
        let info = introspect(&server, &gw, body["access_token"].as_str().unwrap()).await;
        assert_eq!(info["active"], true);
        assert_eq!(info["sub"], "svc");
        assert_eq!(info["client_id"], "svc");
        assert!(info.get("username").is_none());

        let default = server
            .token(&service, &[("grant_type", "client_credentials")])
            .await
            .json();
        assert_eq!(
            default["scope"], "reports:read reports:write",
            "no person scopes by default"
        );
        for person in ["openid", "reports:read openid"] {
            let res = server
                .token(
                    &service,
                    &[("grant_type", "client_credentials"), ("scope", person)],
                )
                .await;
            assert_eq!(res.json()["error"], "invalid_scope", "{person}");
        }
        let res = server
            .token(
                &service,
                &[("grant_type", "client_credentials"), ("scope", "admin")],
            )
            .await;
        assert_eq!(res.json()["error"], "invalid_scope");
        // A client not registered for the grant.
        let web = app_client(&server, "web").await;
        let res = server
            .token(&web, &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(res.json()["error"], "unauthorized_client");
        server.stop().await;
    }
}

#[tokio::test]
async fn introspection_answers_active_with_claims_and_inactive_with_nothing_else_rfc7662_2_2() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = server.user("ada").await;
        let client = app_client(&server, "web").await;
        let gw = gateway(&server).await;
        let tokens = code_tokens(&server, &client, SCOPE).await;
        let access = tokens["access_token"].as_str().unwrap();
        let info = introspect(&server, &gw, access).await;
        assert_eq!(info["active"], true);
        assert_eq!(info["scope"], SCOPE);
        assert_eq!(info["client_id"], "web");
        assert_eq!(info["username"], "ada");
        assert_eq!(info["sub"], ada.id.as_str());
        assert_eq!(info["token_type"], "Bearer");
        assert_eq!(info["iss"], server.state.config.issuer_str());
        assert_eq!(info["aud"], "web");
        assert!(info["jti"].is_string());
        let iat = info["iat"].as_i64().unwrap();
        assert_eq!(info["exp"].as_i64().unwrap(), iat + 3600);
        assert_eq!(info["nbf"].as_i64().unwrap(), iat);
        // The hint never changes the answer.
        for hint in ["access_token", "refresh_token", "bogus"] {
            let res = server
                .token_like(
                    "/introspect",
                    &gw,
                    &[("token", access), ("token_type_hint", hint)],
                )
                .await;
            assert_eq!(res.json(), info, "{hint}");
        }
        assert_eq!(introspect(&server, &gw, "tsa_unknown").await, inactive());
        server.state.clock.advance(3601);
        assert_eq!(
            introspect(&server, &gw, access).await,
            inactive(),
            "expired"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn introspection_is_only_for_registered_gateways_rfc7662_2_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let client = app_client(&server, "web").await;
        let tokens = code_tokens(&server, &client, SCOPE).await;
        let access = tokens["access_token"].as_str().unwrap();
        let res = server
            .token_like("/introspect", &client, &[("token", access)])
            .await;
        assert_eq!(res.status, 403);
        assert_eq!(res.json()["error"], "unauthorized_client");
        assert!(!res.body.contains("active"), "no answer about the token");
        let res = http()
            .post(server.url("/introspect"))
            .basic_auth("gateway", Some("wrong"))
            .form(&[("token", access)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let res = http()
            .post(server.url("/introspect"))
            .form(&[("token", access)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        server.stop().await;
    }
}

#[tokio::test]
async fn introspection_jwt_response_is_signed_and_verifies_with_the_jwks_rfc9701_5() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let client = app_client(&server, "web").await;
        let gw = gateway(&server).await;
        let tokens = code_tokens(&server, &client, SCOPE).await;
        let res = http()
            .post(server.url("/introspect"))
            .basic_auth("gateway", Some(gw.secret.clone().unwrap()))
            .header("accept", "application/token-introspection+jwt")
            .form(&[("token", tokens["access_token"].as_str().unwrap())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-type"],
            "application/token-introspection+jwt"
        );
        let jwt_text = res.text().await.unwrap();
        let (payload, header) = server.verify_jwt(&jwt_text).await;
        assert_eq!(header.token_type(), Some("token-introspection+jwt"));
        assert_eq!(payload.issuer(), Some(server.state.config.issuer_str()));
        assert_eq!(payload.audience(), Some(vec!["gateway"]));
        assert!(payload.claim("iat").is_some());
        let answer = payload.claim("token_introspection").unwrap();
        assert_eq!(answer["active"], true);
        assert_eq!(answer["username"], "ada");
        server.stop().await;
    }
}

#[tokio::test]
async fn revocation_of_access_and_refresh_tokens_rfc7009_2_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let client = introspecting_app_client(&server, "web").await;
        let gw = gateway(&server).await;
        let revoke = |token: String, client: &TestClient| {
            let client = TestClient {
                record: client.record.clone(),
                secret: client.secret.clone(),
            };
            let server = &server;
            async move {
                server
                    .token_like("/revoke", &client, &[("token", token.as_str())])
                    .await
            }
        };
        // An access token: only that token dies.
        let a = code_tokens(&server, &client, SCOPE).await;
        let res = revoke(a["access_token"].as_str().unwrap().to_owned(), &client).await;
        assert_eq!(res.status, 200, "{}: {}", db.label, res.body);
        assert_eq!(
            introspect(&server, &gw, a["access_token"].as_str().unwrap()).await,
            inactive()
        );
        assert_eq!(
            introspect(&server, &client, a["refresh_token"].as_str().unwrap()).await["active"],
            true
        );
        // A refresh token: the grant dies, access tokens with it.
        let b = code_tokens(&server, &client, SCOPE).await;
        assert_eq!(
            revoke(b["refresh_token"].as_str().unwrap().to_owned(), &client)
                .await
                .status,
            200
        );
        assert_eq!(
            introspect(&server, &gw, b["access_token"].as_str().unwrap()).await,
            inactive()
        );
        assert_eq!(
            refresh(&server, &client, b["refresh_token"].as_str().unwrap(), None)
                .await
                .json()["error"],
            "invalid_grant"
        );
        // Unknown, and already revoked: still 200 (§2.2).
        assert_eq!(revoke("tsa_never_issued".into(), &client).await.status, 200);
        assert_eq!(
            revoke(b["refresh_token"].as_str().unwrap().to_owned(), &client)
                .await
                .status,
            200
        );
        let kinds = crate::support::audit_kinds(server.state.store.as_ref(), 20).await;
        assert!(kinds.contains(&"token_revoked".to_owned()));
        server.stop().await;
    }
}

#[tokio::test]
async fn revocation_of_another_clients_token_is_refused_and_changes_nothing_rfc7009_2_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let client = app_client(&server, "web").await;
        let other = app_client(&server, "other").await;
        let gw = gateway(&server).await;
        let tokens = code_tokens(&server, &client, SCOPE).await;
        let access = tokens["access_token"].as_str().unwrap();
        let res = server
            .token_like("/revoke", &other, &[("token", access)])
            .await;
        assert_eq!(res.status, 400);
        assert_eq!(res.json()["error"], "unauthorized_client");
        assert_eq!(introspect(&server, &gw, access).await["active"], true);
        // Client authentication is required.
        let res = http()
            .post(server.url("/revoke"))
            .form(&[("token", access)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        server.stop().await;
    }
}

#[tokio::test]
async fn revocation_refuses_token_types_it_does_not_handle_rfc7009_2_2_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let client = app_client(&server, "web").await;
        let ada = server.user("ada").await;
        let new = tessera::oauth::api_keys::NewKey {
            label: "ci",
            scopes: None,
            ttl_secs: None,
        };
        let (key, _) = tessera::oauth::api_keys::create(
            server.state.store.as_ref(),
            &server.state.config.api_keys,
            &ada,
            new,
            None,
            &Default::default(),
            0,
        )
        .await
        .unwrap();
        // A real key and a made-up one get the same answer: no oracle for keys.
        let made_up = tessera::crypto::api_key::generate();
        for value in [key.expose(), made_up.expose()] {
            let res = server
                .token_like("/revoke", &client, &[("token", value)])
                .await;
            assert_eq!(res.status, 400);
            assert_eq!(res.json()["error"], "unsupported_token_type");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn jwt_access_tokens_follow_rfc9068_and_die_with_their_grant() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = server.user("ada").await;
        let client = server
            .client_with("internal", false, |c| {
                c.scope = SCOPE.into();
                c.access_token_format = AccessTokenFormat::Jwt;
            })
            .await;
        let gw = gateway(&server).await;
        let tokens = code_tokens(&server, &client, SCOPE).await;
        let at = tokens["access_token"].as_str().unwrap();
        let (claims, header) = server.verify_jwt(at).await;
        assert_eq!(header.token_type(), Some("at+jwt"));
        assert_eq!(claims.issuer(), Some(server.state.config.issuer_str()));
        assert_eq!(claims.subject(), Some(ada.id.as_str()));
        // RFC 9068 §3 (issue 9): the default resource, not the client id ID tokens carry.
        assert_eq!(
            claims.audience(),
            Some(vec![server.state.config.issuer_str()])
        );
        assert_eq!(claims.claim("client_id").unwrap(), "internal");
        assert_eq!(claims.claim("scope").unwrap(), SCOPE);
        assert!(
            claims.jwt_id().is_some()
                && claims.claim("iat").is_some()
                && claims.claim("exp").is_some()
        );
        let info = introspect(&server, &gw, at).await;
        assert_eq!(info["active"], true);
        assert_eq!(info["jti"], claims.jwt_id().unwrap());
        // Revoking the grant (through its refresh token) makes the JWT inactive at introspection.
        assert_eq!(
            server
                .token_like(
                    "/revoke",
                    &client,
                    &[("token", tokens["refresh_token"].as_str().unwrap())]
                )
                .await
                .status,
            200
        );
        assert_eq!(introspect(&server, &gw, at).await, inactive());
        server.stop().await;
    }
}

#[tokio::test]
async fn gateway_scenario_opaque_token_introspected_then_revoked() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let client = app_client(&server, "web").await;
        let gw = gateway(&server).await;
        // A client gets an opaque token…
        let tokens = code_tokens(&server, &client, "openid api").await;
        let access = tokens["access_token"].as_str().unwrap();
        assert!(access.starts_with("tsa_"), "opaque for external clients");
        // …the gateway introspects it: active, with claims…
        let info = introspect(&server, &gw, access).await;
        assert_eq!(info["active"], true, "{}", db.label);
        assert_eq!(info["username"], "ada");
        // …the client revokes it…
        assert_eq!(
            server
                .token_like("/revoke", &client, &[("token", access)])
                .await
                .status,
            200
        );
        // …and the gateway's next introspection says inactive.
        assert_eq!(
            introspect(&server, &gw, access).await,
            inactive(),
            "{}",
            db.label
        );
        server.stop().await;
    }
}

/// Decision 0022: introspection answers are kept per instance, and a change made outside the
/// server (plain SQL revoking a token, the CLI disabling the user, on the same store) shows
/// within one second, however long the answer was kept before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_cache_follows_a_cli_change_within_one_second() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        server.user("ada").await;
        let client = app_client(&server, "web").await;
        let gw = gateway(&server).await;
        let inactive_within_a_second = |token: String, why: &'static str| {
            let (server, gw, label) = (&server, &gw, db.label);
            async move {
                let since = std::time::Instant::now();
                while introspect(server, gw, &token).await["active"] == true {
                    assert!(
                        since.elapsed() < std::time::Duration::from_secs(1),
                        "{label}: still active a second after {why}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        };
        let mut access = Vec::new();
        for _ in 0..2 {
            let tokens = code_tokens(&server, &client, "openid api").await;
            access.push(tokens["access_token"].as_str().unwrap().to_owned());
        }
        // Asked for over a second and a half, longer than any single proof of freshness.
        for _ in 0..15 {
            for token in &access {
                assert_eq!(introspect(&server, &gw, token).await["active"], true);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let literal = db.digest_literal(&tessera::crypto::token::Digest::of(&access[0]));
        let revoked = db
            .sql(&format!(
                "update token set revoked_at = 1 where digest = {literal}"
            ))
            .await;
        assert_eq!(revoked, 1, "{}", db.label);
        inactive_within_a_second(access[0].clone(), "plain SQL revoked it").await;
        db.tessera(&["user", "disable", "ada"]).succeeds();
        inactive_within_a_second(access[1].clone(), "the CLI disabled the user").await;
        server.stop().await;
    }
}
