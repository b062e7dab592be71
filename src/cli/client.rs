//! `tessera client …`: register and manage OAuth clients.

use clap::{Args, Subcommand};
use serde_json::json;

use super::{open, parse_bool, print, CliError};
use crate::audit::{AuditEvent, AuditKind};
use crate::config::Config;
use crate::crypto::keys::ALGS;
use crate::crypto::token::{PlainSecret, CLIENT_SECRET_PREFIX};
use crate::oauth::grants::GrantType;
use crate::oauth::{redirect_uri, scope};
use crate::store::{AccessTokenFormat, AuthMethod, ClientRecord, StoreError};

/// Shortest operator-supplied secret: 32 characters is at least ~190 bits even as base64.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client. A confidential client without --secret gets a generated one,
    /// printed once.
    Create(CreateArgs),
    /// List clients.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one client.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a client; list options replace the whole list.
    Update(UpdateArgs),
    /// Delete a client and everything issued to it.
    Delete {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Replace a confidential client's secret; the new one is printed once.
    RotateSecret {
        id: String,
        /// Use this secret instead of generating one (at least 32 characters).
        #[arg(long)]
        secret: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The client_id: 1-128 of A-Z a-z 0-9 . _ ~ -
    #[arg(long)]
    id: String,
    /// Shown to people on the login and consent pages.
    #[arg(long)]
    name: String,
    /// Client secret (at least 32 characters); generated when omitted.
    #[arg(long, conflicts_with = "public")]
    secret: Option<String>,
    /// A public client (no secret, token endpoint auth method `none`, PKCE required).
    #[arg(long)]
    public: bool,
    #[arg(long = "redirect-uri", value_name = "URI", num_args = 1..)]
    redirect_uris: Vec<String>,
    #[arg(long = "post-logout-redirect-uri", value_name = "URI", num_args = 1..)]
    post_logout_redirect_uris: Vec<String>,
    /// Default: authorization_code refresh_token.
    #[arg(long = "grant-type", value_name = "TYPE", num_args = 1..)]
    grant_types: Vec<String>,
    /// Scopes the client may ask for, space-separated.
    #[arg(long, default_value = "openid profile email")]
    scope: String,
    /// client_secret_basic (default for confidential clients), client_secret_post, none.
    #[arg(long = "auth-method", value_parser = parse_auth_method)]
    auth_method: Option<AuthMethod>,
    #[arg(long = "access-token-format", value_parser = parse_format, default_value = "opaque")]
    access_token_format: AccessTokenFormat,
    /// May call the introspection endpoint (gateways, resource servers).
    #[arg(long)]
    introspect: bool,
    /// Trusted first-party application: consent is not asked.
    #[arg(long = "first-party")]
    first_party: bool,
    /// Accepted for compatibility: every client requires PKCE unless --pkce-optional.
    #[arg(long = "require-pkce", conflicts_with = "pkce_optional")]
    require_pkce: bool,
    /// Legacy confidential clients only: PKCE may be left out of an OpenID request that
    /// carries a `nonce` (RFC 9700 §2.1.1). Audited.
    #[arg(long = "pkce-optional")]
    pkce_optional: bool,
    #[arg(long = "id-token-alg", default_value = "RS256")]
    id_token_alg: String,
    /// Requests per second at /token, /introspect and /revoke (`N/s`); default: the
    /// configured `rate_limit_client_per_sec` (which /userinfo always uses).
    #[arg(long = "rate-limit", value_name = "N/s", value_parser = parse_rate)]
    rate_limit: Option<i64>,
    /// Where logout tokens are POSTed when a session the client signed into ends (OIDC
    /// Back-Channel Logout); https, or plain http on loopback.
    #[arg(long = "backchannel-logout-uri", value_name = "URI")]
    backchannel_logout_uri: Option<String>,
    /// The client needs `sid` in its logout tokens.
    #[arg(
        long = "backchannel-logout-session-required",
        value_name = "BOOL",
        value_parser = parse_bool,
        default_value = "false"
    )]
    backchannel_logout_session_required: bool,
    /// The page loaded in a hidden iframe when a session the client signed into ends (OIDC
    /// Front-Channel Logout), with `iss` and `sid` added; https (plain http on loopback), on
    /// the origin of one of its redirect URIs.
    #[arg(long = "frontchannel-logout-uri", value_name = "URI")]
    frontchannel_logout_uri: Option<String>,
    /// The client needs `iss` and `sid` on its front-channel logout URI.
    #[arg(
        long = "frontchannel-logout-session-required",
        value_name = "BOOL",
        value_parser = parse_bool,
        default_value = "false"
    )]
    frontchannel_logout_session_required: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    id: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long = "redirect-uri", value_name = "URI", num_args = 1..)]
    redirect_uris: Option<Vec<String>>,
    #[arg(long = "post-logout-redirect-uri", value_name = "URI", num_args = 0..)]
    post_logout_redirect_uris: Option<Vec<String>>,
    #[arg(long = "grant-type", value_name = "TYPE", num_args = 1..)]
    grant_types: Option<Vec<String>>,
    #[arg(long)]
    scope: Option<String>,
    #[arg(long = "auth-method", value_parser = parse_auth_method)]
    auth_method: Option<AuthMethod>,
    #[arg(long = "access-token-format", value_parser = parse_format)]
    access_token_format: Option<AccessTokenFormat>,
    #[arg(long, value_name = "BOOL", value_parser = parse_bool)]
    introspect: Option<bool>,
    #[arg(long = "first-party", value_name = "BOOL", value_parser = parse_bool)]
    first_party: Option<bool>,
    #[arg(long = "require-pkce", value_name = "BOOL", value_parser = parse_bool)]
    require_pkce: Option<bool>,
    #[arg(long = "id-token-alg")]
    id_token_alg: Option<String>,
    /// `N/s`, or `default` for the configured default.
    #[arg(long = "rate-limit", value_name = "N/s|default")]
    rate_limit: Option<String>,
    /// A URI, or `none` to stop back-channel logout for the client.
    #[arg(long = "backchannel-logout-uri", value_name = "URI|none")]
    backchannel_logout_uri: Option<String>,
    #[arg(
        long = "backchannel-logout-session-required",
        value_name = "BOOL",
        value_parser = parse_bool
    )]
    backchannel_logout_session_required: Option<bool>,
    /// A URI, or `none` to stop front-channel logout for the client.
    #[arg(long = "frontchannel-logout-uri", value_name = "URI|none")]
    frontchannel_logout_uri: Option<String>,
    #[arg(
        long = "frontchannel-logout-session-required",
        value_name = "BOOL",
        value_parser = parse_bool
    )]
    frontchannel_logout_session_required: Option<bool>,
    #[arg(long)]
    json: bool,
}

fn parse_auth_method(s: &str) -> Result<AuthMethod, String> {
    AuthMethod::parse(s)
        .ok_or_else(|| format!("`{s}` is not client_secret_basic, client_secret_post or none"))
}

/// `100/s` (or just `100`): requests per second, 1 to 1,000,000.
fn parse_rate(s: &str) -> Result<i64, String> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    n.parse::<i64>()
        .ok()
        .filter(|n| (1..=1_000_000).contains(n))
        .ok_or_else(|| format!("`{s}` is not a rate like 100/s (1 to 1000000 per second)"))
}

fn parse_rate_or_default(s: &str) -> Result<Option<i64>, String> {
    if s == "default" {
        Ok(None)
    } else {
        parse_rate(s).map(Some)
    }
}

fn parse_format(s: &str) -> Result<AccessTokenFormat, String> {
    AccessTokenFormat::parse(s).ok_or_else(|| format!("`{s}` is not opaque or jwt"))
}

pub async fn run(config: &Config, command: ClientCommand) -> Result<(), CliError> {
    let store = open(config).await?;
    let now = crate::app::Clock::default().now();
    let not_found = |id: &str| CliError::new(format!("client `{id}` not found"));
    match command {
        ClientCommand::Create(args) => {
            let json = args.json;
            let (client, secret) = build(args, now)?;
            let audit = AuditEvent::new(AuditKind::ClientCreated, "cli", now)
                .client(&client.id)
                .details(json!({ "require_pkce": client.require_pkce }));
            store
                .insert_client(&client, &audit)
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(_) => {
                        CliError::new(format!("client `{}` already exists", client.id))
                    }
                    e => e.into(),
                })?;
            print_with_secret(json, &client, secret.as_ref())
        }
        ClientCommand::List { json } => {
            let clients = store.list_clients().await?;
            print(json, &clients, || {
                if clients.is_empty() {
                    return "no clients".to_owned();
                }
                clients
                    .iter()
                    .map(|c| format!("{}\t{}\t{}", c.id, kind(c), c.name))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        ClientCommand::Show { id, json } => {
            let client = store.client(&id).await?.ok_or_else(|| not_found(&id))?;
            print(json, &client, || describe(&client))
        }
        ClientCommand::Update(args) => {
            let json = args.json;
            let mut client = store
                .client(&args.id)
                .await?
                .ok_or_else(|| not_found(&args.id))?;
            let before = client.clone();
            apply_update(&mut client, args, now)?;
            let audit = AuditEvent::new(AuditKind::ClientUpdated, "cli", now)
                .client(&client.id)
                .details(changed_flags(&before, &client));
            store.update_client(&client, &audit).await?;
            print(json, &client, || describe(&client))
        }
        ClientCommand::Delete { id, json } => {
            let audit = AuditEvent::new(AuditKind::ClientDeleted, "cli", now).client(&id);
            store
                .delete_client(&id, &audit)
                .await
                .map_err(|e| match e {
                    StoreError::NotFound(_) => not_found(&id),
                    e => e.into(),
                })?;
            print(json, &json!({ "deleted": id }), || {
                format!("deleted client `{id}`")
            })
        }
        ClientCommand::RotateSecret { id, secret, json } => {
            let mut client = store.client(&id).await?.ok_or_else(|| not_found(&id))?;
            if client.is_public() {
                return Err(CliError::new(format!(
                    "client `{id}` is public and has no secret to rotate"
                )));
            }
            let secret = new_secret(secret)?;
            client.secret_digest = Some(secret.digest());
            client.updated_at = now;
            let audit =
                AuditEvent::new(AuditKind::ClientSecretRotated, "cli", now).client(&client.id);
            store.update_client(&client, &audit).await?;
            print_with_secret(json, &client, Some(&secret))
        }
    }
}

fn new_secret(supplied: Option<String>) -> Result<PlainSecret, CliError> {
    match supplied {
        None => Ok(PlainSecret::generate(CLIENT_SECRET_PREFIX)),
        Some(s) if s.chars().count() < MIN_SECRET_LEN => Err(CliError::new(format!(
            "--secret must be at least {MIN_SECRET_LEN} characters; omit it to generate a strong one"
        ))),
        Some(s) if s.chars().any(char::is_control) => {
            Err(CliError::new("--secret must not contain control characters"))
        }
        Some(s) => Ok(PlainSecret::new(s)),
    }
}

fn build(args: CreateArgs, now: i64) -> Result<(ClientRecord, Option<PlainSecret>), CliError> {
    let secret = if args.public {
        None
    } else {
        Some(new_secret(args.secret)?)
    };
    let auth_method = match (args.public, args.auth_method) {
        (true, None | Some(AuthMethod::None)) => AuthMethod::None,
        (true, Some(m)) => {
            return Err(CliError::new(format!(
                "a public client authenticates with `none`, not `{}`",
                m.as_str()
            )))
        }
        (false, Some(AuthMethod::None)) => {
            return Err(CliError::new(
                "auth method `none` is for public clients: use --public",
            ))
        }
        (false, m) => m.unwrap_or(AuthMethod::ClientSecretBasic),
    };
    let grant_types = if args.grant_types.is_empty() {
        vec!["authorization_code".to_owned(), "refresh_token".to_owned()]
    } else {
        args.grant_types
    };
    let client = ClientRecord {
        id: args.id,
        name: args.name,
        secret_digest: secret.as_ref().map(PlainSecret::digest),
        redirect_uris: args.redirect_uris,
        post_logout_redirect_uris: args.post_logout_redirect_uris,
        grant_types,
        scope: args.scope,
        token_endpoint_auth_method: auth_method,
        access_token_format: args.access_token_format,
        may_introspect: args.introspect,
        first_party: args.first_party,
        // RFC 9700 §2.1.1: PKCE for every client; only an explicit opt-out drops it.
        require_pkce: args.require_pkce || !args.pkce_optional,
        id_token_signed_response_alg: args.id_token_alg,
        created_at: now,
        updated_at: now,
        rate_limit_per_sec: args.rate_limit,
        backchannel_logout_uri: args.backchannel_logout_uri,
        backchannel_logout_session_required: args.backchannel_logout_session_required,
        frontchannel_logout_uri: args.frontchannel_logout_uri,
        frontchannel_logout_session_required: args.frontchannel_logout_session_required,
    };
    validate(&client)?;
    Ok((client, secret))
}

fn apply_update(client: &mut ClientRecord, args: UpdateArgs, now: i64) -> Result<(), CliError> {
    if let Some(v) = args.name {
        client.name = v;
    }
    if let Some(v) = args.redirect_uris {
        client.redirect_uris = v;
    }
    if let Some(v) = args.post_logout_redirect_uris {
        client.post_logout_redirect_uris = v;
    }
    if let Some(v) = args.grant_types {
        client.grant_types = v;
    }
    if let Some(v) = args.scope {
        client.scope = v;
    }
    if let Some(m) = args.auth_method {
        if client.is_public() != (m == AuthMethod::None) {
            return Err(CliError::new(format!(
                "auth method `{}` does not fit a {} client",
                m.as_str(),
                kind(client)
            )));
        }
        client.token_endpoint_auth_method = m;
    }
    if let Some(v) = args.access_token_format {
        client.access_token_format = v;
    }
    if let Some(v) = args.introspect {
        client.may_introspect = v;
    }
    if let Some(v) = args.first_party {
        client.first_party = v;
    }
    if let Some(v) = args.require_pkce {
        if !v && client.is_public() {
            return Err(CliError::new("a public client always requires PKCE"));
        }
        client.require_pkce = v;
    }
    if let Some(v) = args.id_token_alg {
        client.id_token_signed_response_alg = v;
    }
    if let Some(v) = args.rate_limit {
        client.rate_limit_per_sec =
            parse_rate_or_default(&v).map_err(|e| CliError::new(format!("--rate-limit: {e}")))?;
    }
    if let Some(v) = args.backchannel_logout_uri {
        client.backchannel_logout_uri = (v != "none").then_some(v);
    }
    if let Some(v) = args.backchannel_logout_session_required {
        client.backchannel_logout_session_required = v;
    }
    if let Some(v) = args.frontchannel_logout_uri {
        client.frontchannel_logout_uri = (v != "none").then_some(v);
    }
    if let Some(v) = args.frontchannel_logout_session_required {
        client.frontchannel_logout_session_required = v;
    }
    client.updated_at = now;
    validate(client)
}

/// The security-relevant flags an update changed, for the audit trail (an opt-out of PKCE
/// or a new right to introspect must be visible there).
fn changed_flags(before: &ClientRecord, after: &ClientRecord) -> serde_json::Value {
    let mut changed = serde_json::Map::new();
    for (name, old, new) in [
        ("require_pkce", before.require_pkce, after.require_pkce),
        (
            "may_introspect",
            before.may_introspect,
            after.may_introspect,
        ),
        ("first_party", before.first_party, after.first_party),
    ] {
        if old != new {
            changed.insert(name.to_owned(), json!(new));
        }
    }
    serde_json::Value::Object(changed)
}

/// Everything a client record must satisfy, checked before any write.
pub fn validate(c: &ClientRecord) -> Result<(), CliError> {
    let id_ok = (1..=128).contains(&c.id.len())
        && c.id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b));
    if !id_ok {
        return Err(CliError::new(format!(
            "client id `{}` must be 1-128 characters of A-Z a-z 0-9 . _ ~ -",
            c.id
        )));
    }
    if c.name.trim().is_empty()
        || c.name.chars().count() > 200
        || c.name.chars().any(char::is_control)
    {
        return Err(CliError::new(
            "client name must be 1-200 characters without control characters",
        ));
    }
    for (i, g) in c.grant_types.iter().enumerate() {
        if GrantType::parse(g).is_none() {
            return Err(CliError::new(format!(
                "grant type `{g}` is not one of {}",
                GrantType::names().join(", ")
            )));
        }
        if c.grant_types[..i].contains(g) {
            return Err(CliError::new(format!("grant type `{g}` is listed twice")));
        }
    }
    let has = |g: &str| c.grant_types.iter().any(|x| x == g);
    if c.grant_types.is_empty() {
        return Err(CliError::new("a client needs at least one grant type"));
    }
    if has("refresh_token") && !has("authorization_code") {
        return Err(CliError::new(
            "refresh_token needs authorization_code: refresh tokens come from code exchanges",
        ));
    }
    // RFC 7662 §2.1: the introspection endpoint needs client authentication; a public client
    // has none, so anyone who knows its id could read every token.
    if c.may_introspect && c.is_public() {
        return Err(CliError::new(
            "a public client cannot introspect (it cannot authenticate, RFC 7662 §2.1)",
        ));
    }
    if !c.require_pkce && c.is_public() {
        return Err(CliError::new("a public client always requires PKCE"));
    }
    if has("client_credentials") && c.is_public() {
        return Err(CliError::new(
            "a public client cannot use client_credentials (it cannot keep a secret)",
        ));
    }
    if has("authorization_code") && c.redirect_uris.is_empty() {
        return Err(CliError::new(
            "authorization_code needs at least one --redirect-uri",
        ));
    }
    for uri in c.redirect_uris.iter().chain(&c.post_logout_redirect_uris) {
        redirect_uri::check_registration(uri)
            .map_err(|e| CliError::new(format!("redirect URI {e}")))?;
    }
    if let Some(uri) = &c.backchannel_logout_uri {
        redirect_uri::check_backchannel_logout_uri(uri)
            .map_err(|e| CliError::new(format!("--backchannel-logout-uri {e}")))?;
    }
    if let Some(uri) = &c.frontchannel_logout_uri {
        redirect_uri::check_frontchannel_logout_uri(uri, &c.redirect_uris)
            .map_err(|e| CliError::new(format!("--frontchannel-logout-uri {e}")))?;
    }
    scope::parse(&c.scope).map_err(|e| CliError::new(format!("--scope: {e}")))?;
    if !ALGS.contains(&c.id_token_signed_response_alg.as_str()) {
        return Err(CliError::new(format!(
            "--id-token-alg must be one of {}",
            ALGS.join(", ")
        )));
    }
    Ok(())
}

fn kind(c: &ClientRecord) -> &'static str {
    if c.is_public() {
        "public"
    } else {
        "confidential"
    }
}

fn describe(c: &ClientRecord) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(" ")
        }
    };
    format!(
        "id: {}\nname: {}\ntype: {} ({})\nredirect_uris: {}\npost_logout_redirect_uris: {}\n\
         grant_types: {}\nscope: {}\naccess_token_format: {}\nintrospect: {}\nfirst_party: {}\n\
         require_pkce: {}\nid_token_alg: {}\nbackchannel_logout_uri: {}\n\
         backchannel_logout_session_required: {}\nfrontchannel_logout_uri: {}\n\
         frontchannel_logout_session_required: {}",
        c.id,
        c.name,
        kind(c),
        c.token_endpoint_auth_method.as_str(),
        list(&c.redirect_uris),
        list(&c.post_logout_redirect_uris),
        c.grant_types.join(" "),
        c.scope,
        c.access_token_format.as_str(),
        c.may_introspect,
        c.first_party,
        c.require_pkce,
        c.id_token_signed_response_alg,
        c.backchannel_logout_uri.as_deref().unwrap_or("-"),
        c.backchannel_logout_session_required,
        c.frontchannel_logout_uri.as_deref().unwrap_or("-"),
        c.frontchannel_logout_session_required,
    )
}

fn print_with_secret(
    json: bool,
    client: &ClientRecord,
    secret: Option<&PlainSecret>,
) -> Result<(), CliError> {
    let value = json!({ "client": client, "client_secret": secret.map(PlainSecret::expose) });
    print(json, &value, || match secret {
        None => describe(client),
        Some(s) => format!(
            "{}\nclient_secret: {}\n(the secret is shown only now; Tessera keeps only its digest)",
            describe(client),
            s.expose()
        ),
    })
}
