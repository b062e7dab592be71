//! `tessera user …`: manage the people who log in.

use std::io::{BufRead, IsTerminal};

use clap::{Args, Subcommand};
use secrecy::SecretString;
use serde_json::json;

use super::{open, parse_bool, print, CliError};
use crate::audit::{AuditEvent, AuditKind};
use crate::config::Config;
use crate::crypto::password::Passwords;
use crate::store::{AccountRecord, StandardClaims, Store, StoreError};

/// NIST SP 800-63B §5.1.1.2: at least 8 characters; the upper bound keeps hashing cost fixed.
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=1024;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from stdin or prompted for.
    Create(CreateArgs),
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one user (by id or username).
    Show {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a user's username or claims; an empty value removes a claim.
    Update(UpdateArgs),
    /// Set a new password.
    SetPassword {
        user: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        json: bool,
    },
    /// Stop a user from logging in (their tokens stop working too).
    Disable {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Let a disabled user log in again.
    Enable {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a user and everything issued to them.
    Delete {
        user: String,
        #[arg(long)]
        json: bool,
    },
}

/// Standard claims (OpenID Connect Core §5.1) settable from the command line.
#[derive(Debug, Args, Default)]
pub struct ClaimArgs {
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    name: Option<String>,
    #[arg(long = "given-name")]
    given_name: Option<String>,
    #[arg(long = "family-name")]
    family_name: Option<String>,
    #[arg(long = "middle-name")]
    middle_name: Option<String>,
    #[arg(long)]
    nickname: Option<String>,
    #[arg(long = "preferred-username")]
    preferred_username: Option<String>,
    #[arg(long)]
    profile: Option<String>,
    #[arg(long)]
    picture: Option<String>,
    #[arg(long)]
    website: Option<String>,
    #[arg(long)]
    gender: Option<String>,
    /// YYYY-MM-DD (or YYYY).
    #[arg(long)]
    birthdate: Option<String>,
    /// IANA time zone, e.g. Europe/Paris.
    #[arg(long)]
    zoneinfo: Option<String>,
    /// BCP 47 language tag, e.g. en-GB.
    #[arg(long)]
    locale: Option<String>,
    /// E.164 is recommended, e.g. +44 20 7946 0000.
    #[arg(long = "phone")]
    phone_number: Option<String>,
    /// The whole postal address as it is displayed (OIDC Core §5.1.1 `formatted`).
    #[arg(long = "address-formatted")]
    address_formatted: Option<String>,
    #[arg(long = "street-address")]
    street_address: Option<String>,
    /// City or locality.
    #[arg(long)]
    locality: Option<String>,
    /// State, province, prefecture or region.
    #[arg(long)]
    region: Option<String>,
    #[arg(long = "postal-code")]
    postal_code: Option<String>,
    #[arg(long)]
    country: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    username: String,
    /// Read the password from the first line of stdin.
    #[arg(long, conflicts_with = "no_password")]
    password_stdin: bool,
    /// Create the user without a password (they cannot log in until one is set).
    #[arg(long)]
    no_password: bool,
    #[command(flatten)]
    claims: ClaimArgs,
    #[arg(long = "email-verified")]
    email_verified: bool,
    #[arg(long = "phone-verified")]
    phone_verified: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    user: String,
    #[arg(long)]
    username: Option<String>,
    #[command(flatten)]
    claims: ClaimArgs,
    #[arg(long = "email-verified", value_name = "BOOL", value_parser = parse_bool)]
    email_verified: Option<bool>,
    #[arg(long = "phone-verified", value_name = "BOOL", value_parser = parse_bool)]
    phone_verified: Option<bool>,
    /// Give the user a role (released as the `roles` claim with the `roles` scope); repeatable.
    #[arg(long = "add-role", value_name = "ROLE")]
    add_role: Vec<String>,
    /// Take a role away; repeatable.
    #[arg(long = "remove-role", value_name = "ROLE")]
    remove_role: Vec<String>,
    /// Put the user in a group (the `groups` claim, with the `roles` scope); repeatable.
    #[arg(long = "add-group", value_name = "GROUP")]
    add_group: Vec<String>,
    /// Take the user out of a group; repeatable.
    #[arg(long = "remove-group", value_name = "GROUP")]
    remove_group: Vec<String>,
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Config, command: UserCommand) -> Result<(), CliError> {
    let store = open(config).await?;
    let now = crate::app::Clock::default().now();
    let passwords = Passwords::new(&config.password)?;
    match command {
        UserCommand::Create(args) => {
            check_username(&args.username)?;
            let password_hash = if args.no_password {
                None
            } else {
                let password = read_password(args.password_stdin)?;
                Some(passwords.hash(password).await?)
            };
            let mut claims = StandardClaims::default();
            apply_claims(&mut claims, args.claims);
            if args.email_verified {
                claims.email_verified = Some(true);
            }
            if args.phone_verified {
                claims.phone_number_verified = Some(true);
            }
            check_claims(&claims)?;
            let account = AccountRecord {
                id: uuid::Uuid::new_v4().to_string(),
                username: args.username,
                password_hash,
                claims,
                disabled: false,
                failed_login_count: 0,
                roles: Vec::new(),
                groups: Vec::new(),
                created_at: now,
                updated_at: now,
            };
            let audit = AuditEvent::new(AuditKind::UserCreated, "cli", now).account(&account.id);
            store
                .insert_account(&account, &audit)
                .await
                .map_err(|e| conflict(e, &account.username))?;
            print(args.json, &account, || describe(&account))
        }
        UserCommand::List { json } => {
            let accounts = store.list_accounts().await?;
            print(json, &accounts, || {
                if accounts.is_empty() {
                    return "no users".to_owned();
                }
                accounts
                    .iter()
                    .map(|a| {
                        let state = if a.disabled { "disabled" } else { "active" };
                        format!("{}\t{}\t{state}", a.id, a.username)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        UserCommand::Show { user, json } => {
            let account = find(store.as_ref(), &user).await?;
            print(json, &account, || describe(&account))
        }
        UserCommand::Update(args) => {
            let mut account = find(store.as_ref(), &args.user).await?;
            if let Some(username) = args.username {
                check_username(&username)?;
                account.username = username;
            }
            apply_claims(&mut account.claims, args.claims);
            if let Some(v) = args.email_verified {
                account.claims.email_verified = Some(v);
            }
            if let Some(v) = args.phone_verified {
                account.claims.phone_number_verified = Some(v);
            }
            check_claims(&account.claims)?;
            let roles_before = (account.roles.clone(), account.groups.clone());
            edit_names(&mut account.roles, args.add_role, args.remove_role, "role")?;
            edit_names(
                &mut account.groups,
                args.add_group,
                args.remove_group,
                "group",
            )?;
            account.updated_at = now;
            let mut audit =
                AuditEvent::new(AuditKind::UserUpdated, "cli", now).account(&account.id);
            if roles_before != (account.roles.clone(), account.groups.clone()) {
                audit = audit.details(json!({ "roles": account.roles, "groups": account.groups }));
            }
            store
                .update_account(&account, &audit)
                .await
                .map_err(|e| conflict(e, &account.username))?;
            print(args.json, &account, || describe(&account))
        }
        UserCommand::SetPassword {
            user,
            password_stdin,
            json,
        } => {
            let mut account = find(store.as_ref(), &user).await?;
            let password = read_password(password_stdin)?;
            account.password_hash = Some(passwords.hash(password).await?);
            account.failed_login_count = 0;
            account.updated_at = now;
            let audit =
                AuditEvent::new(AuditKind::UserPasswordSet, "cli", now).account(&account.id);
            // ASVS 5.0 7.4.3: a new password ends what the old one (or its thief) started.
            let logouts =
                super::session::logout_tokens_for_user(config, &store, &account.id, now).await?;
            store
                .update_account_ending_access(&account, now, &audit)
                .await?;
            super::session::notify(&logouts).await;
            print(json, &json!({ "password_set": account.id }), || {
                format!("password set for `{}`", account.username)
            })
        }
        UserCommand::Disable { user, json } => {
            set_disabled(config, &store, &user, true, json, now).await
        }
        UserCommand::Enable { user, json } => {
            set_disabled(config, &store, &user, false, json, now).await
        }
        UserCommand::Delete { user, json } => {
            let account = find(store.as_ref(), &user).await?;
            let audit = AuditEvent::new(AuditKind::UserDeleted, "cli", now).account(&account.id);
            // Signed while the sessions and grants that name the clients still exist.
            let logouts =
                super::session::logout_tokens_for_user(config, &store, &account.id, now).await?;
            store.delete_account(&account.id, &audit).await?;
            super::session::notify(&logouts).await;
            print(json, &json!({ "deleted": account.id }), || {
                format!("deleted user `{}`", account.username)
            })
        }
    }
}

async fn set_disabled(
    config: &Config,
    store: &std::sync::Arc<dyn Store>,
    user: &str,
    disabled: bool,
    json: bool,
    now: i64,
) -> Result<(), CliError> {
    let mut account = find(store.as_ref(), user).await?;
    account.disabled = disabled;
    account.updated_at = now;
    let kind = if disabled {
        AuditKind::UserDisabled
    } else {
        AuditKind::UserUpdated
    };
    let audit = AuditEvent::new(kind, "cli", now)
        .account(&account.id)
        .details(json!({ "disabled": disabled }));
    if disabled {
        // ASVS 5.0 7.4.2: disabling ends every session and grant; enabling restores none.
        let logouts =
            super::session::logout_tokens_for_user(config, store, &account.id, now).await?;
        store
            .update_account_ending_access(&account, now, &audit)
            .await?;
        super::session::notify(&logouts).await;
    } else {
        store.update_account(&account, &audit).await?;
    }
    print(json, &account, || describe(&account))
}

/// By id first (ids are UUIDs, so no username can shadow one), then by username.
pub(super) async fn find(store: &dyn Store, user: &str) -> Result<AccountRecord, CliError> {
    if let Some(a) = store.account(user).await? {
        return Ok(a);
    }
    store
        .account_by_username(user)
        .await?
        .ok_or_else(|| CliError::new(format!("user `{user}` not found")))
}

fn conflict(e: StoreError, username: &str) -> CliError {
    match e {
        StoreError::Conflict(_) => CliError::new(format!("username `{username}` is taken")),
        e => e.into(),
    }
}

fn check_username(username: &str) -> Result<(), CliError> {
    let ok = (1..=128).contains(&username.chars().count())
        && !username
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(CliError::new(
            "username must be 1-128 characters without spaces or control characters",
        ))
    }
}

/// Sets each claim given; an empty value removes it.
fn apply_claims(claims: &mut StandardClaims, args: ClaimArgs) {
    let set = |slot: &mut Option<String>, value: Option<String>| {
        if let Some(v) = value {
            *slot = if v.is_empty() { None } else { Some(v) };
        }
    };
    set(&mut claims.email, args.email);
    set(&mut claims.name, args.name);
    set(&mut claims.given_name, args.given_name);
    set(&mut claims.family_name, args.family_name);
    set(&mut claims.middle_name, args.middle_name);
    set(&mut claims.nickname, args.nickname);
    set(&mut claims.preferred_username, args.preferred_username);
    set(&mut claims.profile, args.profile);
    set(&mut claims.picture, args.picture);
    set(&mut claims.website, args.website);
    set(&mut claims.gender, args.gender);
    set(&mut claims.birthdate, args.birthdate);
    set(&mut claims.zoneinfo, args.zoneinfo);
    set(&mut claims.locale, args.locale);
    set(&mut claims.phone_number, args.phone_number);
    let mut address = claims.address.take().unwrap_or_default();
    set(&mut address.formatted, args.address_formatted);
    set(&mut address.street_address, args.street_address);
    set(&mut address.locality, args.locality);
    set(&mut address.region, args.region);
    set(&mut address.postal_code, args.postal_code);
    set(&mut address.country, args.country);
    // An address with no part left is no address (Core §5.1.1 has no empty one).
    claims.address = (address != Default::default()).then_some(address);
    // A verification flag says something about one value; it goes when the value goes.
    if claims.email.is_none() {
        claims.email_verified = None;
    }
    if claims.phone_number.is_none() {
        claims.phone_number_verified = None;
    }
}

fn check_claims(claims: &StandardClaims) -> Result<(), CliError> {
    if let Some(email) = &claims.email {
        let ok = email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(CliError::new(format!(
                "--email `{email}` is not an e-mail address"
            )));
        }
    }
    for (flag, url) in [
        ("--profile", &claims.profile),
        ("--picture", &claims.picture),
        ("--website", &claims.website),
    ] {
        // Core §5.1: URLs a relying party will link to or load; nothing but http(s).
        if let Some(url) = url {
            let ok = url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some());
            if !ok {
                return Err(CliError::new(format!(
                    "{flag} `{url}` is not an http(s) URL"
                )));
            }
        }
    }
    if let Some(birthdate) = &claims.birthdate {
        if !birthdate_ok(birthdate) {
            return Err(CliError::new(format!(
                "--birthdate `{birthdate}` must be YYYY-MM-DD, YYYY, or 0000-MM-DD (OIDC Core §5.1)"
            )));
        }
    }
    if claims.email.is_none() && claims.email_verified == Some(true) {
        return Err(CliError::new("--email-verified needs --email"));
    }
    if claims.phone_number.is_none() && claims.phone_number_verified == Some(true) {
        return Err(CliError::new("--phone-verified needs --phone"));
    }
    Ok(())
}

/// Core §5.1 `birthdate`: ISO 8601 YYYY-MM-DD, a year alone, or 0000 for an undisclosed
/// year.
fn birthdate_ok(value: &str) -> bool {
    let digits = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_digit());
    match value.split('-').collect::<Vec<_>>()[..] {
        [y] => digits(y, 4),
        [y, m, d] if digits(y, 4) && digits(m, 2) && digits(d, 2) => {
            let month = m.parse::<u8>().unwrap_or(0);
            let day = d.parse::<u8>().unwrap_or(0);
            (1..=12).contains(&month) && (1..=31).contains(&day)
        }
        _ => false,
    }
}

/// Adds and removes role or group names, keeping the list sorted and without repeats. A name
/// is what a resource server compares, so it must be a plain token: 1–64 characters, no
/// spaces or controls (it also travels in space-separated places such as logs).
fn edit_names(
    names: &mut Vec<String>,
    add: Vec<String>,
    remove: Vec<String>,
    what: &str,
) -> Result<(), CliError> {
    for name in add.iter().chain(&remove) {
        let ok = (1..=64).contains(&name.chars().count())
            && !name.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(CliError::new(format!(
                "{what} `{name}` must be 1-64 characters without spaces or control characters"
            )));
        }
    }
    names.retain(|n| !remove.contains(n));
    names.extend(add);
    names.sort();
    names.dedup();
    Ok(())
}

/// The password from stdin's first line, or prompted twice on a terminal.
fn read_password(from_stdin: bool) -> Result<SecretString, CliError> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::new(format!("cannot read the password from stdin: {e}")))?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|e| CliError::new(format!("cannot read the password: {e}")))?;
        let again = rpassword::prompt_password("Password again: ")
            .map_err(|e| CliError::new(format!("cannot read the password: {e}")))?;
        if first != again {
            return Err(CliError::new("the passwords do not match"));
        }
        first
    } else {
        return Err(CliError::new(
            "no password given: use --password-stdin, run in a terminal, or --no-password",
        ));
    };
    if !PASSWORD_CHARS.contains(&password.chars().count()) {
        return Err(CliError::new(format!(
            "the password must be {} to {} characters",
            PASSWORD_CHARS.start(),
            PASSWORD_CHARS.end()
        )));
    }
    Ok(SecretString::from(password))
}

fn describe(a: &AccountRecord) -> String {
    let claims = serde_json::to_string(&a.claims).unwrap_or_default();
    format!(
        "id: {}\nusername: {}\nstatus: {}\npassword: {}\nclaims: {claims}\nroles: {}\ngroups: {}",
        a.id,
        a.username,
        if a.disabled { "disabled" } else { "active" },
        if a.password_hash.is_some() {
            "set"
        } else {
            "none"
        },
        a.roles.join(" "),
        a.groups.join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn birthdates_as_oidc_5_1_allows() {
        for ok in ["1815-12-10", "1815", "0000-12-10"] {
            assert!(birthdate_ok(ok), "{ok}");
        }
        for bad in [
            "10/12/1815",
            "1815-13-10",
            "1815-12",
            "18151210",
            "1815-12-1x",
            "",
        ] {
            assert!(!birthdate_ok(bad), "{bad}");
        }
    }
}
