//! The audit trail an operator reads and trusts (issue 14): the server seals every event into
//! a hash chain within a second; `tessera audit verify` names the first link that someone
//! with database access broke; `tail`, `search` and `export` read the trail; housekeeping
//! purges expired rows and old events without breaking the chain. On both stores.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tessera::config::HousekeepingPolicy;

use crate::support::flow::{gateway, TestClient};
use crate::support::{TestDb, TestServer};

/// Client credentials tokens for `client`: each one an audit event (token_issued).
async fn issue(server: &TestServer, client: &TestClient, count: usize) {
    for _ in 0..count {
        let res = server
            .token(client, &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(res.status, 200, "{}", res.body);
    }
}

/// Waits until the server's sealer has linked every event: it runs every second.
async fn sealed(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, _, unsealed) = server.state.store.audit_chain().await.unwrap();
        if unsealed == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{unsealed} events still unsealed after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn verify(db: &TestDb) -> Result<serde_json::Value, String> {
    let run = db.tessera(&["audit", "verify", "--json"]);
    if run.ok() {
        Ok(run.json())
    } else {
        Err(run.stderr())
    }
}

#[tokio::test]
async fn the_server_seals_every_event_and_verify_names_the_first_broken_link() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let gateway = gateway(&server).await;
        issue(&server, &gateway, 6).await;
        sealed(&server).await;
        let events = db.number("select count(*) from audit_event").await;
        assert!(events >= 6, "{}: {events} events", db.label);
        let ok = verify(&db).unwrap();
        assert_eq!(ok["ok"], true, "{}", db.label);
        assert_eq!(ok["events"], events, "{}: every event checked", db.label);
        assert_eq!(ok["unsealed"], 0);

        // An event edited after it was sealed: named by its seq; put back, the chain holds.
        let original = db
            .number("select count(*) from audit_event where account_id is null and id = (select event_id from audit_link where seq = 2)")
            .await;
        assert_eq!(original, 1, "{}: event 2 names no user", db.label);
        db.sql("update audit_event set account_id = 'someone-else' where id = (select event_id from audit_link where seq = 2)")
            .await;
        let err = verify(&db).unwrap_err();
        assert!(
            err.contains("event seq 2") && err.contains("changed after it was sealed"),
            "{}: {err}",
            db.label
        );
        db.sql("update audit_event set account_id = null where id = (select event_id from audit_link where seq = 2)")
            .await;
        verify(&db).unwrap();

        // A row put into the trail past Tessera, looking as if it had been sealed already
        // (an id at or below the last sealed on SQLite, a transaction every snapshot saw on
        // Postgres): named by its id.
        let forged = if db.label == "sqlite" {
            "insert into audit_event (id, created_at, kind, actor, details) \
             values (-7, 1, 'logout', 'forger', '{}')"
        } else {
            "insert into audit_event (id, created_at, kind, actor, details, xact) \
             values (-7, 1, 'logout', 'forger', '{}', 1)"
        };
        db.sql(forged).await;
        let err = verify(&db).unwrap_err();
        assert!(
            err.contains("[-7]") && err.contains("past Tessera"),
            "{}: {err}",
            db.label
        );
        db.sql("delete from audit_event where id = -7").await;
        verify(&db).unwrap();

        // The newest event deleted: the head still names it.
        let last = db.number("select max(seq) from audit_link").await;
        db.sql(&format!("delete from audit_event where id = (select event_id from audit_link where seq = {last})"))
            .await;
        let err = verify(&db).unwrap_err();
        assert!(
            err.contains(&format!("ends at seq {}", last - 1))
                && err.contains("deleted from the end"),
            "{}: {err}",
            db.label
        );

        // An event deleted from the middle, with its link or without: the first gap is named.
        db.sql("delete from audit_link where seq = 4").await;
        db.sql(
            "delete from audit_event where id = (select event_id from audit_link where seq = 3)",
        )
        .await;
        let err = verify(&db).unwrap_err();
        assert!(
            err.contains("event seq 3 is missing"),
            "{}: {err}",
            db.label
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn a_head_moved_back_without_the_kek_is_detected() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let gateway = gateway(&server).await;
        issue(&server, &gateway, 3).await;
        sealed(&server).await;
        let last = db.number("select max(seq) from audit_link").await;
        // Someone with the database but not the KEK cuts the last event and moves the head
        // back onto the one before it, copying that event's hash.
        db.sql(&format!("delete from audit_event where id = (select event_id from audit_link where seq = {last})"))
            .await;
        db.sql(&format!(
            "update audit_chain set seq = {}, hash = (select hash from audit_link where seq = {}) \
             where id = 1",
            last - 1,
            last - 1
        ))
        .await;
        let err = verify(&db).unwrap_err();
        assert!(err.contains("wrong tag"), "{}: {err}", db.label);
        server.stop().await;
    }
}

/// JSON lines on stdout, parsed.
fn lines(run: &crate::support::Run) -> Vec<serde_json::Value> {
    assert!(run.ok(), "{}", run.stderr());
    run.stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_search_tail_and_export_filter_by_user_client_kind_and_time() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let gateway = gateway(&server).await;
        let ada = server.user("ada").await;
        issue(&server, &gateway, 3).await;

        let issued = lines(&db.tessera(&[
            "audit",
            "search",
            "--kind",
            "token_issued",
            "--client",
            "gateway",
            "--json",
        ]));
        assert_eq!(issued.len(), 3, "{}", db.label);
        assert!(issued
            .iter()
            .all(|e| e["kind"] == "token_issued" && e["client_id"] == "gateway"));
        assert!(
            issued
                .windows(2)
                .all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()),
            "oldest first"
        );

        // A user by username (the trail keeps ids).
        db.sql(&format!(
            "insert into audit_event (created_at, kind, actor, account_id, details) \
             values (1000, 'logout', 'user:{0}', '{0}', '{{}}')",
            ada.id
        ))
        .await;
        let by_user = lines(&db.tessera(&[
            "audit", "search", "--user", "ada", "--kind", "logout", "--json",
        ]));
        assert_eq!(by_user.len(), 1, "{}", db.label);
        assert_eq!(by_user[0]["account_id"], ada.id.as_str());

        // Time: the event at 1000 is the only one from 1970-01-01 00:10 to 1970-01-02 (the
        // fixtures' own events are at 0); everything else is from the last hour.
        let old = lines(&db.tessera(&[
            "audit",
            "search",
            "--since",
            "1970-01-01T00:10:00Z",
            "--until",
            "1970-01-02",
            "--json",
        ]));
        assert_eq!(old.len(), 1, "{}: {old:?}", db.label);
        let recent = lines(&db.tessera(&["audit", "search", "--since", "1h", "--json"]));
        let all = db
            .number("select count(*) from audit_event where created_at > 1000")
            .await;
        assert!(all >= 3);
        assert_eq!(recent.len() as i64, all, "{}", db.label);
        let bad = db.tessera(&["audit", "search", "--since", "last tuesday"]);
        assert!(
            !bad.ok() && bad.stderr().contains("--since"),
            "{}",
            bad.stderr()
        );

        // Tail: the newest two, oldest first, readable by default.
        let tail = lines(&db.tessera(&["audit", "tail", "-n", "2", "--json"]));
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[1]["kind"], "logout", "{}", db.label);
        let text = db.tessera(&["audit", "tail", "-n", "1"]);
        assert!(
            text.stdout().contains("logout") && text.stdout().contains("1970-01-01T00:16:40Z"),
            "{}",
            text.stdout()
        );

        // Export: JSON lines with their place in the chain, once sealed.
        sealed(&server).await;
        let exported = lines(&db.tessera(&["audit", "export", "--since", "1h"]));
        assert_eq!(exported.len() as i64, all);
        assert!(exported
            .iter()
            .all(|e| e["seq"].is_i64() && e["hash"].as_str().is_some_and(|h| h.len() == 64)));
        server.stop().await;
    }
}

#[tokio::test]
async fn audit_tail_follow_prints_new_events_as_they_are_recorded() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let gateway = gateway(&server).await;
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["audit", "tail", "-n", "0", "--follow", "--json"])
            .env_clear()
            .envs(db.env())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        // Give it a moment to find the newest event, then record one.
        tokio::time::sleep(Duration::from_millis(700)).await;
        issue(&server, &gateway, 1).await;
        let line = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap_or_else(|_| panic!("no event followed"));
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["kind"], "token_issued", "{}: {line}", db.label);
        child.kill().unwrap();
        child.wait().unwrap();
        server.stop().await;
    }
}

#[tokio::test]
async fn purge_removes_what_expired_keeps_what_lives_and_the_chain_still_verifies() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let web = server
            .client_with("web", false, |c| {
                c.scope = "openid offline_access".into();
            })
            .await;
        server.user("ada").await;
        let browser = server.browser();
        let url = crate::support::flow::AuthorizeUrl::new(&web)
            .set("scope", "openid offline_access")
            .set("prompt", "consent");
        let tokens = server
            .code_flow(&browser, &web, url, &crate::support::flow::Pkce::new())
            .await;
        assert!(tokens["refresh_token"].is_string(), "{tokens}");
        sealed(&server).await;
        let store = server.state.store.as_ref();
        let kek = &server.state.kek;
        let now = server.state.clock.now();
        let count = |table: &'static str| {
            let db = &db;
            async move { db.number(&format!("select count(*) from {table}")).await }
        };
        assert_eq!(count("authorization_code").await, 1);
        assert_eq!(count("session").await, 1);

        // Nothing has expired yet: nothing goes, whatever the retention.
        let policy = HousekeepingPolicy {
            audit_retention: Some(86_400),
            purge_interval: None,
        };
        let report = tessera::housekeeping::purge(store, kek, &policy, now)
            .await
            .unwrap();
        assert_eq!(report, Default::default(), "{}", db.label);

        // Two days on: the code (60 s), the access token (1 h) and the session (8 h) are
        // past their day of grace; the refresh token (14 days idle) and its grant live on;
        // the events (a day's retention) go, and a checkpoint says where the chain resumes.
        let later = now + 2 * 86_400 + 60;
        let (first, second) = tokio::join!(
            tessera::housekeeping::purge(store, kek, &policy, later),
            tessera::housekeeping::purge(store, kek, &policy, later),
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first.codes + second.codes, 1, "{}", db.label);
        assert_eq!(first.sessions + second.sessions, 1);
        assert_eq!(first.tokens + second.tokens, 1, "the access token only");
        assert_eq!(
            first.grants + second.grants,
            0,
            "the refresh token keeps its grant"
        );
        assert!(first.audit_events + second.audit_events > 0);
        assert_eq!(count("authorization_code").await, 0);
        assert_eq!(count("session").await, 0);
        assert_eq!(count("token").await, 1, "{}", db.label);
        assert_eq!(count("oauth_grant").await, 1);
        assert_eq!(count("audit_event").await, 0, "{}", db.label);
        assert_eq!(count("audit_link").await, 0, "{}", db.label);
        assert_eq!(count("audit_checkpoint").await, 1);

        // The refresh token still works, and the chain goes on from the checkpoint.
        let refreshed = server
            .token(
                &web,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                ],
            )
            .await;
        assert_eq!(refreshed.status, 200, "{}", refreshed.body);
        let ok = verify(&db).unwrap();
        assert_eq!(ok["ok"], true);
        assert!(ok["purged_through_seq"].as_i64().unwrap() > 0, "{ok}");
        assert!(ok["events"].as_i64().unwrap() >= 1, "{ok}");

        // A forged checkpoint (moving where purged history ends) is detected.
        db.sql("update audit_checkpoint set seq = seq + 1").await;
        let err = verify(&db).unwrap_err();
        assert!(
            err.contains("checkpoint") && err.contains("wrong tag"),
            "{err}"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_purges_on_its_interval_and_tessera_purge_runs_it_by_hand() {
    for db in TestDb::all().await {
        let mut config = db.config();
        config.housekeeping.purge_interval = Some(Duration::from_secs(1));
        let server = TestServer::start_with(config).await;
        let gateway = gateway(&server).await;
        issue(&server, &gateway, 2).await;
        assert_eq!(db.number("select count(*) from token").await, 2);
        // Past the tokens' hour and the day of grace: the next run deletes them.
        server.state.clock.advance(86_400 + 3_600 + 60);
        let deadline = Instant::now() + Duration::from_secs(5);
        while db.number("select count(*) from token").await > 0 {
            assert!(
                Instant::now() < deadline,
                "{}: not purged within 5 s",
                db.label
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let by_hand = db.tessera(&["purge", "--json"]).json();
        assert_eq!(by_hand["tokens"], 0, "{}", db.label);
        assert!(by_hand.get("audit_events").is_some());
        server.stop().await;
    }
}

/// The kinds of `recent` events, newest first, as a list of strings.
async fn kinds(server: &TestServer) -> Vec<String> {
    server
        .state
        .store
        .recent_audit(200)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.kind)
        .collect()
}

/// Waits for an event recorded off the request path.
async fn eventually(server: &TestServer, kind: &str) -> tessera::store::AuditRecord {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let found = server
            .state
            .store
            .recent_audit(200)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.event.kind == kind);
        if let Some(found) = found {
            return found;
        }
        assert!(Instant::now() < deadline, "no {kind} event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_code_flow_records_sign_in_consent_code_and_token_with_user_client_and_source() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let web = server.confidential_client("web").await;
        let ada = server.user("ada").await;
        let url = crate::support::flow::AuthorizeUrl::new(&web);
        server
            .code_flow(
                &server.browser(),
                &web,
                url,
                &crate::support::flow::Pkce::new(),
            )
            .await;
        let trail = server.state.store.recent_audit(20).await.unwrap();
        for kind in [
            "login_succeeded",
            "consent_granted",
            "authorization_code_issued",
            "token_issued",
        ] {
            let e = &trail
                .iter()
                .find(|r| r.event.kind == kind)
                .unwrap_or_else(|| panic!("{}: no {kind} in {:?}", db.label, kinds_of(&trail)))
                .event;
            assert_eq!(e.account_id.as_deref(), Some(ada.id.as_str()), "{kind}");
            assert_eq!(e.client_id.as_deref(), Some("web"), "{kind}");
            // The browser's steps, and the client's call at /token, carry their address.
            assert_eq!(e.source_ip.as_deref(), Some("127.0.0.1"), "{kind}");
        }
        server.stop().await;
    }
}

fn kinds_of(trail: &[tessera::store::AuditRecord]) -> Vec<&str> {
    trail.iter().map(|r| r.event.kind.as_str()).collect()
}

#[tokio::test]
async fn refused_introspection_and_tripped_rate_limits_are_audited_once_a_minute() {
    for db in TestDb::all().await {
        let mut config = db.config();
        config.rate_limit_client_per_sec = 2;
        let server = TestServer::start_with(config).await;
        let web = server.confidential_client("web").await;
        for _ in 0..2 {
            let refused = server
                .token_like("/introspect", &web, &[("token", "anything")])
                .await;
            assert_eq!(refused.status, 403, "{}", refused.body);
        }
        let e = eventually(&server, "introspection_refused").await.event;
        assert_eq!(e.client_id.as_deref(), Some("web"), "{}", db.label);
        assert_eq!(e.source_ip.as_deref(), Some("127.0.0.1"));

        let gateway = gateway(&server).await;
        let mut statuses = Vec::new();
        for _ in 0..8 {
            let res = server
                .token(&gateway, &[("grant_type", "client_credentials")])
                .await;
            statuses.push(res.status);
        }
        assert!(statuses.contains(&429), "{}: {statuses:?}", db.label);
        let e = eventually(&server, "rate_limit_tripped").await.event;
        assert_eq!(e.client_id.as_deref(), Some("gateway"), "{}", db.label);
        assert_eq!(e.details["limit"], "client");

        // However many refusals, one event each this minute.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let all = kinds(&server).await;
        for kind in ["introspection_refused", "rate_limit_tripped"] {
            assert_eq!(
                all.iter().filter(|k| *k == kind).count(),
                1,
                "{}: {kind} in {all:?}",
                db.label
            );
        }
        server.stop().await;
    }
}

/// Sealers of several instances (and `tessera purge`) run at once over one store: each reads
/// and hashes outside the write, and takes the head only if nobody moved it meanwhile, so
/// the chain has every event once, in one line, whoever sealed which part.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sealers_keep_one_unbroken_chain() {
    use tessera::audit::{AuditEvent, AuditKind};
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let kek = server.state.kek.clone();
        let others: Vec<_> = more_stores(&db, 3).await;
        let mut rounds = Vec::new();
        for round in 0..3 {
            for i in 0..150 {
                let event = AuditEvent::new(AuditKind::Logout, format!("user-{round}-{i}"), 1_000);
                server.state.store.append_audit(&event).await.unwrap();
            }
            for store in &others {
                let (store, kek) = (store.clone(), kek.clone());
                rounds.push(tokio::spawn(async move {
                    tessera::housekeeping::seal(store.as_ref(), &kek, 2_000).await
                }));
            }
        }
        let mut by_others = 0;
        for round in rounds {
            by_others += round.await.unwrap().unwrap();
        }
        sealed(&server).await;
        let events = db.number("select count(*) from audit_event").await;
        let ok = verify(&db).unwrap();
        assert_eq!(ok["ok"], true, "{}", db.label);
        assert_eq!(
            ok["events"], events,
            "{}: every event in the chain",
            db.label
        );
        let (head, _, unsealed) = server.state.store.audit_chain().await.unwrap();
        assert_eq!((head.seq, unsealed), (events, 0), "{}", db.label);
        assert!(
            by_others > 0,
            "{}: the other sealers sealed nothing",
            db.label
        );
        server.stop().await;
    }
}

/// `count` more stores on `db`, as other instances would have.
async fn more_stores(db: &TestDb, count: usize) -> Vec<std::sync::Arc<dyn tessera::store::Store>> {
    let mut stores = Vec::new();
    for _ in 0..count {
        stores.push(tessera::store::open(&db.database_url()).await.unwrap());
    }
    stores
}

/// Postgres hands out event ids before commit, so an event can commit after events with
/// later ids were sealed, and after rounds that stopped at their limit (decision 0041: the
/// sealer goes by the snapshots its rounds read with, not by ids). Such an event is sealed
/// by the next round, once, and the chain verifies.
#[tokio::test]
async fn an_event_committed_after_later_ones_were_sealed_is_sealed_once_by_the_next_round() {
    use sqlx::Connection;
    use tessera::audit::{chain, AuditEvent, AuditKind};
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let server = TestServer::start(&db).await;
    let store = server.state.store.clone();
    let kek = server.state.kek.clone();
    let tag = move |seq: i64, hash: &str| chain::head_tag(&kek, seq, hash);
    let mut late = Vec::new();
    for actor in ["late-1", "late-2"] {
        let mut conn = sqlx::PgConnection::connect(db.database_url().as_str())
            .await
            .unwrap();
        sqlx::query("begin").execute(&mut conn).await.unwrap();
        let id: i64 = sqlx::query_scalar(
            "insert into audit_event (created_at, kind, actor, details) \
             values (1000, 'logout', $1, '{}') returning id",
        )
        .bind(actor)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        late.push((id, conn));
    }
    for i in 0..5 {
        let event = AuditEvent::new(AuditKind::Logout, format!("on-time-{i}"), 1_000);
        store.append_audit(&event).await.unwrap();
    }
    // Rounds of two: the first stops at its limit with both late events still open.
    store.seal_audit(2, 1_000, &tag).await.unwrap();
    let (first_id, mut first) = late.remove(0);
    sqlx::query("commit").execute(&mut first).await.unwrap();
    for _ in 0..4 {
        store.seal_audit(2, 1_000, &tag).await.unwrap();
    }
    // A round that catches up while the second is still open: its snapshot, the one the
    // next round goes by, has it in progress.
    let event = AuditEvent::new(AuditKind::Logout, "on-time-last", 1_000);
    store.append_audit(&event).await.unwrap();
    store.seal_audit(100, 1_000, &tag).await.unwrap();
    assert_eq!(
        db.number("select count(*) from audit_chain where partial_snapshot is null")
            .await,
        1,
        "the last round caught up"
    );
    let (second_id, mut second) = late.remove(0);
    sqlx::query("commit").execute(&mut second).await.unwrap();
    assert!(
        first_id < second_id
            && second_id
                < db.number("select min(id) from audit_event where actor like 'on-time-%'")
                    .await,
        "the late events have the smaller ids"
    );
    sealed(&server).await;
    for id in [first_id, second_id] {
        let links = db
            .number(&format!(
                "select count(*) from audit_link where event_id = {id}"
            ))
            .await;
        assert_eq!(links, 1, "event {id} linked once");
    }
    let events = db.number("select count(*) from audit_event").await;
    let ok = verify(&db).unwrap();
    assert_eq!(ok["events"], events, "every event in the chain once");
    assert_eq!(ok["unsealed"], 0);
    server.stop().await;
}

/// A trail sealed before migration 0015 (each link in its event's own columns), with an
/// event not sealed yet, verifies after the upgrade and goes on: the links moved to their
/// table, the unsealed event sealed next, every event once.
#[tokio::test]
async fn a_chain_sealed_before_the_links_table_verifies_and_goes_on_after_the_upgrade() {
    use sqlx::Connection;
    use tessera::audit::chain::{self, ChainRow, GENESIS};
    for db in TestDb::all().await {
        // The schema as it was before 0015.
        let folder = tempfile::tempdir().unwrap();
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(db.label);
        for entry in std::fs::read_dir(source).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.as_str() < "0015" {
                std::fs::copy(&path, folder.path().join(&name)).unwrap();
            }
        }
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
        sqlx::migrate::Migrator::new(folder.path())
            .await
            .unwrap()
            .run(&mut conn)
            .await
            .unwrap();

        // Four events, three of them sealed as the sealer before 0015 sealed them.
        let kek = tessera::crypto::kek::Kek::generate();
        let mut prev = GENESIS.to_owned();
        for id in 1..=4_i64 {
            let row = ChainRow {
                id,
                seq: None,
                prev_hash: None,
                hash: None,
                created_at: 1_000 + id,
                kind: "logout".into(),
                actor: format!("user:{id}"),
                client_id: None,
                account_id: None,
                source_ip: None,
                user_agent: None,
                details: "{}".into(),
            };
            let link = (id <= 3).then(|| chain::link(&prev, &row, id));
            sqlx::query(
                "insert into audit_event (id, created_at, kind, actor, details, seq, prev_hash, hash) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(row.created_at)
            .bind(&row.kind)
            .bind(&row.actor)
            .bind(&row.details)
            .bind(link.as_ref().map(|_| id))
            .bind(link.as_ref().map(|_| prev.clone()))
            .bind(link.clone())
            .execute(&mut conn)
            .await
            .unwrap();
            if let Some(hash) = link {
                prev = hash;
            }
        }
        sqlx::query(
            "update audit_chain set seq = 3, hash = $1, tag = $2, sealed_at = 1 where id = 1",
        )
        .bind(&prev)
        .bind(chain::head_tag(&kek, 3, &prev))
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();

        let mut env = db.env();
        env.insert("TESSERA_KEY_ENCRYPTION_KEY".into(), kek.to_base64());
        crate::support::run_binary(&["migrate"], &env, None).succeeds();
        assert_eq!(
            db.number("select count(*) from audit_link").await,
            3,
            "{}",
            db.label
        );
        let run = crate::support::run_binary(&["audit", "verify", "--json"], &env, None);
        assert!(run.ok(), "{}: {}", db.label, run.stderr());
        let ok = run.json();
        assert_eq!(
            (ok["events"].as_i64(), ok["unsealed"].as_i64()),
            (Some(4), Some(0)),
            "{}",
            db.label
        );
        assert_eq!(
            db.number("select count(distinct event_id) from audit_link")
                .await,
            4,
            "{}",
            db.label
        );
    }
}

/// A trail whose head holds a snapshot from a cluster with more transactions behind it (the
/// database restored into a new cluster, whose transaction ids start over lower): the events
/// written since are still sealed, each once, and the head takes this cluster's snapshot.
#[tokio::test]
async fn events_are_sealed_when_the_heads_snapshot_is_ahead_of_the_cluster() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let server = TestServer::start(&db).await;
    let gateway = gateway(&server).await;
    issue(&server, &gateway, 2).await;
    sealed(&server).await;
    // The head's snapshot and the events' transaction ids from the old cluster.
    db.sql("update audit_chain set sealed_snapshot = '4000000000:4000000000:'")
        .await;
    db.sql("update audit_event set xact = 3999999000 + id")
        .await;
    issue(&server, &gateway, 3).await;
    sealed(&server).await;
    // And on from there, the old ids forgotten: nothing is taken twice.
    issue(&server, &gateway, 2).await;
    sealed(&server).await;
    // Restored again, the head's snapshot this cluster's: the events' ids still give it away.
    db.sql("update audit_event set xact = 3999999000 + id")
        .await;
    issue(&server, &gateway, 2).await;
    sealed(&server).await;
    let events = db.number("select count(*) from audit_event").await;
    let ok = verify(&db).unwrap();
    assert_eq!(ok["events"], events, "every event in the chain once");
    assert_eq!(
        db.number("select count(*) from audit_chain where sealed_snapshot not like '4000000000:%'")
            .await,
        1,
        "the head has this cluster's snapshot again"
    );
    server.stop().await;
}

/// A transaction holds two events open while the events after them are sealed by rounds
/// that stop at their limit; once it commits, its events (below the rounds' last ids) are
/// sealed, once, and nothing sealed before is taken again (the rounds drain one snapshot in
/// id order before they look past it). Postgres; a store of its own, no server's sealer.
#[tokio::test]
async fn late_events_below_rounds_that_stopped_at_their_limit_are_sealed_once() {
    use sqlx::Connection;
    use tessera::audit::chain::{self, Verifier};
    use tessera::audit::{AuditEvent, AuditKind};
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = tessera::store::open(&db.database_url()).await.unwrap();
    let kek = tessera::crypto::kek::Kek::generate();
    let tag = |seq: i64, hash: &str| chain::head_tag(&kek, seq, hash);
    // Whatever the first round (after the migration) finds, it takes.
    store.seal_audit(2, 1_000, &tag).await.unwrap();
    let mut late = sqlx::PgConnection::connect(db.database_url().as_str())
        .await
        .unwrap();
    sqlx::query("begin").execute(&mut late).await.unwrap();
    for actor in ["late-1", "late-2"] {
        sqlx::query(
            "insert into audit_event (created_at, kind, actor, details) \
             values (1000, 'logout', $1, '{}')",
        )
        .bind(actor)
        .execute(&mut late)
        .await
        .unwrap();
    }
    for i in 0..4 {
        let event = AuditEvent::new(AuditKind::Logout, format!("on-time-{i}"), 1_000);
        store.append_audit(&event).await.unwrap();
    }
    assert_eq!(store.seal_audit(2, 1_000, &tag).await.unwrap(), 2);
    sqlx::query("commit").execute(&mut late).await.unwrap();
    let mut sealed = 2;
    for _ in 0..6 {
        sealed += store.seal_audit(2, 1_000, &tag).await.unwrap();
    }
    assert_eq!(sealed, 6, "each event sealed once");
    let (head, checkpoint, unsealed) = store.audit_chain().await.unwrap();
    assert_eq!((head.seq, unsealed), (6, 0));
    let mut verifier = Verifier::new(&kek, checkpoint.as_ref()).unwrap();
    for row in store.sealed_audit(0, 100).await.unwrap() {
        verifier.push(&row).unwrap();
    }
    assert_eq!(verifier.finish(&head), Ok(6));
    assert_eq!(
        db.number("select count(distinct event_id) from audit_link")
            .await,
        6
    );
}

/// An event written with a transaction id the chain's head already counts as seen (a
/// restore into another cluster can leave such events) is named by `verify`, and `tessera
/// audit rebase` seals it. Postgres; on SQLite the command has nothing to rebase.
#[tokio::test]
async fn audit_rebase_seals_what_the_heads_snapshot_would_never_take() {
    for db in TestDb::all().await {
        let server = TestServer::start(&db).await;
        let gateway = gateway(&server).await;
        issue(&server, &gateway, 2).await;
        sealed(&server).await;
        if db.label == "postgres" {
            db.sql(
                "insert into audit_event (created_at, kind, actor, details, xact) \
                 values (1, 'logout', 'restored', '{}', 1)",
            )
            .await;
            let err = verify(&db).unwrap_err();
            assert!(err.contains("past Tessera"), "{err}");
        }
        let run = db.tessera(&["audit", "rebase"]);
        assert!(run.ok(), "{}: {}", db.label, run.stderr());
        let events = db.number("select count(*) from audit_event").await;
        let ok = verify(&db).unwrap();
        assert_eq!(
            ok["events"], events,
            "{}: every event in the chain",
            db.label
        );
        server.stop().await;
    }
}
