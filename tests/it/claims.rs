//! The `claims` request parameter, OIDC Core §5.5: claims asked for one by one, for the ID
//! token or for userinfo, released only within what the client is registered for and what
//! the person consented to; `sub` with a value (§5.5.1).

use serde_json::json;
use tessera::audit::{AuditEvent, AuditKind};
use tessera::store::{AccountRecord, Address};

use crate::support::flow::{AuthorizeUrl, Pkce, TestClient};
use crate::support::{http, TestDb, TestServer};

/// NIST SP 800-63B AAL1, the level a password sign-in proves (decision 0024).
const AAL1: &str = "http://idmanagement.gov/ns/assurance/aal/1";

async fn save(server: &TestServer, account: &AccountRecord) {
    server
        .state
        .store
        .update_account(account, &AuditEvent::new(AuditKind::UserUpdated, "test", 0))
        .await
        .unwrap();
}

/// Ada, with a name, an email address, a postal address and a phone number.
async fn ada(server: &TestServer) -> AccountRecord {
    let mut ada = server.user("ada").await;
    ada.claims.name = Some("Ada Lovelace".into());
    ada.claims.email = Some("ada@example.com".into());
    ada.claims.email_verified = Some(true);
    ada.claims.phone_number = Some("+44 20 7946 0000".into());
    ada.claims.address = Some(Address {
        locality: Some("London".into()),
        country: Some("GB".into()),
        ..Default::default()
    });
    save(server, &ada).await;
    ada
}

/// A client registered for every scope but `phone`.
async fn client(server: &TestServer) -> TestClient {
    server
        .client_with("web", false, |c| {
            c.scope = "openid profile email address offline_access".into();
        })
        .await
}

async fn userinfo(server: &TestServer, access_token: &str) -> serde_json::Value {
    let res = http()
        .get(server.url("/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn named_claims_go_to_the_id_token_and_userinfo_as_asked_oidc_5_5() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let mut ada = ada(&server).await;
        let client = client(&server).await;
        let claims = json!({
            "id_token": {
                "email": { "essential": true },
                "name": null,
                "acr": { "essential": true, "value": AAL1 },
            },
            "userinfo": {
                "address": null,
                "email_verified": null,
                // Not registered for the client: the parameter cannot widen its scope.
                "phone_number": { "essential": true },
                "not_a_claim": null,
            },
        });
        let url = AuthorizeUrl::new(&client)
            .set("scope", "openid offline_access")
            .set("claims", &claims.to_string());
        let body = server
            .code_flow(&server.browser(), &client, url, &Pkce::new())
            .await;
        let (id, _) = server.verify_jwt(body["id_token"].as_str().unwrap()).await;
        assert_eq!(
            id.claim("email"),
            Some(&json!("ada@example.com")),
            "{}",
            db.label
        );
        assert_eq!(id.claim("name"), Some(&json!("Ada Lovelace")));
        assert_eq!(id.claim("acr"), Some(&json!(AAL1)));
        assert_eq!(id.subject(), Some(ada.id.as_str()));
        for absent in ["address", "email_verified", "phone_number", "not_a_claim"] {
            assert!(id.claim(absent).is_none(), "{absent} is for userinfo only");
        }

        let info = userinfo(&server, body["access_token"].as_str().unwrap()).await;
        assert_eq!(
            info,
            json!({
                "sub": ada.id,
                "address": { "locality": "London", "country": "GB" },
                "email_verified": true,
            }),
            "{}: only what userinfo was asked for, within the client's scope",
            db.label
        );

        // Core §12.2: a refreshed ID token carries the same claims, as they are now.
        ada.claims.name = Some("Augusta Ada King".into());
        save(&server, &ada).await;
        let refreshed = server.refresh(&client, &body["refresh_token"]).await;
        assert_eq!(refreshed.status, 200, "{}", refreshed.body);
        let refreshed = refreshed.json();
        let (id, _) = server
            .verify_jwt(refreshed["id_token"].as_str().unwrap())
            .await;
        assert_eq!(id.claim("name"), Some(&json!("Augusta Ada King")));
        assert_eq!(id.claim("email"), Some(&json!("ada@example.com")));
        let info = userinfo(&server, refreshed["access_token"].as_str().unwrap()).await;
        assert_eq!(info["address"]["locality"], "London", "{}", db.label);
        server.stop().await;
    }
}

#[tokio::test]
async fn claims_asked_for_by_name_need_consent_to_their_scope_oidc_5_5() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        ada(&server).await;
        let client = client(&server).await;
        let browser = server.browser();
        // Consent to `openid` alone...
        server
            .code_flow(
                &browser,
                &client,
                AuthorizeUrl::new(&client).set("scope", "openid"),
                &Pkce::new(),
            )
            .await;
        // ...does not cover an email address asked for by name: the page asks again, and says
        // what will be shared.
        let url = AuthorizeUrl::new(&client)
            .set("scope", "openid")
            .set("claims", r#"{"userinfo":{"email":null}}"#)
            .pkce(&Pkce::new());
        let page = browser.get(&url.path()).await;
        assert!(
            page.body.contains("name=\"decision\""),
            "{}: {}",
            db.label,
            page.body
        );
        assert!(
            page.body.contains("See your email address"),
            "{}",
            page.body
        );
        let done = browser.consent(&page, "approve").await;
        assert_eq!(done.status, 303);
        assert!(done.redirect_params().contains_key("code"), "{}", db.label);
        // Once consented, the same request goes straight through.
        let again = browser.get(&url.path()).await;
        assert!(
            again.redirect_params().contains_key("code"),
            "{}",
            again.body
        );
        let consented = db
            .rows("select scope from consent")
            .await
            .into_iter()
            .map(|r| r[0].clone().unwrap())
            .collect::<Vec<_>>();
        assert_eq!(consented.len(), 1);
        assert!(
            consented[0].split(' ').any(|s| s == "email"),
            "{consented:?}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn a_sub_asked_for_with_a_value_answers_only_for_that_user_oidc_5_5_1() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let ada = ada(&server).await;
        let client = client(&server).await;
        let browser = server.browser();
        server
            .code_flow(&browser, &client, AuthorizeUrl::new(&client), &Pkce::new())
            .await;
        let sub = |value: &str| json!({ "id_token": { "sub": { "value": value } } }).to_string();
        let none = AuthorizeUrl::new(&client)
            .set("prompt", "none")
            .pkce(&Pkce::new());
        let other = browser
            .get(&none.clone().set("claims", &sub("someone-else")).path())
            .await;
        assert_eq!(
            other.redirect_params()["error"],
            "login_required",
            "{}",
            db.label
        );
        let same = browser
            .get(&none.clone().set("claims", &sub(&ada.id)).path())
            .await;
        assert!(same.redirect_params().contains_key("code"), "{}", db.label);
        // Without prompt=none: the sign-in page, never a code for the wrong person.
        let page = browser
            .get(
                &AuthorizeUrl::new(&client)
                    .set("claims", &sub("someone-else"))
                    .pkce(&Pkce::new())
                    .path(),
            )
            .await;
        assert!(page.body.contains("name=\"password\""), "{}", db.label);
        server.stop().await;
    }
}

#[tokio::test]
async fn discovery_says_the_claims_parameter_is_supported_oidc_discovery_3() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(&db).await;
    let doc = server.discovery().await;
    assert_eq!(doc["claims_parameter_supported"], true);
    let supported = doc["claims_supported"].as_array().unwrap();
    for claim in ["sub", "acr", "amr", "sid", "email", "address", "updated_at"] {
        assert!(supported.contains(&json!(claim)), "{claim}");
    }
    server.stop().await;
}

/// Every standard claim Tessera stores, by the scope that releases it (Core §5.4).
const BY_SCOPE: &[(&str, &[&str])] = &[
    (
        "profile",
        &[
            "name",
            "given_name",
            "family_name",
            "middle_name",
            "nickname",
            "preferred_username",
            "profile",
            "picture",
            "website",
            "gender",
            "birthdate",
            "zoneinfo",
            "locale",
            "updated_at",
        ],
    ),
    ("email", &["email", "email_verified"]),
    ("address", &["address"]),
    ("phone", &["phone_number", "phone_number_verified"]),
];

#[tokio::test]
async fn every_standard_claim_by_scope_at_userinfo_and_by_name_in_the_id_token_oidc_5_4() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let mut ada = ada(&server).await;
        let c = &mut ada.claims;
        c.given_name = Some("Ada".into());
        c.family_name = Some("Lovelace".into());
        c.middle_name = Some("Augusta".into());
        c.nickname = Some("Countess".into());
        c.preferred_username = Some("ada.l".into());
        c.profile = Some("https://example.com/ada".into());
        c.picture = Some("https://example.com/ada.png".into());
        c.website = Some("https://ada.example".into());
        c.gender = Some("female".into());
        c.birthdate = Some("1815-12-10".into());
        c.zoneinfo = Some("Europe/London".into());
        c.locale = Some("en-GB".into());
        c.phone_number_verified = Some(false);
        save(&server, &ada).await;
        let client = server
            .client_with("web", false, |c| {
                c.scope = "openid profile email address phone".into();
            })
            .await;
        let browser = server.browser();
        for (scope, names) in BY_SCOPE {
            let url = AuthorizeUrl::new(&client).set("scope", &format!("openid {scope}"));
            let body = server.code_flow(&browser, &client, url, &Pkce::new()).await;
            let info = userinfo(&server, body["access_token"].as_str().unwrap()).await;
            let mut got: Vec<&str> = info
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut want: Vec<&str> = names.iter().copied().chain(["sub"]).collect();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{}: scope {scope}", db.label);
            // In the code flow, scope claims stay at userinfo (§5.4).
            let (id, _) = server.verify_jwt(body["id_token"].as_str().unwrap()).await;
            for name in *names {
                assert!(id.claim(name).is_none(), "{name} in the ID token");
            }
        }
        // Every one of them, by name, in the ID token (§5.5).
        let all: serde_json::Map<String, serde_json::Value> = BY_SCOPE
            .iter()
            .flat_map(|(_, names)| names.iter())
            .map(|n| ((*n).to_owned(), serde_json::Value::Null))
            .collect();
        let url = AuthorizeUrl::new(&client)
            .set("scope", "openid")
            .set("claims", &json!({ "id_token": all }).to_string());
        let body = server.code_flow(&browser, &client, url, &Pkce::new()).await;
        let (id, _) = server.verify_jwt(body["id_token"].as_str().unwrap()).await;
        for name in all.keys() {
            assert!(id.claim(name).is_some(), "{}: {name} missing", db.label);
        }
        assert_eq!(id.claim("birthdate"), Some(&json!("1815-12-10")));
        assert_eq!(id.claim("phone_number_verified"), Some(&json!(false)));
        assert_eq!(id.claim("preferred_username"), Some(&json!("ada.l")));
        server.stop().await;
    }
}
