//! `tessera audit …`: read the audit trail, follow it, export it for a SIEM, and check its
//! hash chain (decision 0023); `tessera purge`: housekeeping by hand.

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use super::{open, CliError};
use crate::audit::chain::{Broken, Verifier};
use crate::config::Config;
use crate::store::{AuditFilter, AuditRecord, Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain: seals events not linked yet, then walks every link and names
    /// the first broken one. Exits non-zero when the chain is broken.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Seal every event without a link, whatever the chain's head remembers of earlier
    /// rounds (decision 0041): after restoring the database into another Postgres cluster,
    /// or when `verify` names events that are neither linked nor waiting.
    Rebase,
    /// The latest events, oldest first; with --follow, then new ones as they are recorded.
    Tail {
        /// How many events to show first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: i64,
        #[arg(short, long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Events matching every filter given, oldest first.
    Search {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many events.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Every event since a time, as JSON lines (with their place in the hash chain), for a
    /// SIEM.
    Export {
        #[command(flatten)]
        filter: FilterArgs,
    },
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// A user's id or username.
    #[arg(long)]
    user: Option<String>,
    /// A client id.
    #[arg(long)]
    client: Option<String>,
    /// An event kind, e.g. login_failed.
    #[arg(long)]
    kind: Option<String>,
    /// From this time: RFC 3339, YYYY-MM-DD (UTC), unix seconds, or an age like 30m, 12h, 7d.
    #[arg(long)]
    since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
}

/// Events per query when a command reads the whole trail.
const PAGE: i64 = 1000;

pub async fn run(config: &Config, command: AuditCommand) -> Result<(), CliError> {
    let store = open(config).await?;
    let now = crate::app::Clock::default().now();
    match command {
        AuditCommand::Verify { json } => verify(config, store.as_ref(), now, json).await,
        AuditCommand::Rebase => {
            let (kek, _) = crate::keys::kek::load(config, store.as_ref()).await?;
            let rebased = store.rebase_audit().await?;
            let sealed = crate::housekeeping::seal(store.as_ref(), &kek, now).await?;
            println!(
                "{}; {sealed} events sealed",
                if rebased {
                    "the next round took every event without a link"
                } else {
                    "nothing to rebase on SQLite"
                }
            );
            Ok(())
        }
        AuditCommand::Tail {
            lines,
            follow,
            json,
        } => {
            let mut latest = store.recent_audit(lines.max(0)).await?;
            latest.reverse();
            let mut last = print_events(&latest, json)?.unwrap_or(0);
            if latest.is_empty() {
                // Follow from the newest event even when none was asked for.
                last = store.recent_audit(1).await?.first().map_or(0, |r| r.id);
            }
            if !follow {
                return Ok(());
            }
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let filter = AuditFilter {
                    after_id: Some(last),
                    limit: PAGE,
                    ..AuditFilter::default()
                };
                let new = store.search_audit(&filter).await?;
                last = print_events(&new, json)?.unwrap_or(last);
            }
        }
        AuditCommand::Search {
            filter,
            limit,
            json,
        } => {
            let mut filter = filter.resolve(store.as_ref(), now).await?;
            filter.limit = limit;
            let found = store.search_audit(&filter).await?;
            print_events(&found, json)?;
            Ok(())
        }
        AuditCommand::Export { filter } => {
            let mut filter = filter.resolve(store.as_ref(), now).await?;
            filter.limit = PAGE;
            loop {
                let page = store.search_audit(&filter).await?;
                match print_events(&page, true)? {
                    Some(last) if page.len() as i64 == PAGE => filter.after_id = Some(last),
                    _ => return Ok(()),
                }
            }
        }
    }
}

impl FilterArgs {
    async fn resolve(self, store: &dyn Store, now: i64) -> Result<AuditFilter, CliError> {
        let account_id = match self.user {
            None => None,
            // A deleted user's events keep their id: take it as given when no user matches.
            Some(user) => Some(match super::user::find(store, &user).await {
                Ok(account) => account.id,
                Err(_) => user,
            }),
        };
        let time = |flag: &str, value: Option<String>| match value {
            None => Ok(None),
            Some(v) => parse_time(&v, now)
                .map(Some)
                .map_err(|e| CliError::new(format!("--{flag}: {e}"))),
        };
        Ok(AuditFilter {
            account_id,
            client_id: self.client,
            kind: self.kind,
            since: time("since", self.since)?,
            until: time("until", self.until)?,
            ..AuditFilter::default()
        })
    }
}

/// Prints events (JSON lines, or one readable line each); returns the last id printed.
fn print_events(events: &[AuditRecord], json: bool) -> Result<Option<i64>, CliError> {
    let mut out = std::io::stdout().lock();
    for e in events {
        let line = if json {
            serde_json::to_string(e).map_err(|e| CliError::new(e.to_string()))?
        } else {
            text_line(e)
        };
        // A closed pipe (`| head`) means the reader has seen enough: stop, successfully.
        if writeln!(out, "{line}").is_err() {
            std::process::exit(0);
        }
    }
    let _ = out.flush();
    Ok(events.last().map(|e| e.id))
}

fn text_line(r: &AuditRecord) -> String {
    let e = &r.event;
    let mut line = format!(
        "{}  #{}  {}  actor={}",
        format_time(e.created_at),
        r.id,
        e.kind,
        e.actor
    );
    for (name, value) in [
        ("client", &e.client_id),
        ("user", &e.account_id),
        ("ip", &e.source_ip),
    ] {
        if let Some(v) = value {
            line.push_str(&format!("  {name}={v}"));
        }
    }
    if e.details.as_object().is_some_and(|o| !o.is_empty()) {
        line.push_str(&format!("  {}", e.details));
    }
    line
}

/// RFC 3339 in UTC, as the trail is kept.
pub fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// A time on the command line: unix seconds, RFC 3339, a UTC date, or an age before `now`.
pub fn parse_time(value: &str, now: i64) -> Result<i64, String> {
    let value = value.trim();
    if let Ok(unix) = value.parse::<i64>() {
        return Ok(unix);
    }
    if let Some(unit) = value.chars().last().and_then(|c| match c {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3600),
        'd' => Some(86_400),
        _ => None,
    }) {
        if let Ok(n) = value[..value.len() - 1].parse::<i64>() {
            if n >= 0 {
                return Ok(now - n.saturating_mul(unit));
            }
        }
    }
    if let Ok(t) = time::OffsetDateTime::parse(value, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    if let [y, m, d] = value.split('-').collect::<Vec<_>>()[..] {
        let date = (|| {
            let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
            time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
        })();
        if let Some(date) = date {
            return Ok(date.midnight().assume_utc().unix_timestamp());
        }
    }
    Err(format!(
        "`{value}` is not a time (RFC 3339, YYYY-MM-DD, unix seconds, or an age like 30m, 12h, 7d)"
    ))
}

async fn verify(config: &Config, store: &dyn Store, now: i64, json: bool) -> Result<(), CliError> {
    let (kek, _) = crate::keys::kek::load(config, store).await?;
    let sealed_now = crate::housekeeping::seal(store, &kek, now).await?;
    let (head, checkpoint, unsealed) = store.audit_chain().await?;
    let outcome = async {
        let mut verifier = Verifier::new(&kek, checkpoint.as_ref())?;
        let mut after = checkpoint.as_ref().map_or(0, |c| c.seq);
        loop {
            let page = store.sealed_audit(after, PAGE).await?;
            for row in &page {
                verifier.push(row)?;
            }
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => after = last.seq.unwrap_or(after),
                _ => break,
            }
        }
        let checked = verifier.checked;
        let last = verifier.finish(&head)?;
        let stranded = store.stranded_audit().await?;
        if !stranded.is_empty() {
            return Err(Broken::Stranded { ids: stranded }.into());
        }
        Ok::<_, Stop>((checked, last))
    }
    .await;
    let first = checkpoint.as_ref().map_or(1, |c| c.seq + 1);
    match outcome {
        Ok((checked, last)) => {
            let out = json!({
                "ok": true, "events": checked, "first_seq": first, "last_seq": last,
                "purged_through_seq": checkpoint.as_ref().map(|c| c.seq),
                "sealed_now": sealed_now, "unsealed": unsealed,
            });
            super::print(json, &out, || {
                let mut s = format!("audit chain intact: {checked} events, seq {first}..{last}");
                if let Some(c) = &checkpoint {
                    s.push_str(&format!(
                        " (events through seq {} were purged at {})",
                        c.seq,
                        format_time(c.created_at)
                    ));
                }
                s
            })
        }
        Err(Stop::Broken(broken)) => {
            if json {
                let out = json!({ "ok": false, "broken": broken.to_string() });
                println!("{out}");
            }
            Err(CliError::new(format!("audit chain broken: {broken}")))
        }
        Err(Stop::Store(store_error)) => Err(store_error.into()),
    }
}

/// Why a verification stopped: the chain is broken, or the store could not be read.
enum Stop {
    Broken(Broken),
    Store(StoreError),
}

impl From<Broken> for Stop {
    fn from(b: Broken) -> Self {
        Stop::Broken(b)
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_on_the_command_line() {
        let now = 1_700_000_000;
        assert_eq!(parse_time("1699990000", now), Ok(1_699_990_000));
        assert_eq!(parse_time("30m", now), Ok(now - 1800));
        assert_eq!(parse_time("7d", now), Ok(now - 7 * 86_400));
        assert_eq!(parse_time("2023-11-14T22:13:20Z", now), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-14", now), Ok(1_699_920_000));
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("-5d", now).is_err());
        assert_eq!(format_time(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
