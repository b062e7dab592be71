//! Store conformance: the contracts in the store traits' doc comments that the HTTP tests
//! reach only indirectly (single use under concurrency, what a revocation reaches, what the
//! after-commit hook hears). Each test runs on SQLite and, with `TEST_DATABASE_URL`, on
//! Postgres, on a fresh database, and is named after the contract it checks (as Hydra's
//! `persister_test.go` runs one suite against every backend).
//!
//! The concurrent tests run on a multi-thread runtime so that the calls really overlap.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tessera::audit::{AuditEvent, AuditKind};
use tessera::crypto::token::Digest;
use tessera::store::{
    self, AccessTokenFormat, AccountRecord, AfterCommit, AuthMethod, Backend, ClientRecord,
    CodeRecord, ConsentGiven, GrantRecord, RequestedClaims, SessionRecord, StandardClaims, Store,
    StoreError, TakeBack, TokenKind, TokenRecord,
};
use tokio::sync::Barrier;

use crate::support::TestDb;

const CLIENT: &str = "web";
const ADA: &str = "0b5e6a52-0000-4000-8000-00000000000a";
const BOB: &str = "0b5e6a52-0000-4000-8000-00000000000b";

async fn open(db: &TestDb) -> Arc<dyn Store> {
    store::open(&db.database_url()).await.unwrap()
}

fn audit(kind: AuditKind) -> AuditEvent {
    AuditEvent::new(kind, "test", 3_000)
}

fn client(id: &str) -> ClientRecord {
    ClientRecord {
        id: id.into(),
        name: format!("Client {id}"),
        secret_digest: Some(Digest::of("tss_secret")),
        redirect_uris: vec!["https://app.example/cb".into()],
        post_logout_redirect_uris: vec![],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scope: "openid profile".into(),
        token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
        access_token_format: AccessTokenFormat::Opaque,
        may_introspect: false,
        first_party: false,
        require_pkce: true,
        id_token_signed_response_alg: "ES256".into(),
        created_at: 1_000,
        updated_at: 1_000,
        rate_limit_per_sec: None,
        backchannel_logout_uri: None,
        backchannel_logout_session_required: false,
        frontchannel_logout_uri: None,
        frontchannel_logout_session_required: false,
    }
}

fn account(id: &str, username: &str) -> AccountRecord {
    AccountRecord {
        id: id.into(),
        username: username.into(),
        password_hash: None,
        claims: StandardClaims::default(),
        disabled: false,
        failed_login_count: 0,
        roles: Vec::new(),
        groups: Vec::new(),
        created_at: 1_000,
        updated_at: 1_000,
    }
}

fn grant(id: &str, account_id: &str) -> GrantRecord {
    GrantRecord {
        id: id.into(),
        client_id: CLIENT.into(),
        account_id: Some(account_id.into()),
        scope: "openid".into(),
        auth_time: Some(2_000),
        amr: vec!["pwd".into()],
        created_at: 2_000,
        revoked_at: None,
        sid: None,
        claims: RequestedClaims::default(),
    }
}

fn code(value: &str, grant: &GrantRecord) -> CodeRecord {
    CodeRecord {
        digest: Digest::of(value),
        grant_id: grant.id.clone(),
        client_id: grant.client_id.clone(),
        account_id: grant.account_id.clone().unwrap(),
        redirect_uri: Some("https://app.example/cb".into()),
        scope: grant.scope.clone(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        auth_time: 2_000,
        amr: vec!["pwd".into()],
        created_at: 2_000,
        expires_at: 2_060,
        consumed_at: None,
        sid: None,
        // Round-trips through the store's JSON column.
        claims: RequestedClaims {
            id_token: vec!["email".into()],
            userinfo: vec!["address".into(), "name".into()],
        },
    }
}

/// A token of `grant` (or, without one, an API key of the account).
fn token(value: &str, kind: TokenKind, account_id: &str, grant_id: Option<&str>) -> TokenRecord {
    TokenRecord {
        digest: Digest::of(value),
        kind,
        jti: format!("jti-{value}"),
        grant_id: grant_id.map(str::to_owned),
        client_id: Some(CLIENT.into()),
        account_id: Some(account_id.into()),
        scope: "openid".into(),
        label: None,
        previous_digest: None,
        created_at: 2_000,
        expires_at: None,
        used_at: None,
        revoked_at: None,
    }
}

fn session(value: &str, account_id: &str) -> SessionRecord {
    SessionRecord {
        id_digest: Digest::of(value),
        account_id: account_id.into(),
        auth_time: 2_000,
        amr: vec!["pwd".into()],
        created_at: 2_000,
        expires_at: 1_000_000,
        sid: None,
    }
}

/// Stores `session`, as a successful sign-in does.
async fn sign_in(store: &dyn Store, session: &SessionRecord) {
    store
        .insert_session(
            session,
            None,
            &TakeBack::default(),
            &audit(AuditKind::LoginSucceeded),
        )
        .await
        .unwrap();
}

/// A store with the client `web` and the users `ada` and `bob`.
async fn seeded(store: &dyn Store) {
    store
        .insert_client(&client(CLIENT), &audit(AuditKind::ClientCreated))
        .await
        .unwrap();
    for (id, name) in [(ADA, "ada"), (BOB, "bob")] {
        store
            .insert_account(&account(id, name), &audit(AuditKind::UserCreated))
            .await
            .unwrap();
    }
}

/// Inserts a grant (through its first code, the only way grants are made) and its tokens.
async fn grant_with_tokens(store: &dyn Store, id: &str, account_id: &str, tokens: &[TokenRecord]) {
    let g = grant(id, account_id);
    store
        .insert_code(
            &g,
            &code(&format!("code-{id}"), &g),
            &audit(AuditKind::CodeIssued),
        )
        .await
        .unwrap();
    store
        .insert_tokens(tokens, &audit(AuditKind::TokenIssued))
        .await
        .unwrap();
}

/// Grants `g1` and `g2` of ada's, each with an access token (`g1-a`, `g2-a`) and a refresh
/// token (`g1-r`, `g2-r`).
async fn two_grants_of_ada(store: &dyn Store) {
    for g in ["g1", "g2"] {
        grant_with_tokens(
            store,
            g,
            ADA,
            &[
                token(&format!("{g}-a"), TokenKind::Access, ADA, Some(g)),
                token(&format!("{g}-r"), TokenKind::Refresh, ADA, Some(g)),
            ],
        )
        .await;
    }
}

async fn audit_count(store: &dyn Store) -> usize {
    store.recent_audit(10_000).await.unwrap().len()
}

async fn revoked_at(store: &dyn Store, value: &str) -> Option<i64> {
    store
        .token(&Digest::of(value))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("token {value} missing"))
        .revoked_at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consume_code_returns_the_code_to_exactly_one_of_many_concurrent_callers() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        let g = grant("g1", ADA);
        let issued = code("the-code", &g);
        store
            .insert_code(&g, &issued, &audit(AuditKind::CodeIssued))
            .await
            .unwrap();

        let start = Arc::new(Barrier::new(16));
        let callers: Vec<_> = (0..16)
            .map(|_| {
                let (store, start) = (Arc::clone(&store), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    store.consume_code(&Digest::of("the-code"), 2_010).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for caller in callers {
            winners.extend(caller.await.unwrap().unwrap());
        }

        let expected = CodeRecord {
            consumed_at: Some(2_010),
            ..issued
        };
        let ada = store.account(ADA).await.unwrap();
        assert!(ada.is_some());
        assert_eq!(winners, vec![(expected, ada)], "{}", db.label);
        assert_eq!(
            store
                .consume_code(&Digest::of("the-code"), 2_020)
                .await
                .unwrap(),
            None,
            "{}: a consumed code stays consumed",
            db.label
        );
        // Reuse detection still finds the grant of a consumed code.
        assert_eq!(
            store.code_grant_id(&Digest::of("the-code")).await.unwrap(),
            Some("g1".into()),
            "{}",
            db.label
        );
        assert_eq!(
            store
                .consume_code(&Digest::of("unknown"), 2_020)
                .await
                .unwrap(),
            None
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotate_refresh_succeeds_once_and_a_spent_token_cannot_rotate_again() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        let refresh = |v: &str| token(v, TokenKind::Refresh, ADA, Some("g1"));
        let access = |v: &str| token(v, TokenKind::Access, ADA, Some("g1"));
        grant_with_tokens(store.as_ref(), "g1", ADA, &[access("a0"), refresh("r0")]).await;
        let rotated = audit(AuditKind::TokenIssued);

        let r0 = Digest::of("r0");
        assert!(store
            .rotate_refresh(&r0, &[access("a1"), refresh("r1")], 4_000, &rotated)
            .await
            .unwrap());
        let spent = store.token(&r0).await.unwrap().unwrap();
        assert_eq!(spent.used_at, Some(4_000), "{}", db.label);
        assert!(store.token(&Digest::of("r1")).await.unwrap().is_some());

        let before = audit_count(store.as_ref()).await;
        assert!(
            !store
                .rotate_refresh(&r0, &[access("a2"), refresh("r2")], 4_100, &rotated)
                .await
                .unwrap(),
            "{}: a spent token rotated again",
            db.label
        );
        assert_eq!(store.token(&Digest::of("a2")).await.unwrap(), None);
        assert_eq!(store.token(&Digest::of("r2")).await.unwrap(), None);
        assert_eq!(
            store.token(&r0).await.unwrap().unwrap().used_at,
            Some(4_000)
        );
        // Neither an access token nor a revoked refresh token rotates.
        assert!(!store
            .rotate_refresh(&Digest::of("a1"), &[refresh("r3")], 4_100, &rotated)
            .await
            .unwrap());
        assert_eq!(audit_count(store.as_ref()).await, before, "{}", db.label);

        // Eight clients present r1 at once: one wins, the others insert nothing.
        let start = Arc::new(Barrier::new(8));
        let rotations: Vec<_> = (0..8)
            .map(|i| {
                let (store, start) = (Arc::clone(&store), Arc::clone(&start));
                let new = [access(&format!("a1-{i}")), refresh(&format!("r1-{i}"))];
                let rotated = rotated.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    store
                        .rotate_refresh(&Digest::of("r1"), &new, 5_000, &rotated)
                        .await
                })
            })
            .collect();
        let mut won = Vec::new();
        for (i, rotation) in rotations.into_iter().enumerate() {
            if rotation.await.unwrap().unwrap() {
                won.push(i);
            }
        }
        assert_eq!(won.len(), 1, "{}: winners {won:?}", db.label);
        for i in 0..8 {
            for value in [format!("a1-{i}"), format!("r1-{i}")] {
                let stored = store.token(&Digest::of(&value)).await.unwrap();
                assert_eq!(stored.is_some(), won == [i], "{}: {value}", db.label);
            }
        }
        assert_eq!(
            audit_count(store.as_ref()).await,
            before + 1,
            "{}",
            db.label
        );

        store
            .revoke_token(&Digest::of(&format!("r1-{}", won[0])), 5_100, &rotated)
            .await
            .unwrap();
        assert!(
            !store
                .rotate_refresh(
                    &Digest::of(&format!("r1-{}", won[0])),
                    &[refresh("r4")],
                    5_200,
                    &rotated
                )
                .await
                .unwrap(),
            "{}: a revoked token rotated",
            db.label
        );
    }
}

/// Issues and rotations that arrive together are written together (decision 0031), yet each
/// keeps its own outcome: a rotation of a spent, revoked or already-rotated token writes
/// nothing, not even its audit event, and fails none of the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_issues_and_rotations_each_keep_their_own_outcome() {
    for db in TestDb::all().await {
        let (recorder, store) = recorded(&db).await;
        let refresh = |v: &str| token(v, TokenKind::Refresh, ADA, Some("g1"));
        let access = |v: &str| token(v, TokenKind::Access, ADA, Some("g1"));
        let live: Vec<String> = (0..4).map(|i| format!("live{i}")).collect();
        let mut first: Vec<TokenRecord> = live.iter().map(|v| refresh(v)).collect();
        first.extend([refresh("contested"), refresh("spent"), refresh("revoked")]);
        grant_with_tokens(store.as_ref(), "g1", ADA, &first).await;
        let event = audit(AuditKind::TokenIssued);
        assert!(store
            .rotate_refresh(
                &Digest::of("spent"),
                &[refresh("spent-next")],
                3_500,
                &event
            )
            .await
            .unwrap());
        store
            .revoke_token(&Digest::of("revoked"), 3_500, &event)
            .await
            .unwrap();
        let before = audit_count(store.as_ref()).await;
        let heard = recorder.kinds().len();

        // (old token or none for an issue, the new token's value, whether it must be written)
        let mut writes: Vec<(Option<String>, String, bool)> = Vec::new();
        for i in 0..8 {
            writes.push((None, format!("issued{i}"), true));
        }
        for v in &live {
            writes.push((Some(v.clone()), format!("{v}-next"), true));
        }
        for old in ["spent", "revoked", "live0-next-never", "issued0"] {
            writes.push((Some(old.into()), format!("{old}-again"), false));
        }
        // Eight of "contested": one of them wins, which one is up to the race.
        for i in 0..8 {
            writes.push((Some("contested".into()), format!("contested-{i}"), false));
        }
        let start = Arc::new(Barrier::new(writes.len()));
        let tasks: Vec<_> = writes
            .iter()
            .cloned()
            .map(|(old, new, _)| {
                let (store, start, event) = (Arc::clone(&store), Arc::clone(&start), event.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    match old {
                        None => store
                            .insert_tokens(&[access(&new)], &event)
                            .await
                            .map(|()| true),
                        Some(old) => {
                            store
                                .rotate_refresh(
                                    &Digest::of(&old),
                                    &[access(&new), refresh(&format!("{new}-r"))],
                                    4_000,
                                    &event,
                                )
                                .await
                        }
                    }
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().unwrap());
        }
        let mut contested_won = 0;
        for ((old, new, must), written) in writes.iter().zip(&outcomes) {
            let stored = store.token(&Digest::of(new)).await.unwrap().is_some();
            assert_eq!(stored, *written, "{}: {new}", db.label);
            if old.as_deref() == Some("contested") {
                contested_won += usize::from(*written);
            } else {
                assert_eq!(written, must, "{}: {new}", db.label);
            }
        }
        assert_eq!(contested_won, 1, "{}", db.label);
        let contested = store
            .token(&Digest::of("contested"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(contested.used_at, Some(4_000), "{}", db.label);
        for v in &live {
            let spent = store.token(&Digest::of(v)).await.unwrap().unwrap();
            assert_eq!(spent.used_at, Some(4_000), "{}: {v}", db.label);
        }
        // Untouched by the rotations that failed.
        let spent = store.token(&Digest::of("spent")).await.unwrap().unwrap();
        assert_eq!(spent.used_at, Some(3_500), "{}", db.label);
        let revoked = store.token(&Digest::of("revoked")).await.unwrap().unwrap();
        assert_eq!(revoked.used_at, None, "{}", db.label);

        // One event per write that was written: in the trail, and told to the hook.
        let written = 8 + live.len() + 1;
        assert_eq!(
            audit_count(store.as_ref()).await,
            before + written,
            "{}",
            db.label
        );
        assert_eq!(recorder.kinds().len(), heard + written, "{}", db.label);
    }
}

#[tokio::test]
async fn revoke_grant_revokes_every_token_of_the_grant_and_nothing_else() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        two_grants_of_ada(store.as_ref()).await;
        store
            .insert_tokens(
                &[token("key", TokenKind::ApiKey, ADA, None)],
                &audit(AuditKind::TokenIssued),
            )
            .await
            .unwrap();

        store
            .revoke_grant("g1", 6_000, &audit(AuditKind::TokenRevoked))
            .await
            .unwrap();
        let g1 = store.grant("g1").await.unwrap().unwrap();
        assert_eq!(g1.revoked_at, Some(6_000), "{}", db.label);
        for value in ["g1-a", "g1-r"] {
            assert_eq!(
                revoked_at(store.as_ref(), value).await,
                Some(6_000),
                "{}: {value}",
                db.label
            );
        }
        assert_eq!(store.grant("g2").await.unwrap().unwrap().revoked_at, None);
        for value in ["g2-a", "g2-r", "key"] {
            assert_eq!(
                revoked_at(store.as_ref(), value).await,
                None,
                "{}: {value} of another grant",
                db.label
            );
        }

        // Revoking a revoked grant changes nothing: the first time stays.
        store
            .revoke_grant("g1", 7_000, &audit(AuditKind::TokenRevoked))
            .await
            .unwrap();
        assert_eq!(
            store.grant("g1").await.unwrap().unwrap().revoked_at,
            Some(6_000)
        );
        assert_eq!(revoked_at(store.as_ref(), "g1-r").await, Some(6_000));
    }
}

#[tokio::test]
async fn credential_reads_a_token_with_its_grant_and_user_in_one_lookup() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        let mut ada = store.account(ADA).await.unwrap().unwrap();
        ada.roles = vec!["admin".into()];
        store
            .update_account(&ada, &audit(AuditKind::UserUpdated))
            .await
            .unwrap();
        let access = token("g1-a", TokenKind::Access, ADA, Some("g1"));
        grant_with_tokens(store.as_ref(), "g1", ADA, std::slice::from_ref(&access)).await;
        let key = token("key", TokenKind::ApiKey, ADA, None);
        let mut own = token("cc", TokenKind::Access, ADA, None);
        own.account_id = None;
        store
            .insert_tokens(&[key.clone(), own.clone()], &audit(AuditKind::TokenIssued))
            .await
            .unwrap();

        let found = store.credential(&access.digest).await.unwrap().unwrap();
        assert_eq!(found.token, access, "{}", db.label);
        assert_eq!(found.grant, store.grant("g1").await.unwrap());
        assert_eq!(found.account.as_ref(), Some(&ada), "{}", db.label);
        let found = store.credential(&key.digest).await.unwrap().unwrap();
        assert_eq!((found.token, found.grant), (key, None));
        assert_eq!(found.account.map(|a| a.id).as_deref(), Some(ADA));
        let found = store.credential(&own.digest).await.unwrap().unwrap();
        assert_eq!((found.token, found.grant, found.account), (own, None, None));
        assert_eq!(store.credential(&Digest::of("nope")).await.unwrap(), None);

        // A revoked grant shows in the token, as `token` reads it.
        store
            .revoke_grant("g1", 6_000, &audit(AuditKind::TokenRevoked))
            .await
            .unwrap();
        let found = store.credential(&access.digest).await.unwrap().unwrap();
        assert_eq!(found.token.revoked_at, Some(6_000), "{}", db.label);
        assert_eq!(found.grant.unwrap().revoked_at, Some(6_000));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grant_consent_keeps_every_scope_of_concurrent_grants() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        store
            .grant_consent(
                ADA,
                CLIENT,
                "openid",
                2_000,
                &audit(AuditKind::ConsentGranted),
            )
            .await
            .unwrap();
        let before = audit_count(store.as_ref()).await;

        let start = Arc::new(Barrier::new(8));
        let grants: Vec<_> = (0..8)
            .map(|i| {
                let (store, start) = (Arc::clone(&store), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    let scope = format!("scope{i} openid");
                    store
                        .grant_consent(
                            ADA,
                            CLIENT,
                            &scope,
                            3_000 + i,
                            &audit(AuditKind::ConsentGranted),
                        )
                        .await
                })
            })
            .collect();
        for grant in grants {
            grant.await.unwrap().unwrap();
        }

        let consent = store.consent(ADA, CLIENT).await.unwrap().unwrap();
        let scopes: Vec<&str> = consent.split_whitespace().collect();
        let expected: BTreeSet<String> = std::iter::once("openid".to_owned())
            .chain((0..8).map(|i| format!("scope{i}")))
            .collect();
        assert_eq!(
            scopes
                .iter()
                .map(|s| s.to_string())
                .collect::<BTreeSet<_>>(),
            expected,
            "{}: {consent:?}",
            db.label
        );
        assert_eq!(scopes.len(), expected.len(), "{}: no duplicates", db.label);
        assert_eq!(
            audit_count(store.as_ref()).await,
            before + 8,
            "{}",
            db.label
        );
        assert_eq!(store.consent(BOB, CLIENT).await.unwrap(), None);
    }
}

#[tokio::test]
async fn update_account_ending_access_ends_sessions_and_revokes_grants_and_tokens() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        for (value, who) in [("ada-s1", ADA), ("ada-s2", ADA), ("bob-s", BOB)] {
            sign_in(store.as_ref(), &session(value, who)).await;
        }
        grant_with_tokens(
            store.as_ref(),
            "ada-g",
            ADA,
            &[
                token("ada-a", TokenKind::Access, ADA, Some("ada-g")),
                token("ada-r", TokenKind::Refresh, ADA, Some("ada-g")),
                token("ada-key", TokenKind::ApiKey, ADA, None),
            ],
        )
        .await;
        grant_with_tokens(
            store.as_ref(),
            "bob-g",
            BOB,
            &[token("bob-a", TokenKind::Access, BOB, Some("bob-g"))],
        )
        .await;

        let mut ada = store.account(ADA).await.unwrap().unwrap();
        ada.disabled = true;
        ada.updated_at = 8_000;
        let disabled = audit(AuditKind::UserDisabled)
            .account(ADA)
            .details(serde_json::json!({ "changed": ["disabled"] }));
        store
            .update_account_ending_access(&ada, 8_000, &disabled)
            .await
            .unwrap();

        assert_eq!(store.account(ADA).await.unwrap(), Some(ada.clone()));
        for value in ["ada-s1", "ada-s2"] {
            assert_eq!(
                store.session(&Digest::of(value), 8_001).await.unwrap(),
                None,
                "{}: {value}",
                db.label
            );
        }
        assert_eq!(
            store.grant("ada-g").await.unwrap().unwrap().revoked_at,
            Some(8_000)
        );
        for value in ["ada-a", "ada-r", "ada-key"] {
            assert_eq!(
                revoked_at(store.as_ref(), value).await,
                Some(8_000),
                "{}: {value}",
                db.label
            );
        }
        // Another user's access is untouched.
        assert!(store
            .session(&Digest::of("bob-s"), 8_001)
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            store.grant("bob-g").await.unwrap().unwrap().revoked_at,
            None
        );
        assert_eq!(revoked_at(store.as_ref(), "bob-a").await, None);

        let recorded = store.recent_audit(1).await.unwrap().remove(0).event;
        assert_eq!(
            recorded.details,
            serde_json::json!({
                "changed": ["disabled"],
                "sessions_ended": 2,
                "grants_revoked": 1,
                "tokens_revoked": 2,
                "api_keys_revoked": 1,
                "codes_revoked": 1,
            }),
            "{}",
            db.label
        );

        // Enabling the user again brings nothing back.
        ada.disabled = false;
        store
            .update_account(&ada, &audit(AuditKind::UserUpdated))
            .await
            .unwrap();
        assert_eq!(revoked_at(store.as_ref(), "ada-r").await, Some(8_000));
        assert_eq!(
            store.session(&Digest::of("ada-s1"), 8_001).await.unwrap(),
            None
        );
    }
}

/// Remembers every event the store reports as committed.
#[derive(Default)]
struct Recorder(Mutex<Vec<AuditEvent>>);

impl AfterCommit for Recorder {
    fn committed(&self, events: &[AuditEvent]) {
        self.0.lock().unwrap().extend_from_slice(events);
    }
}

impl Recorder {
    fn kinds(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.kind.clone())
            .collect()
    }
}

/// A seeded store whose after-commit hook records what it is told.
async fn recorded(db: &TestDb) -> (Arc<Recorder>, Arc<dyn Store>) {
    let recorder = Arc::new(Recorder::default());
    let store = store::open_with_hook(&db.database_url(), recorder.clone())
        .await
        .unwrap();
    seeded(store.as_ref()).await;
    (recorder, store)
}

#[tokio::test]
async fn after_commit_hook_sees_committed_events_only() {
    for db in TestDb::all().await {
        let (recorder, store) = recorded(&db).await;
        assert_eq!(
            recorder.kinds(),
            ["client_created", "user_created", "user_created"],
            "{}",
            db.label
        );

        // Writes that fail or change nothing roll back, and the hook hears nothing of them.
        let err = store
            .insert_client(&client(CLIENT), &audit(AuditKind::ClientCreated))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict("client")), "{err:?}");
        let err = store
            .update_client(&client("ghost"), &audit(AuditKind::ClientUpdated))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound("client")), "{err:?}");
        assert!(!store
            .rotate_refresh(
                &Digest::of("unknown"),
                &[],
                4_000,
                &audit(AuditKind::TokenIssued)
            )
            .await
            .unwrap());
        // A code is issued with its event, in one transaction.
        let g = grant("g1", ADA);
        store
            .insert_code(&g, &code("c", &g), &audit(AuditKind::CodeIssued))
            .await
            .unwrap();
        assert_eq!(recorder.kinds().len(), 4, "{}", db.label);

        // The hook sees each event as stored, counts added by the store included.
        store
            .update_account_ending_access(
                &account(BOB, "bob"),
                5_000,
                &audit(AuditKind::UserPasswordSet),
            )
            .await
            .unwrap();
        store.append_audit(&audit(AuditKind::Logout)).await.unwrap();
        let mut trail: Vec<AuditEvent> = store
            .recent_audit(100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect();
        trail.reverse();
        assert_eq!(*recorder.0.lock().unwrap(), trail, "{}", db.label);
        assert_eq!(trail.len(), 6);
    }
}

fn api_key(id: &str, owner: &str, label: &str) -> tessera::store::ApiKeyRecord {
    tessera::store::ApiKeyRecord {
        id: id.into(),
        digest: Digest::of(&format!("tsk_{id}")),
        account_id: owner.into(),
        label: label.into(),
        hint: "tsk_abcdef".into(),
        scope: "read".into(),
        created_at: 2_000,
        expires_at: None,
        last_used_at: None,
        revoked_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn insert_api_key_never_passes_the_limit_under_concurrent_creations() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        let before = audit_count(store.as_ref()).await;
        let start = Arc::new(Barrier::new(12));
        let callers: Vec<_> = (0..12)
            .map(|i| {
                let (store, start) = (Arc::clone(&store), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    let key = api_key(&format!("k{i}"), ADA, &format!("label {i}"));
                    let events = [audit(AuditKind::ApiKeyCreated)];
                    store.insert_api_key(&key, 3, None, &events).await
                })
            })
            .collect();
        let mut made = 0;
        for caller in callers {
            match caller.await.unwrap() {
                Ok(()) => made += 1,
                Err(StoreError::LimitReached(_)) => {}
                Err(e) => panic!("{}: {e}", db.label),
            }
        }
        assert_eq!(made, 3, "{}", db.label);
        assert_eq!(store.api_keys(Some(ADA)).await.unwrap().len(), 3);
        // The refused ones ended their transactions at once: no session of the pool sits
        // idle in a transaction holding the owner's row lock.
        if db.label == "postgres" {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let stuck: i64 = sqlx::query_scalar(
                "select count(*) from pg_stat_activity where datname = current_database() \
                 and state like 'idle in transaction%'",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert_eq!(stuck, 0, "sessions left idle in a transaction");
        }
        assert_eq!(
            audit_count(store.as_ref()).await,
            before + 3,
            "{}",
            db.label
        );
        // Another owner has a limit of their own.
        let bobs = api_key("b1", BOB, "label 0");
        store.insert_api_key(&bobs, 3, None, &[]).await.unwrap();
    }
}

#[tokio::test]
async fn api_key_labels_revocation_and_touch_keep_their_contracts() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        let first = api_key("k1", ADA, "ci");
        store.insert_api_key(&first, 20, None, &[]).await.unwrap();
        let clash = store
            .insert_api_key(&api_key("k2", ADA, "ci"), 20, None, &[])
            .await;
        assert!(
            matches!(clash, Err(StoreError::Conflict(_))),
            "{}",
            db.label
        );
        // Replacing frees the label in the same transaction; a wrong owner finds nothing.
        let wrong = store
            .insert_api_key(&api_key("k3", BOB, "ci"), 20, Some("k1"), &[])
            .await;
        assert!(
            matches!(wrong, Err(StoreError::NotFound(_))),
            "{}",
            db.label
        );
        store
            .insert_api_key(&api_key("k2", ADA, "ci"), 20, Some("k1"), &[])
            .await
            .unwrap();
        assert!(store
            .api_key("k1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some());
        assert!(
            store.api_key("k3").await.unwrap().is_none(),
            "nothing half-written"
        );

        let e = audit(AuditKind::ApiKeyRevoked);
        assert!(!store
            .revoke_api_key("k2", Some(BOB), 2_100, &e)
            .await
            .unwrap());
        assert!(store
            .api_key("k2")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none());
        assert!(store
            .revoke_api_key("k2", Some(ADA), 2_100, &e)
            .await
            .unwrap());
        assert!(!store.revoke_api_key("k2", None, 2_200, &e).await.unwrap());
        assert_eq!(
            store.api_key("k2").await.unwrap().unwrap().revoked_at,
            Some(2_100)
        );

        let digest = Digest::of("tsk_k2");
        assert!(store
            .touch_api_key(&digest, 3_000, 60, false)
            .await
            .unwrap());
        assert!(!store
            .touch_api_key(&digest, 3_059, 60, false)
            .await
            .unwrap());
        assert!(store
            .touch_api_key(&digest, 3_060, 60, false)
            .await
            .unwrap());
        assert!(
            store.touch_api_key(&digest, 3_061, 60, true).await.unwrap(),
            "apart"
        );
        assert_eq!(
            store.api_key("k2").await.unwrap().unwrap().last_used_at,
            Some(3_060)
        );
    }
}

/// The login throttle's one-statement count computes the same blocks as the policy: free
/// failures, then 1 s, 2 s, 4 s, … up to the cap; nothing counted while any key is blocked;
/// a count older than the memory starts afresh.
#[tokio::test]
async fn login_attempts_count_and_block_as_the_policy_says() {
    use tessera::config::LoginThrottlePolicy;
    use tessera::store::{LoginCount, ThrottleKey};
    for db in TestDb::all().await {
        let store = open(&db).await;
        let policy = LoginThrottlePolicy {
            per_username: 2,
            per_address: 5,
            max_delay_secs: 4,
        };
        let keys = [
            ThrottleKey {
                key: "user:a",
                threshold: 2,
            },
            ThrottleKey {
                key: "addr:b",
                threshold: 5,
            },
        ];
        let mut now = 10_000;
        for failures in 1..=9 {
            let count = store
                .count_login_attempt(&keys, now, now - 3_600, policy.max_delay_secs)
                .await
                .unwrap();
            let expected = |threshold: i64| {
                let wait = policy.delay(threshold, failures);
                (failures, if wait > 0 { now + wait } else { 0 })
            };
            assert_eq!(
                count,
                LoginCount::Counted(vec![expected(2), expected(5)]),
                "{}: failure {failures}",
                db.label
            );
            if policy.delay(2, failures) > 0 {
                // During the block: nothing counted, on either key.
                let blocked = store
                    .count_login_attempt(&keys, now, now - 3_600, policy.max_delay_secs)
                    .await
                    .unwrap();
                assert_eq!(
                    blocked,
                    LoginCount::Blocked {
                        until: expected(2).1
                    }
                );
            }
            now += 10;
        }
        // Remembered no longer: the count starts again at one.
        now += 7_200;
        let fresh = store
            .count_login_attempt(&keys, now, now - 3_600, policy.max_delay_secs)
            .await
            .unwrap();
        assert_eq!(
            fresh,
            LoginCount::Counted(vec![(1, 0), (1, 0)]),
            "{}",
            db.label
        );
    }
}

/// A sign-in's take-back: the session's write forgets every failure of the username and
/// takes this attempt back from the address, in the same transaction (one write per
/// sign-in fewer); an attempt never checked is taken back from every key by itself. Other
/// keys keep their counts, and no count goes below zero.
#[tokio::test]
async fn a_sign_in_is_taken_back_by_the_write_that_starts_its_session() {
    use tessera::store::{LoginCount, ThrottleKey};
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        let key = |key| ThrottleKey { key, threshold: 9 };
        let (now, forget_before) = (10_000, 0);
        for keys in [
            vec![key("user:ada"), key("addr:a")],
            vec![key("user:ada"), key("addr:a")],
            vec![key("user:bob"), key("addr:a")],
            vec![key("addr:b")],
        ] {
            store
                .count_login_attempt(&keys, now, forget_before, 60)
                .await
                .unwrap();
        }
        let counts = |keys: Vec<ThrottleKey<'static>>| {
            let store = Arc::clone(&store);
            async move {
                // Counting once more shows the count before it, plus one.
                match store
                    .count_login_attempt(&keys, now, forget_before, 60)
                    .await
                    .unwrap()
                {
                    LoginCount::Counted(c) => c.iter().map(|(f, _)| f - 1).collect::<Vec<_>>(),
                    blocked => panic!("{blocked:?}"),
                }
            }
        };
        let signed_in = TakeBack {
            clear: Some("user:ada".into()),
            forgive: vec!["addr:a".into()],
        };
        store
            .insert_session(
                &session("ada-s", ADA),
                Some(&Digest::of("ada-old")),
                &signed_in,
                &audit(AuditKind::LoginSucceeded),
            )
            .await
            .unwrap();
        assert!(
            store
                .session(&Digest::of("ada-s"), 2_001)
                .await
                .unwrap()
                .is_some(),
            "{}",
            db.label
        );
        assert_eq!(
            counts(vec![
                key("user:ada"),
                key("addr:a"),
                key("user:bob"),
                key("addr:b")
            ])
            .await,
            [0, 2, 1, 1],
            "{}: the username forgotten, the address one attempt less",
            db.label
        );
        // Never checked: one attempt less on every key (twice here), none below zero.
        let unchecked = TakeBack {
            clear: None,
            forgive: vec!["user:ada".into(), "user:bob".into(), "addr:none".into()],
        };
        for _ in 0..2 {
            store.take_back_login_attempt(&unchecked).await.unwrap();
        }
        assert_eq!(
            counts(vec![key("user:ada"), key("user:bob")]).await,
            [0, 0],
            "{}: 1 and 2 before, less two each, not below zero",
            db.label
        );
    }
}

/// `frontchannel_clients`: the clients with a front-channel logout URI that signed in
/// through the session, once each, by id; revoked grants count, other sessions' do not. The
/// new client fields round-trip through insert, update and read.
#[tokio::test]
async fn frontchannel_clients_are_those_the_session_signed_into_with_a_uri() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        for (id, uri) in [
            ("zeta", Some("https://zeta.example/fcl?x=1")),
            ("alpha", Some("https://alpha.example/fcl")),
            ("plain", None),
            ("elsewhere", Some("https://elsewhere.example/fcl")),
        ] {
            let mut c = client(id);
            c.frontchannel_logout_uri = uri.map(str::to_owned);
            c.frontchannel_logout_session_required = id == "zeta";
            store
                .insert_client(&c, &audit(AuditKind::ClientCreated))
                .await
                .unwrap();
        }
        let zeta = store.client("zeta").await.unwrap().unwrap();
        assert_eq!(
            zeta.frontchannel_logout_uri.as_deref(),
            Some("https://zeta.example/fcl?x=1"),
            "{}",
            db.label
        );
        assert!(zeta.frontchannel_logout_session_required);
        for (grant_id, client_id, sid) in [
            ("g-zeta", "zeta", "sid-1"),
            ("g-zeta-again", "zeta", "sid-1"),
            ("g-alpha", "alpha", "sid-1"),
            ("g-plain", "plain", "sid-1"),
            ("g-elsewhere", "elsewhere", "sid-2"),
        ] {
            let mut g = grant(grant_id, ADA);
            g.client_id = client_id.into();
            g.sid = Some(sid.into());
            let mut c = code(&format!("code-{grant_id}"), &g);
            c.sid = g.sid.clone();
            store
                .insert_code(&g, &c, &audit(AuditKind::CodeIssued))
                .await
                .unwrap();
        }
        store
            .revoke_grant("g-alpha", 6_000, &audit(AuditKind::TokenRevoked))
            .await
            .unwrap();
        let ids = |clients: Vec<ClientRecord>| -> Vec<String> {
            clients.into_iter().map(|c| c.id).collect()
        };
        assert_eq!(
            ids(store.frontchannel_clients("sid-1").await.unwrap()),
            ["alpha", "zeta"],
            "{}",
            db.label
        );
        assert!(store
            .frontchannel_clients("sid-none")
            .await
            .unwrap()
            .is_empty());

        let mut alpha = store.client("alpha").await.unwrap().unwrap();
        alpha.frontchannel_logout_uri = None;
        store
            .update_client(&alpha, &audit(AuditKind::ClientUpdated))
            .await
            .unwrap();
        assert_eq!(store.client("alpha").await.unwrap().unwrap(), alpha);
        assert_eq!(
            ids(store.frontchannel_clients("sid-1").await.unwrap()),
            ["zeta"],
            "{}: no URI, no iframe",
            db.label
        );
    }
}

/// `signed_in`: the session with its user in one lookup, only while it has not expired; a
/// disabled user comes back as such (the caller refuses it).
#[tokio::test]
async fn signed_in_reads_a_live_session_with_its_user() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        let record = session("ada-live", ADA);
        sign_in(store.as_ref(), &record).await;
        let (found, account) = store
            .signed_in(&Digest::of("ada-live"), 2_001)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found, record, "{}", db.label);
        assert_eq!(Some(account), store.account(ADA).await.unwrap());
        assert_eq!(
            store
                .signed_in(&Digest::of("ada-live"), record.expires_at)
                .await
                .unwrap(),
            None,
            "{}: expired",
            db.label
        );
        assert_eq!(
            store.signed_in(&Digest::of("nobody"), 2_001).await.unwrap(),
            None
        );
        // With the consent for one client, as /authorize reads it: none yet, then the
        // scopes given to this client and not another's.
        let with_consent = |client: &'static str, now| {
            let store = Arc::clone(&store);
            async move {
                store
                    .signed_in_with_consent(&Digest::of("ada-live"), now, client)
                    .await
                    .unwrap()
            }
        };
        let (signed_in, consented) = with_consent(CLIENT, 2_001).await.unwrap();
        assert_eq!(signed_in.0, record, "{}", db.label);
        assert_eq!(consented, None, "{}", db.label);
        store
            .grant_consent(
                ADA,
                CLIENT,
                "openid email",
                2_002,
                &audit(AuditKind::ConsentGranted),
            )
            .await
            .unwrap();
        let (signed_in, consented) = with_consent(CLIENT, 2_003).await.unwrap();
        assert_eq!(Some(signed_in.1), store.account(ADA).await.unwrap());
        assert_eq!(consented.as_deref(), Some("openid email"), "{}", db.label);
        assert_eq!(with_consent("other", 2_003).await.unwrap().1, None);
        assert_eq!(
            with_consent(CLIENT, record.expires_at).await,
            None,
            "{}",
            db.label
        );
    }
}

/// `update_account_claims`: a compare-and-set on the claims alone. A stale `expected` changes
/// nothing and records nothing; a password or role set meanwhile survives the write.
#[tokio::test]
async fn update_account_claims_writes_only_claims_and_only_if_unchanged_meanwhile() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        let mut ada = store.account(ADA).await.unwrap().unwrap();
        let before = ada.claims.clone();
        // Meanwhile, the operator sets a password and a role.
        ada.password_hash = Some("$argon2id$stand-in".into());
        ada.roles = vec!["admin".into()];
        store
            .update_account(&ada, &audit(AuditKind::UserUpdated))
            .await
            .unwrap();
        let events = audit_count(store.as_ref()).await;
        let named = StandardClaims {
            name: Some("Ada Lovelace".into()),
            ..Default::default()
        };
        let changed = store
            .update_account_claims(ADA, &before, &named, 9_000, &audit(AuditKind::UserUpdated))
            .await
            .unwrap();
        assert!(changed, "{}", db.label);
        let now = store.account(ADA).await.unwrap().unwrap();
        assert_eq!(now.claims, named, "{}", db.label);
        assert_eq!(now.updated_at, 9_000);
        assert_eq!(now.password_hash, ada.password_hash, "the password stays");
        assert_eq!(now.roles, ["admin"], "the roles stay");
        assert_eq!(audit_count(store.as_ref()).await, events + 1);

        // Written from claims that are no longer stored: refused, nothing recorded.
        let stale = store
            .update_account_claims(ADA, &before, &before, 9_500, &audit(AuditKind::UserUpdated))
            .await
            .unwrap();
        assert!(!stale, "{}", db.label);
        let still = store.account(ADA).await.unwrap().unwrap();
        assert_eq!((still.claims, still.updated_at), (named.clone(), 9_000));
        assert_eq!(audit_count(store.as_ref()).await, events + 1);

        // A user that does not exist, or is disabled, is not written.
        let mut bob = store.account(BOB).await.unwrap().unwrap();
        bob.disabled = true;
        store
            .update_account(&bob, &audit(AuditKind::UserDisabled))
            .await
            .unwrap();
        for id in [BOB, "no-such-user"] {
            let refused = store
                .update_account_claims(
                    id,
                    &bob.claims,
                    &named,
                    9_600,
                    &audit(AuditKind::UserUpdated),
                )
                .await;
            assert!(
                matches!(refused, Err(StoreError::NotFound(_))),
                "{}: {refused:?}",
                db.label
            );
        }
    }
}

/// Concurrent token issues are written together (decision 0031), yet each caller hears only
/// its own outcome: the one issue that repeats a stored token's digest fails alone, every other
/// issue's token and audit event are stored, and the hook hears exactly those events.
#[tokio::test]
async fn insert_tokens_of_concurrent_callers_share_writes_and_fail_one_by_one() {
    for db in TestDb::all().await {
        let (recorder, store) = recorded(&db).await;
        let taken = token("taken", TokenKind::Access, ADA, None);
        store
            .insert_tokens(std::slice::from_ref(&taken), &audit(AuditKind::TokenIssued))
            .await
            .unwrap();
        let heard = recorder.kinds().len();
        let trail = audit_count(store.as_ref()).await;
        let writes = store.pool_status().writes;
        const ISSUES: usize = 40;
        const BAD: usize = 37;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..ISSUES {
            let store = store.clone();
            let mut t = token(&format!("cc-{i}"), TokenKind::Access, ADA, None);
            t.account_id = None;
            if i == BAD {
                t.digest = taken.digest;
            }
            let mut event = audit(AuditKind::TokenIssued);
            event.client_id = t.client_id.clone();
            tasks.spawn(async move {
                let outcome = store.insert_tokens(&[t], &event).await;
                (i, outcome)
            });
        }
        let mut failed = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (i, outcome) = done.unwrap();
            match outcome {
                Ok(()) => {}
                Err(StoreError::Conflict("token")) => failed.push(i),
                Err(e) => panic!("{}: issue {i}: {e:?}", db.label),
            }
        }
        assert_eq!(failed, [BAD], "{}", db.label);
        for i in (0..ISSUES).filter(|&i| i != BAD) {
            let stored = store.token(&Digest::of(&format!("cc-{i}"))).await.unwrap();
            assert!(stored.is_some(), "{}: token {i} missing", db.label);
        }
        assert!(store
            .token(&Digest::of(&format!("cc-{BAD}")))
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            audit_count(store.as_ref()).await - trail,
            ISSUES - 1,
            "{}",
            db.label
        );
        assert_eq!(recorder.kinds().len() - heard, ISSUES - 1, "{}", db.label);
        // Alone, 40 issues are 40 writes; queued together they share a few (the failed
        // batch is retried one issue at a time, so the count is not one or two).
        let used = store.pool_status().writes - writes;
        assert!(
            used <= (ISSUES / 2) as u64,
            "{}: {used} writes for {ISSUES} concurrent issues",
            db.label
        );
    }
}

/// A consent keeps the scopes granted before in their order and adds new ones once each,
/// however the request spelled them (Postgres merges in SQL, SQLite in Rust).
#[tokio::test]
async fn grant_consent_adds_new_scopes_after_the_old_ones_each_once() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        let grant = |scope: &'static str| {
            let store = store.clone();
            async move {
                store
                    .grant_consent(ADA, CLIENT, scope, 3_000, &audit(AuditKind::ConsentGranted))
                    .await
                    .unwrap()
            }
        };
        grant(" profile  openid profile").await;
        assert_eq!(
            store.consent(ADA, CLIENT).await.unwrap().as_deref(),
            Some("profile openid"),
            "{}",
            db.label
        );
        grant("email openid  address email").await;
        assert_eq!(
            store.consent(ADA, CLIENT).await.unwrap().as_deref(),
            Some("profile openid email address"),
            "{}",
            db.label
        );
    }
}

/// Whether the token `value` may still be used: gone, or there but not active.
async fn usable(store: &dyn Store, value: &str) -> bool {
    let token = store.token(&Digest::of(value)).await.unwrap();
    let credential = store.credential(&Digest::of(value)).await.unwrap();
    assert_eq!(
        token.as_ref().map(|t| t.is_active(10_000)),
        credential.map(|c| c.token.is_active(10_000)),
        "token and credential agree on {value}"
    );
    token.is_some_and(|t| t.is_active(10_000))
}

/// The seeded store with three tokens: Ada's access token of grant `g1`, Bob's refresh token
/// of grant `g2`, and the client's own token (`cc`).
async fn seeded_with_tokens(store: &dyn Store) -> [TokenRecord; 3] {
    seeded(store).await;
    let ada = token("g1-a", TokenKind::Access, ADA, Some("g1"));
    let bob = token("g2-r", TokenKind::Refresh, BOB, Some("g2"));
    grant_with_tokens(store, "g1", ADA, std::slice::from_ref(&ada)).await;
    grant_with_tokens(store, "g2", BOB, std::slice::from_ref(&bob)).await;
    let mut own = token("cc", TokenKind::Access, ADA, None);
    own.account_id = None;
    store
        .insert_tokens(std::slice::from_ref(&own), &audit(AuditKind::TokenIssued))
        .await
        .unwrap();
    for value in ["g1-a", "g2-r", "cc"] {
        assert!(usable(store, value).await, "{value}");
    }
    [ada, bob, own]
}

#[tokio::test]
async fn deleting_a_client_or_a_user_deletes_their_tokens() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        let [ada, bob, own] = seeded_with_tokens(store.as_ref()).await;
        store
            .delete_account(ADA, &audit(AuditKind::UserDeleted))
            .await
            .unwrap();
        assert_eq!(
            store.token(&ada.digest).await.unwrap(),
            None,
            "{}",
            db.label
        );
        assert!(usable(store.as_ref(), "g2-r").await, "{}", db.label);
        store
            .delete_client(CLIENT, &audit(AuditKind::ClientDeleted))
            .await
            .unwrap();
        for gone in [&bob, &own] {
            assert_eq!(
                store.token(&gone.digest).await.unwrap(),
                None,
                "{}",
                db.label
            );
        }
    }
}

/// How many rows of `table` name `column = value`.
async fn rows_naming(db: &TestDb, table: &str, column: &str, value: &str) -> i64 {
    db.number(&format!(
        "select count(*) from {table} where {column} = '{value}'"
    ))
    .await
}

/// Ada's and Bob's consent to the client, a grant with its code each, and Ada's session.
async fn seeded_with_sign_ins(store: &dyn Store) {
    seeded(store).await;
    for (who, g) in [(ADA, "g1"), (BOB, "g2")] {
        store
            .grant_consent(
                who,
                CLIENT,
                "openid",
                2_000,
                &audit(AuditKind::ConsentGranted),
            )
            .await
            .unwrap();
        grant_with_tokens(store, g, who, &[]).await;
    }
    sign_in(store, &session("ada-s", ADA)).await;
}

/// What a foreign key's cascade did, and on Postgres no longer does (decision 0040): a
/// deleted user takes their consents, grants, codes and sessions along, a deleted client
/// its consents, grants and codes; nobody else's go.
#[tokio::test]
async fn deleting_a_client_or_a_user_deletes_their_consents_grants_codes_and_sessions() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded_with_sign_ins(store.as_ref()).await;
        let tables = [
            ("consent", "account_id"),
            ("oauth_grant", "account_id"),
            ("authorization_code", "account_id"),
            ("session", "account_id"),
        ];
        for (table, column) in tables {
            assert_eq!(
                rows_naming(&db, table, column, ADA).await,
                1,
                "{}: {table}",
                db.label
            );
        }
        // Redeemed: ending the user's access leaves it (it detects replays), the deletion not.
        store
            .consume_code(&Digest::of("code-g1"), 2_001)
            .await
            .unwrap()
            .unwrap();
        store
            .delete_account(ADA, &audit(AuditKind::UserDeleted))
            .await
            .unwrap();
        for (table, column) in tables {
            assert_eq!(
                rows_naming(&db, table, column, ADA).await,
                0,
                "{}: {table}",
                db.label
            );
        }
        for (table, column) in &tables[..3] {
            assert_eq!(
                rows_naming(&db, table, column, BOB).await,
                1,
                "{}: Bob's {table}",
                db.label
            );
        }
        store
            .delete_client(CLIENT, &audit(AuditKind::ClientDeleted))
            .await
            .unwrap();
        for (table, column) in &tables[..3] {
            assert_eq!(
                rows_naming(&db, table, "client_id", CLIENT).await,
                0,
                "{}: {table}",
                db.label
            );
            assert_eq!(
                rows_naming(&db, table, column, BOB).await,
                0,
                "{}",
                db.label
            );
        }
    }
}

/// A consent, a grant with its code, or a session names an existing client and user or is
/// not written, and leaves nothing behind: the foreign keys on SQLite, on Postgres the
/// lookups and `not null` of decision 0040.
#[tokio::test]
async fn a_sign_in_write_for_a_client_or_user_that_does_not_exist_is_refused() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        let trail = audit_count(store.as_ref()).await;
        let refused = |what: &str, outcome: Result<(), StoreError>| {
            assert!(
                matches!(outcome, Err(StoreError::NotFound(_))),
                "{}: {what}: {outcome:?}",
                db.label
            );
        };

        let given = |account: &str, client: &str| ConsentGiven {
            account_id: account.into(),
            client_id: client.into(),
            scope: "openid".into(),
            now: 3_000,
            audit: audit(AuditKind::ConsentGranted),
        };
        for (account, client) in [(ADA, "no-such-client"), ("no-such-user", CLIENT)] {
            let mut g = grant("g1", account);
            g.client_id = client.into();
            let c = code("c1", &g);
            refused(
                "consent alone",
                store
                    .grant_consent(
                        account,
                        client,
                        "openid",
                        3_000,
                        &audit(AuditKind::ConsentGranted),
                    )
                    .await,
            );
            refused(
                "consent with its code",
                store
                    .insert_code_with_consent(
                        &given(account, client),
                        &g,
                        &c,
                        &audit(AuditKind::CodeIssued),
                    )
                    .await,
            );
            refused(
                "code",
                store
                    .insert_code(&g, &c, &audit(AuditKind::CodeIssued))
                    .await,
            );
        }
        refused(
            "session",
            store
                .insert_session(
                    &session("stray-s", "no-such-user"),
                    None,
                    &TakeBack::default(),
                    &audit(AuditKind::LoginSucceeded),
                )
                .await,
        );
        for table in ["consent", "oauth_grant", "authorization_code", "session"] {
            assert_eq!(
                db.number(&format!("select count(*) from {table}")).await,
                0,
                "{}: {table}",
                db.label
            );
        }
        assert_eq!(audit_count(store.as_ref()).await, trail, "{}", db.label);
    }
}

/// Deletes the client or user `id` behind the store's back, leaving what hangs off it: what
/// a write that raced its deletion leaves on Postgres (decision 0040). SQLite keeps its
/// foreign keys, so there only a connection that does not enforce them leaves such rows.
async fn delete_past_the_store(db: &TestDb, table: &str, id: &str) {
    let unchecked = if db.label == "sqlite" {
        "pragma foreign_keys = off; "
    } else {
        ""
    };
    db.sql(&format!("{unchecked}delete from {table} where id = '{id}'"))
        .await;
}

/// A client or user deleted past Tessera (or whose deletion a write raced, on Postgres)
/// leaves rows under its id; one created again under that id inherits none of them, so no
/// consent given to the old client skips the new one's consent screen (decision 0040).
#[tokio::test]
async fn a_client_or_user_created_again_under_an_old_id_inherits_nothing() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded_with_sign_ins(store.as_ref()).await;
        delete_past_the_store(&db, "client", CLIENT).await;
        delete_past_the_store(&db, "account", ADA).await;
        store
            .insert_client(&client(CLIENT), &audit(AuditKind::ClientCreated))
            .await
            .unwrap();
        store
            .insert_account(&account(ADA, "ada"), &audit(AuditKind::UserCreated))
            .await
            .unwrap();
        assert_eq!(
            store.consent(BOB, CLIENT).await.unwrap(),
            None,
            "{}",
            db.label
        );
        for (table, column, id) in [
            ("consent", "client_id", CLIENT),
            ("oauth_grant", "client_id", CLIENT),
            ("authorization_code", "client_id", CLIENT),
            ("session", "account_id", ADA),
        ] {
            assert_eq!(
                rows_naming(&db, table, column, id).await,
                0,
                "{}: {table}",
                db.label
            );
        }
        assert_eq!(
            store.signed_in(&Digest::of("ada-s"), 2_001).await.unwrap(),
            None,
            "{}",
            db.label
        );

        // An id in use stays in use, and keeps what hangs off it.
        store
            .grant_consent(
                BOB,
                CLIENT,
                "openid",
                2_000,
                &audit(AuditKind::ConsentGranted),
            )
            .await
            .unwrap();
        let again = store
            .insert_client(&client(CLIENT), &audit(AuditKind::ClientCreated))
            .await;
        assert!(
            matches!(again, Err(StoreError::Conflict(_))),
            "{}: {again:?}",
            db.label
        );
        assert_eq!(
            store.consent(BOB, CLIENT).await.unwrap().as_deref(),
            Some("openid"),
            "{}",
            db.label
        );
    }
}

/// A session or a code written while its user was being deleted can commit after the
/// deletion on Postgres (decision 0040); what that race leaves is made here by deleting the
/// user's row past the store. The session signs nobody in, and the code redeems to no user.
#[tokio::test]
async fn a_session_or_code_whose_user_vanished_signs_nobody_in() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded_with_sign_ins(store.as_ref()).await;
        delete_past_the_store(&db, "account", ADA).await;
        assert_eq!(
            store.signed_in(&Digest::of("ada-s"), 2_001).await.unwrap(),
            None,
            "{}",
            db.label
        );
        assert_eq!(
            store.session(&Digest::of("ada-s"), 2_001).await.unwrap(),
            None,
            "{}",
            db.label
        );
        let (code, user) = store
            .consume_code(&Digest::of("code-g1"), 2_001)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code.account_id, ADA, "{}", db.label);
        assert_eq!(user, None, "{}", db.label);
    }
}

/// Without foreign keys on Postgres (decision 0033), a token written while its client or
/// grant was being deleted can commit after the deletion; what that race leaves is made
/// here by deleting the rows past the store.
#[tokio::test]
async fn a_token_whose_client_or_grant_vanished_is_revoked() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        let [in_grant, ..] = seeded_with_tokens(store.as_ref()).await;

        db.rows("delete from oauth_grant where id = 'g1'").await;
        assert!(!usable(store.as_ref(), "g1-a").await, "{}", db.label);
        assert!(usable(store.as_ref(), "g2-r").await, "{}", db.label);
        if let Some(t) = store.token(&in_grant.digest).await.unwrap() {
            assert_eq!(t.revoked_at, Some(t.created_at), "{}", db.label);
        }

        db.rows(&format!("delete from client where id = '{CLIENT}'"))
            .await;
        for value in ["g2-r", "cc"] {
            assert!(
                !usable(store.as_ref(), value).await,
                "{}: {value}",
                db.label
            );
        }
    }
}

/// A token names an existing client or is not written, alone or in a rotation (the foreign
/// key on SQLite; on Postgres the lookup and check of decision 0033).
#[tokio::test]
async fn a_token_for_a_client_that_does_not_exist_is_refused() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        let trail = audit_count(store.as_ref()).await;
        let mut stray = token("stray", TokenKind::Access, ADA, None);
        stray.account_id = None;
        stray.client_id = Some("no-such-client".into());
        let refused = store
            .insert_tokens(std::slice::from_ref(&stray), &audit(AuditKind::TokenIssued))
            .await;
        assert!(
            matches!(refused, Err(StoreError::NotFound(_))),
            "{}: {refused:?}",
            db.label
        );

        let old = token("old-r", TokenKind::Refresh, ADA, Some("g1"));
        grant_with_tokens(store.as_ref(), "g1", ADA, std::slice::from_ref(&old)).await;
        let trail_with_grant = audit_count(store.as_ref()).await;
        let mut next = token("new-r", TokenKind::Refresh, ADA, Some("g1"));
        next.client_id = Some("no-such-client".into());
        let refused = store
            .rotate_refresh(&old.digest, &[next], 4_000, &audit(AuditKind::TokenIssued))
            .await;
        assert!(
            matches!(refused, Err(StoreError::NotFound(_))),
            "{}: {refused:?}",
            db.label
        );
        assert!(
            usable(store.as_ref(), "old-r").await,
            "{}: not spent",
            db.label
        );
        assert_eq!(store.token(&stray.digest).await.unwrap(), None);
        assert_eq!(store.token(&Digest::of("new-r")).await.unwrap(), None);
        assert_eq!(
            audit_count(store.as_ref()).await,
            trail_with_grant,
            "{}",
            db.label
        );
        assert!(trail < trail_with_grant);
    }
}

/// Decision 0022, SQLite: the change counter the introspection cache watches (migration
/// 0013) moves with every change that can end an active token's access or alter its answer,
/// and with none of the writes of the token endpoint, which would empty the cache for
/// nothing. Postgres notifies instead and has no counter.
#[tokio::test]
async fn change_count_moves_with_every_revocation_and_with_no_issue_or_rotation() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        let count = || {
            let store = Arc::clone(&store);
            async move { store.change_count().await.unwrap() }
        };
        if store.backend() == Backend::Postgres {
            assert_eq!(count().await, None);
            continue;
        }
        seeded(store.as_ref()).await;
        two_grants_of_ada(store.as_ref()).await;
        let of = |v: &str, kind, grant: &str| token(v, kind, ADA, Some(grant));
        let before = count().await.expect("SQLite has a change counter");
        assert!(store
            .rotate_refresh(
                &Digest::of("g1-r"),
                &[
                    of("a1", TokenKind::Access, "g1"),
                    of("r1", TokenKind::Refresh, "g1")
                ],
                4_000,
                &audit(AuditKind::TokenIssued),
            )
            .await
            .unwrap());
        store
            .insert_tokens(
                &[token("key", TokenKind::ApiKey, ADA, None)],
                &audit(AuditKind::TokenIssued),
            )
            .await
            .unwrap();
        assert_eq!(count().await, Some(before), "issues and rotations");

        let mut last = before;
        let mut moved = |now: Option<i64>, what: &str| {
            let now = now.unwrap();
            assert!(now > last, "{what} did not move the counter");
            last = now;
        };
        store
            .revoke_token(&Digest::of("a1"), 5_000, &audit(AuditKind::TokenRevoked))
            .await
            .unwrap();
        moved(count().await, "a token revoked");
        store
            .revoke_grant("g2", 5_000, &audit(AuditKind::TokenRevoked))
            .await
            .unwrap();
        moved(count().await, "a grant revoked");
        let mut ada = store.account(ADA).await.unwrap().unwrap();
        ada.roles = vec!["admin".into()];
        store
            .update_account(&ada, &audit(AuditKind::UserUpdated))
            .await
            .unwrap();
        moved(count().await, "a user given a role");
        store
            .delete_account(BOB, &audit(AuditKind::UserDeleted))
            .await
            .unwrap();
        moved(count().await, "a user deleted");
        db.sql("delete from token where kind = 'api_key'").await;
        moved(count().await, "a token deleted by plain SQL");
    }
}

/// The answer to an approval at the consent page: the consent, the grant, its code and both
/// audit events in one write; a code that cannot be stored leaves the consent as it was.
#[tokio::test]
async fn insert_code_with_consent_stores_both_or_neither() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        store
            .grant_consent(
                ADA,
                CLIENT,
                "openid",
                3_000,
                &audit(AuditKind::ConsentGranted),
            )
            .await
            .unwrap();
        let given = |scope: &str| ConsentGiven {
            account_id: ADA.into(),
            client_id: CLIENT.into(),
            scope: scope.into(),
            now: 3_500,
            audit: audit(AuditKind::ConsentGranted),
        };
        let g = grant("g1", ADA);
        let before = audit_count(store.as_ref()).await;
        store
            .insert_code_with_consent(
                &given("profile openid email"),
                &g,
                &code("c1", &g),
                &audit(AuditKind::CodeIssued),
            )
            .await
            .unwrap();
        let consented = || {
            let store = Arc::clone(&store);
            async move { store.consent(ADA, CLIENT).await.unwrap() }
        };
        assert_eq!(
            consented().await.as_deref(),
            Some("openid profile email"),
            "{}",
            db.label
        );
        assert!(store.grant("g1").await.unwrap().is_some());
        assert_eq!(
            store
                .code_grant_id(&Digest::of("c1"))
                .await
                .unwrap()
                .as_deref(),
            Some("g1")
        );
        let after = audit_count(store.as_ref()).await;
        assert_eq!(after - before, 2, "{}: both events", db.label);

        // The same grant again: a conflict, and nothing of it stays.
        let refused = store
            .insert_code_with_consent(
                &given("address"),
                &g,
                &code("c2", &g),
                &audit(AuditKind::CodeIssued),
            )
            .await;
        assert!(
            matches!(refused, Err(StoreError::Conflict(_))),
            "{}: {refused:?}",
            db.label
        );
        assert_eq!(
            consented().await.as_deref(),
            Some("openid profile email"),
            "{}",
            db.label
        );
        assert_eq!(store.code_grant_id(&Digest::of("c2")).await.unwrap(), None);
        assert_eq!(audit_count(store.as_ref()).await, after, "{}", db.label);
    }
}

/// [`Store::insert_code_in_session`] with a `CodeIssued` event.
async fn in_session(
    store: &dyn Store,
    consent: Option<&ConsentGiven>,
    session: &SessionRecord,
    g: &GrantRecord,
    c: &CodeRecord,
) -> Result<(), StoreError> {
    store
        .insert_code_in_session(consent, session, g, c, &audit(AuditKind::CodeIssued))
        .await
}

/// Whether a session-checked write was refused as decision 0055 says.
fn not_in_session(answer: &Result<(), StoreError>) -> bool {
    matches!(answer, Err(StoreError::NotFound("session")))
}

/// Decision 0055: a code for a session the consent form claimed is written only if the store
/// holds that very session (every value the code carries, and its digest, `created_at` and
/// `expires_at`), live at the code's creation, with its user enabled. Otherwise nothing is
/// written (no consent, grant, code or event) and the answer is `NotFound("session")`.
#[tokio::test]
async fn insert_code_in_session_writes_only_for_the_session_as_stored() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        let stored = SessionRecord {
            sid: Some("sid-1".into()),
            amr: vec!["pwd".into(), "otp".into()],
            ..session("the-session", ADA)
        };
        // And Bob's own live session, which nobody else's cookie may claim.
        let bobs = SessionRecord {
            sid: Some("sid-bob".into()),
            ..session("bobs-session", BOB)
        };
        for s in [&stored, &bobs] {
            sign_in(store.as_ref(), s).await;
        }
        let given = ConsentGiven {
            account_id: ADA.into(),
            client_id: CLIENT.into(),
            scope: "openid".into(),
            now: 3_000,
            audit: audit(AuditKind::ConsentGranted),
        };
        // A grant and code carrying `claimed`'s sign-in, issued at `at`.
        let for_session = |id: &str, claimed: &SessionRecord, at: i64| {
            let g = GrantRecord {
                account_id: Some(claimed.account_id.clone()),
                auth_time: Some(claimed.auth_time),
                amr: claimed.amr.clone(),
                sid: claimed.sid.clone(),
                created_at: at,
                ..grant(id, ADA)
            };
            let c = CodeRecord {
                auth_time: claimed.auth_time,
                amr: claimed.amr.clone(),
                sid: claimed.sid.clone(),
                created_at: at,
                expires_at: at + 60,
                ..code(&format!("code-{id}"), &g)
            };
            (g, c)
        };
        let before = audit_count(store.as_ref()).await;
        let refused: Vec<(&str, SessionRecord, i64)> = vec![
            (
                "digest",
                SessionRecord {
                    id_digest: Digest::of("another-session"),
                    ..stored.clone()
                },
                3_000,
            ),
            (
                "another user's session under this digest",
                SessionRecord {
                    id_digest: stored.id_digest,
                    ..bobs.clone()
                },
                3_000,
            ),
            (
                "user",
                SessionRecord {
                    account_id: BOB.into(),
                    ..stored.clone()
                },
                3_000,
            ),
            (
                "auth_time",
                SessionRecord {
                    auth_time: 2_001,
                    ..stored.clone()
                },
                3_000,
            ),
            (
                "amr",
                SessionRecord {
                    amr: vec!["pwd".into()],
                    ..stored.clone()
                },
                3_000,
            ),
            (
                "sid",
                SessionRecord {
                    sid: Some("sid-2".into()),
                    ..stored.clone()
                },
                3_000,
            ),
            (
                "no sid",
                SessionRecord {
                    sid: None,
                    ..stored.clone()
                },
                3_000,
            ),
            (
                "created_at",
                SessionRecord {
                    created_at: 1_999,
                    ..stored.clone()
                },
                3_000,
            ),
            (
                "expires_at",
                SessionRecord {
                    expires_at: 999_999,
                    ..stored.clone()
                },
                3_000,
            ),
            ("over", stored.clone(), stored.expires_at),
        ];
        for (i, (what, claimed, at)) in refused.iter().enumerate() {
            let (g, c) = for_session(&format!("refused-{i}"), claimed, *at);
            let consent = ConsentGiven {
                account_id: claimed.account_id.clone(),
                ..given.clone()
            };
            for consent in [None, Some(&consent)] {
                let answer = in_session(store.as_ref(), consent, claimed, &g, &c).await;
                assert!(not_in_session(&answer), "{}: {what}: {answer:?}", db.label);
            }
            assert!(
                store.grant(&g.id).await.unwrap().is_none(),
                "{}: {what}",
                db.label
            );
        }
        assert_eq!(
            store.consent(ADA, CLIENT).await.unwrap(),
            None,
            "{}",
            db.label
        );
        assert_eq!(
            store.consent(BOB, CLIENT).await.unwrap(),
            None,
            "{}",
            db.label
        );
        assert_eq!(audit_count(store.as_ref()).await, before, "{}", db.label);

        // The session as stored: written, with the consent and both events.
        let (g, c) = for_session("held", &stored, 3_000);
        store
            .insert_code_in_session(Some(&given), &stored, &g, &c, &audit(AuditKind::CodeIssued))
            .await
            .unwrap();
        assert_eq!(store.grant("held").await.unwrap(), Some(g), "{}", db.label);
        let redeemed = store.consume_code(&c.digest, 3_001).await.unwrap();
        assert_eq!(
            redeemed.map(|(code, _)| code),
            Some(CodeRecord {
                consumed_at: Some(3_001),
                ..c
            }),
            "{}",
            db.label
        );
        assert_eq!(
            store.consent(ADA, CLIENT).await.unwrap().as_deref(),
            Some("openid")
        );
        // Without a consent, and Bob's session by its own cookie: written too.
        let (alone, c) = for_session("held-alone", &bobs, 3_000);
        store
            .insert_code_in_session(None, &bobs, &alone, &c, &audit(AuditKind::CodeIssued))
            .await
            .unwrap();
        assert_eq!(
            store.grant("held-alone").await.unwrap(),
            Some(alone),
            "{}",
            db.label
        );
        assert_eq!(
            audit_count(store.as_ref()).await,
            before + 3,
            "{}",
            db.label
        );

        // Its user disabled (the session kept), then the session ended: refused both times.
        let mut ada = store.account(ADA).await.unwrap().unwrap();
        ada.disabled = true;
        store
            .update_account(&ada, &audit(AuditKind::UserUpdated))
            .await
            .unwrap();
        let (g, c) = for_session("disabled", &stored, 3_000);
        let answer = in_session(store.as_ref(), None, &stored, &g, &c).await;
        assert!(not_in_session(&answer), "{}: {answer:?}", db.label);
        ada.disabled = false;
        store
            .update_account(&ada, &audit(AuditKind::UserUpdated))
            .await
            .unwrap();
        store.delete_session(&stored.id_digest).await.unwrap();
        let (g, c) = for_session("signed-out", &stored, 3_000);
        let answer = in_session(store.as_ref(), None, &stored, &g, &c).await;
        assert!(not_in_session(&answer), "{}: {answer:?}", db.label);
        assert!(
            store.grant("disabled").await.unwrap().is_none(),
            "{}",
            db.label
        );
        assert!(
            store.grant("signed-out").await.unwrap().is_none(),
            "{}",
            db.label
        );
    }
}

/// A sign-in's count and its user in one call (one statement on Postgres): the same count as
/// `count_login_attempt`, the user the username names when counted, none when it names
/// nobody or the attempt is blocked.
#[tokio::test]
async fn login_attempts_count_with_the_user_they_name() {
    use tessera::store::{LoginCount, ThrottleKey};
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        let keys = [
            ThrottleKey {
                key: "user:ada",
                threshold: 1,
            },
            ThrottleKey {
                key: "addr:x",
                threshold: 5,
            },
        ];
        let now = 10_000;
        let count = |username: &'static str| {
            let store = Arc::clone(&store);
            async move {
                store
                    .count_login_attempt_for(&keys, now, now - 3_600, 60, username)
                    .await
                    .unwrap()
            }
        };
        let (first, ada) = count("ada").await;
        assert_eq!(
            first,
            LoginCount::Counted(vec![(1, 0), (1, 0)]),
            "{}",
            db.label
        );
        assert_eq!(ada, store.account(ADA).await.unwrap(), "{}", db.label);
        // The second failure past the one free starts a block of a second on the username.
        let (second, nobody) = count("nobody").await;
        assert_eq!(
            second,
            LoginCount::Counted(vec![(2, now + 1), (2, 0)]),
            "{}",
            db.label
        );
        assert_eq!(nobody, None);
        let (blocked, user) = count("ada").await;
        assert_eq!(
            blocked,
            LoginCount::Blocked { until: now + 1 },
            "{}",
            db.label
        );
        assert_eq!(
            user, None,
            "{}: no user read for a blocked attempt",
            db.label
        );
        // Only the address key (a browser known for the username): the user comes all the same.
        let (alone, ada) = store
            .count_login_attempt_for(&keys[1..], now, now - 3_600, 60, "ada")
            .await
            .unwrap();
        assert_eq!(alone, LoginCount::Counted(vec![(3, 0)]), "{}", db.label);
        assert_eq!(ada.map(|a| a.id).as_deref(), Some(ADA), "{}", db.label);
    }
}

/// The `token_issued` event a refresh rotation hands to `rotate_refresh_at_once`, with the
/// old token's grant id and scope as placeholders.
fn rotation_event(now: i64) -> AuditEvent {
    AuditEvent::new(AuditKind::TokenIssued, format!("client:{CLIENT}"), now)
        .client(CLIENT)
        .details(serde_json::json!({
            "grant_type": "refresh_token",
            "grant_id": store::FROM_OLD_GRANT_ID,
            "scope": store::FROM_OLD_SCOPE,
            "jti": "jti-new-access",
            "refresh_token": true,
        }))
}

/// Decisions 0043 and 0052: `rotate_refresh_at_once` spends a refresh token only where
/// the refresh grant's own steps would rotate it (RFC 6749 §6 and §10.4, RFC 9700 §4.14.2:
/// a refresh token of this client, unspent, unrevoked, unexpired, its grant unrevoked and
/// its client and enabled user present), writes what those steps write, and in every other
/// case changes nothing, so that the steps can tell why.
#[tokio::test]
async fn rotate_refresh_at_once_spends_only_what_the_refresh_grant_would_rotate() {
    for db in TestDb::all().await {
        let (recorder, store) = recorded(&db).await;
        let store = store.as_ref();
        let refresh = |v: &str, account: &str, grant: &str, expires_at| TokenRecord {
            expires_at: Some(expires_at),
            ..token(v, TokenKind::Refresh, account, Some(grant))
        };
        grant_with_tokens(
            store,
            "g1",
            ADA,
            &[
                token("g1-a", TokenKind::Access, ADA, Some("g1")),
                refresh("live", ADA, "g1", 10_000),
                refresh("spent", ADA, "g1", 10_000),
                refresh("revoked", ADA, "g1", 10_000),
                refresh("expired", ADA, "g1", 4_000),
            ],
        )
        .await;
        grant_with_tokens(store, "g2", ADA, &[refresh("g2-r", ADA, "g2", 10_000)]).await;
        grant_with_tokens(store, "g3", BOB, &[refresh("bob-r", BOB, "g3", 10_000)]).await;
        assert!(store
            .rotate_refresh(
                &Digest::of("spent"),
                &[],
                3_000,
                &audit(AuditKind::TokenIssued)
            )
            .await
            .unwrap());
        store
            .revoke_token(
                &Digest::of("revoked"),
                3_000,
                &audit(AuditKind::TokenRevoked),
            )
            .await
            .unwrap();
        // A grant revoked without its tokens' own mark (the read joins the grant for that).
        db.rows("update oauth_grant set revoked_at = 3000 where id = 'g2'")
            .await;
        let mut bob = account(BOB, "bob");
        bob.disabled = true;
        store
            .update_account(&bob, &audit(AuditKind::UserDisabled))
            .await
            .unwrap();

        let event = rotation_event(4_000);
        let at_once = |old: &str, client_id| store::RefreshAtOnce {
            old: Digest::of(old),
            client_id,
            now: 4_000,
            access: store::NewToken {
                digest: Digest::of("new-a"),
                jti: "jti-new-access".into(),
            },
            access_expires_at: 4_600,
            refresh: store::NewToken {
                digest: Digest::of("new-r"),
                jti: "jti-new-refresh".into(),
            },
            refresh_idle_ttl: 1_000,
            refresh_absolute_ttl: 100_000,
            audit: &event,
        };
        let before = audit_count(store).await;
        for (old, client_id, why) in [
            ("unknown", CLIENT, "unknown token"),
            ("live", "other", "another client's token"),
            ("g1-a", CLIENT, "an access token"),
            ("spent", CLIENT, "a spent refresh token"),
            ("revoked", CLIENT, "a revoked refresh token"),
            (
                "expired",
                CLIENT,
                "an expired refresh token (expires_at = now)",
            ),
            ("g2-r", CLIENT, "a token of a revoked grant"),
            ("bob-r", CLIENT, "a disabled user's token"),
        ] {
            let done = store.rotate_refresh_at_once(&at_once(old, client_id)).await;
            assert_eq!(done.unwrap(), None, "{}: {why}", db.label);
        }
        assert_eq!(audit_count(store).await, before, "{}", db.label);
        assert_eq!(store.token(&Digest::of("new-a")).await.unwrap(), None);
        assert_eq!(
            store
                .token(&Digest::of("live"))
                .await
                .unwrap()
                .unwrap()
                .used_at,
            None
        );

        let done = store
            .rotate_refresh_at_once(&at_once("live", CLIENT))
            .await
            .unwrap();
        let old = done.expect("the live token rotates");
        assert_eq!(old.token.digest, Digest::of("live"));
        assert_eq!(
            old.token.used_at, None,
            "returned as read, before the spend"
        );
        assert_eq!(old.grant.unwrap().id, "g1");
        assert_eq!(old.account.unwrap().id, ADA);
        assert_eq!(
            store
                .token(&Digest::of("live"))
                .await
                .unwrap()
                .unwrap()
                .used_at,
            Some(4_000)
        );
        let from_old = |digest: &str, kind, jti: &str| TokenRecord {
            digest: Digest::of(digest),
            kind,
            jti: jti.into(),
            grant_id: Some("g1".into()),
            client_id: Some(CLIENT.into()),
            account_id: Some(ADA.into()),
            scope: "openid".into(),
            label: None,
            previous_digest: None,
            created_at: 4_000,
            expires_at: None,
            used_at: None,
            revoked_at: None,
        };
        assert_eq!(
            store.token(&Digest::of("new-a")).await.unwrap().unwrap(),
            TokenRecord {
                expires_at: Some(4_600),
                ..from_old("new-a", TokenKind::Access, "jti-new-access")
            }
        );
        assert_eq!(
            store.token(&Digest::of("new-r")).await.unwrap().unwrap(),
            TokenRecord {
                // min(now + idle, grant created + absolute) = min(5_000, 102_000)
                expires_at: Some(5_000),
                previous_digest: Some(Digest::of("live")),
                ..from_old("new-r", TokenKind::Refresh, "jti-new-refresh")
            }
        );
        // The absolute bound, from the grant's creation (2_000): min(4_000 + 1_000, 2_500).
        let mut bounded = at_once("new-r", CLIENT);
        bounded.refresh_absolute_ttl = 500;
        bounded.access.digest = Digest::of("new-a2");
        bounded.refresh.digest = Digest::of("new-r2");
        bounded.access.jti = "jti-a2".into();
        bounded.refresh.jti = "jti-r2".into();
        assert!(store
            .rotate_refresh_at_once(&bounded)
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            store
                .token(&Digest::of("new-r2"))
                .await
                .unwrap()
                .unwrap()
                .expires_at,
            Some(2_500)
        );

        // The event as the server would have written it: the placeholders filled in, the
        // user set, the same text in the row as serde writes.
        let mut expected = event.clone();
        expected.account_id = Some(ADA.into());
        expected.details = serde_json::json!({
            "grant_type": "refresh_token",
            "grant_id": "g1",
            "scope": "openid",
            "jti": "jti-new-access",
            "refresh_token": true,
        });
        let heard = recorder.0.lock().unwrap().clone();
        assert_eq!(heard[heard.len() - 2], expected, "what the hook heard");
        let stored = db
            .rows("select account_id, details from audit_event order by id")
            .await;
        assert_eq!(
            stored[stored.len() - 2],
            [
                Some(ADA.to_owned()),
                Some(serde_json::to_string(&expected.details).unwrap())
            ]
        );
    }
}

/// Decisions 0051 and 0052: concurrent `rotate_refresh_at_once` calls share writes,
/// and each keeps its own outcome: every live token rotates once, a spent or unknown one
/// not at all, and of three rotations of one token exactly one wins (the others write
/// nothing, for the steps to find it spent and revoke the grant).
#[tokio::test]
async fn concurrent_refresh_rotations_at_once_share_writes_and_each_keeps_its_outcome() {
    for db in TestDb::all().await {
        let (recorder, store) = recorded(&db).await;
        const LIVE: usize = 30;
        let live: Vec<TokenRecord> = (0..LIVE)
            .map(|i| TokenRecord {
                expires_at: Some(10_000),
                ..token(&format!("r-{i}"), TokenKind::Refresh, ADA, Some("g1"))
            })
            .collect();
        grant_with_tokens(store.as_ref(), "g1", ADA, &live).await;
        assert!(store
            .rotate_refresh(
                &Digest::of("r-0"),
                &[],
                3_000,
                &audit(AuditKind::TokenIssued)
            )
            .await
            .unwrap());
        let heard = recorder.kinds().len();
        let trail = audit_count(store.as_ref()).await;
        let writes = store.pool_status().writes;

        let olds: Vec<String> = (0..LIVE)
            .map(|i| format!("r-{i}"))
            .chain(["r-1", "r-1", "unknown"].map(String::from))
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        for (k, old) in olds.iter().cloned().enumerate() {
            let store = store.clone();
            tasks.spawn(async move {
                let event = rotation_event(4_000);
                let rotation = store::RefreshAtOnce {
                    old: Digest::of(&old),
                    client_id: CLIENT,
                    now: 4_000,
                    access: store::NewToken {
                        digest: Digest::of(&format!("a-{k}")),
                        jti: format!("jti-a-{k}"),
                    },
                    access_expires_at: 4_600,
                    refresh: store::NewToken {
                        digest: Digest::of(&format!("n-{k}")),
                        jti: format!("jti-n-{k}"),
                    },
                    refresh_idle_ttl: 1_000,
                    refresh_absolute_ttl: 100_000,
                    audit: &event,
                };
                let outcome = store.rotate_refresh_at_once(&rotation).await;
                (k, old, outcome)
            });
        }
        let mut wins: std::collections::HashMap<String, usize> = Default::default();
        while let Some(done) = tasks.join_next().await {
            let (k, old, outcome) = done.unwrap();
            let outcome = outcome.unwrap_or_else(|e| panic!("{}: rotation {k}: {e:?}", db.label));
            let new_refresh = store.token(&Digest::of(&format!("n-{k}"))).await.unwrap();
            let new_access = store.token(&Digest::of(&format!("a-{k}"))).await.unwrap();
            match outcome {
                Some(spent) => {
                    *wins.entry(old.clone()).or_default() += 1;
                    assert_eq!(spent.token.digest, Digest::of(&old), "{}", db.label);
                    assert_eq!(spent.token.used_at, None, "returned as read");
                    let new_refresh = new_refresh.expect("the winner's refresh token");
                    assert_eq!(new_refresh.previous_digest, Some(Digest::of(&old)));
                    assert_eq!(new_refresh.jti, format!("jti-n-{k}"));
                    assert_eq!(
                        new_access.expect("its access token").jti,
                        format!("jti-a-{k}")
                    );
                }
                None => {
                    assert_eq!(new_refresh, None, "{}: rotation {k} of {old}", db.label);
                    assert_eq!(new_access, None, "{}: rotation {k} of {old}", db.label);
                }
            }
        }
        for old in &olds {
            let expected = usize::from(old != "r-0" && old != "unknown");
            assert_eq!(
                wins.get(old).copied().unwrap_or(0),
                expected,
                "{}: {old}",
                db.label
            );
        }
        for i in 1..LIVE {
            let t = store
                .token(&Digest::of(&format!("r-{i}")))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(t.used_at, Some(4_000), "{}: r-{i}", db.label);
        }
        assert_eq!(
            audit_count(store.as_ref()).await - trail,
            LIVE - 1,
            "{}",
            db.label
        );
        assert_eq!(recorder.kinds().len() - heard, LIVE - 1, "{}", db.label);
        // One statement each alone; queued together they share a few (the two repeated
        // rotations of r-1 are written after their batch, by themselves).
        let used = store.pool_status().writes - writes;
        assert!(
            used <= (olds.len() / 2) as u64,
            "{}: {used} writes for {} concurrent rotations",
            db.label,
            olds.len()
        );
    }
}

/// The `token_issued` event a code redemption hands to `redeem_code_at_once`, with the
/// code's grant id, scope and whether a refresh token is written as placeholders.
fn redemption_event(now: i64) -> AuditEvent {
    AuditEvent::new(AuditKind::TokenIssued, format!("client:{CLIENT}"), now)
        .client(CLIENT)
        .details(serde_json::json!({
            "grant_type": "authorization_code",
            "grant_id": store::FROM_OLD_GRANT_ID,
            "scope": store::FROM_OLD_SCOPE,
            "jti": "jti-new-access",
            "refresh_token": store::FROM_CODE_REFRESH,
        }))
}

/// Inserts grant `id` of `account_id` with `scope` and its code `code-{id}`, with
/// `challenge` as its PKCE value.
async fn grant_with_code(
    store: &dyn Store,
    id: &str,
    account_id: &str,
    scope: &str,
    challenge: Option<&str>,
) {
    let g = GrantRecord {
        scope: scope.into(),
        ..grant(id, account_id)
    };
    let c = CodeRecord {
        code_challenge: challenge.map(str::to_owned),
        ..code(&format!("code-{id}"), &g)
    };
    store
        .insert_code(&g, &c, &audit(AuditKind::CodeIssued))
        .await
        .unwrap();
}

/// Decisions 0047 and 0053: `redeem_code_at_once` consumes a code only where the code
/// grant's own steps would issue for it (RFC 6749 §4.1.3: a code of this client, unused,
/// unexpired, with the authorization request's redirect_uri; RFC 7636 §4.6: the challenge
/// the verifier answers, and none without one, RFC 9700 §2.1.1; an enabled user), writes
/// what those steps write (a refresh token only as OIDC Core §11 and decision 0006 allow),
/// and in every other case changes nothing, so that the steps can tell why.
#[tokio::test]
async fn redeem_code_at_once_redeems_only_what_the_code_grant_would() {
    const CB: &str = "https://app.example/cb";
    const PKCE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cMS";
    for db in TestDb::all().await {
        let (recorder, store) = recorded(&db).await;
        let store = store.as_ref();
        grant_with_code(store, "g1", ADA, "openid", Some(PKCE)).await;
        grant_with_code(store, "plain", ADA, "profile", None).await;
        grant_with_code(store, "spent", ADA, "openid", Some(PKCE)).await;
        grant_with_code(store, "bob", BOB, "openid", Some(PKCE)).await;
        assert!(store
            .consume_code(&Digest::of("code-spent"), 2_001)
            .await
            .unwrap()
            .is_some());
        let mut bob = account(BOB, "bob");
        bob.disabled = true;
        store
            .update_account(&bob, &audit(AuditKind::UserDisabled))
            .await
            .unwrap();
        // A code issued without a redirect_uri (RFC 6749 §4.1.3: then none is needed).
        let open = grant("open", ADA);
        let no_redirect = CodeRecord {
            redirect_uri: None,
            code_challenge: None,
            ..code("code-open", &open)
        };
        store
            .insert_code(&open, &no_redirect, &audit(AuditKind::CodeIssued))
            .await
            .unwrap();
        // Postgres: the code table has no foreign keys (decision 0040), so a code can
        // outlive its user or its client; the statement's joins are what refuse it.
        const CY: &str = "0b5e6a52-0000-4000-8000-00000000000c";
        store
            .insert_account(&account(CY, "cy"), &audit(AuditKind::UserCreated))
            .await
            .unwrap();
        store
            .insert_client(&client("gone"), &audit(AuditKind::ClientCreated))
            .await
            .unwrap();
        grant_with_code(store, "cy", CY, "openid", Some(PKCE)).await;
        let gone = GrantRecord {
            client_id: "gone".into(),
            ..grant("gone", ADA)
        };
        store
            .insert_code(
                &gone,
                &CodeRecord {
                    code_challenge: None,
                    ..code("code-gone", &gone)
                },
                &audit(AuditKind::CodeIssued),
            )
            .await
            .unwrap();
        if store.backend() == Backend::Postgres {
            db.rows(&format!("delete from account where id = '{CY}'"))
                .await;
            db.rows("delete from client where id = 'gone'").await;
        }

        let event = redemption_event(2_010);
        let new_token = |digest: &str, jti: &str| store::NewToken {
            digest: Digest::of(digest),
            jti: jti.into(),
        };
        let at_once = |code: &str, client_id, redirect_uri, code_challenge| store::CodeAtOnce {
            code: Digest::of(code),
            client_id,
            redirect_uri,
            code_challenge,
            now: 2_010,
            access: new_token("new-a", "jti-new-access"),
            access_expires_at: 2_610,
            refresh: Some(new_token("new-r", "jti-new-refresh")),
            refresh_idle_ttl: 1_000,
            refresh_absolute_ttl: 100_000,
            audit: &event,
        };
        let before = audit_count(store).await;
        let expired = store::CodeAtOnce {
            now: 2_060,
            ..at_once("code-g1", CLIENT, Some(CB), Some(PKCE))
        };
        let mut refused = vec![
            (
                at_once("unknown", CLIENT, Some(CB), Some(PKCE)),
                "unknown code",
            ),
            (
                at_once("code-g1", "other", Some(CB), Some(PKCE)),
                "another client's code",
            ),
            (expired, "an expired code (expires_at = now)"),
            (
                at_once(
                    "code-g1",
                    CLIENT,
                    Some("https://app.example/cb2"),
                    Some(PKCE),
                ),
                "another redirect_uri",
            ),
            (
                at_once("code-g1", CLIENT, None, Some(PKCE)),
                "no redirect_uri where the authorization request had one",
            ),
            (
                at_once("code-g1", CLIENT, Some(CB), Some("wrongS")),
                "a verifier of another challenge",
            ),
            (
                at_once("code-g1", CLIENT, Some(CB), None),
                "no verifier for a code with a challenge",
            ),
            (
                at_once("code-plain", CLIENT, Some(CB), Some(PKCE)),
                "a verifier for a code without a challenge",
            ),
            (
                at_once("code-spent", CLIENT, Some(CB), Some(PKCE)),
                "a consumed code",
            ),
            (
                at_once("code-bob", CLIENT, Some(CB), Some(PKCE)),
                "a disabled user's code",
            ),
            (
                at_once("code-open", CLIENT, Some(CB), None),
                "a redirect_uri where the authorization request had none",
            ),
        ];
        if store.backend() == Backend::Postgres {
            refused.extend([
                (
                    at_once("code-cy", CLIENT, Some(CB), Some(PKCE)),
                    "a deleted user's code",
                ),
                (
                    at_once("code-gone", "gone", Some(CB), None),
                    "a deleted client's code",
                ),
            ]);
        }
        for (redemption, why) in refused {
            let done = store.redeem_code_at_once(&redemption).await;
            assert_eq!(done.unwrap(), None, "{}: {why}", db.label);
        }
        assert_eq!(audit_count(store).await, before, "{}", db.label);
        assert_eq!(store.token(&Digest::of("new-a")).await.unwrap(), None);
        for unconsumed in ["code-g1", "code-plain", "code-bob"] {
            let consumed = db
                .rows(&format!(
                    "select consumed_at from authorization_code where digest = {}",
                    db.digest_literal(&Digest::of(unconsumed))
                ))
                .await;
            assert_eq!(consumed, [[None]], "{}: {unconsumed}", db.label);
        }

        let done = store
            .redeem_code_at_once(&at_once("code-g1", CLIENT, Some(CB), Some(PKCE)))
            .await
            .unwrap();
        let redeemed = done.expect("the live code is redeemed");
        let g1 = grant("g1", ADA);
        assert_eq!(
            redeemed.code,
            CodeRecord {
                code_challenge: Some(PKCE.into()),
                ..code("code-g1", &g1)
            },
            "returned as read, before the spend"
        );
        assert_eq!(redeemed.account, store.account(ADA).await.unwrap().unwrap());
        assert!(
            !redeemed.refresh_issued,
            "OIDC Core §11: openid without offline_access"
        );
        assert_eq!(
            store
                .consume_code(&Digest::of("code-g1"), 2_020)
                .await
                .unwrap(),
            None,
            "consumed"
        );
        let from_code = |digest: &str, kind, jti: &str, scope: &str, grant: &str| TokenRecord {
            digest: Digest::of(digest),
            kind,
            jti: jti.into(),
            grant_id: Some(grant.into()),
            client_id: Some(CLIENT.into()),
            account_id: Some(ADA.into()),
            scope: scope.into(),
            label: None,
            previous_digest: None,
            created_at: 2_010,
            expires_at: None,
            used_at: None,
            revoked_at: None,
        };
        assert_eq!(
            store.token(&Digest::of("new-a")).await.unwrap().unwrap(),
            TokenRecord {
                expires_at: Some(2_610),
                ..from_code("new-a", TokenKind::Access, "jti-new-access", "openid", "g1")
            }
        );
        assert_eq!(store.token(&Digest::of("new-r")).await.unwrap(), None);
        // The event as the server would have written it: the placeholders filled in, the
        // user set, the same text in the row as serde writes.
        let mut expected = event.clone();
        expected.account_id = Some(ADA.into());
        expected.details = serde_json::json!({
            "grant_type": "authorization_code",
            "grant_id": "g1",
            "scope": "openid",
            "jti": "jti-new-access",
            "refresh_token": false,
        });
        assert_eq!(
            recorder.0.lock().unwrap().last(),
            Some(&expected),
            "what the hook heard"
        );
        let stored = db
            .rows("select account_id, details from audit_event order by id desc limit 1")
            .await;
        assert_eq!(
            stored,
            [[
                Some(ADA.to_owned()),
                Some(serde_json::to_string(&expected.details).unwrap())
            ]]
        );

        // A refresh token where the client may refresh and the scope allows it: its expiry
        // min(now + idle, code created + absolute).
        for (i, (scope, refresh, absolute, issued)) in [
            ("openid offline_access", true, 100_000, Some(3_010)),
            ("profile", true, 500, Some(2_500)),
            ("profile openidx", true, 100_000, Some(3_010)),
            ("profile", false, 100_000, None),
            ("openid offline_access", false, 100_000, None),
            // A scope that is a placeholder's text stays as it is in the stored event.
            ("@code-refresh@", true, 100_000, Some(3_010)),
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("r{i}");
            grant_with_code(store, &id, ADA, scope, None).await;
            let (a, r) = (format!("{id}-a"), format!("{id}-r"));
            let redemption = store::CodeAtOnce {
                access: new_token(&a, &format!("jti-{a}")),
                refresh: refresh.then(|| new_token(&r, &format!("jti-{r}"))),
                refresh_absolute_ttl: absolute,
                ..at_once(&format!("code-{id}"), CLIENT, Some(CB), None)
            };
            let redeemed = store.redeem_code_at_once(&redemption).await.unwrap();
            let redeemed = redeemed.unwrap_or_else(|| panic!("{scope}: redeemed"));
            assert_eq!(redeemed.refresh_issued, issued.is_some(), "{scope}");
            assert_eq!(
                store.token(&Digest::of(&r)).await.unwrap(),
                issued.map(|expires_at| TokenRecord {
                    expires_at: Some(expires_at),
                    ..from_code(&r, TokenKind::Refresh, &format!("jti-{r}"), scope, &id)
                }),
                "{scope}"
            );
            let details = recorder.0.lock().unwrap().last().unwrap().details.clone();
            assert_eq!(details["refresh_token"], issued.is_some(), "{scope}");
            assert_eq!(details["scope"], scope);
            let stored = db
                .rows("select details from audit_event order by id desc limit 1")
                .await;
            assert_eq!(
                stored,
                [[Some(serde_json::to_string(&details).unwrap())]],
                "{}: {scope}",
                db.label
            );
        }
        // Without a redirect_uri on either side, the code is redeemed.
        let open = store::CodeAtOnce {
            access: new_token("open-a", "jti-open-a"),
            refresh: None,
            ..at_once("code-open", CLIENT, None, None)
        };
        let redeemed = store.redeem_code_at_once(&open).await.unwrap();
        assert_eq!(redeemed.map(|r| r.code.grant_id).as_deref(), Some("open"));
    }
}

/// Of concurrent at-once redemptions of one code, at most one writes (decision 0047: on
/// Postgres the update's own `consumed_at is null` is the guard; decision 0053: on SQLite
/// the write lock, held from the read on); the others write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redeem_code_at_once_issues_for_exactly_one_of_many_concurrent_callers() {
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        grant_with_code(store.as_ref(), "g1", ADA, "profile", None).await;
        let start = Arc::new(Barrier::new(16));
        let callers: Vec<_> = (0..16)
            .map(|i| {
                let (store, start) = (Arc::clone(&store), Arc::clone(&start));
                tokio::spawn(async move {
                    let event = redemption_event(2_010);
                    let redemption = store::CodeAtOnce {
                        code: Digest::of("code-g1"),
                        client_id: CLIENT,
                        redirect_uri: Some("https://app.example/cb"),
                        code_challenge: None,
                        now: 2_010,
                        access: store::NewToken {
                            digest: Digest::of(&format!("a{i}")),
                            jti: format!("ja{i}"),
                        },
                        access_expires_at: 2_610,
                        refresh: Some(store::NewToken {
                            digest: Digest::of(&format!("r{i}")),
                            jti: format!("jr{i}"),
                        }),
                        refresh_idle_ttl: 1_000,
                        refresh_absolute_ttl: 100_000,
                        audit: &event,
                    };
                    start.wait().await;
                    store.redeem_code_at_once(&redemption).await
                })
            })
            .collect();
        let mut winners = 0;
        for caller in callers {
            winners += usize::from(caller.await.unwrap().unwrap().is_some());
        }
        assert_eq!(winners, 1, "{}", db.label);
        let tokens = db
            .rows("select count(*) from token where grant_id = 'g1'")
            .await;
        assert_eq!(
            tokens,
            [[Some("2".to_owned())]],
            "one access and one refresh"
        );
    }
}

/// A sign-in's session and a consent's grant, code and events keep every field, awkward
/// text and empty values included (SQLite writes each as one JSON object since decision
/// 0054), the session a sign-in replaces is gone, and the consent adds each new scope once.
#[tokio::test]
async fn sessions_grants_and_codes_keep_every_field() {
    let awkward = |e: AuditEvent| {
        let mut e = e
            .client(CLIENT)
            .account(ADA)
            .details(serde_json::json!({ "say": "\"hi\"\\n ü", "n": [1, 2] }));
        e.source_ip = Some("2001:db8::1".into());
        e.user_agent = Some("agent \"x\" \\ ü".into());
        e
    };
    for db in TestDb::all().await {
        let store = open(&db).await;
        seeded(store.as_ref()).await;
        let old = session("ada-old", ADA);
        sign_in(store.as_ref(), &old).await;
        let full = SessionRecord {
            sid: Some("sid \"q\" \\ é".into()),
            amr: vec!["pwd".into(), "mfa".into()],
            ..session("ada-new", ADA)
        };
        let signed_in = awkward(AuditEvent::new(
            AuditKind::LoginSucceeded,
            "user:ada",
            2_000,
        ));
        store
            .insert_session(
                &full,
                Some(&old.id_digest),
                &TakeBack::default(),
                &signed_in,
            )
            .await
            .unwrap();
        assert_eq!(
            store.session(&old.id_digest, 2_001).await.unwrap(),
            None,
            "{}: the replaced session",
            db.label
        );
        assert_eq!(
            store.session(&full.id_digest, 2_001).await.unwrap(),
            Some(full.clone()),
            "{}",
            db.label
        );

        let g = GrantRecord {
            scope: "openid \"odd\" ü".into(),
            sid: full.sid.clone(),
            amr: full.amr.clone(),
            ..grant("g-full", ADA)
        };
        let c = CodeRecord {
            scope: g.scope.clone(),
            sid: g.sid.clone(),
            amr: g.amr.clone(),
            redirect_uri: Some("https://app.example/cb?x=\"y\"".into()),
            ..code("c-full", &g)
        };
        let bare_g = GrantRecord {
            auth_time: None,
            amr: Vec::new(),
            ..grant("g-bare", ADA)
        };
        let bare_c = CodeRecord {
            redirect_uri: None,
            nonce: None,
            code_challenge: None,
            amr: Vec::new(),
            claims: RequestedClaims::default(),
            ..code("c-bare", &bare_g)
        };
        let consented = awkward(AuditEvent::new(
            AuditKind::ConsentGranted,
            "user:ada",
            3_500,
        ));
        let issued = awkward(AuditEvent::new(AuditKind::CodeIssued, "user:ada", 3_500));
        let given = |scope: &str| ConsentGiven {
            account_id: ADA.into(),
            client_id: CLIENT.into(),
            scope: scope.into(),
            now: 3_500,
            audit: consented.clone(),
        };
        store
            .insert_code_with_consent(&given("email  openid email"), &g, &c, &issued)
            .await
            .unwrap();
        assert_eq!(
            store.consent(ADA, CLIENT).await.unwrap().as_deref(),
            Some("email openid"),
            "{}: a new consent, each scope once",
            db.label
        );
        store
            .insert_code_with_consent(
                &given("profile email open address"),
                &bare_g,
                &bare_c,
                &issued,
            )
            .await
            .unwrap();
        assert_eq!(
            store.consent(ADA, CLIENT).await.unwrap().as_deref(),
            Some("email openid profile open address"),
            "{}: the old scopes in their order, then the new ones (whole words)",
            db.label
        );
        for (grant, code) in [(&g, &c), (&bare_g, &bare_c)] {
            assert_eq!(
                store.grant(&grant.id).await.unwrap().as_ref(),
                Some(grant),
                "{}",
                db.label
            );
            let (consumed, account) = store
                .consume_code(&code.digest, 2_001)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                consumed,
                CodeRecord {
                    consumed_at: Some(2_001),
                    ..code.clone()
                },
                "{}",
                db.label
            );
            assert_eq!(account.map(|a| a.id).as_deref(), Some(ADA));
        }
        let events: Vec<AuditEvent> = store
            .recent_audit(20)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect();
        for e in [&signed_in, &consented, &issued] {
            assert!(events.contains(e), "{}: {e:?} in {events:?}", db.label);
        }
    }
}
