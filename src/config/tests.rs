use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn env() -> Env {
    Env::from_pairs([("SECRET_KEY", SECRET)])
}

fn parse_err(yaml: &str) -> ConfigError {
    parse(yaml, &env()).expect_err("config should be refused")
}

#[test]
fn the_spec_example_parses() {
    let yaml = r#"
server: { listen: "127.0.0.1:8080", threads: 2, admin_listen: "127.0.0.1:9090" }
storage:
  backend: mysql_redis
  mysql_url: "mysql://root@127.0.0.1:3306/otp_auth"
  redis_url: "redis://127.0.0.1:6379/0"
  redis_key_prefix: "otpgate:"
  auto_migrate: true
otp: { length: 6, ttl: 5m, cooldown: 30s, max_attempts: 5, default_country_code: "+91" }
sms:
  provider: twilio
  twilio: { account_sid: "AC123", auth_token: "tok", from: "+15550001111", api_base: "http://127.0.0.1:1" }
jwt: { algorithm: HS256, secret: "${SECRET_KEY}", issuer: otpgate, audience: otpgate, ttl: 1h, leeway: 30s }
auth: { path_prefix: "", identity_headers: { user_id: X-User-Id, mobile: X-User-Mobile } }
routes:
  - name: api
    prefix: /api/
    host: null
    upstreams: ["127.0.0.1:9001", "127.0.0.1:9002"]
    auth: required
    strip_prefix: false
    connect_timeout: 2s
    read_timeout: 30s
"#;
    let config = parse(yaml, &env()).unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        config.server.admin_listen,
        Some("127.0.0.1:9090".parse().unwrap())
    );
    assert_eq!(config.storage.backend.name(), "mysql_redis");
    assert_eq!(config.otp.ttl, Duration::from_secs(300));
    assert_eq!(config.otp.default_country_code.as_deref(), Some("+91"));
    assert_eq!(config.sms.provider.name(), "twilio");
    assert_eq!(config.jwt.secret.expose(), SECRET);
    assert_eq!(config.jwt.leeway, Duration::from_secs(30));
    assert_eq!(config.routes.len(), 1);
    let route = &config.routes[0];
    assert_eq!(route.auth, AuthMode::Required);
    assert_eq!(route.upstreams.len(), 2);
    assert_eq!(route.read_timeout, Duration::from_secs(30));
}

#[test]
fn an_empty_file_needs_only_a_secret() {
    let config = parse("", &env()).unwrap();
    assert_eq!(config.storage.backend.name(), "embedded");
    assert_eq!(config.sms.provider.name(), "console");
    assert!(config.routes.is_empty());
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let e = parse_err("server: { listen: \"127.0.0.1:1\", lisen: x }");
    assert_eq!(e.path, "server.lisen");
    assert!(e.message.contains("lisen"), "{e}");
    let e = parse_err("routes: [{name: a, prefix: /, upstreams: [\"127.0.0.1:1\"], timeout: 1s}]");
    assert_eq!(e.path, "routes[0].timeout");
    assert!(e.message.contains("timeout"), "{e}");
    let e = parse_err("colour: blue");
    assert!(e.message.contains("colour"), "{e}");
}

#[test]
fn bad_values_name_their_key() {
    let route = |extra: &str| {
        format!(
            "routes:\n  - {{name: ok, prefix: /a/, upstreams: [\"127.0.0.1:1\"]}}\n  - {{name: b, prefix: /b/, upstreams: [\"127.0.0.1:2\"]{extra}}}\n"
        )
    };
    let cases = [
        (route(", auth: maybe"), "routes[1].auth"),
        (route(", connect_timeout: soon"), "routes[1].connect_timeout"),
        (route(", read_timeout: 0s"), "routes[1].read_timeout"),
        (
            "routes: [{name: a, prefix: /, upstreams: [\"127.0.0.1:1\", \"http://x:1\"]}]".into(),
            "routes[0].upstreams[1]",
        ),
        (
            "routes: [{name: a, prefix: /, upstreams: [\"no-port\"]}]".into(),
            "routes[0].upstreams[0]",
        ),
        (
            "routes: [{name: a, prefix: api, upstreams: [\"127.0.0.1:1\"]}]".into(),
            "routes[0].prefix",
        ),
        (
            "routes: [{name: a, prefix: /, upstreams: []}]".into(),
            "routes[0].upstreams",
        ),
        (
            "routes: [{name: a, prefix: /, upstreams: [\"127.0.0.1:1\"]}, {name: a, prefix: /x, upstreams: [\"127.0.0.1:1\"]}]".into(),
            "routes[1].name",
        ),
        (
            "routes: [{name: a, prefix: /, upstreams: [\"127.0.0.1:1\"]}, {name: b, prefix: /, upstreams: [\"127.0.0.1:1\"]}]".into(),
            "routes[1].prefix",
        ),
        ("server: { threads: 0 }".into(), "server.threads"),
        ("server: { listen: nowhere }".into(), "server.listen"),
        ("storage: { backend: postgres }".into(), "storage.backend"),
        (
            "storage: { backend: mysql_redis, mysql_url: \"postgres://x\" }".into(),
            "storage.mysql_url",
        ),
        ("otp: { length: 3 }".into(), "otp.length"),
        ("otp: { ttl: 5 }".into(), "otp.ttl"),
        ("otp: { default_country_code: \"91x\" }".into(), "otp.default_country_code"),
        ("sms: { provider: pigeon }".into(), "sms.provider"),
        ("sms: { provider: webhook }".into(), "sms.webhook_url"),
        ("sms: { provider: twilio }".into(), "sms.twilio.account_sid"),
        ("jwt: { algorithm: HS512 }".into(), "jwt.algorithm"),
        ("jwt: { algorithm: RS256 }".into(), "jwt.keys"),
        ("auth: { path_prefix: \"auth/\" }".into(), "auth.path_prefix"),
        (
            "auth: { identity_headers: { user_id: \"bad header\" } }".into(),
            "auth.identity_headers.user_id",
        ),
        (
            "auth: { identity_headers: { user_id: Authorization } }".into(),
            "auth.identity_headers.user_id",
        ),
    ];
    for (yaml, path) in cases {
        let e = parse_err(&yaml);
        assert_eq!(e.path, path, "for {yaml}: {e}");
    }
}

#[test]
fn the_secret_must_be_set_and_long() {
    let none = parse("", &Env::default()).unwrap_err();
    assert_eq!(none.path, "jwt.secret");
    let short = parse("jwt: { secret: short }", &Env::default()).unwrap_err();
    assert_eq!(short.path, "jwt.secret");
    assert!(short.message.contains("32"), "{short}");
    assert!(
        !short.to_string().contains("short }"),
        "never echo the secret"
    );
    let unset = parse("jwt: { secret: \"${NOT_SET}\" }", &Env::default()).unwrap_err();
    assert_eq!(unset.path, "jwt.secret");
    assert!(unset.message.contains("NOT_SET"));
}

#[test]
fn expanded_strings_fill_numbers_and_booleans() {
    let env = Env::from_pairs([("SECRET_KEY", SECRET), ("THREADS", "3")]);
    let config = parse(
        "server: { threads: \"${THREADS}\" }\nroutes: [{name: a, prefix: /, upstreams: [\"127.0.0.1:1\"], strip_prefix: \"${STRIP:-true}\"}]",
        &env,
    )
    .unwrap();
    assert_eq!(config.server.threads, 3);
    assert!(config.routes[0].strip_prefix);
    let e = parse("server: { threads: many }", &env).unwrap_err();
    assert_eq!(e.path, "server.threads");
}

#[test]
fn the_port_variable_overrides_listen() {
    let env = Env::from_pairs([("SECRET_KEY", SECRET), ("PORT", "18080")]);
    let config = parse("server: { listen: \"0.0.0.0:8080\" }", &env).unwrap();
    assert_eq!(config.server.listen, "0.0.0.0:18080".parse().unwrap());
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let config = parse(
        "storage: { backend: mysql_redis, mysql_url: \"mysql://u:hunter2@h/db\" }",
        &env(),
    )
    .unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains(SECRET));
    assert!(!debug.contains("hunter2"));
}

#[test]
fn the_shipped_configs_are_valid() {
    // The production config serves HTTPS: give it a certificate.
    let certs = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    for file in ["config/gateway.yaml", "config/production.yaml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let env = Env::from_pairs([
            ("SECRET_KEY", SECRET),
            ("TWILIO_ACCOUNT_SID", "AC0123"),
            ("TWILIO_AUTH_TOKEN", "token"),
            ("TWILIO_PHONE_NUMBER", "+15550001111"),
            ("TLS_CERT_FILE", cert.as_str()),
            ("TLS_KEY_FILE", key.as_str()),
        ]);
        load_with_env(&path, &env).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
fn yaml_errors_give_the_position_but_never_the_text() {
    let yaml = "jwt:\n  secret: \"hunter2-hunter2-hunter2-hunter2-hunter2\"\n  issuer: [unclosed\nstorage: { backend: embedded }\n";
    let err = parse_err(yaml);
    let text = err.to_string();
    assert!(text.starts_with("invalid YAML at line "), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("unclosed"), "{text}");
}

#[test]
fn type_errors_name_the_key_without_the_value() {
    let err = parse_err("server: { access_log: \"hunter2-secret\" }\n");
    assert_eq!(err.path, "server.access_log");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = parse_err("jwt: { ttl: \"hunter2-secret\" }\n");
    assert_eq!(err.path, "jwt.ttl");
    assert!(err.message.contains("expected"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = parse_err("jwt: { secret: [\"hunter2-hunter2-hunter2-hunter2-hunter2\"] }\n");
    assert_eq!(err.path, "jwt.secret");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn dotenv_errors_name_the_line_without_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(&path, "A=1\nSECRET_KEY='hunter2-unterminated\nB=2\n").unwrap();
    let err = Env::load(&path).unwrap_err();
    assert_eq!(err.path, ".env");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn route_prefixes_must_be_normal_paths() {
    let route = |prefix: &str| {
        format!("routes: [{{ name: a, prefix: {prefix:?}, upstreams: [\"127.0.0.1:9\"] }}]\n")
    };
    for bad in ["/api//x/", "/a/../b/", "/%61pi/", "/api;x/", "/a%2Fb/"] {
        let err = parse_err(&route(bad));
        assert_eq!(err.path, "routes[0].prefix", "{bad}: {err}");
    }
    assert!(parse(&route("/api/v1/"), &env()).is_ok());
}

#[test]
fn route_hosts_lose_one_trailing_dot() {
    let yaml = "routes: [{ name: a, prefix: /, host: Admin.Example.com., upstreams: [\"127.0.0.1:9\"] }]\n";
    let config = parse(yaml, &env()).unwrap();
    assert_eq!(config.routes[0].host.as_deref(), Some("admin.example.com"));
    let yaml = "routes: [{ name: a, prefix: /, host: \".\", upstreams: [\"127.0.0.1:9\"] }]\n";
    assert_eq!(parse_err(yaml).path, "routes[0].host");
}

#[test]
fn client_deadlines_default_to_ten_seconds() {
    let config = parse("", &env()).unwrap();
    assert_eq!(config.server.header_timeout, Duration::from_secs(10));
    assert_eq!(config.server.body_timeout, Duration::from_secs(10));
    assert!(!config.server.reuse_port);
    assert_eq!(
        parse_err("server: { header_timeout: 0s }").path,
        "server.header_timeout"
    );
    assert_eq!(
        parse_err("server: { body_timeout: 0s }").path,
        "server.body_timeout"
    );
}

#[test]
fn identity_headers_differing_only_by_underscore_are_one_header() {
    let err = parse_err("auth: { identity_headers: { user_id: X-User-Id, mobile: X_User_Id } }\n");
    assert_eq!(err.path, "auth.identity_headers.mobile");
}

#[test]
fn the_spec_limits_example_parses() {
    let yaml = r#"
jwt: { secret: "${SECRET_KEY}" }
limits:
  sms_per_mobile: ["5/1h", "10/24h"]
  sms_per_ip: ["20/1h"]
  sms_per_country: ["1000/1h"]
  sms_global: ["10000/24h"]
  verify_per_ip: ["100/1h"]
  lockout: { burned: 3, window: 1h, duration: 1h }
  trusted_proxies: ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]
otp:
  allowed_country_codes: ["+1", "44"]
  test_numbers: { "+15550000001": "123456" }
server: { environment: development, audit_log: stderr }
"#;
    let config = parse(yaml, &env()).unwrap();
    let l = &config.limits;
    let hour = Duration::from_secs(3600);
    assert_eq!(
        l.sms_per_mobile,
        vec![
            Rate {
                count: 5,
                window: hour
            },
            Rate {
                count: 10,
                window: 24 * hour
            }
        ]
    );
    assert_eq!(l.verify_per_ip[0].count, 100);
    assert_eq!(
        l.lockout,
        Some(Lockout {
            burned: 3,
            window: hour,
            duration: hour
        })
    );
    let trusted: Vec<String> = l.trusted_proxies.iter().map(|n| n.to_string()).collect();
    assert_eq!(trusted, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
    assert_eq!(config.otp.allowed_country_codes, [1, 44]);
    assert_eq!(config.otp.test_numbers["+15550000001"].expose(), "123456");
    assert_eq!(config.server.audit_log, AuditLog::Stderr);
}

#[test]
fn limit_defaults_are_safe_behind_a_load_balancer() {
    let config = parse("jwt: { secret: \"${SECRET_KEY}\" }", &env()).unwrap();
    let l = &config.limits;
    // Per-IP limits see only the balancer's IP until trusted_proxies is set.
    assert!(l.sms_per_ip.is_empty() && l.verify_per_ip.is_empty());
    assert!(l.trusted_proxies.is_empty());
    assert_eq!(l.sms_per_mobile.len(), 2);
    assert_eq!(l.sms_per_country.len(), 1);
    assert_eq!(l.sms_global.len(), 1);
    assert_eq!(l.lockout.map(|l| l.burned), Some(3));
    assert_eq!(config.server.environment, Environment::Development);
    assert_eq!(config.server.audit_log, AuditLog::Off);
    // Empty lists and burned 0 turn limits off.
    let off = parse(
        "jwt: { secret: \"${SECRET_KEY}\" }\nlimits: { sms_per_mobile: [], sms_global: [], lockout: { burned: 0 } }",
        &env(),
    )
    .unwrap();
    assert!(off.limits.sms_per_mobile.is_empty() && off.limits.sms_global.is_empty());
    assert_eq!(off.limits.lockout, None);
}

#[test]
fn bad_limits_name_their_key() {
    for (yaml, path) in [
        (
            "limits: { sms_per_mobile: [\"5\"] }",
            "limits.sms_per_mobile[0]",
        ),
        ("limits: { sms_per_ip: [\"0/1h\"] }", "limits.sms_per_ip[0]"),
        (
            "limits: { sms_global: [\"5/1h\", \"5/0s\"] }",
            "limits.sms_global[1]",
        ),
        (
            "limits: { verify_per_ip: [\"x/1h\"] }",
            "limits.verify_per_ip[0]",
        ),
        (
            "limits: { lockout: { window: 0s } }",
            "limits.lockout.window",
        ),
        (
            "limits: { trusted_proxies: [\"10.0.0.0/33\"] }",
            "limits.trusted_proxies[0]",
        ),
        (
            "otp: { allowed_country_codes: [\"+0\"] }",
            "otp.allowed_country_codes[0]",
        ),
        (
            "otp: { allowed_country_codes: [\"+1234\"] }",
            "otp.allowed_country_codes[0]",
        ),
        (
            "otp: { test_numbers: { \"5550000001\": \"123456\" } }",
            "otp.test_numbers.\"5550000001\"",
        ),
        (
            "otp: { test_numbers: { \"+15550000001\": \"12345\" } }",
            "otp.test_numbers.\"+15550000001\"",
        ),
        ("server: { environment: staging }", "server.environment"),
    ] {
        let e = parse_err(&format!("jwt: {{ secret: \"${{SECRET_KEY}}\" }}\n{yaml}"));
        assert_eq!(e.path, path, "{yaml}: {e}");
    }
}

#[test]
fn production_refuses_test_numbers() {
    let yaml = "jwt: { secret: \"${SECRET_KEY}\" }\nserver: { environment: production }\n";
    assert!(parse(yaml, &env()).is_ok());
    let e = parse_err(&format!(
        "{yaml}otp: {{ test_numbers: {{ \"+15550000001\": \"123456\" }} }}"
    ));
    assert_eq!(e.path, "otp.test_numbers");
    // The fixed OTP is not in the message.
    assert!(!e.to_string().contains("123456"), "{e}");
}
