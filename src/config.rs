//! Configuration: built-in defaults, overridden by an optional `tessera.toml`, overridden by
//! `TESSERA_*` environment variables (and `DATABASE_URL`).
//!
//! Every setting is validated into a typed value at start-up; a bad one fails with a single
//! line naming the setting, where its value came from and why it is wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretBox};
use url::Url;

/// One setting: its TOML key (the environment variable is `TESSERA_` + the key in upper
/// case), its default as text (parsed like any other value; empty means unset) and its doc.
pub struct Setting {
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

const fn setting(name: &'static str, default: &'static str, doc: &'static str) -> Setting {
    Setting { name, default, doc }
}

/// Every setting Tessera knows. One table, so the example file, the README and the loader
/// cannot drift apart (a test checks the example file against it).
pub const SETTINGS: &[Setting] = &[
    setting("issuer", "http://127.0.0.1:8080", "Public base URL of this server; https except for loopback development"),
    setting("bind", "127.0.0.1:8080", "Address and port to listen on"),
    setting("admin_bind", "127.0.0.1:9464", "Address and port of the admin listener (Prometheus `/metrics`); `off` disables it; beyond loopback only with metrics_bearer_token"),
    setting("metrics_bearer_token", "", "when set, `/metrics` requires `Authorization: Bearer <token>` (at least 32 characters of base64url/base64)"),
    setting("data_dir", "data", "Folder for the SQLite database and the generated key-encryption key"),
    setting("database_url", "", "sqlite://… or postgres://…; also read from DATABASE_URL; default: SQLite in data_dir"),
    setting("log_format", "text", "`text` (human) or `json`"),
    setting("log_filter", "info", "tracing filter, e.g. `info` or `tessera=debug,info`"),
    setting("key_encryption_key", "", "base64 of 32 random bytes; encrypts signing keys at rest; default: generated into data_dir"),
    setting("tls_cert", "", "PEM certificate chain; with tls_key, Tessera serves HTTPS itself"),
    setting("tls_key", "", "PEM private key for tls_cert"),
    setting("argon2_memory_kib", "19456", "argon2id memory cost in KiB for password hashes"),
    setting("argon2_iterations", "2", "argon2id time cost for password hashes"),
    setting("argon2_parallelism", "1", "argon2id lanes for password hashes"),
    setting("password_hash_concurrency", "2", "most password hashes computed at once; more wait"),
    setting("login_failures_before_delay", "5", "failed sign-ins for one username before each further attempt must wait"),
    setting("login_failures_per_address_before_delay", "20", "failed sign-ins from one source address before each further attempt must wait"),
    setting("login_delay_max_secs", "900", "longest wait after failed sign-ins (the wait doubles from 1 s up to this)"),
    setting("password_hash_queue", "128", "most login checks waiting for a hashing slot; more get 503 with Retry-After"),
    setting("request_body_limit", "65536", "largest accepted request body in bytes"),
    setting("rate_limit_client_per_sec", "5000", "requests per second per client at /token, /introspect, /revoke, /userinfo (per instance); `client update --rate-limit` overrides"),
    setting("rate_limit_address_per_sec", "20", "requests per second per source address at the pages, and for client calls that fail authentication (per instance)"),
    setting("trusted_proxies", "", "comma-separated CIDRs whose forwarding header is believed; default: none"),
    setting("trusted_proxy_header", "x-forwarded-for", "the header the trusted proxies write: `x-forwarded-for` or `forwarded` (RFC 7239); the other is ignored"),
    setting("request_timeout_secs", "30", "longest time one request may take"),
    setting("header_read_timeout_secs", "10", "longest time a client may take to send a request head (and the TLS handshake before it); also how long an idle keep-alive connection stays open"),
    setting("max_connections", "4096", "most connections served at once; further clients wait in the listen backlog"),
    setting("access_token_ttl_secs", "3600", "lifetime of an access token"),
    setting("id_token_ttl_secs", "3600", "lifetime of an ID token"),
    setting("default_resource", "", "`aud` of JWT access tokens (RFC 9068 §3 default resource); default: the issuer"),
    setting("refresh_token_idle_ttl_secs", "1209600", "a refresh token expires this long after its last use"),
    setting("refresh_token_absolute_ttl_secs", "7776000", "no refresh token outlives its grant's authorization by more than this"),
    setting("key_rotation_lead_secs", "3600", "how long a new signing key is published before it signs; longer than any JWKS cache"),
    setting("session_ttl_secs", "28800", "lifetime of a browser login session at Tessera"),
    setting("api_key_scopes", "read write roles", "space-separated scopes a user may give an API key (`roles` releases the user's roles and groups)"),
    setting("api_key_max_per_user", "20", "most live (unrevoked, unexpired) API keys one user may hold"),
    setting("store_startup_timeout_secs", "60", "how long start-up retries an unreachable store"),
    setting("audit_retention_days", "365", "audit events older than this are purged (the chain stays verifiable from a checkpoint); 0 keeps them forever"),
    setting("purge_interval_secs", "600", "how often each instance purges expired codes, sessions, tokens, grants and audit events past retention, in small batches; 0 turns it off (`tessera purge` runs it by hand)"),
];

/// Least argon2id memory cost accepted, in KiB (OWASP's smallest equivalent setting).
pub const ARGON2_MIN_MEMORY_KIB: u32 = 7168;
/// Least product of argon2id memory (KiB) and passes accepted (OWASP: 7168 KiB × 5).
pub const ARGON2_MIN_WORK: u64 = 35_840;

/// Where log lines go and how they look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// argon2id cost parameters (OWASP's recommendation is the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism.
    pub parallelism: u32,
    /// Most hashes computed at once; more wait, so a login burst cannot exhaust memory.
    pub concurrency: usize,
    /// Most login checks waiting for a slot; more are refused at once (503).
    pub queue: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            // The reference machine's cores; one more was tried and not kept (decision 0045).
            concurrency: 2,
            queue: 128,
        }
    }
}

/// A secret setting: never printed, zeroed on drop.
pub type Secret = SecretBox<str>;

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Public base URL, the `iss` of everything Tessera signs.
    pub issuer: Url,
    /// Listen address.
    pub bind: SocketAddr,
    /// The admin listener (Prometheus `/metrics`), apart from the public one so that metrics
    /// are never served to the internet by accident; `None` when turned off.
    pub admin_bind: Option<SocketAddr>,
    /// Required of scrapers when set; required when `admin_bind` is not loopback.
    pub metrics_bearer_token: Option<Secret>,
    /// Folder for the embedded database and generated secrets.
    pub data_dir: PathBuf,
    /// Store location; its scheme selects the backend.
    pub database_url: DatabaseUrl,
    /// Log line format.
    pub log_format: LogFormat,
    /// `tracing_subscriber::EnvFilter` directives.
    pub log_filter: String,
    /// Key-encryption key, if configured; otherwise one is generated in `data_dir`.
    pub key_encryption_key: Option<Secret>,
    /// Certificate and key for serving HTTPS directly.
    pub tls: Option<TlsFiles>,
    /// Password hashing cost.
    pub password: PasswordPolicy,
    /// Largest request body accepted.
    pub request_body_limit: usize,
    /// Longest time a request may take.
    pub request_timeout: Duration,
    /// Longest time a client may take to send a request head, or to finish the TLS handshake
    /// before it. Bounds slow clients (slowloris) and idle keep-alive connections, both of
    /// which would otherwise hold a connection slot for as long as they like.
    pub header_read_timeout: Duration,
    /// Most connections served at once; further clients wait in the kernel's listen backlog,
    /// so a flood of connections cannot exhaust file descriptors or memory.
    pub max_connections: usize,
    /// How long start-up keeps retrying a store that does not answer.
    pub store_startup_timeout: Duration,
    /// Token lifetimes.
    pub tokens: TokenPolicy,
    /// Lifetime of a browser session, in seconds.
    pub session_ttl_secs: i64,
    /// Proxies whose forwarding header names the client (`http::client_ip`).
    pub trusted_proxies: TrustedProxies,
    /// Default requests per second per client at the client API (`http::rate_limit`).
    pub rate_limit_client_per_sec: i64,
    /// Requests per second per source address at the pages.
    pub rate_limit_address_per_sec: i64,
    /// Brute-force protection for the login form (`oauth::login::ThrottleGate`).
    pub login_throttle: LoginThrottlePolicy,
    /// The `aud` of JWT access tokens when the request names no resource (RFC 9068 §3): never
    /// a client id, so an access token can never pass for an ID token.
    pub default_resource: String,
    /// What users may make API keys for.
    pub api_keys: ApiKeyPolicy,
    /// What housekeeping deletes, and how often (`crate::housekeeping`).
    pub housekeeping: HousekeepingPolicy,
}

/// Housekeeping: expired rows and old audit events go, in small batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HousekeepingPolicy {
    /// Audit events older than this many seconds are purged; `None` keeps them forever.
    pub audit_retention: Option<i64>,
    /// Between two purges by this instance; `None`: only `tessera purge`.
    pub purge_interval: Option<Duration>,
}

/// The scopes API keys may carry, and how many one user may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyPolicy {
    pub scopes: Vec<String>,
    pub max_per_user: i64,
}

/// Which proxies to believe about the client's address, and in which header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    pub networks: Vec<ipnet::IpNet>,
    pub header: ForwardedHeader,
}

/// The header the trusted proxies write; the other one is never read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    #[default]
    XForwardedFor,
    /// RFC 7239.
    Forwarded,
}

/// When failed sign-ins start to cost waiting time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginThrottlePolicy {
    /// Failures for one username before each further attempt must wait.
    pub per_username: i64,
    /// Failures from one source address before each further attempt must wait.
    pub per_address: i64,
    /// The wait doubles from one second up to this.
    pub max_delay_secs: i64,
}

impl LoginThrottlePolicy {
    /// The wait after the `failures`-th failure of a key allowed `threshold` free ones.
    pub fn delay(&self, threshold: i64, failures: i64) -> i64 {
        let over = failures - threshold;
        if over <= 0 {
            return 0;
        }
        // 1 s, 2 s, 4 s, … capped; the shift is bounded so it cannot overflow.
        (1i64 << (over - 1).min(30)).min(self.max_delay_secs)
    }
}

/// Lifetimes of what the token endpoint issues, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    pub access_token_ttl: i64,
    pub id_token_ttl: i64,
    /// A refresh token expires this long after its last use…
    pub refresh_token_idle_ttl: i64,
    /// …and never later than this long after the grant was authorized.
    pub refresh_token_absolute_ttl: i64,
    /// A `next` key is published this long before it signs.
    pub key_rotation_lead: i64,
}

impl TokenPolicy {
    /// The longest lifetime of anything signed: how long a superseded key stays published.
    pub fn max_ttl(&self) -> i64 {
        self.access_token_ttl.max(self.id_token_ttl)
    }
}

/// Certificate chain and private key files (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A database URL known to name a supported backend. `Debug` hides any password in it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }

    /// The URL with any password replaced, for logs.
    pub fn redacted(&self) -> String {
        match Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("redacted"));
                url.to_string()
            }
            _ => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        use sqlx::postgres::PgConnectOptions;
        use sqlx::sqlite::SqliteConnectOptions;
        if s.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(s).map_err(|e| format!("malformed SQLite URL: {e}"))?;
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            PgConnectOptions::from_str(s).map_err(|e| format!("malformed Postgres URL: {e}"))?;
        } else {
            return Err("must start with sqlite: or postgres://".into());
        }
        Ok(DatabaseUrl(s.to_owned()))
    }
}

/// A configuration problem, reported as one line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn setting(name: &str, source: &Source, reason: impl fmt::Display) -> Self {
        ConfigError(format!("`{name}` ({source}): {reason}"))
    }
}

/// Where a raw value came from, so an error can say which file or variable to fix.
#[derive(Debug, Clone)]
enum Source {
    Default,
    File(PathBuf),
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("built-in default"),
            Source::File(p) => write!(f, "from {}", p.display()),
            Source::Env(v) => write!(f, "from ${v}"),
        }
    }
}

/// Raw values by setting name, before validation.
struct Raw(BTreeMap<&'static str, (String, Source)>);

impl Raw {
    /// Parses the setting if it is present, naming it in the error if it does not parse.
    fn get<T>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let default = SETTINGS
            .iter()
            .find(|s| s.name == name && !s.default.is_empty())
            .map(|s| (s.default.to_owned(), Source::Default));
        match self.0.get(name).cloned().or(default) {
            None => Ok(None),
            Some((value, source)) => value
                .parse::<T>()
                .map(Some)
                .map_err(|e| ConfigError::setting(name, &source, e)),
        }
    }

    fn source(&self, name: &str) -> Source {
        self.0
            .get(name)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| Source::Env(format!("TESSERA_{}", name.to_uppercase())))
    }
}

impl Config {
    /// Loads `file` (or `./tessera.toml` when it exists) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Config::from_sources(file, &env)
    }

    /// Loads from an explicit environment map; used by `load` and by tests.
    pub fn from_sources(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut raw = Raw(BTreeMap::new());
        let default_file = Path::new("tessera.toml");
        let file = match file {
            Some(f) => Some(f.to_path_buf()),
            None => env
                .get("TESSERA_CONFIG")
                .map(PathBuf::from)
                .or_else(|| default_file.exists().then(|| default_file.to_path_buf())),
        };
        if let Some(path) = &file {
            read_file(path, &mut raw)?;
        }
        for Setting { name, .. } in SETTINGS {
            let var = format!("TESSERA_{}", name.to_uppercase());
            if let Some(value) = env.get(&var) {
                raw.0.insert(name, (value.clone(), Source::Env(var)));
            }
        }
        // DATABASE_URL is the convention of sqlx, Heroku and most container platforms; the
        // Tessera-specific variable wins when both are set.
        if !env.contains_key("TESSERA_DATABASE_URL") {
            if let Some(value) = env.get("DATABASE_URL") {
                raw.0.insert(
                    "database_url",
                    (value.clone(), Source::Env("DATABASE_URL".into())),
                );
            }
        }
        Config::validate(&raw)
    }

    fn validate(raw: &Raw) -> Result<Config, ConfigError> {
        let issuer: Url = required(raw.get("issuer")?, "issuer")?;
        check_issuer(&issuer)
            .map_err(|e| ConfigError::setting("issuer", &raw.source("issuer"), e))?;

        let data_dir: PathBuf = required(raw.get("data_dir")?, "data_dir")?;
        let database_url = match raw.get::<DatabaseUrl>("database_url")? {
            Some(url) => url,
            None => DatabaseUrl(format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("tessera.db").display()
            )),
        };

        let log_format = match raw.get::<String>("log_format")?.as_deref() {
            Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            other => {
                return Err(ConfigError::setting(
                    "log_format",
                    &raw.source("log_format"),
                    format!(
                        "`{}` is neither `text` nor `json`",
                        other.unwrap_or_default()
                    ),
                ))
            }
        };

        let key_encryption_key = match raw.get::<String>("key_encryption_key")? {
            None => None,
            Some(value) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(value.trim())
                    .ok()
                    .filter(|k| k.len() == 32);
                if decoded.is_none() {
                    return Err(ConfigError::setting(
                        "key_encryption_key",
                        &raw.source("key_encryption_key"),
                        "must be the base64 encoding of exactly 32 bytes",
                    ));
                }
                Some(Secret::from(value.trim().to_owned().into_boxed_str()))
            }
        };

        let tls = match (
            raw.get::<PathBuf>("tls_cert")?,
            raw.get::<PathBuf>("tls_key")?,
        ) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                for (name, path) in [("tls_cert", &cert), ("tls_key", &key)] {
                    check_pem_file(path)
                        .map_err(|e| ConfigError::setting(name, &raw.source(name), e))?;
                }
                Some(TlsFiles { cert, key })
            }
            (Some(_), None) => {
                return Err(ConfigError(
                    "`tls_key` is required when `tls_cert` is set".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError(
                    "`tls_cert` is required when `tls_key` is set".into(),
                ))
            }
        };

        let password = PasswordPolicy {
            memory_kib: required(raw.get("argon2_memory_kib")?, "argon2_memory_kib")?,
            iterations: required(raw.get("argon2_iterations")?, "argon2_iterations")?,
            parallelism: required(raw.get("argon2_parallelism")?, "argon2_parallelism")?,
            concurrency: required(
                raw.get("password_hash_concurrency")?,
                "password_hash_concurrency",
            )?,
            queue: required(raw.get("password_hash_queue")?, "password_hash_queue")?,
        };
        // A floor on the cost, so a typo cannot make stolen hashes cheap to crack: OWASP's
        // equivalent argon2id settings run from m=47104 KiB, t=1 to m=7168 KiB, t=5; all of
        // them use at least 7 MiB and at least 35840 KiB of memory passes.
        if password.memory_kib < ARGON2_MIN_MEMORY_KIB {
            return Err(ConfigError::setting(
                "argon2_memory_kib",
                &raw.source("argon2_memory_kib"),
                format!("must be at least {ARGON2_MIN_MEMORY_KIB} (KiB)"),
            ));
        }
        if u64::from(password.memory_kib) * u64::from(password.iterations) < ARGON2_MIN_WORK {
            return Err(ConfigError::setting(
                "argon2_iterations",
                &raw.source("argon2_iterations"),
                format!(
                    "argon2_memory_kib × argon2_iterations must be at least {ARGON2_MIN_WORK} \
                     (e.g. 19456 × 2, or 7168 × 5)"
                ),
            ));
        }
        argon2::Params::new(
            password.memory_kib,
            password.iterations,
            password.parallelism,
            None,
        )
        .map_err(|e| ConfigError(format!("argon2 parameters: {e}")))?;
        if password.concurrency == 0 {
            return Err(ConfigError::setting(
                "password_hash_concurrency",
                &raw.source("password_hash_concurrency"),
                "must be at least 1",
            ));
        }

        let networks = match raw.get::<String>("trusted_proxies")? {
            None => Vec::new(),
            Some(list) => parse_networks(&list).map_err(|e| {
                ConfigError::setting("trusted_proxies", &raw.source("trusted_proxies"), e)
            })?,
        };
        let header = match raw.get::<String>("trusted_proxy_header")?.as_deref() {
            Some("x-forwarded-for") | None => ForwardedHeader::XForwardedFor,
            Some("forwarded") => ForwardedHeader::Forwarded,
            Some(other) => {
                return Err(ConfigError::setting(
                    "trusted_proxy_header",
                    &raw.source("trusted_proxy_header"),
                    format!("`{other}` is neither `x-forwarded-for` nor `forwarded`"),
                ))
            }
        };
        let trusted_proxies = TrustedProxies { networks, header };
        // Kept exactly as configured (only checked to be an absolute URI): resource servers
        // compare `aud` as a string, and `Url` would add a trailing slash to a bare host.
        let login_throttle = LoginThrottlePolicy {
            per_username: positive(
                raw.get("login_failures_before_delay")?,
                "login_failures_before_delay",
            )?,
            per_address: positive(
                raw.get("login_failures_per_address_before_delay")?,
                "login_failures_per_address_before_delay",
            )?,
            max_delay_secs: positive(raw.get("login_delay_max_secs")?, "login_delay_max_secs")?,
        };
        let default_resource = match raw.get::<String>("default_resource")? {
            Some(value) => {
                Url::parse(&value).map_err(|e| {
                    ConfigError::setting("default_resource", &raw.source("default_resource"), e)
                })?;
                value
            }
            None => issuer.as_str().trim_end_matches('/').to_owned(),
        };

        let api_key_scopes = required(raw.get::<String>("api_key_scopes")?, "api_key_scopes")?;
        let scopes: Vec<String> = api_key_scopes.split(' ').map(str::to_owned).collect();
        // RFC 6749 §3.3 scope-token: printable ASCII but space, `"` and `\`.
        let scope_token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
        };
        if !scopes.iter().all(|t| scope_token(t)) || scopes.iter().any(|t| t == "openid") {
            return Err(ConfigError::setting(
                "api_key_scopes",
                &raw.source("api_key_scopes"),
                "must be scope tokens (RFC 6749 §3.3) separated by single spaces, without `openid`",
            ));
        }
        let api_keys = ApiKeyPolicy {
            scopes,
            max_per_user: required(raw.get("api_key_max_per_user")?, "api_key_max_per_user")?,
        };
        if !(1..=1000).contains(&api_keys.max_per_user) {
            return Err(ConfigError::setting(
                "api_key_max_per_user",
                &raw.source("api_key_max_per_user"),
                "must be between 1 and 1000",
            ));
        }

        let header_read_timeout_secs: u64 = required(
            raw.get("header_read_timeout_secs")?,
            "header_read_timeout_secs",
        )?;
        // hyper adds the timeout to the current instant, which panics on overflow; an hour is
        // already far past any client worth waiting for.
        if !(1..=MAX_HEADER_READ_TIMEOUT_SECS).contains(&header_read_timeout_secs) {
            return Err(ConfigError::setting(
                "header_read_timeout_secs",
                &raw.source("header_read_timeout_secs"),
                format!("must be between 1 and {MAX_HEADER_READ_TIMEOUT_SECS} seconds"),
            ));
        }
        let max_connections: usize = required(raw.get("max_connections")?, "max_connections")?;
        // tokio's semaphore refuses (panics on) more permits than MAX_PERMITS.
        if !(1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&max_connections) {
            return Err(ConfigError::setting(
                "max_connections",
                &raw.source("max_connections"),
                format!(
                    "must be between 1 and {}",
                    tokio::sync::Semaphore::MAX_PERMITS
                ),
            ));
        }

        let bind: SocketAddr = required(raw.get("bind")?, "bind")?;
        let (admin_bind, metrics_bearer_token) = admin_settings(raw, bind)?;

        Ok(Config {
            issuer,
            bind,
            admin_bind,
            metrics_bearer_token,
            data_dir,
            database_url,
            log_format,
            log_filter: required(raw.get("log_filter")?, "log_filter")?,
            key_encryption_key,
            tls,
            password,
            request_body_limit: required(raw.get("request_body_limit")?, "request_body_limit")?,
            request_timeout: Duration::from_secs(required(
                raw.get("request_timeout_secs")?,
                "request_timeout_secs",
            )?),
            header_read_timeout: Duration::from_secs(header_read_timeout_secs),
            max_connections,
            tokens: TokenPolicy {
                access_token_ttl: lifetime(
                    raw.get("access_token_ttl_secs")?,
                    "access_token_ttl_secs",
                )?,
                id_token_ttl: lifetime(raw.get("id_token_ttl_secs")?, "id_token_ttl_secs")?,
                refresh_token_idle_ttl: lifetime(
                    raw.get("refresh_token_idle_ttl_secs")?,
                    "refresh_token_idle_ttl_secs",
                )?,
                refresh_token_absolute_ttl: lifetime(
                    raw.get("refresh_token_absolute_ttl_secs")?,
                    "refresh_token_absolute_ttl_secs",
                )?,
                key_rotation_lead: lifetime(
                    raw.get("key_rotation_lead_secs")?,
                    "key_rotation_lead_secs",
                )?,
            },
            session_ttl_secs: lifetime(raw.get("session_ttl_secs")?, "session_ttl_secs")?,
            default_resource,
            api_keys,
            trusted_proxies,
            login_throttle,
            rate_limit_client_per_sec: positive(
                raw.get("rate_limit_client_per_sec")?,
                "rate_limit_client_per_sec",
            )?,
            rate_limit_address_per_sec: positive(
                raw.get("rate_limit_address_per_sec")?,
                "rate_limit_address_per_sec",
            )?,
            store_startup_timeout: Duration::from_secs(required(
                raw.get("store_startup_timeout_secs")?,
                "store_startup_timeout_secs",
            )?),
            housekeeping: HousekeepingPolicy {
                audit_retention: match required(
                    raw.get::<u64>("audit_retention_days")?,
                    "audit_retention_days",
                )? {
                    0 => None,
                    // More than a thousand centuries is forever too.
                    days => Some(i64::try_from(days.min(36_500_000)).unwrap_or(i64::MAX) * 86_400),
                },
                purge_interval: match required(
                    raw.get::<u64>("purge_interval_secs")?,
                    "purge_interval_secs",
                )? {
                    0 => None,
                    secs => Some(Duration::from_secs(secs)),
                },
            },
        })
    }

    /// Whether the issuer is plain http (accepted only on loopback, with a warning).
    pub fn is_insecure_issuer(&self) -> bool {
        self.issuer.scheme() == "http"
    }

    /// The issuer as it appears in `iss` claims: no trailing slash.
    pub fn issuer_str(&self) -> &str {
        self.issuer.as_str().trim_end_matches('/')
    }

    /// The key-encryption key as configured, if any (base64).
    pub fn configured_kek(&self) -> Option<&str> {
        self.key_encryption_key.as_ref().map(|k| k.expose_secret())
    }
}

/// Shortest `metrics_bearer_token` accepted: 32 base64 characters carry 192 bits, beyond
/// guessing even at the rate an exposed admin port could be probed.
pub const METRICS_TOKEN_MIN_LEN: usize = 32;

/// `admin_bind` and `metrics_bearer_token`, checked together: metrics name routes, clients'
/// traffic and failure rates, so an address beyond loopback needs the token.
fn admin_settings(
    raw: &Raw,
    bind: SocketAddr,
) -> Result<(Option<SocketAddr>, Option<Secret>), ConfigError> {
    let token = match raw.get::<String>("metrics_bearer_token")? {
        None => None,
        Some(t) if t.is_empty() => None,
        Some(t) => {
            // RFC 6750 §2.1's b64token, so the header a scraper sends is well-formed.
            let b64token = t.trim_end_matches('=').bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
            });
            if !b64token || t.len() < METRICS_TOKEN_MIN_LEN {
                return Err(ConfigError::setting(
                    "metrics_bearer_token",
                    &raw.source("metrics_bearer_token"),
                    format!(
                        "must be at least {METRICS_TOKEN_MIN_LEN} characters of base64 or \
                         base64url (e.g. `openssl rand -hex 32`)"
                    ),
                ));
            }
            Some(Secret::from(t.into_boxed_str()))
        }
    };
    let source = || raw.source("admin_bind");
    let admin_bind = match raw.get::<String>("admin_bind")?.as_deref().map(str::trim) {
        None | Some("") | Some("off") => None,
        Some(value) => Some(value.parse::<SocketAddr>().map_err(|e| {
            ConfigError::setting("admin_bind", &source(), format!("{e} (or `off`)"))
        })?),
    };
    if let Some(admin) = admin_bind {
        if !admin.ip().is_loopback() && token.is_none() {
            return Err(ConfigError::setting(
                "admin_bind",
                &source(),
                format!(
                    "{admin} is not a loopback address: set `metrics_bearer_token` to serve \
                     metrics beyond this host"
                ),
            ));
        }
        if admin.port() != 0 && admin == bind {
            return Err(ConfigError::setting(
                "admin_bind",
                &source(),
                "must differ from `bind`: metrics are never served on the public listener",
            ));
        }
    }
    Ok((admin_bind, token))
}

/// Upper bound of `header_read_timeout_secs`.
const MAX_HEADER_READ_TIMEOUT_SECS: u64 = 3600;

/// A setting with a built-in default is always present; this guards the table.
fn required<T>(value: Option<T>, name: &str) -> Result<T, ConfigError> {
    value.ok_or_else(|| ConfigError(format!("`{name}` has no value and no default")))
}

fn positive(value: Option<i64>, name: &str) -> Result<i64, ConfigError> {
    let v = required(value, name)?;
    if v > 0 {
        Ok(v)
    } else {
        Err(ConfigError(format!(
            "`{name}` must be a positive number of seconds"
        )))
    }
}

/// The longest lifetime a setting may give (ten years of 365.25 days): every expiry is
/// `now` plus a lifetime, in seconds, on each store and in Rust, and none of them may
/// overflow whatever the clock says, nor differ between stores in how it would.
const MAX_LIFETIME_SECS: i64 = 315_576_000;

/// A lifetime in seconds: positive and at most [`MAX_LIFETIME_SECS`].
fn lifetime(value: Option<i64>, name: &str) -> Result<i64, ConfigError> {
    let v = positive(value, name)?;
    if v <= MAX_LIFETIME_SECS {
        Ok(v)
    } else {
        Err(ConfigError(format!(
            "`{name}` must be at most {MAX_LIFETIME_SECS} seconds (ten years)"
        )))
    }
}

fn read_file(path: &Path, raw: &mut Raw) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError(format!("{}: {}", path.display(), e.message()))
    })?;
    for (key, value) in table {
        let Some(Setting { name, .. }) = SETTINGS.iter().find(|s| s.name == key) else {
            // A typo in a security setting must not silently fall back to a default.
            return Err(ConfigError(format!(
                "{}: unknown setting `{key}`",
                path.display()
            )));
        };
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(ConfigError(format!(
                    "{}: `{key}` must be a string or a number, not {}",
                    path.display(),
                    other.type_str()
                )))
            }
        };
        raw.0
            .insert(name, (value, Source::File(path.to_path_buf())));
    }
    Ok(())
}

/// `10.0.0.0/8, 192.0.2.7, 2001:db8::/32`: networks, or single addresses.
fn parse_networks(list: &str) -> Result<Vec<ipnet::IpNet>, String> {
    list.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("`{item}` is not an address or a CIDR network"))
        })
        .collect()
}

/// RFC 8414 §2 / OIDC Discovery §3: the issuer is an https URL without query or fragment.
/// Plain http is tolerated for loopback hosts so a developer can run with no certificate.
fn check_issuer(issuer: &Url) -> Result<(), String> {
    if issuer.query().is_some() || issuer.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    match issuer.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(issuer) => Ok(()),
        "http" => Err("must use https (http is accepted only for a loopback host)".into()),
        other => Err(format!("scheme `{other}` is not https")),
    }
}

/// True for 127.0.0.0/8, ::1 and `localhost`.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

fn check_pem_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !text.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(format!("{} is not a PEM file", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_sources(Some(Path::new("/dev/null")), &env(pairs))
    }

    #[test]
    fn defaults_give_a_loopback_development_server() {
        let c = load(&[]).unwrap();
        assert_eq!(c.issuer_str(), "http://127.0.0.1:8080");
        assert_eq!(c.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.database_url.as_str(), "sqlite://data/tessera.db?mode=rwc");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.password, PasswordPolicy::default());
        assert!(c.tls.is_none());
        assert!(c.is_insecure_issuer());
    }

    #[test]
    fn environment_overrides_file_and_names_the_variable_on_error() {
        let err = load(&[("TESSERA_BIND", "nonsense")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`bind`") && err.contains("$TESSERA_BIND"),
            "{err}"
        );
    }

    #[test]
    fn http_issuer_is_refused_off_loopback() {
        let err = load(&[("TESSERA_ISSUER", "http://id.example.com")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`issuer`") && err.contains("https"), "{err}");
        for ok in [
            "http://localhost:8080",
            "http://[::1]:9",
            "https://id.example.com",
        ] {
            load(&[("TESSERA_ISSUER", ok)]).unwrap();
        }
        assert!(load(&[("TESSERA_ISSUER", "https://id.example.com/?a=b")]).is_err());
    }

    #[test]
    fn database_url_from_env_is_validated() {
        let err = load(&[("DATABASE_URL", "mysql://x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("$DATABASE_URL"), "{err}");
        let err = load(&[("DATABASE_URL", "postgres://u@h:notaport/db")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("malformed Postgres URL"), "{err}");
        let c = load(&[
            ("DATABASE_URL", "postgres://a@h/one"),
            ("TESSERA_DATABASE_URL", "postgres://b:pw@h/two"),
        ])
        .unwrap();
        assert!(c.database_url.is_postgres());
        assert!(format!("{c:?}").contains("redacted"));
        assert!(!format!("{c:?}").contains("pw@"));
    }

    #[test]
    fn tls_files_must_be_readable_and_paired() {
        let err = load(&[
            ("TESSERA_TLS_CERT", "/nonexistent/cert.pem"),
            ("TESSERA_TLS_KEY", "/nonexistent/key.pem"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`tls_cert`") && err.contains("cannot read"),
            "{err}"
        );
        assert!(load(&[("TESSERA_TLS_CERT", "/dev/null")]).is_err());
    }

    #[test]
    fn key_encryption_key_must_be_32_bytes_and_never_prints() {
        assert!(load(&[("TESSERA_KEY_ENCRYPTION_KEY", "c2hvcnQ=")]).is_err());
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let c = load(&[("TESSERA_KEY_ENCRYPTION_KEY", &key)]).unwrap();
        assert_eq!(c.configured_kek(), Some(key.as_str()));
        assert!(!format!("{c:?}").contains(&key));
    }

    #[test]
    fn argon2_cost_has_a_floor_asvs_11_4_2() {
        let err = load(&[("TESSERA_ARGON2_MEMORY_KIB", "4096")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`argon2_memory_kib`") && err.contains("7168"),
            "{err}"
        );
        let err = load(&[("TESSERA_ARGON2_ITERATIONS", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`argon2_iterations`"), "{err}");
        // OWASP's equivalent settings are all accepted.
        for (m, t) in [
            ("47104", "1"),
            ("19456", "2"),
            ("12288", "3"),
            ("7168", "5"),
        ] {
            let config = load(&[
                ("TESSERA_ARGON2_MEMORY_KIB", m),
                ("TESSERA_ARGON2_ITERATIONS", t),
            ]);
            assert!(config.is_ok(), "m={m} t={t}");
        }
    }

    #[test]
    fn trusted_proxies_are_networks_or_addresses() {
        let c = load(&[(
            "TESSERA_TRUSTED_PROXIES",
            "10.0.0.0/8, 192.0.2.7 2001:db8::/32",
        )])
        .unwrap();
        let shown: Vec<String> = c
            .trusted_proxies
            .networks
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        assert!(load(&[]).unwrap().trusted_proxies.networks.is_empty());
        assert!(load(&[("TESSERA_TRUSTED_PROXY_HEADER", "via")]).is_err());
        let err = load(&[("TESSERA_TRUSTED_PROXIES", "10.0.0.0/8, proxy.local")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`trusted_proxies`") && err.contains("proxy.local"),
            "{err}"
        );
    }

    #[test]
    fn default_resource_is_kept_exactly_as_configured_rfc9068_3() {
        let c = load(&[("TESSERA_DEFAULT_RESOURCE", "https://api.example.com")]).unwrap();
        assert_eq!(c.default_resource, "https://api.example.com");
        assert_eq!(load(&[]).unwrap().default_resource, "http://127.0.0.1:8080");
        assert!(load(&[("TESSERA_DEFAULT_RESOURCE", "not a uri")]).is_err());
    }

    #[test]
    fn login_delay_doubles_from_one_second_after_the_free_failures_up_to_the_cap() {
        let p = load(&[]).unwrap().login_throttle;
        assert_eq!(
            (p.per_username, p.per_address, p.max_delay_secs),
            (5, 20, 900)
        );
        let waits: Vec<i64> = (1..=8).map(|f| p.delay(5, f)).collect();
        assert_eq!(waits, [0, 0, 0, 0, 0, 1, 2, 4]);
        assert_eq!(p.delay(5, 20), 900);
        assert_eq!(p.delay(5, i64::MAX), 900);
    }

    #[test]
    fn lifetimes_are_positive_and_at_most_ten_years_so_no_expiry_overflows() {
        for name in [
            "TESSERA_ACCESS_TOKEN_TTL_SECS",
            "TESSERA_ID_TOKEN_TTL_SECS",
            "TESSERA_REFRESH_TOKEN_IDLE_TTL_SECS",
            "TESSERA_REFRESH_TOKEN_ABSOLUTE_TTL_SECS",
            "TESSERA_KEY_ROTATION_LEAD_SECS",
            "TESSERA_SESSION_TTL_SECS",
        ] {
            assert!(load(&[(name, "315576000")]).is_ok(), "{name}");
            for refused in ["315576001", "9223372036854775807", "0", "-1"] {
                let e = load(&[(name, refused)]).unwrap_err().to_string();
                assert!(e.contains("seconds"), "{name}={refused}: {e}");
            }
        }
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert_eq!(
            load(&[("TESSERA_LOG_FORMAT", "json")]).unwrap().log_format,
            LogFormat::Json
        );
        assert!(load(&[("TESSERA_LOG_FORMAT", "xml")]).is_err());
    }

    #[test]
    fn connection_limits_have_defaults_and_bounds() {
        let c = load(&[]).unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.max_connections, 4096);
        let c = load(&[
            ("TESSERA_HEADER_READ_TIMEOUT_SECS", "3"),
            ("TESSERA_MAX_CONNECTIONS", "2"),
        ])
        .unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_secs(3));
        assert_eq!(c.max_connections, 2);
        for (var, value, name) in [
            (
                "TESSERA_HEADER_READ_TIMEOUT_SECS",
                "0",
                "`header_read_timeout_secs`",
            ),
            (
                "TESSERA_HEADER_READ_TIMEOUT_SECS",
                "-1",
                "`header_read_timeout_secs`",
            ),
            (
                "TESSERA_HEADER_READ_TIMEOUT_SECS",
                "3601",
                "`header_read_timeout_secs`",
            ),
            ("TESSERA_MAX_CONNECTIONS", "0", "`max_connections`"),
            ("TESSERA_MAX_CONNECTIONS", "many", "`max_connections`"),
        ] {
            let err = load(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(var), "{value}: {err}");
        }
    }

    #[test]
    fn file_settings_load_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "bind = \"0.0.0.0:9000\"\nargon2_iterations = 3\n").unwrap();
        let c = Config::from_sources(Some(&path), &env(&[])).unwrap();
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.password.iterations, 3);
        let c =
            Config::from_sources(Some(&path), &env(&[("TESSERA_BIND", "127.0.0.1:1")])).unwrap();
        assert_eq!(c.bind.port(), 1);
        std::fs::write(&path, "isuer = \"https://typo\"\n").unwrap();
        let err = Config::from_sources(Some(&path), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown setting `isuer`"), "{err}");
    }

    #[test]
    fn admin_listener_is_on_loopback_by_default_and_can_be_turned_off() {
        let c = load(&[]).unwrap();
        assert_eq!(c.admin_bind, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(c.metrics_bearer_token.is_none());
        for off in ["off", ""] {
            assert_eq!(
                load(&[("TESSERA_ADMIN_BIND", off)]).unwrap().admin_bind,
                None
            );
        }
        let err = load(&[("TESSERA_ADMIN_BIND", "localhost")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`admin_bind`") && err.contains("$TESSERA_ADMIN_BIND"),
            "{err}"
        );
        let err = load(&[
            ("TESSERA_BIND", "127.0.0.1:9000"),
            ("TESSERA_ADMIN_BIND", "127.0.0.1:9000"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("must differ from `bind`"), "{err}");
    }

    #[test]
    fn admin_listener_beyond_loopback_requires_a_metrics_bearer_token() {
        let err = load(&[("TESSERA_ADMIN_BIND", "0.0.0.0:9464")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`admin_bind`") && err.contains("metrics_bearer_token"),
            "{err}"
        );
        let token = "a".repeat(METRICS_TOKEN_MIN_LEN);
        let c = load(&[
            ("TESSERA_ADMIN_BIND", "0.0.0.0:9464"),
            ("TESSERA_METRICS_BEARER_TOKEN", &token),
        ])
        .unwrap();
        assert_eq!(c.admin_bind, Some("0.0.0.0:9464".parse().unwrap()));
        assert!(!format!("{c:?}").contains(&token), "the token never prints");
        load(&[("TESSERA_ADMIN_BIND", "[::1]:0")]).unwrap();
    }

    #[test]
    fn metrics_bearer_token_must_be_long_and_header_safe_rfc6750_2_1() {
        for bad in ["short".to_owned(), format!("{} x", "a".repeat(40))] {
            let err = load(&[("TESSERA_METRICS_BEARER_TOKEN", &bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("`metrics_bearer_token`"), "{err}");
        }
        let hex = "0123456789abcdef".repeat(4);
        let c = load(&[("TESSERA_METRICS_BEARER_TOKEN", &hex)]).unwrap();
        assert_eq!(
            c.metrics_bearer_token.as_ref().map(|t| t.expose_secret()),
            Some(hex.as_str())
        );
        load(&[(
            "TESSERA_METRICS_BEARER_TOKEN",
            "AbC-_.~+/0123456789abcdefghijklmnop==",
        )])
        .unwrap();
    }

    #[test]
    fn example_file_lists_every_setting_and_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tessera.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        for Setting { name, .. } in SETTINGS {
            assert!(
                text.lines()
                    .any(|l| l.trim_start_matches("# ").starts_with(&format!("{name} ="))),
                "tessera.example.toml does not mention `{name}`"
            );
        }
        Config::from_sources(Some(&path), &env(&[])).unwrap();
    }
}
