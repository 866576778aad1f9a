//! Configuration: parsed once at start into strong types, so no later code
//! re-checks a string or unwraps an option that validation already settled.
//!
//! Loading is YAML -> `${VAR}` expansion -> strict schema (`raw`) -> seed
//! `.env` overrides -> validation (`validate`). Every error names its key path.

mod env;
mod raw;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;

pub use env::Env;

use crate::keys::{KeyAlgorithm, KeyMaterial};
use crate::store::{Lockout, Rate};

/// A configuration error and the key it is about (`routes[2].upstreams[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A value that must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub otp: OtpConfig,
    pub sms: SmsConfig,
    pub jwt: JwtConfig,
    pub auth: AuthConfig,
    pub session: SessionConfig,
    pub limits: LimitsConfig,
    pub routes: Vec<RouteConfig>,
}

/// `limits`: every list may be empty (no limit).
#[derive(Debug, Clone, Default)]
pub struct LimitsConfig {
    pub sms_per_mobile: Vec<Rate>,
    pub sms_per_ip: Vec<Rate>,
    /// Per E.164 calling code.
    pub sms_per_country: Vec<Rate>,
    pub sms_global: Vec<Rate>,
    /// OTP checks from one client IP, right or wrong.
    pub verify_per_ip: Vec<Rate>,
    /// `None` when `lockout.burned` is 0.
    pub lockout: Option<Lockout>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// A refresh token's lifetime; each refresh starts a new one.
    pub refresh_ttl: Duration,
    /// A session ends this long after its login, refreshed or not.
    pub max_lifetime: Duration,
    /// A spent refresh token presented again within this is refused without
    /// revoking its session (a client's retry); later, it revokes it.
    pub reuse_grace: Duration,
    pub on_feed_loss: FeedLoss,
}

/// What an instance does while it cannot receive revocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedLoss {
    /// Keep accepting tokens by what it knows.
    Open,
    /// Answer 503 `revocation_unavailable` to requests carrying a token.
    Closed,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub threads: usize,
    pub admin_listen: Option<SocketAddr>,
    pub access_log: bool,
    /// How long a stopping server keeps accepting before it drains (SIGTERM).
    pub grace_period: Duration,
    /// How long in-flight requests get to finish once draining starts.
    pub shutdown_timeout: Duration,
    /// A request's headers must arrive within this, else the connection closes.
    pub header_timeout: Duration,
    /// An auth endpoint's body must arrive within this, else 408.
    pub body_timeout: Duration,
    /// SO_REUSEPORT on the listeners, so several processes can share a port.
    pub reuse_port: bool,
    /// HTTPS on `listen` (TLS 1.2 and 1.3, ALPN h2 and http/1.1).
    pub tls: Option<TlsConfig>,
    pub environment: Environment,
    /// Where security events go, one JSON object per line.
    pub audit_log: AuditLog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    /// Refuses what only belongs in development (`otp.test_numbers`).
    Production,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditLog {
    Off,
    Stderr,
    File(PathBuf),
}

/// The listener's certificate files, checked at load.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    /// Upper bound of any single storage call; past it the call fails as unavailable.
    pub timeout: Duration,
    /// Connection attempts at start (one second apart) before refusing to start.
    pub connect_attempts: u32,
}

#[derive(Debug, Clone)]
pub enum StorageBackend {
    Embedded {
        sqlite_path: PathBuf,
    },
    MysqlRedis {
        mysql_url: Secret,
        redis_url: Secret,
        redis_key_prefix: String,
        auto_migrate: bool,
        mysql_pool_max: usize,
    },
}

impl StorageBackend {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Embedded { .. } => "embedded",
            Self::MysqlRedis { .. } => "mysql_redis",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OtpConfig {
    pub length: usize,
    pub ttl: Duration,
    pub cooldown: Duration,
    pub max_attempts: u32,
    /// `+` and 1-4 digits, prefixed to numbers given without `+`.
    pub default_country_code: Option<String>,
    /// Calling codes a mobile must have; empty allows every number.
    pub allowed_country_codes: Vec<u16>,
    /// Normalized mobile -> its fixed OTP; nothing is ever sent to them.
    pub test_numbers: std::collections::HashMap<String, Secret>,
}

#[derive(Debug, Clone)]
pub struct SmsConfig {
    pub provider: SmsProvider,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum SmsProvider {
    Console,
    File { path: PathBuf },
    Webhook { url: url::Url },
    Twilio(TwilioConfig),
}

impl SmsProvider {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Console => "console",
            Self::File { .. } => "file",
            Self::Webhook { .. } => "webhook",
            Self::Twilio(_) => "twilio",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TwilioConfig {
    pub account_sid: String,
    pub auth_token: Secret,
    pub from: String,
    pub api_base: url::Url,
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Keys the OTP and refresh-token HMACs; signs tokens only with HS256.
    pub secret: Secret,
    pub signing: Signing,
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
    pub leeway: Duration,
}

/// How tokens are signed and verified.
#[derive(Debug, Clone)]
pub enum Signing {
    /// HS256 with `jwt.secret`.
    Hmac,
    /// `algorithm` with `jwt.keys`: the first signs, every one verifies.
    Keys {
        algorithm: KeyAlgorithm,
        keys: Vec<SigningKey>,
    },
}

impl Signing {
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Hmac => "HS256",
            Self::Keys { algorithm, .. } => algorithm.as_str(),
        }
    }
}

/// A `jwt.keys` entry, its file read and checked.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub kid: String,
    pub material: KeyMaterial,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Empty, or `/x` without a trailing slash.
    pub path_prefix: String,
    pub identity_headers: IdentityHeaderNames,
}

#[derive(Debug, Clone)]
pub struct IdentityHeaderNames {
    pub user_id: HeaderName,
    pub mobile: HeaderName,
}

impl IdentityHeaderNames {
    /// Every identity header: the ones a client may never send.
    pub fn all(&self) -> [&HeaderName; 2] {
        [&self.user_id, &self.mobile]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Optional,
    Public,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::Optional => "optional",
            Self::Public => "public",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub prefix: String,
    /// Lower-case host name without port; `None` matches any host.
    pub host: Option<String>,
    /// As written, for display.
    pub upstream_names: Vec<String>,
    /// Resolved once at start.
    pub upstreams: Vec<SocketAddr>,
    pub auth: AuthMode,
    pub strip_prefix: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub health_check_interval: Duration,
    /// TLS to the upstreams, always verified.
    pub upstream_tls: Option<UpstreamTls>,
}

/// How a route's upstreams are reached over TLS.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// The name sent (SNI) and verified; never empty, so never unverified.
    pub sni: String,
    /// DER certificates to verify with instead of the system's roots.
    pub roots: Option<Vec<Vec<u8>>>,
}

/// Loads `path` with the process environment and the `.env` of the working
/// directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let env = Env::load(Path::new(".env"))?;
    load_with_env(path, &env)
}

pub fn load_with_env(path: &Path, env: &Env) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
    parse(&text, env)
}

/// Parses and validates YAML text.
pub fn parse(text: &str, env: &Env) -> Result<Config, ConfigError> {
    let mut tree: serde_json::Value = if text.trim().is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        serde_saphyr::from_str(text).map_err(|e| yaml_error(&e))?
    };
    if tree.is_null() {
        tree = serde_json::Value::Object(Default::default());
    }
    env::expand(&mut tree, env, "")?;
    let mut raw: raw::RawConfig = serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::new(path, without_value(e.into_inner().to_string()))
    })?;
    env::apply_seed_overrides(&mut raw, env)?;
    validate::validate(raw)
}

/// A YAML syntax error by position only: the parser's snippet of the
/// surrounding lines would print whatever secrets sit next to the mistake.
fn yaml_error(e: &serde_saphyr::Error) -> ConfigError {
    let position = e
        .location()
        .map(|at| format!(" at line {} column {}", at.line(), at.column()))
        .unwrap_or_default();
    let message = e.without_snippet().to_string();
    // The parser's message may itself end with a position; keep only its words.
    let message = message.split(" at line ").next().unwrap_or_default().trim();
    ConfigError::new(
        "",
        format!(
            "invalid YAML{position}: {}",
            without_value(message.to_owned())
        ),
    )
}

/// serde's type errors quote the offending value (`invalid type: string
/// "hunter2", expected a boolean`); a config value may be a secret, so only
/// the expectation is kept.
fn without_value(message: String) -> String {
    const QUOTING: [&str; 3] = ["invalid type", "invalid value", "invalid length"];
    match QUOTING.iter().find(|kind| message.starts_with(*kind)) {
        Some(kind) => match message.split_once(", expected ") {
            Some((_, expected)) => format!("{kind}: expected {expected}"),
            None => (*kind).to_owned(),
        },
        None => message,
    }
}

#[cfg(test)]
mod tests;
