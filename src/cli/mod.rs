//! The `tessera` command line: `serve` (the default), `migrate`, and the operator's admin
//! commands. Admin commands talk to the store directly; the database URL is the operator's
//! credential. Every failure prints one line on stderr and exits non-zero.

mod apikey;
mod audit;
mod client;
mod doctor;
mod kek;
mod keys;
mod session;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::config::{Config, LogFormat};
use crate::store::{Store, StoreError};

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "OAuth 2.0 authorization server and OpenID Provider"
)]
pub struct Cli {
    /// Configuration file (default: ./tessera.toml when it exists, or $TESSERA_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply the store's migrations and exit.
    Migrate,
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(Box<client::ClientCommand>),
    /// Manage users.
    #[command(subcommand)]
    User(Box<user::UserCommand>),
    /// Users' API keys.
    #[command(subcommand)]
    Apikey(apikey::ApiKeyCommand),
    /// Signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The key-encryption key that protects signing keys at rest.
    #[command(subcommand)]
    Kek(kek::KekCommand),
    /// Users' browser sessions: list them, end one.
    #[command(subcommand)]
    Session(session::SessionCommand),
    /// The audit trail: tail, search, export, verify its hash chain.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Delete expired codes, sessions, tokens and grants, and audit events past retention,
    /// now (the server also does it every purge_interval_secs).
    Purge {
        #[arg(long)]
        json: bool,
    },
    /// Check this deployment against RFC 9700 and OWASP: findings by severity; exits
    /// non-zero when one is high.
    Doctor {
        #[arg(long)]
        json: bool,
    },
}

/// A command's failure: one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(String);

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError(message.into())
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError(e.to_string())
    }
}

impl From<crate::keys::kek::KekError> for CliError {
    fn from(e: crate::keys::kek::KekError) -> Self {
        CliError(e.to_string())
    }
}

impl From<crate::crypto::password::PasswordError> for CliError {
    fn from(e: crate::crypto::password::PasswordError) -> Self {
        CliError(e.to_string())
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let serving = matches!(cli.command, None | Some(Command::Serve));
    init_logging(&config, serving);
    let runtime = match runtime(blocking_threads(&config)) {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            None | Some(Command::Serve) => crate::serve(config)
                .await
                .map_err(|e| CliError(format!("{e:#}"))),
            Some(Command::Migrate) => {
                let store = open(&config).await?;
                println!("migrations applied ({:?})", store.backend());
                Ok(())
            }
            Some(Command::Client(c)) => client::run(&config, *c).await,
            Some(Command::User(c)) => user::run(&config, *c).await,
            Some(Command::Apikey(c)) => apikey::run(&config, c).await,
            Some(Command::Keys(c)) => keys::run(&config, c).await,
            Some(Command::Kek(c)) => kek::run(&config, c).await,
            Some(Command::Audit(c)) => audit::run(&config, c).await,
            Some(Command::Session(c)) => session::run(&config, c).await,
            Some(Command::Purge { json }) => purge(&config, json).await,
            Some(Command::Doctor { json }) => doctor::run(&config, json).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Threads for blocking work: the signatures and password hashes that may run at once (each
/// bounded by its own semaphore), and a few for the rest (files, name lookups, key
/// generation). tokio's default bound is 512: a finished task's permit went to the next
/// waiter before its thread was idle again, so the next task often started a thread of its
/// own, and after the bench's workloads 23 threads sat idle, each holding its allocator
/// cache (4.2 MiB in all) and its stack. More threads than this would not compute any faster
/// on the cores there are.
fn blocking_threads(config: &Config) -> usize {
    crate::keys::signer::concurrency() + config.password.concurrency + 4
}

/// The async runtime every command runs on, with at most `blocking` threads for blocking
/// work (beside one async worker per core).
fn runtime(blocking: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(blocking)
        .build()
}

async fn purge(config: &Config, json: bool) -> Result<(), CliError> {
    let store = open(config).await?;
    let (kek, _) = crate::keys::kek::load(config, store.as_ref()).await?;
    let now = crate::app::Clock::default().now();
    let report =
        crate::housekeeping::purge(store.as_ref(), &kek, &config.housekeeping, now).await?;
    print(json, &report, || {
        format!(
            "purged {} codes, {} sessions, {} tokens, {} grants, {} login-throttle entries, {} audit events",
            report.codes,
            report.sessions,
            report.tokens,
            report.grants,
            report.login_throttle,
            report.audit_events
        )
    })
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// The server logs at the configured level; admin commands only say what went wrong, so
/// their stdout stays clean for scripts.
fn init_logging(config: &Config, serving: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = if serving {
        EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"))
    } else {
        EnvFilter::new("warn")
    };
    // Colour codes only for a person at a terminal, never into files or log pipelines.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn open(config: &Config) -> Result<std::sync::Arc<dyn Store>, CliError> {
    crate::store::open(&config.database_url)
        .await
        .map_err(|e| CliError(format!("{e} ({})", config.database_url.redacted())))
}

/// Prints `value` as pretty JSON, or `text` for people.
fn print<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<(), CliError> {
    if json {
        let out = serde_json::to_string_pretty(value).map_err(|e| CliError(e.to_string()))?;
        println!("{out}");
    } else {
        println!("{}", text());
    }
    Ok(())
}

/// Parses `true`/`false` for `--flag <BOOL>` options of `update`.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" | "yes" | "on" => Ok(true),
        "false" | "no" | "off" => Ok(false),
        _ => Err(format!("`{s}` is not true or false")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::runtime;

    #[test]
    fn the_runtime_runs_blocking_work_on_at_most_its_bound_of_threads() {
        let most = runtime(3).unwrap().block_on(async {
            let running = Arc::new(AtomicUsize::new(0));
            let most = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    let (running, most) = (Arc::clone(&running), Arc::clone(&most));
                    tokio::task::spawn_blocking(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            most.load(Ordering::SeqCst)
        });
        // 32 at once without the bound; all of them still ran.
        assert_eq!(most, 3);
    }
}
