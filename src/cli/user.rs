//! `tessera user …`: manage the people who log in.

use std::io::{BufRead, IsTerminal};

use clap::{Args, Subcommand};
use secrecy::SecretString;
use serde_json::json;

use super::{open, parse_bool, print, CliError};
use crate::audit::{AuditEvent, AuditKind};
use crate::config::Config;
use crate::crypto::password::Passwords;
use crate::oauth::profile::{self, Claim, ClaimEdit, Problem};
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
            let mut claims = args.claims.edit().applied_to(&StandardClaims::default());
            if args.email_verified {
                claims.email_verified = Some(true);
            }
            if args.phone_verified {
                claims.phone_number_verified = Some(true);
            }
            check_claims(&StandardClaims::default(), &claims)?;
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
            let before = account.claims.clone();
            account.claims = args.claims.edit().applied_to(&before);
            if let Some(v) = args.email_verified {
                account.claims.email_verified = Some(v);
            }
            if let Some(v) = args.phone_verified {
                account.claims.phone_number_verified = Some(v);
            }
            check_claims(&before, &account.claims)?;
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

impl ClaimArgs {
    /// The claims given, as an edit: an empty value removes its claim.
    fn edit(self) -> ClaimEdit {
        let mut edit = ClaimEdit::default();
        for (claim, value) in [
            (Claim::Email, self.email),
            (Claim::Name, self.name),
            (Claim::GivenName, self.given_name),
            (Claim::FamilyName, self.family_name),
            (Claim::MiddleName, self.middle_name),
            (Claim::Nickname, self.nickname),
            (Claim::PreferredUsername, self.preferred_username),
            (Claim::Profile, self.profile),
            (Claim::Picture, self.picture),
            (Claim::Website, self.website),
            (Claim::Gender, self.gender),
            (Claim::Birthdate, self.birthdate),
            (Claim::Zoneinfo, self.zoneinfo),
            (Claim::Locale, self.locale),
            (Claim::PhoneNumber, self.phone_number),
            (Claim::Formatted, self.address_formatted),
            (Claim::StreetAddress, self.street_address),
            (Claim::Locality, self.locality),
            (Claim::Region, self.region),
            (Claim::PostalCode, self.postal_code),
            (Claim::Country, self.country),
        ] {
            edit.set(claim, value);
        }
        edit
    }
}

/// The rules of `oauth::profile`, for the claims that `after` changes; the first claim
/// refused is named by its flag.
fn check_claims(before: &StandardClaims, after: &StandardClaims) -> Result<(), CliError> {
    let Some(e) = profile::check(before, after).into_iter().next() else {
        return Ok(());
    };
    let flag = match e.claim {
        Claim::PhoneNumber => "--phone".to_owned(),
        Claim::Formatted => "--address-formatted".to_owned(),
        claim => format!("--{}", claim.as_str().replace('_', "-")),
    };
    Err(CliError::new(match e.problem {
        Problem::VerifiedWithoutValue => format!("{flag}-verified needs {flag}"),
        problem => {
            let value = e.claim.value(after).unwrap_or("");
            format!("{flag} `{value}` {problem}")
        }
    }))
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
