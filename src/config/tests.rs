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
        ("jwt: { algorithm: RS256 }".into(), "jwt.algorithm"),
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
    for file in ["config/gateway.yaml", "config/production.yaml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let env = Env::from_pairs([
            ("SECRET_KEY", SECRET),
            ("TWILIO_ACCOUNT_SID", "AC0123"),
            ("TWILIO_AUTH_TOKEN", "token"),
            ("TWILIO_PHONE_NUMBER", "+15550001111"),
        ]);
        load_with_env(&path, &env).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}
