//! The environment as the config sees it: `${VAR}` / `${VAR:-default}`
//! expansion inside YAML strings, and the seed service's `.env` variables as
//! overrides of the keys they used to control.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::ConfigError;
use super::raw::RawConfig;

/// Variables from the process environment, falling back to a `.env` file.
#[derive(Debug, Default, Clone)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment over the `.env` file at `dotenv` (if present):
    /// a variable set in the process wins, as with every dotenv tool.
    pub fn load(dotenv: &Path) -> Result<Self, ConfigError> {
        let mut vars = HashMap::new();
        if dotenv.exists() {
            let entries = dotenvy::from_path_iter(dotenv).map_err(|e| dotenv_error(dotenv, &e))?;
            for entry in entries {
                let (key, value) = entry.map_err(|e| dotenv_error(dotenv, &e))?;
                vars.insert(key, value);
            }
        }
        vars.extend(std::env::vars());
        Ok(Self { vars })
    }

    /// An environment holding exactly these variables (tests, embedding).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A seed override: set and non-empty.
    fn get_override(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

/// A `.env` error by line number: dotenvy's own message quotes the line,
/// which holds a value, maybe a secret.
fn dotenv_error(path: &Path, e: &dotenvy::Error) -> ConfigError {
    let message = match e {
        dotenvy::Error::LineParse(line, _) => {
            let number = std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.lines().position(|l| l == line))
                .map_or(String::new(), |i| format!(" {}", i + 1));
            format!("line{number} is not NAME=value")
        }
        dotenvy::Error::Io(e) => format!("cannot be read: {e}"),
        _ => "cannot be read".to_owned(),
    };
    ConfigError::new(".env", message)
}

/// Expands `${VAR}` and `${VAR:-default}` in every string of the YAML tree.
/// `$$` stands for a literal `$`. An unset variable without a default is an
/// error naming the key, so a typo never becomes an empty secret.
pub fn expand(value: &mut Value, env: &Env, path: &str) -> Result<(), ConfigError> {
    match value {
        Value::String(text) if text.contains('$') => {
            *text = expand_str(text, env).map_err(|msg| ConfigError::new(path, msg))?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand(item, env, &format!("{path}[{i}]"))?;
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                expand(item, env, &child)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(text: &str, env: &Env) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| "unterminated ${...}".to_owned())?;
            let expr = &after[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name {name:?} in ${{...}}"));
            }
            match (env.get(name), default) {
                (Some(""), Some(default)) => out.push_str(default),
                (Some(v), _) => out.push_str(v),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} to allow that)"
                    ));
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Applies the seed service's variables (PORT, DB_*, REDIS_*, SECRET_KEY,
/// OTP_EXPIRY, TWILIO_*) over the YAML values they correspond to.
pub fn apply_seed_overrides(raw: &mut RawConfig, env: &Env) -> Result<(), ConfigError> {
    if let Some(port) = env.get_override("PORT") {
        let port: u16 = port
            .parse()
            .map_err(|_| ConfigError::new("PORT", format!("invalid port {port:?}")))?;
        let host = raw
            .server
            .listen
            .rsplit_once(':')
            .map_or("0.0.0.0", |(host, _)| host);
        raw.server.listen = format!("{host}:{port}");
    }

    let db = ["DB_USER", "DB_PASSWORD", "DB_HOST", "DB_PORT", "DB_NAME"];
    if db.iter().any(|name| env.get_override(name).is_some()) {
        let mut url = url::Url::parse(&raw.storage.mysql_url)
            .map_err(|e| ConfigError::new("storage.mysql_url", e.to_string()))?;
        let bad = |name: &str| ConfigError::new(name, "cannot be applied to storage.mysql_url");
        if let Some(user) = env.get_override("DB_USER") {
            url.set_username(user).map_err(|_| bad("DB_USER"))?;
        }
        if let Some(password) = env.get_override("DB_PASSWORD") {
            url.set_password(Some(password))
                .map_err(|_| bad("DB_PASSWORD"))?;
        }
        if let Some(host) = env.get_override("DB_HOST") {
            url.set_host(Some(host)).map_err(|_| bad("DB_HOST"))?;
        }
        if let Some(port) = env.get_override("DB_PORT") {
            let port: u16 = port
                .parse()
                .map_err(|_| ConfigError::new("DB_PORT", format!("invalid port {port:?}")))?;
            url.set_port(Some(port)).map_err(|_| bad("DB_PORT"))?;
        }
        if let Some(name) = env.get_override("DB_NAME") {
            url.set_path(&format!("/{name}"));
        }
        raw.storage.mysql_url = url.into();
    }

    if env.get_override("REDIS_HOST").is_some() || env.get_override("REDIS_PORT").is_some() {
        let mut url = url::Url::parse(&raw.storage.redis_url)
            .map_err(|e| ConfigError::new("storage.redis_url", e.to_string()))?;
        if let Some(host) = env.get_override("REDIS_HOST") {
            url.set_host(Some(host))
                .map_err(|_| ConfigError::new("REDIS_HOST", "invalid host"))?;
        }
        if let Some(port) = env.get_override("REDIS_PORT") {
            let port: u16 = port
                .parse()
                .map_err(|_| ConfigError::new("REDIS_PORT", format!("invalid port {port:?}")))?;
            url.set_port(Some(port))
                .map_err(|_| ConfigError::new("REDIS_PORT", "invalid port"))?;
        }
        raw.storage.redis_url = url.into();
    }

    if let Some(secret) = env.get_override("SECRET_KEY") {
        raw.jwt.secret = secret.to_owned();
    }
    if let Some(minutes) = env.get_override("OTP_EXPIRY") {
        let minutes: u64 = minutes.parse().map_err(|_| {
            ConfigError::new(
                "OTP_EXPIRY",
                format!("expected whole minutes, got {minutes:?}"),
            )
        })?;
        raw.otp.ttl = Duration::from_secs(minutes * 60);
    }
    let twilio = &mut raw.sms.twilio;
    for (name, field) in [
        ("TWILIO_ACCOUNT_SID", &mut twilio.account_sid),
        ("TWILIO_AUTH_TOKEN", &mut twilio.auth_token),
        ("TWILIO_PHONE_NUMBER", &mut twilio.from),
    ] {
        if let Some(value) = env.get_override(name) {
            *field = value.to_owned();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_set_unset_default_and_escape() {
        let env = Env::from_pairs([("A", "x"), ("EMPTY", "")]);
        assert_eq!(expand_str("${A}-${B:-d}", &env).unwrap(), "x-d");
        assert_eq!(expand_str("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand_str("${EMPTY}", &env).unwrap(), "");
        assert_eq!(expand_str("cost $$5 ${A}", &env).unwrap(), "cost $5 x");
        assert_eq!(expand_str("a$b", &env).unwrap(), "a$b");
        assert!(
            expand_str("${MISSING}", &env)
                .unwrap_err()
                .contains("MISSING")
        );
        assert!(expand_str("${A", &env).is_err());
        assert!(expand_str("${BAD-NAME}", &env).is_err());
    }

    #[test]
    fn expansion_error_names_the_key() {
        let mut value = serde_json::json!({"routes": [{"upstreams": ["${NOPE}"]}]});
        let err = expand(&mut value, &Env::default(), "").unwrap_err();
        assert_eq!(err.path, "routes[0].upstreams[0]");
    }

    #[test]
    fn seed_variables_override_yaml() {
        let mut raw = RawConfig::default();
        let env = Env::from_pairs([
            ("PORT", "9999"),
            ("DB_USER", "app"),
            ("DB_PASSWORD", "p@ss"),
            ("DB_HOST", "db.internal"),
            ("DB_PORT", "3307"),
            ("DB_NAME", "otp"),
            ("REDIS_HOST", "cache"),
            ("REDIS_PORT", "6380"),
            ("SECRET_KEY", "s"),
            ("OTP_EXPIRY", "10"),
            ("TWILIO_ACCOUNT_SID", "AC1"),
            ("TWILIO_AUTH_TOKEN", ""),
        ]);
        apply_seed_overrides(&mut raw, &env).unwrap();
        assert_eq!(raw.server.listen, "127.0.0.1:9999");
        assert_eq!(
            raw.storage.mysql_url,
            "mysql://app:p%40ss@db.internal:3307/otp"
        );
        assert_eq!(raw.storage.redis_url, "redis://cache:6380/0");
        assert_eq!(raw.jwt.secret, "s");
        assert_eq!(raw.otp.ttl, Duration::from_secs(600));
        assert_eq!(raw.sms.twilio.account_sid, "AC1");
        assert_eq!(
            raw.sms.twilio.auth_token, "",
            "empty variables do not override"
        );
        let bad = Env::from_pairs([("PORT", "http")]);
        assert_eq!(
            apply_seed_overrides(&mut raw, &bad).unwrap_err().path,
            "PORT"
        );
    }
}
