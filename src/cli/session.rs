//! `tessera session …`: a user's browser sessions, and ending one (OIDC `sid`).

use clap::Subcommand;
use serde_json::json;

use super::{open, print, CliError};
use crate::audit::{AuditEvent, AuditKind};
use crate::config::Config;
use crate::store::StoreError;

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
            let audit = AuditEvent::new(AuditKind::Logout, "cli", now)
                .details(json!({ "reason": "revoked by an operator" }));
            let revoked = match store.end_session(&sid, grants, now, &audit).await {
                Err(StoreError::NotFound(_)) => {
                    return Err(CliError::new(format!("no session `{sid}`")))
                }
                other => other?,
            };
            let out = json!({ "sid": sid, "ended": true, "grants_revoked": revoked });
            print(json, &out, || {
                if grants {
                    format!("ended session {sid} and revoked {revoked} grants with their tokens")
                } else {
                    format!("ended session {sid}")
                }
            })
        }
    }
}
