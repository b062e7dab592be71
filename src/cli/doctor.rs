//! `tessera doctor`: a self-check of a deployment, as a list of findings, each with a
//! severity and the section of RFC 9700 (OAuth 2.0 Security Best Current Practice) or the
//! OWASP cheat sheet behind it. It exits non-zero when any finding is high, so that it can
//! gate a deploy.
//!
//! The checks are pure functions over the configuration and the store's records, each tested
//! below; [`run`] only gathers what they look at. It reads and never repairs: the store is
//! opened without migrating (a pending migration is a finding, not something to apply behind
//! the operator's back) and no SQLite file or key file is created.

use std::net::SocketAddr;
use std::path::Path;

use serde::Serialize;
use url::Url;

use super::{print, CliError};
use crate::config::{is_loopback_host, Config, PasswordPolicy, TlsFiles};
use crate::crypto::keys;
use crate::store::prelude::*;
use crate::store::{AccountRecord, ClientRecord, MigrationStatus, SigningKeyRecord, SqlStore};

/// How much a finding matters. `High` fails the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    High,
    Medium,
    Low,
    /// Nothing wrong that the doctor can see, but something to know (or a check skipped).
    Info,
    /// Checked and fine.
    Ok,
}

impl Severity {
    const ALL: [Severity; 5] = [
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
        Severity::Ok,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
            Severity::Ok => "ok",
        }
    }
}

/// One result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check: a stable name for scripts (`kek_file`, `client_redirect_uri`, …).
    pub check: &'static str,
    pub severity: Severity,
    /// One line for the operator: what was found and what to do.
    pub message: String,
    /// The section of RFC 9700 or the OWASP cheat sheet the check stands on.
    pub reference: &'static str,
    /// The client id, key id or algorithm concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl Finding {
    fn new(
        check: &'static str,
        severity: Severity,
        reference: &'static str,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            severity,
            message: message.into(),
            reference,
            subject: None,
        }
    }

    fn about(mut self, subject: impl Into<String>) -> Finding {
        self.subject = Some(subject.into());
        self
    }
}

const REF_ISSUER: &str = "RFC 9700 §2.6; RFC 8414 §2";
const REF_TLS: &str = "RFC 9700 §2.6 (TLS per BCP 195)";
const REF_PROXY: &str = "RFC 9700 §4.13";
const REF_KEK: &str = "OWASP Cryptographic Storage Cheat Sheet: Key Storage";
const REF_KEY_AGE: &str = "OWASP Cryptographic Storage Cheat Sheet: Key Lifetimes and Rotation";
const REF_PKCE: &str = "RFC 9700 §2.1.1";
const REF_REDIRECT_HTTP: &str = "RFC 9700 §2.6";
const REF_REDIRECT: &str = "RFC 6749 §3.1.2; RFC 8252 §7";
const REF_ARGON2: &str = "OWASP Password Storage Cheat Sheet: Argon2id";
const REF_STORE: &str = "Tessera README: Postgres (migrations)";
const REF_CLOCK: &str = "RFC 7519 §4.1.4";
const REF_SECRET_AGE: &str = "OWASP Secrets Management Cheat Sheet: Rotation";

/// A client secret older than this should be rotated.
const SECRET_MAX_AGE_SECS: i64 = 365 * 86_400;

const DAY: i64 = 86_400;
/// A certificate this close to its end is a finding: renewal has failed or was forgotten.
const CERT_RENEWAL_WARNING: i64 = 14 * DAY;
/// An active signing key older than this should be rotated.
pub const KEY_ROTATION_PERIOD: i64 = 90 * DAY;
/// Clocks further apart than this disagree about expiry of codes (60 s) and tokens.
pub const MAX_CLOCK_SKEW_SECS: f64 = 5.0;

/// The issuer is where people type their password and where every token says it came from:
/// plain http is tolerated on loopback only (configuration refuses it elsewhere, so the high
/// case is defence in depth).
pub fn issuer(issuer: &Url) -> Finding {
    let shown = issuer.as_str().trim_end_matches('/');
    match issuer.scheme() {
        "https" => Finding::new(
            "issuer",
            Severity::Ok,
            REF_ISSUER,
            format!("issuer {shown} uses https"),
        ),
        _ if is_loopback_host(issuer) => Finding::new(
            "issuer",
            Severity::Low,
            REF_ISSUER,
            format!(
                "issuer {shown} is plain http on loopback: fine for development, not reachable \
                 by anyone else; use an https issuer in production"
            ),
        ),
        _ => Finding::new(
            "issuer",
            Severity::High,
            REF_ISSUER,
            format!(
                "issuer {shown} is not https and not on a loopback host: passwords, codes and \
                 tokens would cross the network unencrypted"
            ),
        ),
    }
}

/// What the doctor could learn about the certificate Tessera serves itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertValidity {
    /// The latest `notBefore` in the chain, in Unix seconds.
    pub not_before: i64,
    /// The earliest `notAfter` in the chain, in Unix seconds.
    pub not_after: i64,
}

/// TLS served by Tessera (`tls_cert`/`tls_key`): loadable, and valid now and for a while.
/// Without them, TLS is the proxy's job, which the doctor cannot see.
pub fn tls(serving: Option<&Result<CertValidity, String>>, issuer: &Url, now: i64) -> Finding {
    let finding = |severity, message: String| Finding::new("tls", severity, REF_TLS, message);
    match serving {
        None if issuer.scheme() == "https" => Finding::new(
            "tls",
            Severity::Info,
            REF_PROXY,
            "Tessera does not serve TLS itself (no tls_cert): the https issuer's TLS is expected \
             at the proxy or load balancer in front",
        ),
        None => finding(
            Severity::Info,
            "no TLS (no tls_cert, plain http issuer on loopback)".to_owned(),
        ),
        Some(Err(e)) => finding(Severity::High, format!("cannot use tls_cert/tls_key: {e}")),
        Some(Ok(cert)) if now >= cert.not_after => finding(
            Severity::High,
            format!(
                "the TLS certificate expired at {}: clients refuse the connection",
                super::audit::format_time(cert.not_after)
            ),
        ),
        Some(Ok(cert)) if now < cert.not_before => finding(
            Severity::High,
            format!(
                "the TLS certificate is not valid before {}: clients refuse the connection",
                super::audit::format_time(cert.not_before)
            ),
        ),
        Some(Ok(cert)) => {
            let days = (cert.not_after - now) / DAY;
            let until = super::audit::format_time(cert.not_after);
            if cert.not_after - now < CERT_RENEWAL_WARNING {
                finding(
                    Severity::Medium,
                    format!("the TLS certificate expires in {days} days ({until}): renew it"),
                )
            } else {
                finding(
                    Severity::Ok,
                    format!("the TLS certificate is valid until {until} ({days} days)"),
                )
            }
        }
    }
}

/// With no trusted proxy, a forwarding header is never believed, so behind a proxy every
/// client has the proxy's address: per-address rate limits and login throttling then treat
/// everyone as one client, and the audit trail records the proxy. The doctor cannot see
/// requests, so it guesses a proxy from a public issuer on a loopback `bind`.
pub fn trusted_proxies(networks: usize, issuer: &Url, bind: SocketAddr) -> Finding {
    let finding =
        |severity, message: &str| Finding::new("trusted_proxies", severity, REF_PROXY, message);
    if networks > 0 {
        return finding(
            Severity::Ok,
            &format!(
                "the forwarding header is believed from {networks} trusted proxy networks only"
            ),
        );
    }
    if is_loopback_host(issuer) {
        return finding(
            Severity::Ok,
            "no trusted proxies, and none expected with a loopback issuer",
        );
    }
    if bind.ip().is_loopback() {
        return finding(
            Severity::Medium,
            "bind is on loopback while the issuer is public, so a proxy is in front, but \
             trusted_proxies is empty: every client appears with the proxy's address (one rate \
             limit and one login throttle for all, the proxy in the audit trail); set \
             trusted_proxies to the proxy's address",
        );
    }
    finding(
        Severity::Info,
        "no trusted proxies: right if clients connect directly; if a proxy sets \
         X-Forwarded-For, set trusted_proxies (the doctor cannot see requests)",
    )
}

/// OWASP Password Storage Cheat Sheet's argon2id settings, (memory in KiB, passes), all with
/// one lane. A setting is at least as costly as one of them when it has at least its memory
/// and at least its passes.
pub const OWASP_ARGON2ID: [(u32, u32); 5] = [
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
];

/// The memory OWASP asks for with `passes` passes; `None` for zero passes.
pub fn owasp_memory_kib(passes: u32) -> Option<u32> {
    OWASP_ARGON2ID
        .iter()
        .filter(|(_, t)| *t <= passes)
        .map(|(m, _)| *m)
        .min()
}

/// Whether argon2id with `memory_kib` and `passes` meets OWASP's minimum.
pub fn meets_owasp(memory_kib: u32, passes: u32) -> bool {
    owasp_memory_kib(passes).is_some_and(|m| memory_kib >= m)
}

/// The configured cost of new password hashes. The configuration's own floor (decision
/// 0015) bounds memory × passes; OWASP's table asks more memory at one to four passes (46 MiB
/// at t=1, not 35), so this can find what start-up accepts.
pub fn argon2_parameters(policy: &PasswordPolicy) -> Finding {
    let (m, t, p) = (policy.memory_kib, policy.iterations, policy.parallelism);
    if meets_owasp(m, t) {
        Finding::new(
            "argon2_parameters",
            Severity::Ok,
            REF_ARGON2,
            format!("new password hashes use argon2id m={m} KiB, t={t}, p={p}"),
        )
    } else {
        let needed = owasp_memory_kib(t).unwrap_or(OWASP_ARGON2ID[0].0);
        Finding::new(
            "argon2_parameters",
            Severity::High,
            REF_ARGON2,
            format!(
                "argon2id m={m} KiB, t={t} is below OWASP's minimum ({needed} KiB at t={t}; \
                 e.g. 19456 KiB × 2 or 7168 KiB × 5): raise argon2_memory_kib or argon2_iterations"
            ),
        )
    }
}

/// A stored hash is as costly to crack as the parameters it was made with, whatever the
/// configuration says now. Sign-in replaces it under the configured parameters, but only for
/// people who sign in: a dormant account's hash stays weak in every backup.
pub fn password_hashes(accounts: &[AccountRecord]) -> Vec<Finding> {
    let mut weak = Vec::new();
    let mut unreadable = Vec::new();
    let mut checked = 0;
    for account in accounts {
        let Some(phc) = account.password_hash.as_deref() else {
            continue;
        };
        checked += 1;
        match hash_cost(phc) {
            Some((true, m, t)) if meets_owasp(m, t) => {}
            Some((argon2id, m, t)) => {
                let alg = if argon2id { "" } else { " (not argon2id)" };
                weak.push(format!("{} m={m} t={t}{alg}", account.username));
            }
            None => unreadable.push(account.username.as_str()),
        }
    }
    let mut findings = Vec::new();
    if !weak.is_empty() {
        findings.push(Finding::new(
            "password_hashes",
            Severity::High,
            REF_ARGON2,
            format!(
                "{} of {checked} password hashes are below OWASP's argon2id minimum ({}): each \
                 is rehashed with the configured parameters at its user's next sign-in, or \
                 set a new password (tessera user set-password)",
                weak.len(),
                list(&weak)
            ),
        ));
    }
    if !unreadable.is_empty() {
        findings.push(Finding::new(
            "password_hashes",
            Severity::Low,
            REF_ARGON2,
            format!(
                "{} password hashes are not PHC strings the doctor can read ({}): those users \
                 cannot sign in",
                unreadable.len(),
                list(&unreadable)
            ),
        ));
    }
    if findings.is_empty() {
        findings.push(Finding::new(
            "password_hashes",
            Severity::Ok,
            REF_ARGON2,
            format!(
                "{} stored, each meeting OWASP's argon2id minimum",
                count(checked, "password hash", "password hashes")
            ),
        ));
    }
    findings
}

/// (is argon2id, memory KiB, passes) of a PHC string.
fn hash_cost(phc: &str) -> Option<(bool, u32, u32)> {
    let hash = argon2::PasswordHash::new(phc).ok()?;
    let params = argon2::Params::try_from(&hash).ok()?;
    Some((
        hash.algorithm == argon2::Algorithm::Argon2id.ident(),
        params.m_cost(),
        params.t_cost(),
    ))
}

/// `1 client`, `2 clients`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// At most five names, then a count: a finding stays one line.
fn list<T: AsRef<str>>(items: &[T]) -> String {
    let shown: Vec<&str> = items.iter().take(5).map(AsRef::as_ref).collect();
    match items.len() {
        n if n > 5 => format!("{}, and {} more", shown.join(", "), n - 5),
        _ => shown.join(", "),
    }
}

/// The store answers and its schema is exactly what this binary expects. Anything else is
/// high: the server would migrate at start (or refuse to), and the other checks of stored
/// records cannot run on a schema they do not know.
pub fn store_status(status: &Result<MigrationStatus, String>, backend: &str) -> Finding {
    let high = |message: String| Finding::new("store", Severity::High, REF_STORE, message);
    let versions = |v: &[i64]| {
        v.iter()
            .map(|n| format!("{n:04}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let status = match status {
        Ok(s) => s,
        Err(e) => return high(format!("the {backend} store is not reachable: {e}")),
    };
    if let Some(v) = status.failed {
        return high(format!(
            "migration {v:04} started and failed on the {backend} store: repair it by hand, \
             then run tessera migrate"
        ));
    }
    if !status.changed.is_empty() {
        return high(format!(
            "applied migrations {} differ from this binary's: a landed migration was edited",
            versions(&status.changed)
        ));
    }
    let unknown = status.unknown();
    if !unknown.is_empty() {
        return high(format!(
            "the {backend} store has migrations {} that this binary does not know: it was \
             migrated by a newer Tessera",
            versions(&unknown)
        ));
    }
    let pending = status.pending();
    if !pending.is_empty() {
        return high(format!(
            "{} of {} migrations are not applied to the {backend} store ({}): run tessera \
             migrate; the checks of clients, keys and passwords were skipped",
            pending.len(),
            status.known.len(),
            versions(&pending)
        ));
    }
    Finding::new(
        "store",
        Severity::Ok,
        REF_STORE,
        format!(
            "the {backend} store answers and has all {} migrations applied",
            status.known.len()
        ),
    )
}

/// This host's clock against the database server's. Tessera reads time on each instance;
/// instances whose clocks disagree disagree about when codes, sessions and tokens expire.
/// `before` and `after` bracket the query (whole seconds, as the clock reads), so the round
/// trip never counts as skew.
pub fn clock_skew(database: Option<f64>, before: i64, after: i64) -> Finding {
    let Some(db) = database else {
        return Finding::new(
            "clock_skew",
            Severity::Info,
            REF_CLOCK,
            "not checked: SQLite keeps no clock of its own",
        );
    };
    // `after` truncates up to a second away.
    let (low, high) = (before as f64, after as f64 + 1.0);
    let skew = if db < low {
        low - db
    } else if db > high {
        db - high
    } else {
        0.0
    };
    if skew > MAX_CLOCK_SKEW_SECS {
        let side = if db < low { "behind" } else { "ahead of" };
        Finding::new(
            "clock_skew",
            Severity::Medium,
            REF_CLOCK,
            format!(
                "the Postgres server's clock is {skew:.0} s {side} this host's: synchronise \
                 both with NTP"
            ),
        )
    } else {
        Finding::new(
            "clock_skew",
            Severity::Ok,
            REF_CLOCK,
            format!(
                "this host's clock agrees with the Postgres server's within {MAX_CLOCK_SKEW_SECS} s"
            ),
        )
    }
}

/// What the doctor found about the key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekFacts<'a> {
    /// `key_encryption_key` is set.
    pub configured: bool,
    /// The key file in `data_dir`.
    pub path: &'a Path,
    /// Whether the file exists, and its permission bits where the platform has them.
    pub file: Option<Option<u32>>,
    /// Signing keys in the store; `None` when the store could not be read.
    pub stored_keys: Option<usize>,
    /// The issuer is not loopback: a key file next to the data is then worth a word.
    pub production: bool,
}

/// The key file must be the owner's alone: whoever reads it and the database can sign as
/// Tessera (decision 0009).
pub fn kek_file(facts: &KekFacts<'_>) -> Finding {
    let path = facts.path.display();
    let finding = |severity, message: String| Finding::new("kek_file", severity, REF_KEK, message);
    match (facts.file, facts.configured) {
        (Some(Some(mode)), _) if mode & 0o044 != 0 => finding(
            Severity::High,
            format!(
                "the key-encryption key file {path} is readable by group or others (mode \
                 {:04o}): chmod 600 it",
                mode & 0o7777
            ),
        ),
        (Some(Some(mode)), _) if mode & 0o033 != 0 => finding(
            Severity::Medium,
            format!(
                "the key-encryption key file {path} can be changed by group or others (mode \
                 {:04o}): chmod 600 it",
                mode & 0o7777
            ),
        ),
        (Some(None), _) => finding(
            Severity::Info,
            format!("{path}: file permissions not checked on this platform"),
        ),
        (Some(Some(_)), true) => finding(
            Severity::Info,
            format!(
                "key_encryption_key is configured and used; {path} (owner-only) is not: if it \
                 holds an old key, keep it with the backups, not next to the data"
            ),
        ),
        (Some(Some(_)), false) if facts.production => finding(
            Severity::Low,
            format!(
                "the key-encryption key is {path}, owner-only, but next to the data it \
                 protects: in production set key_encryption_key from your secret store"
            ),
        ),
        (Some(Some(mode)), false) => finding(
            Severity::Ok,
            format!(
                "the key-encryption key file {path} is owner-only (mode {:04o})",
                mode & 0o7777
            ),
        ),
        (None, true) => finding(
            Severity::Ok,
            "the key-encryption key is configured (key_encryption_key), not a file".to_owned(),
        ),
        (None, false) => match facts.stored_keys {
            Some(n) if n > 0 => finding(
                Severity::High,
                format!(
                    "the key-encryption key file {path} is missing but the store holds {n} \
                     signing keys encrypted under it: restore it from a backup or set \
                     key_encryption_key"
                ),
            ),
            Some(_) => finding(
                Severity::Info,
                format!(
                    "no key-encryption key yet: the server generates {path} (mode 0600) at \
                     first start"
                ),
            ),
            None => finding(
                Severity::Info,
                format!(
                    "{path} does not exist, and the store could not be read to tell whether \
                     it should"
                ),
            ),
        },
    }
}

/// Every algorithm's active key, by age. A key that signs for long gives a thief of it long
/// use, and a rotation that is never practised fails when it is needed; a `next` key of the
/// algorithm means a rotation is under way.
pub fn signing_key_age(records: &[SigningKeyRecord], now: i64) -> Vec<Finding> {
    let states = keys::states(records, now);
    let mut findings = Vec::new();
    let mut fine = Vec::new();
    for (record, state) in &states {
        if *state != "active" {
            continue;
        }
        let days = (now - record.created_at) / DAY;
        let rotating = states
            .iter()
            .any(|(r, s)| *s == "next" && r.alg == record.alg);
        if now - record.created_at > KEY_ROTATION_PERIOD && !rotating {
            findings.push(
                Finding::new(
                    "signing_key_age",
                    Severity::Medium,
                    REF_KEY_AGE,
                    format!(
                        "the active {} key {} is {days} days old (more than {}): tessera keys \
                         rotate --alg {}",
                        record.alg,
                        record.kid,
                        KEY_ROTATION_PERIOD / DAY,
                        record.alg
                    ),
                )
                .about(record.kid.clone()),
            );
        } else {
            fine.push(format!("{} {days} days", record.alg));
        }
    }
    if states.is_empty() {
        findings.push(Finding::new(
            "signing_key_age",
            Severity::Info,
            REF_KEY_AGE,
            "no signing keys yet: the server creates them at first start",
        ));
    } else if !fine.is_empty() {
        findings.push(Finding::new(
            "signing_key_age",
            Severity::Ok,
            REF_KEY_AGE,
            format!("active signing keys are young enough: {}", fine.join(", ")),
        ));
    } else if findings.is_empty() {
        findings.push(Finding::new(
            "signing_key_age",
            Severity::Info,
            REF_KEY_AGE,
            "no signing key is active yet, only keys that activate later",
        ));
    }
    findings
}

/// Confidential clients opted out of PKCE (decision 0011). Public clients cannot opt out:
/// `/authorize` requires PKCE of them whatever the record says.
pub fn client_pkce(clients: &[ClientRecord]) -> Vec<Finding> {
    let mut findings: Vec<Finding> = clients
        .iter()
        .filter(|c| !c.require_pkce && !c.is_public())
        .map(|c| {
            Finding::new(
                "client_pkce",
                Severity::Medium,
                REF_PKCE,
                format!(
                    "client `{}` may leave PKCE out of OpenID requests with a nonce: tessera \
                     client update {} --require-pkce true once it sends PKCE",
                    c.id, c.id
                ),
            )
            .about(c.id.clone())
        })
        .collect();
    if findings.is_empty() {
        findings.push(Finding::new(
            "client_pkce",
            Severity::Ok,
            REF_PKCE,
            format!(
                "no client may leave PKCE out ({})",
                count(clients.len(), "client", "clients")
            ),
        ));
    }
    findings
}

/// Registered redirect URIs against today's registration rules. The CLI refuses plain http
/// off loopback, so one found here came in another way (SQL, an older version) and sends
/// codes across the network unencrypted.
/// Confidential clients whose secret was set more than [`SECRET_MAX_AGE_SECS`] ago: at the
/// latest `client_secret_rotated` event in `rotated` (client id → time), else at the client's
/// creation. (Tessera keeps only digests, so age is what can be judged; every secret is at
/// least 32 characters, generated ones 256 random bits.)
pub fn client_secret_age(
    clients: &[ClientRecord],
    rotated: &std::collections::HashMap<String, i64>,
    now: i64,
) -> Vec<Finding> {
    let mut findings: Vec<Finding> = clients
        .iter()
        .filter(|c| !c.is_public())
        .filter_map(|c| {
            let set_at = rotated
                .get(&c.id)
                .copied()
                .unwrap_or(c.created_at)
                .max(c.created_at);
            let days = (now - set_at) / 86_400;
            (now - set_at > SECRET_MAX_AGE_SECS).then(|| {
                Finding::new(
                    "client_secret_age",
                    Severity::Medium,
                    REF_SECRET_AGE,
                    format!(
                        "client `{}` has had its secret for {days} days: tessera client \
                         rotate-secret {}",
                        c.id, c.id
                    ),
                )
                .about(c.id.clone())
            })
        })
        .collect();
    if findings.is_empty() {
        findings.push(Finding::new(
            "client_secret_age",
            Severity::Ok,
            REF_SECRET_AGE,
            "no client secret is older than a year".to_owned(),
        ));
    }
    findings
}

pub fn client_redirect_uris(clients: &[ClientRecord]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for client in clients {
        for uri in &client.redirect_uris {
            let plain_http =
                Url::parse(uri).is_ok_and(|u| u.scheme() == "http" && !is_loopback_host(&u));
            let finding = if plain_http {
                Finding::new(
                    "client_redirect_uri",
                    Severity::High,
                    REF_REDIRECT_HTTP,
                    format!(
                        "client `{}` has redirect URI {uri}: plain http off loopback sends \
                         authorization codes unencrypted; register its https form",
                        client.id
                    ),
                )
            } else if let Err(why) = crate::oauth::redirect_uri::check_registration(uri) {
                Finding::new(
                    "client_redirect_uri",
                    Severity::Medium,
                    REF_REDIRECT,
                    format!(
                        "client `{}`: {why} (registration refuses it today)",
                        client.id
                    ),
                )
            } else {
                continue;
            };
            findings.push(finding.about(client.id.clone()));
        }
    }
    if findings.is_empty() {
        findings.push(Finding::new(
            "client_redirect_uri",
            Severity::Ok,
            REF_REDIRECT_HTTP,
            format!(
                "every redirect URI is https, loopback http or a private-use scheme ({})",
                count(clients.len(), "client", "clients")
            ),
        ));
    }
    findings
}

/// `tessera doctor`: runs every check, prints the findings, fails when one is high.
pub async fn run(config: &Config, json: bool) -> Result<(), CliError> {
    let clock = crate::app::Clock::default();
    let now = clock.now();
    let mut findings = vec![
        issuer(&config.issuer),
        tls(
            config.tls.as_ref().map(read_certificate).as_ref(),
            &config.issuer,
            now,
        ),
        trusted_proxies(
            config.trusted_proxies.networks.len(),
            &config.issuer,
            config.bind,
        ),
        argon2_parameters(&config.password),
    ];

    let backend = if config.database_url.is_postgres() {
        "Postgres"
    } else {
        "SQLite"
    };
    let opened = SqlStore::open_unmigrated(&config.database_url)
        .await
        .map_err(|e| e.to_string());
    let status = match &opened {
        Ok(store) => store.migration_status().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.clone()),
    };
    findings.push(store_status(&status, backend));
    let migrated = status
        .as_ref()
        .is_ok_and(|s| s.pending().is_empty() && s.unknown().is_empty() && s.failed.is_none());
    let store = opened.ok().filter(|_| migrated);

    let mut stored_keys = None;
    if let Some(store) = &store {
        let before = clock.now();
        match store.database_time().await {
            Ok(db) => findings.push(clock_skew(db, before, clock.now())),
            Err(e) => findings.push(unreadable("clock_skew", REF_CLOCK, "the clock", &e)),
        }
        match store.signing_keys().await {
            Ok(records) => {
                stored_keys = Some(records.len());
                findings.extend(signing_key_age(&records, now));
            }
            Err(e) => findings.push(unreadable(
                "signing_key_age",
                REF_KEY_AGE,
                "signing keys",
                &e,
            )),
        }
        match store.list_clients().await {
            Ok(clients) => {
                findings.extend(client_pkce(&clients));
                findings.extend(client_redirect_uris(&clients));
                let filter = crate::store::AuditFilter {
                    kind: Some(
                        crate::audit::AuditKind::ClientSecretRotated
                            .as_str()
                            .to_owned(),
                    ),
                    limit: 100_000,
                    ..Default::default()
                };
                match store.search_audit(&filter).await {
                    Ok(events) => {
                        let mut rotated = std::collections::HashMap::new();
                        for e in events {
                            if let Some(id) = e.event.client_id {
                                let at = rotated.entry(id).or_insert(e.event.created_at);
                                *at = (*at).max(e.event.created_at);
                            }
                        }
                        findings.extend(client_secret_age(&clients, &rotated, now));
                    }
                    Err(e) => findings.push(unreadable(
                        "client_secret_age",
                        REF_SECRET_AGE,
                        "the audit trail",
                        &e,
                    )),
                }
            }
            Err(e) => findings.push(unreadable("client_pkce", REF_PKCE, "clients", &e)),
        }
        match store.list_accounts().await {
            Ok(accounts) => findings.extend(password_hashes(&accounts)),
            Err(e) => findings.push(unreadable("password_hashes", REF_ARGON2, "users", &e)),
        }
    }

    let path = config.data_dir.join(crate::crypto::kek::KEK_FILE);
    findings.push(kek_file(&KekFacts {
        configured: config.key_encryption_key.is_some(),
        path: &path,
        file: file_mode(&path),
        stored_keys,
        production: !is_loopback_host(&config.issuer),
    }));

    report(&findings, json)
}

fn unreadable(
    check: &'static str,
    reference: &'static str,
    what: &str,
    e: &crate::store::StoreError,
) -> Finding {
    Finding::new(
        check,
        Severity::High,
        reference,
        format!("cannot read {what} from the store: {e}"),
    )
}

/// Prints the findings and the count per severity; an error (non-zero exit) names the
/// high ones.
fn report(findings: &[Finding], json: bool) -> Result<(), CliError> {
    let tally = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let summary: serde_json::Map<String, serde_json::Value> = Severity::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), tally(*s).into()))
        .collect();
    let out = serde_json::json!({ "findings": findings, "summary": summary });
    print(json, &out, || {
        let mut lines: Vec<String> = findings
            .iter()
            .map(|f| {
                format!(
                    "{:<6}  {:<19}  {}  [{}]",
                    f.severity.as_str(),
                    f.check,
                    f.message,
                    f.reference
                )
            })
            .collect();
        let totals: Vec<String> = Severity::ALL
            .iter()
            .map(|s| format!("{} {}", tally(*s), s.as_str()))
            .collect();
        lines.push(String::new());
        lines.push(totals.join(", "));
        lines.join("\n")
    })?;
    let high: Vec<&str> = findings
        .iter()
        .filter(|f| f.severity == Severity::High)
        .map(|f| f.check)
        .collect();
    if high.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "{}: {}",
            count(
                high.len(),
                "high-severity finding",
                "high-severity findings"
            ),
            high.join(", ")
        )))
    }
}

/// Whether `path` exists (`None` if not), with its permission bits where there are any.
fn file_mode(path: &Path) -> Option<Option<u32>> {
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(Some(metadata.permissions().mode()))
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        Some(None)
    }
}

/// Loads the certificate chain and key as the server does (rustls), then reads the chain's
/// validity and checks that the key belongs to the certificate (OpenSSL, already linked for
/// josekit: rustls does not parse certificates).
pub fn read_certificate(files: &TlsFiles) -> Result<CertValidity, String> {
    use openssl::asn1::Asn1Time;
    use openssl::pkey::PKey;
    use openssl::x509::X509;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let cert_path = files.cert.display();
    let key_path = files.key.display();
    CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{cert_path}: {e}"))?;
    PrivateKeyDer::from_pem_file(&files.key).map_err(|e| format!("{key_path}: {e}"))?;

    let pem = std::fs::read(&files.cert).map_err(|e| format!("{cert_path}: {e}"))?;
    let chain = X509::stack_from_pem(&pem).map_err(|e| format!("{cert_path}: {e}"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("no certificate in {cert_path}"))?;
    let key_pem = std::fs::read(&files.key).map_err(|e| format!("{key_path}: {e}"))?;
    let key = PKey::private_key_from_pem(&key_pem).map_err(|e| format!("{key_path}: {e}"))?;
    let public = leaf.public_key().map_err(|e| format!("{cert_path}: {e}"))?;
    if !public.public_eq(&key) {
        return Err(format!(
            "the key in {key_path} does not belong to the certificate in {cert_path}"
        ));
    }
    let epoch = Asn1Time::from_unix(0).map_err(|e| e.to_string())?;
    let unix = |t: &openssl::asn1::Asn1TimeRef| {
        epoch
            .diff(t)
            .map(|d| i64::from(d.days) * DAY + i64::from(d.secs))
            .map_err(|e| format!("{cert_path}: {e}"))
    };
    let mut validity = CertValidity {
        not_before: i64::MIN,
        not_after: i64::MAX,
    };
    for cert in &chain {
        validity.not_before = validity.not_before.max(unix(cert.not_before())?);
        validity.not_after = validity.not_after.min(unix(cert.not_after())?);
    }
    Ok(validity)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    use crate::store::samples::{account, client};

    fn key(kid: &str, alg: &str, created_at: i64) -> SigningKeyRecord {
        SigningKeyRecord {
            kid: kid.to_owned(),
            alg: alg.to_owned(),
            public_jwk: String::new(),
            private_jwk_encrypted: vec![],
            state: "active".into(),
            created_at,
            activates_at: created_at,
        }
    }

    fn severities(findings: &[Finding]) -> Vec<Severity> {
        findings.iter().map(|f| f.severity).collect()
    }

    #[test]
    fn issuer_must_be_https_off_loopback_rfc9700_2_6() {
        assert_eq!(
            issuer(&url("https://id.example.com")).severity,
            Severity::Ok
        );
        assert_eq!(
            issuer(&url("http://127.0.0.1:8080")).severity,
            Severity::Low
        );
        assert_eq!(issuer(&url("http://[::1]:8080")).severity, Severity::Low);
        let f = issuer(&url("http://id.example.com"));
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.reference, REF_ISSUER);
    }

    #[test]
    fn tls_certificate_must_be_valid_now_and_for_a_while() {
        let https = url("https://id.example.com");
        let cert = |not_before, not_after| {
            Ok(CertValidity {
                not_before,
                not_after,
            })
        };
        let check = |c: Result<CertValidity, String>| tls(Some(&c), &https, NOW).severity;
        assert_eq!(check(cert(NOW - DAY, NOW + 90 * DAY)), Severity::Ok);
        assert_eq!(check(cert(NOW - DAY, NOW + 3 * DAY)), Severity::Medium);
        assert_eq!(check(cert(NOW - 90 * DAY, NOW - 1)), Severity::High);
        assert_eq!(check(cert(NOW - 90 * DAY, NOW)), Severity::High);
        assert_eq!(check(cert(NOW + DAY, NOW + 90 * DAY)), Severity::High);
        assert_eq!(check(Err("unreadable".into())), Severity::High);
        let proxy = tls(None, &https, NOW);
        assert_eq!(
            (proxy.severity, proxy.reference),
            (Severity::Info, REF_PROXY)
        );
        assert_eq!(
            tls(None, &url("http://127.0.0.1:8080"), NOW).severity,
            Severity::Info
        );
    }

    #[test]
    fn certificate_files_are_read_for_validity_and_a_matching_key() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let files = TlsFiles {
            cert: write("cert.pem", &cert.pem()),
            key: write("key.pem", &key.serialize_pem()),
        };
        let validity = read_certificate(&files).unwrap();
        assert_eq!(validity.not_before, 1_577_836_800);
        assert_eq!(validity.not_after, 1_609_459_200);

        let other = rcgen::KeyPair::generate().unwrap();
        let mismatched = TlsFiles {
            cert: files.cert.clone(),
            key: write("other.pem", &other.serialize_pem()),
        };
        let err = read_certificate(&mismatched).unwrap_err();
        assert!(err.contains("does not belong"), "{err}");
        let garbage = TlsFiles {
            cert: write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnope\n"),
            key: files.key.clone(),
        };
        assert!(read_certificate(&garbage).is_err());
    }

    #[test]
    fn trusted_proxies_are_expected_behind_a_proxy_rfc9700_4_13() {
        let public = url("https://id.example.com");
        let loopback_bind: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let open_bind: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            trusted_proxies(0, &public, loopback_bind).severity,
            Severity::Medium
        );
        assert_eq!(
            trusted_proxies(1, &public, loopback_bind).severity,
            Severity::Ok
        );
        assert_eq!(
            trusted_proxies(0, &public, open_bind).severity,
            Severity::Info
        );
        assert_eq!(
            trusted_proxies(0, &url("http://127.0.0.1:8080"), loopback_bind).severity,
            Severity::Ok
        );
    }

    #[test]
    fn argon2_minimum_is_owasps_table_not_only_memory_times_passes() {
        for (m, t) in OWASP_ARGON2ID {
            assert!(meets_owasp(m, t), "m={m} t={t}");
            assert!(!meets_owasp(m - 1, t), "m={} t={t}", m - 1);
        }
        assert!(meets_owasp(19_456, 10));
        assert!(meets_owasp(7_168, 6));
        assert!(!meets_owasp(1_000_000, 0));
        // Start-up's floor (m × t ≥ 35840) accepts these; OWASP asks more memory.
        assert!(!meets_owasp(35_840, 1));
        assert!(!meets_owasp(17_920, 2));
        let policy = |memory_kib, iterations| PasswordPolicy {
            memory_kib,
            iterations,
            ..PasswordPolicy::default()
        };
        assert_eq!(
            argon2_parameters(&PasswordPolicy::default()).severity,
            Severity::Ok
        );
        assert_eq!(argon2_parameters(&policy(7_168, 5)).severity, Severity::Ok);
        let f = argon2_parameters(&policy(35_840, 1));
        assert_eq!(f.severity, Severity::High);
        assert!(f.message.contains("47104 KiB at t=1"), "{}", f.message);
    }

    #[test]
    fn stored_password_hashes_below_owasp_are_high() {
        fn phc(algorithm: argon2::Algorithm, m: u32, t: u32) -> String {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let params = argon2::Params::new(m, t, 1, None).unwrap();
            let salt = SaltString::encode_b64(b"doctor-test-salt").unwrap();
            argon2::Argon2::new(algorithm, argon2::Version::V0x13, params)
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string()
        }
        let good = phc(argon2::Algorithm::Argon2id, 7_168, 5);
        let weak = phc(argon2::Algorithm::Argon2id, 256, 1);
        let argon2i = phc(argon2::Algorithm::Argon2i, 19_456, 2);
        let fine = password_hashes(&[account("ada", Some(&good)), account("bob", None)]);
        assert_eq!(severities(&fine), [Severity::Ok]);
        assert!(
            fine[0].message.starts_with("1 password hash stored"),
            "{}",
            fine[0].message
        );

        let found = password_hashes(&[
            account("ada", Some(&good)),
            account("eve", Some(&weak)),
            account("ian", Some(&argon2i)),
            account("zed", Some("not a hash")),
        ]);
        assert_eq!(severities(&found), [Severity::High, Severity::Low]);
        assert!(
            found[0].message.starts_with("2 of 4 ")
                && found[0].message.contains("eve m=256 t=1")
                && found[0].message.contains("ian m=19456 t=2 (not argon2id)"),
            "{}",
            found[0].message
        );
        assert!(found[1].message.contains("zed"), "{}", found[1].message);
    }

    #[test]
    fn store_must_answer_with_every_migration_and_no_other() {
        let status = |applied: &[i64]| MigrationStatus {
            known: vec![1, 2, 3],
            applied: applied.to_vec(),
            ..MigrationStatus::default()
        };
        assert_eq!(
            store_status(&Ok(status(&[1, 2, 3])), "SQLite").severity,
            Severity::Ok
        );
        let pending = store_status(&Ok(status(&[1])), "SQLite");
        assert_eq!(pending.severity, Severity::High);
        assert!(
            pending.message.contains("0002, 0003"),
            "{}",
            pending.message
        );
        assert_eq!(
            store_status(&Ok(status(&[])), "SQLite").severity,
            Severity::High
        );
        let newer = store_status(&Ok(status(&[1, 2, 3, 4])), "Postgres");
        assert!(
            newer.severity == Severity::High && newer.message.contains("newer"),
            "{}",
            newer.message
        );
        let edited = MigrationStatus {
            changed: vec![2],
            ..status(&[1, 2, 3])
        };
        assert_eq!(store_status(&Ok(edited), "SQLite").severity, Severity::High);
        let failed = MigrationStatus {
            failed: Some(3),
            ..status(&[1, 2, 3])
        };
        assert_eq!(store_status(&Ok(failed), "SQLite").severity, Severity::High);
        let down = store_status(&Err("connection refused".into()), "Postgres");
        assert!(
            down.severity == Severity::High && down.message.contains("connection refused"),
            "{}",
            down.message
        );
    }

    #[test]
    fn clock_skew_beyond_five_seconds_is_medium_rfc7519_4_1_4() {
        let t = NOW as f64;
        assert_eq!(clock_skew(None, NOW, NOW).severity, Severity::Info);
        assert_eq!(clock_skew(Some(t + 0.5), NOW, NOW).severity, Severity::Ok);
        // A slow round trip is not skew.
        assert_eq!(
            clock_skew(Some(t + 20.0), NOW, NOW + 30).severity,
            Severity::Ok
        );
        assert_eq!(clock_skew(Some(t + 5.9), NOW, NOW).severity, Severity::Ok);
        let ahead = clock_skew(Some(t + 60.0), NOW, NOW);
        assert!(
            ahead.severity == Severity::Medium && ahead.message.contains("59 s ahead"),
            "{}",
            ahead.message
        );
        let behind = clock_skew(Some(t - 30.0), NOW, NOW);
        assert!(
            behind.severity == Severity::Medium && behind.message.contains("30 s behind"),
            "{}",
            behind.message
        );
    }

    #[test]
    fn kek_file_must_be_owner_only_and_present_while_keys_need_it() {
        let path = Path::new("data/key-encryption-key");
        let facts = |configured, file, stored_keys, production| KekFacts {
            configured,
            path,
            file,
            stored_keys,
            production,
        };
        let check = |f: KekFacts<'_>| kek_file(&f).severity;
        assert_eq!(
            check(facts(false, Some(Some(0o100600)), Some(3), false)),
            Severity::Ok
        );
        assert_eq!(
            check(facts(false, Some(Some(0o100600)), Some(3), true)),
            Severity::Low
        );
        let readable = kek_file(&facts(false, Some(Some(0o100644)), Some(3), false));
        assert_eq!(readable.severity, Severity::High);
        assert!(
            readable.message.contains("mode 0644"),
            "{}",
            readable.message
        );
        assert_eq!(
            check(facts(false, Some(Some(0o100640)), Some(3), false)),
            Severity::High
        );
        assert_eq!(
            check(facts(false, Some(Some(0o100620)), Some(3), false)),
            Severity::Medium
        );
        // A stray file is still a key lying around, configured or not.
        assert_eq!(
            check(facts(true, Some(Some(0o100604)), Some(3), true)),
            Severity::High
        );
        assert_eq!(
            check(facts(true, Some(Some(0o100600)), Some(3), true)),
            Severity::Info
        );
        assert_eq!(check(facts(true, None, Some(3), true)), Severity::Ok);
        assert_eq!(check(facts(false, None, Some(3), false)), Severity::High);
        assert_eq!(check(facts(false, None, Some(0), false)), Severity::Info);
        assert_eq!(check(facts(false, None, None, false)), Severity::Info);
    }

    #[test]
    fn active_signing_keys_older_than_ninety_days_are_medium() {
        assert_eq!(severities(&signing_key_age(&[], NOW)), [Severity::Info]);
        let young = [
            key("r1", "RS256", NOW - 10 * DAY),
            key("e1", "ES256", NOW - DAY),
        ];
        let found = signing_key_age(&young, NOW);
        assert_eq!(severities(&found), [Severity::Ok]);
        assert!(
            found[0].message.contains("RS256 10 days"),
            "{}",
            found[0].message
        );

        let old = [
            key("r1", "RS256", NOW - 120 * DAY),
            key("e1", "ES256", NOW - 100 * DAY),
            key("e2", "ES256", NOW + 3600),
        ];
        let found = signing_key_age(&old, NOW);
        assert_eq!(severities(&found), [Severity::Medium, Severity::Ok]);
        assert_eq!(found[0].subject.as_deref(), Some("r1"));
        assert!(
            found[0].message.contains("120 days"),
            "{}",
            found[0].message
        );
        // ES256 has a `next` key: its rotation is under way.
        assert!(
            found[1].message.contains("ES256 100 days"),
            "{}",
            found[1].message
        );
        // Only the active key counts, not the retired ones before it.
        let rotated = [
            key("r1", "RS256", NOW - 400 * DAY),
            key("r2", "RS256", NOW - 5 * DAY),
        ];
        assert_eq!(severities(&signing_key_age(&rotated, NOW)), [Severity::Ok]);
        let only_next = [key("n1", "RS256", NOW + 3600)];
        assert_eq!(
            severities(&signing_key_age(&only_next, NOW)),
            [Severity::Info]
        );
    }

    #[test]
    fn confidential_clients_without_pkce_are_medium_rfc9700_2_1_1() {
        let mut legacy = client("legacy", &["https://app.example/cb"]);
        legacy.require_pkce = false;
        let mut public = client("spa", &["https://spa.example/cb"]);
        public.secret_digest = None;
        public.require_pkce = false;
        let ok = client("web", &["https://app.example/cb"]);
        let found = client_pkce(&[legacy, public, ok.clone()]);
        assert_eq!(severities(&found), [Severity::Medium]);
        assert_eq!(found[0].subject.as_deref(), Some("legacy"));
        assert_eq!(found[0].reference, "RFC 9700 §2.1.1");
        assert_eq!(severities(&client_pkce(&[ok])), [Severity::Ok]);
    }

    #[test]
    fn redirect_uris_on_plain_http_off_loopback_are_high_rfc9700_2_6() {
        let fine = client(
            "fine",
            &[
                "https://app.example/cb",
                "http://127.0.0.1:7000/cb",
                "http://localhost/cb",
                "com.example.app:/cb",
            ],
        );
        assert_eq!(
            severities(&client_redirect_uris(std::slice::from_ref(&fine))),
            [Severity::Ok]
        );
        let bad = client(
            "bad",
            &["http://app.example/cb", "https://app.example/cb#frag"],
        );
        let found = client_redirect_uris(&[fine, bad]);
        assert_eq!(severities(&found), [Severity::High, Severity::Medium]);
        assert!(found[0].message.contains("http://app.example/cb"));
        assert_eq!(found[0].reference, "RFC 9700 §2.6");
        assert_eq!(found[0].subject.as_deref(), Some("bad"));
    }

    #[test]
    fn a_high_finding_fails_the_run_and_the_error_names_its_check() {
        let ok = Finding::new("issuer", Severity::Ok, REF_ISSUER, "fine");
        let high = Finding::new("kek_file", Severity::High, REF_KEK, "bad");
        assert!(report(std::slice::from_ref(&ok), true).is_ok());
        let err = report(&[ok, high], true).unwrap_err().to_string();
        assert_eq!(err, "1 high-severity finding: kek_file");
    }

    #[test]
    fn client_secrets_older_than_a_year_are_medium() {
        let now = 400 * 86_400;
        let mut old = client("old", &["https://a.example/cb"]);
        old.created_at = 0;
        let mut rotated_recently = client("rotated", &["https://a.example/cb"]);
        rotated_recently.created_at = 0;
        let mut public = client("public", &["https://a.example/cb"]);
        public.created_at = 0;
        public.secret_digest = None;
        let rotated = std::collections::HashMap::from([("rotated".to_owned(), now - 86_400)]);
        let findings = client_secret_age(&[old, rotated_recently, public], &rotated, now);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].severity, Severity::Medium);
        assert_eq!(findings[0].subject.as_deref(), Some("old"));
        let fresh = client_secret_age(&[client("new", &[])], &Default::default(), 0);
        assert_eq!(fresh[0].severity, Severity::Ok);
    }
}
