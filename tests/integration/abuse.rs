//! SPEC section 8 through the real binary, on both backends: every SMS
//! limit (exact under concurrency, on one instance and split over two), the
//! client IP and X-Forwarded-For rules, verification limits, lockout,
//! country rules, test numbers, give-backs of failed sends, and the audit log.

use crate::common::*;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

on_both_backends!(
    fifty_parallel_sends_never_exceed_a_limit_of_ten,
    the_mobile_limit_counts_only_sent_otps,
    the_ip_limit_ignores_forwarded_for_from_untrusted_peers,
    trusted_proxies_name_the_client,
    the_country_limit_counts_by_calling_code,
    numbers_outside_the_allowed_countries_are_refused_before_anything,
    the_verification_limit_leaves_the_otp_alone,
    burned_otps_lock_the_mobile_out,
    test_numbers_get_their_otp_without_sms_or_counts,
    a_failed_send_gives_every_count_back,
    security_events_are_audited,
);

/// A gateway with `yaml` added at the top level (limits, otp...).
async fn gateway(store: Store, otp: &str, extra: &str) -> Gateway {
    let mut spec = GatewaySpec::new(store).route(route("api", "/api/", &[free_addr()], "required"));
    spec.otp = format!("otp: {{ {otp} }}\n");
    spec.extra = extra.into();
    spec.start().await
}

fn registration(mobile: &str) -> Value {
    json!({
        "mobile": mobile,
        "first_name": "Ab",
        "last_name": "Use",
        "email": format!("{}@example.com", mobile.trim_start_matches('+')),
    })
}

/// A POST with extra headers: status, headers and JSON body.
async fn send(
    gw: &Gateway,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, Value) {
    let mut request = client().post(gw.url(path)).json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap();
    (status, headers, body)
}

async fn register_from(gw: &Gateway, mobile: &str, forwarded: &str) -> (u16, HeaderMap, Value) {
    let headers: &[(&str, &str)] = if forwarded.is_empty() {
        &[]
    } else {
        &[("x-forwarded-for", forwarded)]
    };
    send(gw, "/register", registration(mobile), headers).await
}

/// Asserts a 429 with `code` and a Retry-After within (0, `at_most`] seconds.
fn assert_limited(reply: &(u16, HeaderMap, Value), code: &str, at_most: u64) {
    let (status, headers, body) = reply;
    assert_eq!(
        (*status, body["code"].as_str()),
        (429, Some(code)),
        "{body}"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=at_most).contains(&retry), "Retry-After {retry}");
}

fn sms_to(gw: &Gateway, mobile: &str) -> usize {
    gw.sms().iter().filter(|m| m["to"] == mobile).count()
}

async fn fifty_parallel_sends_never_exceed_a_limit_of_ten(store: Store) {
    let limits = "limits: { sms_global: [\"10/1h\"] }\n";
    let shared = store.shared();
    let split = matches!(store, Store::MysqlRedis { .. });
    let a = gateway(store, "cooldown: 30s", limits).await;
    // On the shared backend the sends are split over two instances.
    let b = if split {
        Some(gateway(shared, "cooldown: 30s", limits).await)
    } else {
        None
    };
    let mobiles: Vec<String> = (0..50).map(|i| format!("+1555030{i:04}")).collect();
    let replies = futures_util::future::join_all(mobiles.iter().enumerate().map(|(i, m)| {
        let on = match &b {
            Some(b) if i % 2 == 1 => b,
            _ => &a,
        };
        register_from(on, m, "")
    }))
    .await;
    let created = replies.iter().filter(|r| r.0 == 201).count();
    for reply in replies.iter().filter(|r| r.0 != 201) {
        assert_limited(reply, "sms_budget_exhausted", 3600);
    }
    assert_eq!(created, 10, "50 parallel sends, a limit of 10");
    let sent = a.sms().len() + b.as_ref().map_or(0, |b| b.sms().len());
    assert_eq!(sent, 10, "SMS handed to the provider");
}

async fn the_mobile_limit_counts_only_sent_otps(store: Store) {
    let gw = gateway(
        store,
        "cooldown: 0s",
        "limits: { sms_per_mobile: [\"2/1h\"] }\n",
    )
    .await;
    let mobile = "+15550310001";
    assert_eq!(register_from(&gw, mobile, "").await.0, 201);
    let resend = json!({"mobile": mobile, "purpose": "register"});
    assert_eq!(post(&gw, "/resend-otp", resend.clone()).await.0, 200);
    let refused = send(&gw, "/resend-otp", resend.clone(), &[]).await;
    assert_limited(&refused, "mobile_limit", 3600);
    assert_eq!(sms_to(&gw, mobile), 2, "the refused request sent nothing");
    // Another number has its own allowance.
    assert_eq!(register_from(&gw, "+15550310002", "").await.0, 201);
}

async fn the_ip_limit_ignores_forwarded_for_from_untrusted_peers(store: Store) {
    let gw = gateway(
        store,
        "cooldown: 30s",
        "limits: { sms_per_ip: [\"3/1h\"] }\n",
    )
    .await;
    // Each request claims another address; the peer (loopback) is not trusted.
    for i in 0..3 {
        let forged = format!("203.0.113.{i}");
        let reply = register_from(&gw, &format!("+1555032000{i}"), &forged).await;
        assert_eq!(reply.0, 201, "{}", reply.2);
    }
    let reply = register_from(&gw, "+15550320009", "198.51.100.1").await;
    assert_limited(&reply, "ip_limit", 3600);
}

async fn trusted_proxies_name_the_client(store: Store) {
    let gw = gateway(
        store,
        "cooldown: 30s",
        "limits: { sms_per_ip: [\"2/1h\"], trusted_proxies: [\"127.0.0.1/32\"] }\n",
    )
    .await;
    let first = "203.0.113.7";
    for i in 0..2 {
        let reply = register_from(&gw, &format!("+1555033000{i}"), first).await;
        assert_eq!(reply.0, 201, "{}", reply.2);
    }
    let reply = register_from(&gw, "+15550330005", first).await;
    assert_limited(&reply, "ip_limit", 3600);
    // An address the client put left of the proxy's changes nothing.
    let spoofed = format!("198.51.100.9, {first}");
    let reply = register_from(&gw, "+15550330006", &spoofed).await;
    assert_limited(&reply, "ip_limit", 3600);
    // Another client behind the same proxy has its own count.
    let reply = register_from(&gw, "+15550330007", "203.0.113.8").await;
    assert_eq!(reply.0, 201, "{}", reply.2);
}

async fn the_country_limit_counts_by_calling_code(store: Store) {
    let gw = gateway(
        store,
        "cooldown: 30s",
        "limits: { sms_per_country: [\"2/1h\"] }\n",
    )
    .await;
    // +1 covers the US and Canada (and more): one calling code, one count.
    for mobile in ["+15550340001", "+14165550101"] {
        assert_eq!(register_from(&gw, mobile, "").await.0, 201);
    }
    let reply = register_from(&gw, "+15550340003", "").await;
    assert_limited(&reply, "country_limit", 3600);
    assert_eq!(register_from(&gw, "+447700900123", "").await.0, 201);
}

async fn numbers_outside_the_allowed_countries_are_refused_before_anything(store: Store) {
    let gw = gateway(
        store,
        "cooldown: 30s, allowed_country_codes: [\"+44\"]",
        "limits: { sms_global: [\"1/1h\"] }\n",
    )
    .await;
    let us = "+15550350001";
    for (path, body) in [
        ("/register", registration(us)),
        ("/login", json!({"mobile": us})),
        ("/verify-otp", json!({"mobile": us, "otp": "123456"})),
        ("/resend-otp", json!({"mobile": us, "purpose": "login"})),
    ] {
        let (status, body) = post(&gw, path, body).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("country_not_allowed")),
            "{path}: {body}"
        );
    }
    assert!(gw.sms().is_empty());
    // No counter moved: the one SMS of the global budget is still there.
    assert_eq!(register_from(&gw, "+447700900124", "").await.0, 201);
}

async fn the_verification_limit_leaves_the_otp_alone(store: Store) {
    let gw = gateway(
        store,
        "cooldown: 30s, max_attempts: 4",
        "limits: { verify_per_ip: [\"3/1h\"], trusted_proxies: [\"127.0.0.1\"] }\n",
    )
    .await;
    let mobile = "+15550360001";
    assert_eq!(register_from(&gw, mobile, "").await.0, 201);
    let otp = gw.otp(mobile, "register");
    let wrong = if otp == "000000" { "111111" } else { "000000" };
    let attacker = [("x-forwarded-for", "203.0.113.66")];
    let guess = json!({"mobile": mobile, "otp": wrong});
    for _ in 0..3 {
        let (status, _, body) = send(&gw, "/verify-otp", guess.clone(), &attacker).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("invalid_otp")));
    }
    // Over the limit, even the right OTP is refused, and nothing is counted.
    for _ in 0..5 {
        let reply = send(&gw, "/verify-otp", guess.clone(), &attacker).await;
        assert_limited(&reply, "ip_limit", 3600);
    }
    let right = json!({"mobile": mobile, "otp": otp});
    let reply = send(&gw, "/verify-otp", right.clone(), &attacker).await;
    assert_limited(&reply, "ip_limit", 3600);
    // The OTP took 3 of its 4 attempts: from another client it still works.
    let owner = [("x-forwarded-for", "198.51.100.20")];
    let (status, _, body) = send(&gw, "/verify-otp", right, &owner).await;
    assert_eq!(status, 200, "{body}");
}

async fn burned_otps_lock_the_mobile_out(store: Store) {
    let gw = gateway(
        store,
        "cooldown: 0s, max_attempts: 1",
        "limits: { sms_per_mobile: [], lockout: { burned: 2, window: 1h, duration: 1h } }\n",
    )
    .await;
    let mobile = "+15550370001";
    assert_eq!(register_from(&gw, mobile, "").await.0, 201);
    let resend = json!({"mobile": mobile, "purpose": "register"});
    for burn in 1..=2 {
        let otp = gw.otp(mobile, "register");
        let wrong = if otp == "000000" { "111111" } else { "000000" };
        let (status, body) =
            post(&gw, "/verify-otp", json!({"mobile": mobile, "otp": wrong})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_otp")),
            "burn {burn}"
        );
        if burn == 1 {
            assert_eq!(post(&gw, "/resend-otp", resend.clone()).await.0, 200);
        }
    }
    let sent = sms_to(&gw, mobile);
    let reply = send(&gw, "/resend-otp", resend.clone(), &[]).await;
    assert_limited(&reply, "locked_out", 3600);
    let reply = send(&gw, "/register", registration(mobile), &[]).await;
    assert_limited(&reply, "locked_out", 3600);
    let last = gw.otp(mobile, "register");
    let reply = send(
        &gw,
        "/verify-otp",
        json!({"mobile": mobile, "otp": last}),
        &[],
    )
    .await;
    assert_limited(&reply, "locked_out", 3600);
    assert_eq!(
        sms_to(&gw, mobile),
        sent,
        "nothing is sent to a locked mobile"
    );
    // Other numbers are not affected.
    assert_eq!(register_from(&gw, "+15550370002", "").await.0, 201);
}

async fn test_numbers_get_their_otp_without_sms_or_counts(store: Store) {
    let test = "+15550380001";
    let gw = gateway(
        store,
        &format!("cooldown: 30s, test_numbers: {{ {test:?}: \"424242\" }}"),
        "limits: { sms_global: [\"1/1h\"], sms_per_mobile: [\"1/1h\"] }\n",
    )
    .await;
    assert_eq!(register_from(&gw, test, "").await.0, 201);
    let (status, body) = post(&gw, "/verify-otp", json!({"mobile": test, "otp": "424242"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(post(&gw, "/login", json!({"mobile": test})).await.0, 200);
    // Every other rule applies: the cooldown still runs.
    let reply = send(&gw, "/login", json!({"mobile": test}), &[]).await;
    assert_eq!(reply.2["code"], "cooldown", "{}", reply.2);
    let (status, body) = post(&gw, "/login", json!({"mobile": test, "otp": "424242"})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["token"].is_string());
    assert!(gw.sms().is_empty(), "nothing is sent to a test number");
    // No limit counted them: the global budget of one is intact.
    assert_eq!(register_from(&gw, "+15550380002", "").await.0, 201);
    let reply = register_from(&gw, "+15550380003", "").await;
    assert_limited(&reply, "sms_budget_exhausted", 3600);
}

async fn a_failed_send_gives_every_count_back(store: Store) {
    let api = FakeSmsApi::start();
    let mut spec = GatewaySpec::new(store).route(route("api", "/api/", &[free_addr()], "required"));
    spec.sms = Some(format!(
        "sms: {{ provider: webhook, webhook_url: \"{}/sms\" }}\n",
        api.url()
    ));
    spec.extra = "limits: { sms_per_mobile: [\"1/1h\"], sms_per_ip: [\"1/1h\"], sms_per_country: [\"1/1h\"], sms_global: [\"1/1h\"] }\n".into();
    let gw = spec.start().await;
    let mobile = "+15550390001";
    api.answer_with(500);
    let (status, body) = post(&gw, "/register", registration(mobile)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (502, Some("sms_failed")),
        "{body}"
    );
    api.answer_with(200);
    let (status, body) = post(&gw, "/register", registration(mobile)).await;
    assert_eq!(status, 201, "every limit of one is free again: {body}");
    let reply = register_from(&gw, "+15550390002", "").await;
    assert_eq!(reply.0, 429, "and now spent: {}", reply.2);
}

/// Every audit line, parsed.
fn audit(gw: &Gateway) -> Vec<Value> {
    std::fs::read_to_string(gw.dir.path().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

async fn security_events_are_audited(store: Store) {
    let mut spec = GatewaySpec::new(store).route(route("api", "/api/", &[free_addr()], "required"));
    spec.otp = "otp: { cooldown: 0s, max_attempts: 2 }\n".into();
    spec.server = "audit_log: audit.jsonl".into();
    spec.extra = "limits: { sms_per_mobile: [\"2/1h\"], lockout: { burned: 1, window: 1h, duration: 1h } }\n".into();
    let gw = spec.start().await;
    let mobile = "+15550400001";
    let login = signed_up(&gw, mobile).await;
    let (session, refresh) = (
        login["session_id"].as_str().unwrap(),
        login["refresh_token"].as_str().unwrap(),
    );
    let (status, renewed) = post(&gw, "/token/refresh", json!({"refresh_token": refresh})).await;
    assert_eq!(status, 200, "{renewed}");
    let (status, _) = post(&gw, "/token/refresh", json!({"refresh_token": refresh})).await;
    assert_eq!(status, 401);
    let bad = client()
        .get(gw.url("/api/x"))
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let (status, _) = post(&gw, "/login", json!({"mobile": mobile})).await;
    assert_eq!(status, 429, "the mobile's two SMS are spent");
    // A second user burns an OTP and is locked out.
    let other = "+15550400002";
    assert_eq!(register_from(&gw, other, "").await.0, 201);
    for _ in 0..2 {
        post(
            &gw,
            "/verify-otp",
            json!({"mobile": other, "otp": "0000000"}),
        )
        .await;
    }
    let token = renewed["token"].as_str().unwrap();
    let logout = client()
        .post(gw.url("/logout"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);

    let events = audit(&gw);
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for expected in [
        "otp_sent",
        "registered",
        "verified",
        "login",
        "refresh",
        "refresh_reused",
        "token_rejected",
        "limit_hit",
        "otp_verify_failed",
        "otp_burned",
        "locked_out",
        "logout",
    ] {
        assert!(names.contains(&expected), "no {expected} in {names:?}");
    }
    for event in &events {
        for field in ["ts", "event", "request_id", "ip"] {
            assert!(!event[field].is_null(), "{field} missing: {event}");
        }
        if let Some(m) = event["mobile"].as_str() {
            assert!(m.starts_with("***") && m.len() == 7, "unmasked: {event}");
        }
    }
    let find = |name: &str| events.iter().find(|e| e["event"] == name).unwrap();
    assert_eq!(find("login")["session_id"], session);
    assert_eq!(find("login")["ip"], "127.0.0.1");
    assert!(find("login")["user_id"].is_u64());
    assert_eq!(find("limit_hit")["limit"], "sms_per_mobile");
    assert_eq!(find("token_rejected")["reason"], "invalid");
    assert_eq!(find("locked_out")["mobile"], "***0002");
}

#[test]
fn production_refuses_to_start_with_test_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "server: {{ environment: production }}\njwt: {{ secret: {SECRET:?} }}\notp: {{ test_numbers: {{ \"+15550000001\": \"123456\" }} }}\nroutes: []\n"
    );
    let stderr = check_refused(dir.path(), &yaml);
    assert!(stderr.contains("otp.test_numbers"), "{stderr}");
    assert!(
        !stderr.contains("123456"),
        "the fixed OTP was printed: {stderr}"
    );
}
