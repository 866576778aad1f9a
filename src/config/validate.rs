//! Raw YAML values -> strong types. The only place config rules live.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;

use super::raw::{RawConfig, RawRoute, RawSms};
use super::*;

/// The HS256 key must be at least this long (RFC 7518 section 3.2).
const MIN_SECRET_BYTES: usize = 32;

type Result<T> = std::result::Result<T, ConfigError>;

fn err<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T> {
    Err(ConfigError::new(path, message))
}

pub fn validate(raw: RawConfig) -> Result<Config> {
    let server = server(&raw)?;
    let storage = storage(&raw)?;
    let otp = otp(&raw)?;
    let sms = sms(&raw.sms)?;
    let jwt = jwt(&raw)?;
    let auth = auth(&raw)?;
    let session = session(&raw)?;
    let limits = limits(&raw.limits)?;
    if server.environment == Environment::Production && !otp.test_numbers.is_empty() {
        return err(
            "otp.test_numbers",
            "must be empty with server.environment production: test numbers get fixed OTPs",
        );
    }
    let mut routes = Vec::with_capacity(raw.routes.len());
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    for (i, route) in raw.routes.into_iter().enumerate() {
        let path = format!("routes[{i}]");
        let route = self::route(&path, route)?;
        if !names.insert(route.name.clone()) {
            return err(
                format!("{path}.name"),
                format!("duplicate route name {:?}", route.name),
            );
        }
        if !keys.insert((route.host.clone(), route.prefix.clone())) {
            return err(
                format!("{path}.prefix"),
                format!(
                    "another route already has prefix {:?} for {}",
                    route.prefix,
                    route.host.as_deref().unwrap_or("any host")
                ),
            );
        }
        routes.push(route);
    }
    Ok(Config {
        server,
        storage,
        otp,
        sms,
        jwt,
        auth,
        session,
        limits,
        routes,
    })
}

/// `COUNT/WINDOW`, e.g. `5/1h`: at most COUNT in any WINDOW.
fn rate(path: &str, text: &str) -> Result<Rate> {
    let parsed = text.split_once('/').and_then(|(count, window)| {
        let count: u32 = count.trim().parse().ok()?;
        let window = humantime::parse_duration(window.trim()).ok()?;
        Some(Rate { count, window })
    });
    match parsed {
        Some(rate) if rate.count >= 1 && rate.window >= Duration::from_secs(1) => Ok(rate),
        _ => err(
            path,
            format!(
                "expected COUNT/WINDOW like \"5/1h\" (COUNT at least 1, WINDOW at least 1s), got {text:?}"
            ),
        ),
    }
}

fn rates(path: &str, list: &[String]) -> Result<Vec<Rate>> {
    list.iter()
        .enumerate()
        .map(|(i, text)| rate(&format!("{path}[{i}]"), text))
        .collect()
}

fn limits(l: &super::raw::RawLimits) -> Result<LimitsConfig> {
    let lockout = &l.lockout;
    let lockout = if lockout.burned == 0 {
        None
    } else {
        Some(Lockout {
            burned: lockout.burned,
            window: positive("limits.lockout.window", lockout.window)?,
            duration: positive("limits.lockout.duration", lockout.duration)?,
        })
    };
    let trusted_proxies = l
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let text = text.trim();
            // A bare address is a network of one.
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .or_else(|_| {
                    err(
                        format!("limits.trusted_proxies[{i}]"),
                        format!("expected a CIDR like 10.0.0.0/8 or an address, got {text:?}"),
                    )
                })
        })
        .collect::<Result<_>>()?;
    Ok(LimitsConfig {
        sms_per_mobile: rates("limits.sms_per_mobile", &l.sms_per_mobile)?,
        sms_per_ip: rates("limits.sms_per_ip", &l.sms_per_ip)?,
        sms_per_country: rates("limits.sms_per_country", &l.sms_per_country)?,
        sms_global: rates("limits.sms_global", &l.sms_global)?,
        verify_per_ip: rates("limits.verify_per_ip", &l.verify_per_ip)?,
        lockout,
        trusted_proxies,
    })
}

fn session(raw: &RawConfig) -> Result<SessionConfig> {
    let s = &raw.session;
    if s.refresh_ttl < Duration::from_secs(1) {
        return err("session.refresh_ttl", "must be at least 1s");
    }
    if s.max_lifetime < Duration::from_secs(1) {
        return err("session.max_lifetime", "must be at least 1s");
    }
    if s.reuse_grace >= s.refresh_ttl {
        return err(
            "session.reuse_grace",
            "must be shorter than session.refresh_ttl",
        );
    }
    let on_feed_loss = match s.on_feed_loss.as_str() {
        "open" => FeedLoss::Open,
        "closed" => FeedLoss::Closed,
        other => {
            return err(
                "session.on_feed_loss",
                format!("expected open or closed, got {other:?}"),
            );
        }
    };
    Ok(SessionConfig {
        refresh_ttl: s.refresh_ttl,
        max_lifetime: s.max_lifetime,
        reuse_grace: s.reuse_grace,
        on_feed_loss,
    })
}

fn socket_addr(path: &str, value: &str) -> Result<SocketAddr> {
    value.parse().or_else(|_| {
        err(
            path,
            format!("expected an address like 127.0.0.1:8080, got {value:?}"),
        )
    })
}

fn positive(path: &str, value: Duration) -> Result<Duration> {
    if value.is_zero() {
        return err(path, "must be greater than zero");
    }
    Ok(value)
}

fn server(raw: &RawConfig) -> Result<ServerConfig> {
    let s = &raw.server;
    let listen = socket_addr("server.listen", &s.listen)?;
    if !(1..=256).contains(&s.threads) {
        return err("server.threads", "must be between 1 and 256");
    }
    let admin_listen = match s.admin_listen.as_deref() {
        None | Some("") => None,
        Some(value) => {
            let addr = socket_addr("server.admin_listen", value)?;
            if addr == listen {
                return err("server.admin_listen", "must differ from server.listen");
            }
            Some(addr)
        }
    };
    Ok(ServerConfig {
        listen,
        threads: s.threads,
        admin_listen,
        access_log: s.access_log,
        grace_period: s.grace_period,
        shutdown_timeout: s.shutdown_timeout,
        header_timeout: positive("server.header_timeout", s.header_timeout)?,
        body_timeout: positive("server.body_timeout", s.body_timeout)?,
        reuse_port: s.reuse_port,
        environment: match s.environment.as_str() {
            "development" => Environment::Development,
            "production" => Environment::Production,
            other => {
                return err(
                    "server.environment",
                    format!("expected development or production, got {other:?}"),
                );
            }
        },
        audit_log: match s.audit_log.trim() {
            "" => AuditLog::Off,
            "stderr" => AuditLog::Stderr,
            file => AuditLog::File(PathBuf::from(file)),
        },
        tls: match &s.tls {
            None => None,
            Some(tls) => {
                let (cert_file, key_file) =
                    (PathBuf::from(&tls.cert_file), PathBuf::from(&tls.key_file));
                crate::tls::load(&cert_file, &key_file)
                    .map_err(|e| ConfigError::new("server.tls", e))?;
                Some(TlsConfig {
                    cert_file,
                    key_file,
                })
            }
        },
    })
}

fn storage(raw: &RawConfig) -> Result<StorageConfig> {
    let s = &raw.storage;
    let backend = match s.backend.as_str() {
        "embedded" => {
            if s.sqlite_path.trim().is_empty() {
                return err("storage.sqlite_path", "must not be empty");
            }
            StorageBackend::Embedded {
                sqlite_path: PathBuf::from(&s.sqlite_path),
            }
        }
        "mysql_redis" => {
            check_url("storage.mysql_url", &s.mysql_url, &["mysql"])?;
            check_url("storage.redis_url", &s.redis_url, &["redis", "rediss"])?;
            if s.redis_key_prefix.is_empty() {
                return err(
                    "storage.redis_key_prefix",
                    "must not be empty: it keeps otpgate's keys apart from others",
                );
            }
            if s.mysql_pool_max == 0 {
                return err("storage.mysql_pool_max", "must be at least 1");
            }
            StorageBackend::MysqlRedis {
                mysql_url: Secret::new(&s.mysql_url),
                redis_url: Secret::new(&s.redis_url),
                redis_key_prefix: s.redis_key_prefix.clone(),
                auto_migrate: s.auto_migrate,
                mysql_pool_max: s.mysql_pool_max,
            }
        }
        other => {
            return err(
                "storage.backend",
                format!("expected embedded or mysql_redis, got {other:?}"),
            );
        }
    };
    if s.connect_attempts == 0 {
        return err("storage.connect_attempts", "must be at least 1");
    }
    Ok(StorageConfig {
        backend,
        timeout: positive("storage.timeout", s.timeout)?,
        connect_attempts: s.connect_attempts,
    })
}

fn check_url(path: &str, value: &str, schemes: &[&str]) -> Result<url::Url> {
    // Never echo the value: it may hold a password.
    let url = url::Url::parse(value).or_else(|e| err(path, format!("not a valid URL ({e})")))?;
    if !schemes.contains(&url.scheme()) {
        return err(
            path,
            format!(
                "scheme must be {}, got {:?}",
                schemes.join(" or "),
                url.scheme()
            ),
        );
    }
    Ok(url)
}

fn otp(raw: &RawConfig) -> Result<OtpConfig> {
    let o = &raw.otp;
    if !(4..=10).contains(&o.length) {
        return err("otp.length", "must be between 4 and 10 digits");
    }
    if o.ttl < Duration::from_secs(1) {
        return err("otp.ttl", "must be at least 1s");
    }
    if !(1..=100).contains(&o.max_attempts) {
        return err("otp.max_attempts", "must be between 1 and 100");
    }
    let code = o.default_country_code.trim();
    let default_country_code = if code.is_empty() {
        None
    } else {
        let digits = code.strip_prefix('+').unwrap_or(code);
        if !(1..=4).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return err(
                "otp.default_country_code",
                format!("expected + and 1-4 digits like \"+91\", got {code:?}"),
            );
        }
        Some(format!("+{digits}"))
    };
    let allowed_country_codes = o
        .allowed_country_codes
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let code = code.trim();
            let digits = code.strip_prefix('+').unwrap_or(code);
            match digits.parse::<u16>() {
                Ok(value) if (1..=3).contains(&digits.len()) && !digits.starts_with('0') => {
                    Ok(value)
                }
                _ => err(
                    format!("otp.allowed_country_codes[{i}]"),
                    format!("expected a calling code like \"+44\", got {code:?}"),
                ),
            }
        })
        .collect::<Result<_>>()?;
    let mut test_numbers = std::collections::HashMap::new();
    for (number, otp) in &o.test_numbers {
        let path = format!("otp.test_numbers.{number:?}");
        let mobile = crate::mobile::normalize(number, default_country_code.as_deref())
            .ok()
            .filter(|m| m.starts_with('+'))
            .map_or_else(
                || {
                    err(
                        &path,
                        "expected an international number like \"+15550000001\"",
                    )
                },
                Ok,
            )?;
        if otp.len() != o.length || !otp.bytes().all(|b| b.is_ascii_digit()) {
            return err(
                &path,
                format!("its OTP must be {} digits (otp.length)", o.length),
            );
        }
        if test_numbers.insert(mobile, Secret::new(otp)).is_some() {
            return err(&path, "is the same number as another test number");
        }
    }
    Ok(OtpConfig {
        length: o.length,
        ttl: o.ttl,
        cooldown: o.cooldown,
        max_attempts: o.max_attempts,
        default_country_code,
        allowed_country_codes,
        test_numbers,
    })
}

fn sms(s: &RawSms) -> Result<SmsConfig> {
    let provider = match s.provider.as_str() {
        "console" => SmsProvider::Console,
        "file" => {
            if s.file_path.trim().is_empty() {
                return err("sms.file_path", "must not be empty with the file provider");
            }
            SmsProvider::File {
                path: PathBuf::from(&s.file_path),
            }
        }
        "webhook" => SmsProvider::Webhook {
            url: check_url("sms.webhook_url", &s.webhook_url, &["http", "https"])?,
        },
        "twilio" => {
            let t = &s.twilio;
            for (key, value) in [
                ("account_sid", &t.account_sid),
                ("auth_token", &t.auth_token),
                ("from", &t.from),
            ] {
                if value.trim().is_empty() {
                    return err(
                        format!("sms.twilio.{key}"),
                        "must be set with the twilio provider",
                    );
                }
            }
            if !t.account_sid.chars().all(|c| c.is_ascii_alphanumeric()) {
                return err("sms.twilio.account_sid", "must be alphanumeric");
            }
            SmsProvider::Twilio(TwilioConfig {
                account_sid: t.account_sid.clone(),
                auth_token: Secret::new(&t.auth_token),
                from: t.from.clone(),
                api_base: check_url("sms.twilio.api_base", &t.api_base, &["http", "https"])?,
            })
        }
        other => {
            return err(
                "sms.provider",
                format!("expected console, file, webhook or twilio, got {other:?}"),
            );
        }
    };
    Ok(SmsConfig {
        provider,
        timeout: positive("sms.timeout", s.timeout)?,
    })
}

fn jwt(raw: &RawConfig) -> Result<JwtConfig> {
    let j = &raw.jwt;
    let signing = signing(j)?;
    if j.secret.is_empty() {
        return err(
            "jwt.secret",
            "is empty: set SECRET_KEY or jwt.secret (at least 32 bytes)",
        );
    }
    if j.secret.len() < MIN_SECRET_BYTES {
        return err(
            "jwt.secret",
            format!(
                "is {} bytes; HS256 needs at least {MIN_SECRET_BYTES}",
                j.secret.len()
            ),
        );
    }
    if j.issuer.is_empty() {
        return err("jwt.issuer", "must not be empty");
    }
    if j.audience.is_empty() {
        return err("jwt.audience", "must not be empty");
    }
    if j.ttl < Duration::from_secs(1) {
        return err("jwt.ttl", "must be at least 1s");
    }
    if j.leeway > Duration::from_secs(300) {
        return err("jwt.leeway", "must be at most 5m");
    }
    Ok(JwtConfig {
        secret: Secret::new(&j.secret),
        signing,
        issuer: j.issuer.clone(),
        audience: j.audience.clone(),
        ttl: j.ttl,
        leeway: j.leeway,
    })
}

/// The certificates of a PEM file of trusted roots, as DER.
fn ca_file(file: &Path) -> std::result::Result<Vec<Vec<u8>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let roots: Vec<Vec<u8>> = CertificateDer::pem_file_iter(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?
        .map(|cert| cert.map(|c| c.as_ref().to_vec()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("{}: not PEM certificates ({e})", file.display()))?;
    if roots.is_empty() {
        return Err(format!("{}: no certificate in it", file.display()));
    }
    Ok(roots)
}

/// `jwt.algorithm` and `jwt.keys`, with every key file read and checked.
fn signing(j: &super::raw::RawJwt) -> Result<Signing> {
    if j.algorithm == "HS256" {
        if !j.keys.is_empty() {
            return err(
                "jwt.keys",
                "is for RS256, ES256 or EdDSA; HS256 signs with jwt.secret",
            );
        }
        return Ok(Signing::Hmac);
    }
    let Some(algorithm) = crate::keys::KeyAlgorithm::parse(&j.algorithm) else {
        return err(
            "jwt.algorithm",
            format!(
                "expected HS256, RS256, ES256 or EdDSA, got {:?}",
                j.algorithm
            ),
        );
    };
    if j.keys.is_empty() {
        return err(
            "jwt.keys",
            format!("{} needs at least one key; the first signs", j.algorithm),
        );
    }
    let mut keys = Vec::with_capacity(j.keys.len());
    let mut kids = HashSet::new();
    for (i, key) in j.keys.iter().enumerate() {
        let path = format!("jwt.keys[{i}]");
        let kid_ok = !key.kid.is_empty()
            && key.kid.len() <= 64
            && key
                .kid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !kid_ok {
            return err(
                format!("{path}.kid"),
                "expected 1-64 letters, digits, '-', '_' or '.'",
            );
        }
        if !kids.insert(key.kid.as_str()) {
            return err(&path, format!("kid {:?} is used by another key", key.kid));
        }
        let (file, private) = match (&key.private_key_file, &key.public_key_file) {
            (Some(file), None) => (file, true),
            (None, Some(file)) => (file, false),
            _ => {
                return err(
                    &path,
                    "needs exactly one of private_key_file and public_key_file",
                );
            }
        };
        if i == 0 && !private {
            return err(&path, "the first key signs: it needs a private_key_file");
        }
        let material = crate::keys::load(Path::new(file), private, algorithm)
            .map_err(|e| ConfigError::new(&path, e))?;
        keys.push(SigningKey {
            kid: key.kid.clone(),
            material,
        });
    }
    Ok(Signing::Keys { algorithm, keys })
}

fn auth(raw: &RawConfig) -> Result<AuthConfig> {
    let a = &raw.auth;
    let prefix = a.path_prefix.as_str();
    if !prefix.is_empty()
        && (!prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains(['?', '#', ' ']))
    {
        return err(
            "auth.path_prefix",
            format!(
                "expected \"\" or a path like \"/auth\" without trailing slash, got {prefix:?}"
            ),
        );
    }
    let user_id = identity_header("auth.identity_headers.user_id", &a.identity_headers.user_id)?;
    let mobile = identity_header("auth.identity_headers.mobile", &a.identity_headers.mobile)?;
    let fold = |name: &HeaderName| name.as_str().replace('_', "-");
    if fold(&user_id) == fold(&mobile) {
        return err(
            "auth.identity_headers.mobile",
            "must differ from auth.identity_headers.user_id",
        );
    }
    Ok(AuthConfig {
        path_prefix: prefix.to_owned(),
        identity_headers: IdentityHeaderNames { user_id, mobile },
    })
}

fn identity_header(path: &str, name: &str) -> Result<HeaderName> {
    let header = HeaderName::try_from(name)
        .or_else(|_| err(path, format!("{name:?} is not a valid header name")))?;
    const RESERVED: [&str; 8] = [
        "host",
        "authorization",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "x-forwarded-for",
        "x-request-id",
    ];
    if RESERVED.contains(&header.as_str()) {
        return err(path, format!("{name:?} is reserved"));
    }
    Ok(header)
}

fn route(path: &str, r: RawRoute) -> Result<RouteConfig> {
    let name_ok = !r.name.is_empty()
        && r.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return err(
            format!("{path}.name"),
            format!(
                "expected letters, digits, '-', '_' or '.', got {:?}",
                r.name
            ),
        );
    }
    if !r.prefix.starts_with('/') {
        return err(
            format!("{path}.prefix"),
            format!("must start with '/', got {:?}", r.prefix),
        );
    }
    // Requests are routed on their normalised path, so only a normal prefix can match.
    match crate::path::normalize(&r.prefix) {
        Ok(normal) if normal == r.prefix => {}
        Ok(normal) => {
            return err(
                format!("{path}.prefix"),
                format!("is not a normalised path: write {normal:?}"),
            );
        }
        Err(e) => return err(format!("{path}.prefix"), e.to_string()),
    }
    let host = match r.host.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(host) => {
            // `admin.example.com.` is `admin.example.com`, as in DNS.
            let host = host.strip_suffix('.').unwrap_or(host);
            let valid = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
            if !valid {
                return err(
                    format!("{path}.host"),
                    format!("expected a host name without scheme or port, got {host:?}"),
                );
            }
            Some(host.to_ascii_lowercase())
        }
    };
    if r.upstreams.is_empty() {
        return err(
            format!("{path}.upstreams"),
            "must name at least one upstream",
        );
    }
    let mut upstreams = Vec::new();
    for (i, upstream) in r.upstreams.iter().enumerate() {
        let upath = format!("{path}.upstreams[{i}]");
        if upstream.contains("://") || upstream.rsplit_once(':').is_none() {
            return err(
                upath,
                format!("expected host:port like 127.0.0.1:9001, got {upstream:?}"),
            );
        }
        let resolved = upstream
            .to_socket_addrs()
            .or_else(|e| err(&upath, format!("cannot resolve {upstream:?}: {e}")))?;
        let before = upstreams.len();
        for addr in resolved {
            if !upstreams.contains(&addr) {
                upstreams.push(addr);
            }
        }
        if upstreams.len() == before {
            return err(upath, format!("{upstream:?} duplicates another upstream"));
        }
    }
    let auth = match r.auth.as_str() {
        "required" => AuthMode::Required,
        "optional" => AuthMode::Optional,
        "public" => AuthMode::Public,
        other => {
            return err(
                format!("{path}.auth"),
                format!("expected required, optional or public, got {other:?}"),
            );
        }
    };
    let upstream_tls = if r.upstream_tls {
        // Default name: the host of the first upstream, as written.
        let sni = match r.upstream_sni.trim() {
            "" => r.upstreams[0]
                .rsplit_once(':')
                .map_or(r.upstreams[0].as_str(), |(host, _)| host)
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            sni => sni.to_owned(),
        };
        let roots = match r.upstream_ca_file.trim() {
            "" => None,
            file => Some(
                ca_file(Path::new(file))
                    .map_err(|e| ConfigError::new(format!("{path}.upstream_ca_file"), e))?,
            ),
        };
        Some(UpstreamTls { sni, roots })
    } else {
        for (key, value) in [
            ("upstream_sni", &r.upstream_sni),
            ("upstream_ca_file", &r.upstream_ca_file),
        ] {
            if !value.trim().is_empty() {
                return err(format!("{path}.{key}"), "needs upstream_tls: true");
            }
        }
        None
    };
    Ok(RouteConfig {
        upstream_tls,
        name: r.name,
        prefix: r.prefix,
        host,
        upstream_names: r.upstreams,
        upstreams,
        auth,
        strip_prefix: r.strip_prefix,
        connect_timeout: positive(&format!("{path}.connect_timeout"), r.connect_timeout)?,
        read_timeout: positive(&format!("{path}.read_timeout"), r.read_timeout)?,
        health_check_interval: positive(
            &format!("{path}.health_check_interval"),
            r.health_check_interval,
        )?,
    })
}
