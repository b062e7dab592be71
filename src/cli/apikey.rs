//! `tessera apikey …`: make, list and revoke users' API keys (docs/api-keys.md). The same
//! rules as the `/account` page (`oauth::api_keys`); the key is printed once, at creation.

use clap::Subcommand;
use serde_json::json;

use super::{open, print, user, CliError};
use crate::config::Config;
use crate::oauth::api_keys::{self, Actor, ApiKeyError, NewKey};
use crate::store::ApiKeyRecord;

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Make an API key for a user; the key is printed once and cannot be shown again.
    Create {
        /// The owner (username or id).
        #[arg(long)]
        user: String,
        /// The owner's name for the key, unique among their unrevoked keys.
        #[arg(long)]
        label: String,
        /// Scopes (space- or comma-separated, repeatable), from `api_key_scopes`; default: all.
        #[arg(long)]
        scope: Vec<String>,
        /// Lifetime such as `90d` or `12h`, or `never` (the default).
        #[arg(long = "expires-in", value_name = "DURATION")]
        expires_in: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List API keys (never the keys themselves), of one user or of everyone.
    List {
        /// Only this user's keys (username or id).
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by its id (`key_…`).
    Revoke {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Config, command: ApiKeyCommand) -> Result<(), CliError> {
    let store = open(config).await?;
    let now = crate::app::Clock::default().now();
    let actor = Actor {
        actor: "cli".to_owned(),
        ..Actor::default()
    };
    match command {
        ApiKeyCommand::Create {
            user,
            label,
            scope,
            expires_in,
            json,
        } => {
            let owner = user::find(store.as_ref(), &user).await?;
            let scopes = (!scope.is_empty()).then(|| {
                scope
                    .iter()
                    .flat_map(|s| s.split([' ', ',']))
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            });
            let ttl_secs = match expires_in {
                None => None,
                Some(v) => api_keys::parse_ttl(&v).map_err(|_| {
                    CliError::new(format!(
                        "--expires-in `{v}` is not a lifetime between 1h and 3650d (e.g. 90d, 12h, never)"
                    ))
                })?,
            };
            let new = NewKey {
                label: &label,
                scopes,
                ttl_secs,
            };
            let created = api_keys::create(
                store.as_ref(),
                &config.api_keys,
                &owner,
                new,
                None,
                &actor,
                now,
            );
            let (key, record) = created.await.map_err(cli_error)?;
            let mut shown =
                serde_json::to_value(&record).map_err(|e| CliError::new(e.to_string()))?;
            shown["key"] = json!(key.expose());
            print(json, &shown, || {
                format!(
                    "{}\n\nid: {}\nuser: {}\nlabel: {}\nscope: {}\nexpires: {}\n\nThis is the only time the key is shown: store it now.",
                    key.expose(),
                    record.id,
                    owner.username,
                    record.label,
                    record.scope,
                    record.expires_at.map_or("never".to_owned(), |t| t.to_string()),
                )
            })
        }
        ApiKeyCommand::List { user, json } => {
            let owner = match user {
                Some(u) => Some(user::find(store.as_ref(), &u).await?.id),
                None => None,
            };
            let keys = store.api_keys(owner.as_deref()).await?;
            print(json, &keys, || {
                if keys.is_empty() {
                    return "no API keys".to_owned();
                }
                keys.iter()
                    .map(|k| list_line(k, now))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        ApiKeyCommand::Revoke { id, json } => {
            let key = store
                .api_key(&id)
                .await?
                .ok_or_else(|| CliError::new(format!("API key `{id}` not found")))?;
            match api_keys::revoke(store.as_ref(), &key, None, "operator", &actor, now).await {
                Ok(()) => {}
                Err(ApiKeyError::NotFound) => {
                    return Err(CliError::new(format!("API key `{id}` is already revoked")))
                }
                Err(e) => return Err(cli_error(e)),
            }
            print(json, &json!({ "revoked": id }), || {
                format!("revoked API key `{id}` ({})", key.label)
            })
        }
    }
}

fn list_line(k: &ApiKeyRecord, now: i64) -> String {
    let state = if k.revoked_at.is_some() {
        "revoked"
    } else if !k.is_live(now) {
        "expired"
    } else {
        "active"
    };
    format!(
        "{}\t{}\t{}…\t{}\t{state}\tuser={}\tlast_used={}",
        k.id,
        k.label,
        k.hint,
        k.scope,
        k.account_id,
        k.last_used_at.map_or("never".to_owned(), |t| t.to_string()),
    )
}

fn cli_error(e: ApiKeyError) -> CliError {
    match e {
        ApiKeyError::Store(e) => e.into(),
        e => CliError::new(e.to_string()),
    }
}
