//! The YAML schema exactly as operators write it. Every struct refuses unknown
//! keys; `validate` turns these loose values into the strong types of `super`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub storage: RawStorage,
    pub otp: RawOtp,
    pub sms: RawSms,
    pub jwt: RawJwt,
    pub auth: RawAuth,
    pub session: RawSession,
    pub limits: RawLimits,
    pub routes: Vec<RawRoute>,
}

/// `limits`: each list of `COUNT/WINDOW` may be empty (no limit).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub sms_per_mobile: Vec<String>,
    pub sms_per_ip: Vec<String>,
    pub sms_per_country: Vec<String>,
    pub sms_global: Vec<String>,
    pub verify_per_ip: Vec<String>,
    pub lockout: RawLockout,
    pub trusted_proxies: Vec<String>,
}

/// The defaults hold behind a load balancer: without `trusted_proxies` every
/// client has the balancer's IP, so the per-IP limits are off until set.
impl Default for RawLimits {
    fn default() -> Self {
        let rates = |list: &[&str]| list.iter().map(|r| (*r).to_owned()).collect();
        Self {
            sms_per_mobile: rates(&["5/1h", "10/24h"]),
            sms_per_ip: Vec::new(),
            sms_per_country: rates(&["1000/1h"]),
            sms_global: rates(&["10000/24h"]),
            verify_per_ip: Vec::new(),
            lockout: RawLockout::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLockout {
    #[serde(deserialize_with = "lenient")]
    pub burned: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

impl Default for RawLockout {
    fn default() -> Self {
        Self {
            burned: 3,
            window: Duration::from_secs(3600),
            duration: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSession {
    #[serde(with = "humantime_serde")]
    pub refresh_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub reuse_grace: Duration,
    pub on_feed_loss: String,
}

impl Default for RawSession {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            refresh_ttl: Duration::from_secs(30 * DAY),
            max_lifetime: Duration::from_secs(90 * DAY),
            reuse_grace: Duration::from_secs(10),
            on_feed_loss: "open".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    #[serde(deserialize_with = "lenient")]
    pub threads: usize,
    pub admin_listen: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub access_log: bool,
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    #[serde(deserialize_with = "lenient")]
    pub reuse_port: bool,
    pub tls: Option<RawTls>,
    pub environment: String,
    pub audit_log: String,
}

/// `server.tls`: when set, `listen` serves HTTPS only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: String,
    pub key_file: String,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            threads: 2,
            admin_listen: None,
            access_log: true,
            grace_period: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            reuse_port: false,
            tls: None,
            environment: "development".into(),
            audit_log: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStorage {
    pub backend: String,
    pub sqlite_path: String,
    pub mysql_url: String,
    pub redis_url: String,
    pub redis_key_prefix: String,
    #[serde(deserialize_with = "lenient")]
    pub auto_migrate: bool,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(deserialize_with = "lenient")]
    pub connect_attempts: u32,
    #[serde(deserialize_with = "lenient")]
    pub mysql_pool_max: usize,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            backend: "embedded".into(),
            sqlite_path: "data/otpgate.sqlite3".into(),
            mysql_url: "mysql://root@127.0.0.1:3306/otp_auth".into(),
            redis_url: "redis://127.0.0.1:6379/0".into(),
            redis_key_prefix: "otpgate:".into(),
            auto_migrate: true,
            timeout: Duration::from_secs(2),
            connect_attempts: 5,
            mysql_pool_max: 32,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOtp {
    #[serde(deserialize_with = "lenient")]
    pub length: usize,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    #[serde(deserialize_with = "lenient")]
    pub max_attempts: u32,
    pub default_country_code: String,
    pub allowed_country_codes: Vec<String>,
    pub test_numbers: std::collections::BTreeMap<String, String>,
}

impl Default for RawOtp {
    fn default() -> Self {
        Self {
            length: 6,
            ttl: Duration::from_secs(300),
            cooldown: Duration::from_secs(30),
            max_attempts: 5,
            default_country_code: String::new(),
            allowed_country_codes: Vec::new(),
            test_numbers: Default::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSms {
    pub provider: String,
    pub file_path: String,
    pub webhook_url: String,
    pub twilio: RawTwilio,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for RawSms {
    fn default() -> Self {
        Self {
            provider: "console".into(),
            file_path: "data/sms-outbox.jsonl".into(),
            webhook_url: String::new(),
            twilio: RawTwilio::default(),
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTwilio {
    pub account_sid: String,
    pub auth_token: String,
    pub from: String,
    pub api_base: String,
}

impl Default for RawTwilio {
    fn default() -> Self {
        Self {
            account_sid: String::new(),
            auth_token: String::new(),
            from: String::new(),
            api_base: "https://api.twilio.com".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJwt {
    pub algorithm: String,
    pub secret: String,
    pub issuer: String,
    pub audience: String,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    pub keys: Vec<RawKey>,
}

/// One entry of `jwt.keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub kid: String,
    #[serde(default)]
    pub private_key_file: Option<String>,
    #[serde(default)]
    pub public_key_file: Option<String>,
}

impl Default for RawJwt {
    fn default() -> Self {
        Self {
            algorithm: "HS256".into(),
            secret: String::new(),
            issuer: "otpgate".into(),
            audience: "otpgate".into(),
            ttl: Duration::from_secs(3600),
            leeway: Duration::from_secs(30),
            keys: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub path_prefix: String,
    pub identity_headers: RawIdentityHeaders,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIdentityHeaders {
    pub user_id: String,
    pub mobile: String,
}

impl Default for RawIdentityHeaders {
    fn default() -> Self {
        Self {
            user_id: "X-User-Id".into(),
            mobile: "X-User-Mobile".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    pub prefix: String,
    #[serde(default)]
    pub host: Option<String>,
    pub upstreams: Vec<String>,
    #[serde(default = "default_auth_mode")]
    pub auth: String,
    #[serde(default, deserialize_with = "lenient")]
    pub strip_prefix: bool,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub read_timeout: Duration,
    #[serde(default = "default_health_check_interval", with = "humantime_serde")]
    pub health_check_interval: Duration,
    #[serde(default, deserialize_with = "lenient")]
    pub upstream_tls: bool,
    #[serde(default)]
    pub upstream_sni: String,
    #[serde(default)]
    pub upstream_ca_file: String,
}

fn default_auth_mode() -> String {
    "required".into()
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_read_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_health_check_interval() -> Duration {
    Duration::from_secs(2)
}

/// Accepts a native YAML scalar or a string holding one, so that a value
/// produced by `${VAR}` expansion (always a string) still fills a number or a
/// boolean field.
fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr + Deserialize<'de>,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient<T> {
        Native(T),
        Text(String),
    }
    match Lenient::<T>::deserialize(deserializer)? {
        Lenient::Native(value) => Ok(value),
        Lenient::Text(text) => text
            .trim()
            .parse()
            // The value itself is never quoted: it may be an expanded secret.
            .map_err(|e| serde::de::Error::custom(format!("invalid value ({e})"))),
    }
}
