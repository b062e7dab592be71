//! `tessera session …`: a user's browser sessions, and ending one (OIDC `sid`).

use clap::Subcommand;
use serde_json::json;

use super::{open, print, CliError};
use crate::audit::{AuditEvent, AuditKind};
use crate::config::Config;
use std::sync::Arc;
use std::time::Duration;

use crate::oauth::backchannel::{self, Delivery};
use crate::store::{Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// A user's live sessions, newest first, with their public id (`sid`).
    List {
        /// The user's id or username.
        #[arg(long)]
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// End a session: the browser must sign in again. With --grants, also revoke everything
    /// the session authorized (its grants and their tokens).
    ///
    /// Clients that registered a back-channel logout URI are sent a logout token. Front-channel
    /// logout cannot happen here: it needs the person's browser on the signed-out page.
    Revoke {
        /// The session's `sid` (from `session list`, or an ID token). Base64url: it may
        /// start with `-`.
        #[arg(allow_hyphen_values = true)]
        sid: String,
        #[arg(long)]
        grants: bool,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Config, command: SessionCommand) -> Result<(), CliError> {
    let store = open(config).await?;
    let now = crate::app::Clock::default().now();
    match command {
        SessionCommand::List { user, json } => {
            let account = super::user::find(store.as_ref(), &user).await?;
            let sessions = store.sessions_of(&account.id, now).await?;
            let rows: Vec<serde_json::Value> = sessions
                .iter()
                .map(|s| {
                    json!({ "sid": s.sid, "auth_time": s.auth_time, "amr": s.amr,
                            "created_at": s.created_at, "expires_at": s.expires_at })
                })
                .collect();
            print(json, &rows, || {
                if sessions.is_empty() {
                    return format!("{} has no live session", account.username);
                }
                sessions
                    .iter()
                    .map(|s| {
                        format!(
                            "{}\tsigned in {}\texpires {}",
                            s.sid
                                .as_deref()
                                .unwrap_or("(no sid: from before sids existed)"),
                            super::audit::format_time(s.auth_time),
                            super::audit::format_time(s.expires_at)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        SessionCommand::Revoke { sid, grants, json } => {
            // Signed before the session ends: a failure here must not leave it half done.
            let deliveries = logout_tokens(config, &store, &sid, now).await?;
            let audit = AuditEvent::new(AuditKind::Logout, "cli", now)
                .details(json!({ "reason": "revoked by an operator" }));
            let revoked = match store.end_session(&sid, grants, now, &audit).await {
                Err(StoreError::NotFound(_)) => {
                    return Err(CliError::new(format!("no session `{sid}`")))
                }
                other => other?,
            };
            let notified = notify(&deliveries).await;
            let out = json!({ "sid": sid, "ended": true, "grants_revoked": revoked,
                              "clients_notified": notified, "clients_to_notify": deliveries.len() });
            print(json, &out, || {
                let ended = if grants {
                    format!("ended session {sid} and revoked {revoked} grants with their tokens")
                } else {
                    format!("ended session {sid}")
                };
                if deliveries.is_empty() {
                    ended
                } else {
                    format!(
                        "{ended}; {notified} of {} clients took the logout token",
                        deliveries.len()
                    )
                }
            })
        }
    }
}

/// Most time the CLI spends telling relying parties. Deliveries run at once, and the retry
/// schedule takes at most 4 × 5 s + 7 s = 27 s each, so this is a backstop against a
/// connection that hangs past its timeout.
const NOTIFY_BOUND: Duration = Duration::from_secs(30);

/// Logout tokens for the clients of session `sid` (OIDC Back-Channel Logout §2.7), signed
/// with the store's keys: the CLI has no server, hence no queue.
async fn logout_tokens(
    config: &Config,
    store: &Arc<dyn Store>,
    sid: &str,
    now: i64,
) -> Result<Vec<Delivery>, CliError> {
    // Most sessions have no such client: no key-encryption key to load for them.
    if store.backchannel_clients(sid).await?.is_empty() {
        return Ok(Vec::new());
    }
    let (kek, _) = crate::keys::kek::load(config, store.as_ref()).await?;
    let cache = crate::keys::KeyCache::new(kek, config.tokens.max_ttl());
    let signer = crate::keys::Signer::new(cache, Arc::clone(store));
    Ok(backchannel::deliveries(store.as_ref(), &signer, config.issuer_str(), sid, now).await?)
}

/// Logout tokens for every live session of a user, signed before the change that ends them
/// (disabling, deleting or a new password end every session: Back-Channel Logout §2.7).
pub(super) async fn logout_tokens_for_user(
    config: &Config,
    store: &Arc<dyn Store>,
    account_id: &str,
    now: i64,
) -> Result<Vec<Delivery>, CliError> {
    let mut all = Vec::new();
    for session in store.sessions_of(account_id, now).await? {
        if let Some(sid) = &session.sid {
            all.extend(logout_tokens(config, store, sid, now).await?);
        }
    }
    Ok(all)
}

/// Sends the tokens directly, with the server's retry policy, within [`NOTIFY_BOUND`]; how
/// many were taken.
pub(super) async fn notify(deliveries: &[Delivery]) -> usize {
    if deliveries.is_empty() {
        return 0;
    }
    let http = match backchannel::http_client() {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "cannot send logout tokens");
            return 0;
        }
    };
    let mut sends = tokio::task::JoinSet::new();
    for d in deliveries {
        let (http, d) = (http.clone(), d.clone());
        sends.spawn(
            async move { backchannel::deliver(&http, &d, &backchannel::RETRY_DELAYS).await },
        );
    }
    let mut taken = 0;
    let _ = tokio::time::timeout(NOTIFY_BOUND, async {
        while let Some(done) = sends.join_next().await {
            taken += usize::from(matches!(done, Ok(true)));
        }
    })
    .await;
    taken
}
