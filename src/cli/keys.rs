//! `tessera keys …`: list signing keys and rotate them.

use clap::Subcommand;
use serde_json::json;

use super::{open, print, CliError};
use crate::config::Config;
use crate::crypto::keys;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys with their state (next, active, retired).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a key that is published now and starts signing after key_rotation_lead_secs.
    Rotate {
        /// RS256 (default), ES256 or EdDSA.
        #[arg(long, default_value = "RS256")]
        alg: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Config, command: KeysCommand) -> Result<(), CliError> {
    let store = open(config).await?;
    let now = crate::app::Clock::default().now();
    match command {
        KeysCommand::List { json } => {
            let records = store.signing_keys().await?;
            let rows: Vec<serde_json::Value> = keys::states(&records, now)
                .into_iter()
                .map(|(r, state)| {
                    json!({ "kid": r.kid, "alg": r.alg, "state": state,
                            "created_at": r.created_at, "activates_at": r.activates_at })
                })
                .collect();
            print(json, &rows, || {
                if rows.is_empty() {
                    return "no signing keys (the server creates them on first start)".to_owned();
                }
                rows.iter()
                    .map(|r| {
                        format!(
                            "{}\t{}\t{}\tactivates_at={}",
                            r["kid"].as_str().unwrap_or(""),
                            r["alg"].as_str().unwrap_or(""),
                            r["state"].as_str().unwrap_or(""),
                            r["activates_at"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        KeysCommand::Rotate { alg, json } => {
            if !keys::ALGS.contains(&alg.as_str()) {
                return Err(CliError::new(format!(
                    "--alg must be one of {}",
                    keys::ALGS.join(", ")
                )));
            }
            let (kek, _) = crate::keys::kek::load(config, store.as_ref()).await?;
            let activates_at = now + config.tokens.key_rotation_lead;
            let record = crate::keys::create(store.as_ref(), &kek, &alg, now, activates_at, "cli")
                .await
                .map_err(|e| CliError::new(format!("{e:#}")))?;
            let out = json!({ "kid": record.kid, "alg": record.alg, "state": "next", "activates_at": activates_at });
            print(json, &out, || {
                format!(
                    "added {} key {}: published now, signs from {} (in {} s)",
                    record.alg, record.kid, activates_at, config.tokens.key_rotation_lead
                )
            })
        }
    }
}
