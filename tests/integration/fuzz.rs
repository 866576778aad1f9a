//! Property tests that feed the parsers of untrusted input arbitrary and
//! mutated data: the auth request bodies, bearer tokens (and the other
//! request-derived values: paths, X-Forwarded-For) and the config loader.
//! None may panic, and a changed token may never name another identity.
//!
//! Each property runs OTPGATE_FUZZ_CASES cases (default 256); CI runs a
//! bounded longer pass. A failure prints its minimal input, which becomes a
//! regression case in `regressions` below.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use otpgate::api::JsonFields;
use otpgate::auth::access::{AccessCheck, Requirement};
use otpgate::auth::input::{self, Inputs, MobileRules};
use otpgate::auth::token::Tokens;
use otpgate::config::{Env, FeedLoss, JwtConfig, Secret, Signing};
use otpgate::limits::TrustedProxies;
use otpgate::revocation::Revocations;
use otpgate::store::User;

fn cases() -> u32 {
    std::env::var("OTPGATE_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Everything an auth endpoint reads from a body, as the endpoints read it.
fn read_body(body: &[u8]) {
    let Ok(fields) = JsonFields::parse(body) else {
        return;
    };
    let rules = MobileRules {
        default_country_code: Some("+91".into()),
        allowed_country_codes: vec![1, 44, 91],
    };
    let inputs = Inputs { mobiles: &rules };
    let _ = inputs.registration(&fields);
    let _ = inputs.mobile(&fields);
    let _ = input::otp(&fields);
    let _ = input::login_otp(&fields);
    let _ = input::refresh_token(&fields);
    let _ = input::purpose(&fields);
    let _ = input::logout_scope(&fields);
}

/// JSON objects with the fields the endpoints read, holding any values.
fn body_objects() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        Just("mobile".to_owned()),
        Just("otp".to_owned()),
        Just("email".to_owned()),
        Just("first_name".to_owned()),
        Just("purpose".to_owned()),
        Just("refresh_token".to_owned()),
        Just("scope".to_owned()),
        ".{0,12}",
    ];
    let value = prop_oneof![
        ".{0,40}".prop_map(serde_json::Value::from),
        "[+]?[0-9 ()-]{0,20}".prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        Just(serde_json::json!([1, {"a": null}])),
    ];
    proptest::collection::vec((key, value), 0..8).prop_map(|pairs| {
        let mut text = String::from("{");
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text += &format!("{}:{v}", serde_json::Value::from(k.as_str()));
        }
        text.push('}');
        text.into_bytes()
    })
}

fn tokens() -> Arc<Tokens> {
    let config = JwtConfig {
        secret: Secret::new("fuzz-secret-".repeat(4)),
        signing: Signing::Hmac,
        issuer: "otpgate".into(),
        audience: "otpgate".into(),
        ttl: std::time::Duration::from_secs(3600),
        leeway: std::time::Duration::from_secs(30),
    };
    Arc::new(Tokens::new(&config).unwrap())
}

fn user() -> User {
    User {
        id: 7,
        mobile: "+15550001111".into(),
        first_name: "F".into(),
        last_name: "Z".into(),
        email: "f@z.example".into(),
        verified: true,
        created_at: 0,
    }
}

fn bearer(value: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.insert("authorization", value);
    }
    headers
}

/// A valid YAML config to mutate.
const CONFIG: &str = r#"
server: { listen: "127.0.0.1:8080", environment: development, audit_log: "" }
otp: { length: 6, ttl: 5m, allowed_country_codes: ["+1"], test_numbers: { "+15550000001": "123456" } }
jwt: { secret: "${SECRET_KEY}", ttl: 1h }
limits: { sms_per_mobile: ["5/1h"], trusted_proxies: ["10.0.0.0/8"], lockout: { burned: 3, window: 1h, duration: 1h } }
routes:
  - { name: api, prefix: /api/, upstreams: ["127.0.0.1:9001"], auth: required }
"#;

fn env() -> Env {
    Env::from_pairs([("SECRET_KEY", "0123456789abcdef0123456789abcdef")])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn auth_bodies_of_any_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        read_body(&body);
    }

    #[test]
    fn auth_bodies_of_any_field_values_never_panic(body in body_objects()) {
        read_body(&body);
    }

    #[test]
    fn any_authorization_header_is_refused_without_panic(value in proptest::collection::vec(any::<u8>(), 0..300)) {
        let access = AccessCheck::new(tokens(), Arc::new(Revocations::new(FeedLoss::Open)));
        let headers = bearer(&value);
        prop_assert!(access.check(&headers, Requirement::Required).is_err());
        let _ = access.check(&headers, Requirement::Optional);
    }

    #[test]
    fn a_changed_token_never_names_another_identity(
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let tokens = tokens();
        let access = AccessCheck::new(Arc::clone(&tokens), Arc::new(Revocations::new(FeedLoss::Open)));
        let token = tokens.issue(&user(), "s1", otpgate::auth::unix_now()).token;
        let mut changed = token.clone().into_bytes();
        let i = at.index(changed.len());
        changed[i] = byte;
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(&changed);
        if let Ok(Some(principal)) = access.check(&bearer(&value), Requirement::Required) {
            // Only a change the decoder reads as the same token may pass.
            prop_assert_eq!(principal.user_id, 7);
            prop_assert_eq!(&*principal.session_id, "s1");
        }
    }

    #[test]
    fn paths_and_forwarded_headers_never_panic(
        path in "(/|[a-z%./\\\\]|%[0-9a-fA-F]{2}|%.){0,40}",
        forwarded in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let _ = otpgate::path::normalize(&path);
        let proxies = TrustedProxies::new(vec!["127.0.0.0/8".parse().unwrap()]);
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(&forwarded) {
            headers.insert("x-forwarded-for", value);
        }
        let _ = proxies.client_ip("127.0.0.1".parse().unwrap(), &headers);
    }

    #[test]
    fn mobiles_of_any_text_never_panic(text in ".{0,30}", plus in "[+][0-9]{0,16}") {
        for candidate in [&text, &plus] {
            if let Ok(mobile) = otpgate::mobile::normalize(candidate, Some("+44")) {
                let _ = otpgate::mobile::calling_code(&mobile);
                let _ = otpgate::mobile::masked(&mobile);
            }
        }
    }

    #[test]
    fn config_text_of_any_kind_never_panics(text in ".{0,200}") {
        let _ = otpgate::config::parse(&text, &env());
    }

    #[test]
    fn mutated_configs_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), ".{0,3}", 0usize..3), 1..4),
    ) {
        let mut text = CONFIG.to_owned();
        for (at, insert, remove) in edits {
            let mut i = at.index(text.len());
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            let mut end = (i + remove).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            text.replace_range(i..end, &insert);
        }
        let _ = otpgate::config::parse(&text, &env());
    }
}

#[test]
fn the_unmutated_config_is_valid() {
    otpgate::config::parse(CONFIG, &env()).unwrap();
}
