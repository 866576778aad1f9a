//! The SMS providers as a deployed gateway uses them: what each one delivers,
//! and what a failing or hanging provider does to the auth endpoints.

use crate::common::*;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

const MOBILE: &str = "+15550001111";

/// An embedded-storage gateway. Its one route exists because the config
/// needs a route table; nothing here is proxied.
fn spec() -> GatewaySpec {
    GatewaySpec::new(Store::Embedded).route(route("unused", "/unused/", &[free_addr()], "public"))
}

fn registration(mobile: &str) -> Value {
    json!({
        "mobile": mobile,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": format!("{}@example.com", mobile.trim_start_matches('+')),
    })
}

/// Every field the contract names, with the values an OTP for `purpose` to
/// `mobile` must carry. Returns the OTP.
fn assert_record(record: &Value, mobile: &str, purpose: &str) -> String {
    assert_eq!(record["to"], mobile, "{record}");
    assert_eq!(record["purpose"], purpose, "{record}");
    let otp = record["otp"]
        .as_str()
        .unwrap_or_else(|| panic!("no otp in {record}"));
    assert_eq!(otp.len(), 6, "{record}");
    assert!(otp.bytes().all(|b| b.is_ascii_digit()), "{record}");
    let message = record["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {record}"));
    assert!(message.contains(otp), "the message names the OTP: {record}");
    let sent_at = record["sent_at"]
        .as_i64()
        .unwrap_or_else(|| panic!("no sent_at in {record}"));
    assert!(
        (sent_at - now()).abs() < 60,
        "sent_at is unix seconds: {record}"
    );
    otp.to_owned()
}

/// The JSON lines of the gateway's stdout that are SMS records.
fn console_records(gateway: &Gateway) -> Vec<Value> {
    gateway
        .stdout()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|value| value.get("otp").is_some())
        .collect()
}

/// Waits for at least `n` requests at the fake API and returns them.
async fn requests_at(api: &FakeSmsApi, n: usize) -> Vec<Recorded> {
    eventually(Duration::from_secs(10), "the SMS API request", || {
        api.count() >= n
    })
    .await;
    api.requests.lock().unwrap().clone()
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("no form field {name} in {fields:?}"))
}

/// The six digits of the message Twilio was asked to send.
fn otp_in_body(body: &str) -> String {
    let digits: Vec<&str> = body
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() == 6)
        .collect();
    assert_eq!(digits.len(), 1, "one 6-digit code in {body:?}");
    digits[0].to_owned()
}

fn twilio_sms(api: &FakeSmsApi, token: &str) -> String {
    format!(
        "sms: {{ provider: twilio, twilio: {{ account_sid: \"AC123\", auth_token: {token:?}, from: \"+15550009999\", api_base: {:?} }} }}\n",
        api.url()
    )
}

#[tokio::test]
async fn console_prints_one_json_line_per_otp() {
    let gateway = GatewaySpec {
        sms: Some("sms: { provider: console }\n".into()),
        ..spec()
    }
    .start()
    .await;

    let (status, body) = post(&gateway, "/register", registration(MOBILE)).await;
    assert_eq!(status, 201, "{body}");
    eventually(
        Duration::from_secs(10),
        "the register SMS on stdout",
        || !console_records(&gateway).is_empty(),
    )
    .await;
    let otp = assert_record(&console_records(&gateway)[0], MOBILE, "register");

    let (status, body) = post(
        &gateway,
        "/verify-otp",
        json!({"mobile": MOBILE, "otp": otp}),
    )
    .await;
    assert_eq!(status, 200, "the console OTP is the live one: {body}");
    let (status, body) = post(&gateway, "/login", json!({"mobile": MOBILE})).await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(10), "the login SMS on stdout", || {
        console_records(&gateway).len() >= 2
    })
    .await;
    let records = console_records(&gateway);
    assert_eq!(records.len(), 2, "one line per OTP: {records:?}");
    let otp = assert_record(&records[1], MOBILE, "login");
    let (status, body) = post(&gateway, "/login", json!({"mobile": MOBILE, "otp": otp})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["token"].is_string(), "{body}");
}

#[tokio::test]
async fn file_appends_one_record_per_otp() {
    let gateway = spec().start().await;
    let (status, body) = post(&gateway, "/register", registration(MOBILE)).await;
    assert_eq!(status, 201, "{body}");
    let other = "+15550002222";
    let (status, body) = post(&gateway, "/register", registration(other)).await;
    assert_eq!(status, 201, "{body}");

    let records = gateway.sms();
    assert_eq!(records.len(), 2, "two OTPs, two lines: {records:?}");
    let first = assert_record(&records[0], MOBILE, "register");
    let second = assert_record(&records[1], other, "register");
    assert_eq!(first, gateway.otp(MOBILE, "register"));
    assert_eq!(second, gateway.otp(other, "register"));
}

#[tokio::test]
async fn webhook_posts_the_record_as_json() {
    let api = FakeSmsApi::start();
    api.answer_with(200);
    let gateway = GatewaySpec {
        sms: Some(format!(
            "sms: {{ provider: webhook, webhook_url: \"{}/sms\" }}\n",
            api.url()
        )),
        ..spec()
    }
    .start()
    .await;

    let (status, body) = post(&gateway, "/register", registration(MOBILE)).await;
    assert_eq!(status, 201, "{body}");
    let requests = requests_at(&api, 1).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/sms");
    let content_type = request.content_type.as_deref().unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type:?}"
    );
    let record: Value = serde_json::from_slice(&request.body).unwrap();
    let otp = assert_record(&record, MOBILE, "register");

    let (status, body) = post(
        &gateway,
        "/verify-otp",
        json!({"mobile": MOBILE, "otp": otp}),
    )
    .await;
    assert_eq!(status, 200, "the webhook's OTP is the live one: {body}");
}

#[tokio::test]
async fn webhook_failure_is_502_and_leaves_no_user_no_otp_and_no_cooldown() {
    let api = FakeSmsApi::start();
    api.answer_with(500);
    let gateway = GatewaySpec {
        sms: Some(format!(
            "sms: {{ provider: webhook, webhook_url: \"{}/sms\" }}\n",
            api.url()
        )),
        ..spec()
    }
    .start()
    .await;

    let (status, body) = post(&gateway, "/register", registration(MOBILE)).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "sms_failed", "{body}");
    assert!(body["error"].is_string(), "{body}");
    let requests = requests_at(&api, 1).await;
    let failed: Value = serde_json::from_slice(&requests[0].body).unwrap();
    let failed_otp = assert_record(&failed, MOBILE, "register");

    // No account row was written: the mobile is unknown everywhere, and the
    // code the provider was handed is useless.
    let (status, body) = post(
        &gateway,
        "/verify-otp",
        json!({"mobile": MOBILE, "otp": failed_otp}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "user_not_found", "{body}");
    let (status, body) = post(&gateway, "/login", json!({"mobile": MOBILE})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "user_not_found", "{body}");

    // The cooldown (30s) was not consumed: registering again works at once,
    // and creates the account (201, not the 200 of an update).
    api.answer_with(200);
    let (status, body) = post(&gateway, "/register", registration(MOBILE)).await;
    assert_eq!(status, 201, "{body}");
    let requests = requests_at(&api, 2).await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    let sent: Value = serde_json::from_slice(&requests[1].body).unwrap();
    let otp = assert_record(&sent, MOBILE, "register");
    if otp != failed_otp {
        let (status, body) = post(
            &gateway,
            "/verify-otp",
            json!({"mobile": MOBILE, "otp": failed_otp}),
        )
        .await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["code"], "invalid_otp", "{body}");
    }
    let (status, body) = post(
        &gateway,
        "/verify-otp",
        json!({"mobile": MOBILE, "otp": otp}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn webhook_failure_on_resend_leaves_no_usable_otp_and_no_cooldown() {
    let api = FakeSmsApi::start();
    api.answer_with(200);
    let Some(store) = Store::mysql_redis().await else {
        return;
    };
    let gateway = GatewaySpec {
        sms: Some(format!(
            "sms: {{ provider: webhook, webhook_url: \"{}/sms\" }}\n",
            api.url()
        )),
        otp: "otp: { cooldown: 1s }\n".into(),
        ..GatewaySpec::new(store).route(route("unused", "/unused/", &[free_addr()], "public"))
    }
    .start()
    .await;
    let (status, body) = post(&gateway, "/register", registration(MOBILE)).await;
    assert_eq!(status, 201, "{body}");

    // Past the first cooldown, a re-send the provider refuses.
    api.answer_with(500);
    let body = poll_until(Duration::from_secs(10), "the cooldown to end", async || {
        let (status, body) = post(
            &gateway,
            "/resend-otp",
            json!({"mobile": MOBILE, "purpose": "register"}),
        )
        .await;
        if status == 429 {
            return None;
        }
        assert_eq!(status, 502, "{body}");
        Some(body)
    })
    .await;
    assert_eq!(body["code"], "sms_failed", "{body}");
    // The failed send left no cooldown behind (looked up where it would be,
    // rather than raced against its expiry).
    let (redis_url, prefix) = match &gateway.spec.store {
        Store::MysqlRedis {
            redis_url, prefix, ..
        } => (redis_url.clone(), prefix.clone()),
        Store::Embedded => unreachable!("this test runs on mysql_redis"),
    };
    let key = otpgate::store::keys::Keys::new(&prefix)
        .cooldown(otpgate::store::Purpose::Register, MOBILE);
    let mut redis = redis::Client::open(redis_url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!exists, "{key} outlived the failed send");
    let requests = requests_at(&api, 2).await;
    let failed: Value = serde_json::from_slice(&requests.last().unwrap().body).unwrap();
    let failed_otp = assert_record(&failed, MOBILE, "register");

    // The user exists, but no live OTP does: the undelivered one was revoked
    // (and it had replaced the first one).
    let (status, body) = post(
        &gateway,
        "/verify-otp",
        json!({"mobile": MOBILE, "otp": failed_otp}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "otp_expired", "{body}");

    api.answer_with(200);
    let (status, body) = post(
        &gateway,
        "/resend-otp",
        json!({"mobile": MOBILE, "purpose": "register"}),
    )
    .await;
    assert_eq!(
        status, 200,
        "the failed re-send started no cooldown: {body}"
    );
}

#[tokio::test]
async fn twilio_posts_a_form_with_basic_auth() {
    use base64::Engine;
    let api = FakeSmsApi::start();
    let gateway = GatewaySpec {
        sms: Some(twilio_sms(&api, "tok")),
        ..spec()
    }
    .start()
    .await;

    let (status, body) = post(&gateway, "/register", registration(MOBILE)).await;
    assert_eq!(status, 201, "{body}");
    let requests = requests_at(&api, 1).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/2010-04-01/Accounts/AC123/Messages.json");
    let authorization = request
        .authorization
        .as_deref()
        .expect("an Authorization header");
    let (scheme, credentials) = authorization
        .split_once(' ')
        .expect("scheme and credentials");
    assert!(scheme.eq_ignore_ascii_case("basic"), "{authorization}");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .expect("base64 credentials");
    assert_eq!(String::from_utf8(decoded).unwrap(), "AC123:tok");
    let content_type = request.content_type.as_deref().unwrap_or("");
    assert!(
        content_type.starts_with("application/x-www-form-urlencoded"),
        "content type {content_type:?}"
    );
    let fields = form(&request.body);
    assert_eq!(field(&fields, "To"), MOBILE);
    assert_eq!(field(&fields, "From"), "+15550009999");
    let otp = otp_in_body(field(&fields, "Body"));

    let (status, body) = post(
        &gateway,
        "/verify-otp",
        json!({"mobile": MOBILE, "otp": otp}),
    )
    .await;
    assert_eq!(status, 200, "the code in Body is the live OTP: {body}");
}

#[tokio::test]
async fn twilio_failure_is_502_and_keeps_the_login_cooldown_free() {
    let api = FakeSmsApi::start();
    let gateway = GatewaySpec {
        sms: Some(twilio_sms(&api, "tok")),
        ..spec()
    }
    .start()
    .await;
    let (status, body) = post(&gateway, "/register", registration(MOBILE)).await;
    assert_eq!(status, 201, "{body}");
    let requests = requests_at(&api, 1).await;
    let otp = otp_in_body(field(&form(&requests[0].body), "Body"));
    let (status, body) = post(
        &gateway,
        "/verify-otp",
        json!({"mobile": MOBILE, "otp": otp}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    api.answer_with(400);
    let (status, body) = post(&gateway, "/login", json!({"mobile": MOBILE})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "sms_failed", "{body}");
    let requests = requests_at(&api, 2).await;
    let failed_otp = otp_in_body(field(&form(&requests[1].body), "Body"));
    let (status, body) = post(
        &gateway,
        "/login",
        json!({"mobile": MOBILE, "otp": failed_otp}),
    )
    .await;
    assert_eq!(status, 401, "the undelivered OTP is not live: {body}");
    assert_eq!(body["code"], "otp_expired", "{body}");

    api.answer_with(201);
    let (status, body) = post(&gateway, "/login", json!({"mobile": MOBILE})).await;
    assert_eq!(status, 200, "the failed send started no cooldown: {body}");
    let requests = requests_at(&api, 3).await;
    assert_eq!(requests.len(), 3, "{requests:?}");
    let otp = otp_in_body(field(&form(&requests[2].body), "Body"));
    let (status, body) = post(&gateway, "/login", json!({"mobile": MOBILE, "otp": otp})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["token"].is_string(), "{body}");

    // And this delivered one does start the cooldown.
    let (status, body) = post(&gateway, "/login", json!({"mobile": MOBILE})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "cooldown", "{body}");
}

#[tokio::test]
async fn a_provider_that_never_answers_is_cut_off_by_the_timeout() {
    // Accepts TCP connections (the kernel completes the handshake) but never
    // reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gateway = GatewaySpec {
        sms: Some(format!(
            "sms: {{ provider: webhook, webhook_url: \"http://{}/sms\", timeout: 500ms }}\n",
            silent.local_addr().unwrap()
        )),
        ..spec()
    }
    .start()
    .await;

    for attempt in 0..2 {
        let started = Instant::now();
        let (status, body) = post(&gateway, "/register", registration(MOBILE)).await;
        let elapsed = started.elapsed();
        assert_eq!(status, 502, "attempt {attempt}: {body}");
        assert_eq!(body["code"], "sms_failed", "attempt {attempt}: {body}");
        assert!(
            elapsed < Duration::from_secs(5),
            "attempt {attempt} took {elapsed:?}"
        );
    }
    // Still no account: the hanging provider left nothing behind.
    let (status, body) = post(&gateway, "/login", json!({"mobile": MOBILE})).await;
    assert_eq!(status, 404, "{body}");
    drop(silent);
}

/// Whether `needle` occurs in `haystack` as a number of its own: not inside
/// a longer run of digits or a word, and not as the fraction of a decimal
/// (timestamps and durations in log lines).
fn contains_number(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '.')
            && !after.is_some_and(char::is_alphanumeric)
    })
}

#[tokio::test]
async fn the_auth_token_and_otps_never_reach_the_log() {
    const TOKEN: &str = "tw-secret-XYZ-7f3a9c";
    let api = FakeSmsApi::start();
    let gateway = GatewaySpec {
        sms: Some(twilio_sms(&api, TOKEN)),
        ..spec()
    }
    .start()
    .await;

    let (status, body) = post(&gateway, "/register", registration(MOBILE)).await;
    assert_eq!(status, 201, "{body}");
    let requests = requests_at(&api, 1).await;
    let register_otp = otp_in_body(field(&form(&requests[0].body), "Body"));
    let (status, body) = post(
        &gateway,
        "/verify-otp",
        json!({"mobile": MOBILE, "otp": register_otp}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A failed delivery logs the provider's error.
    api.answer_with(401);
    let (status, body) = post(&gateway, "/login", json!({"mobile": MOBILE})).await;
    assert_eq!(status, 502, "{body}");
    let requests = requests_at(&api, 2).await;
    let failed_otp = otp_in_body(field(&form(&requests[1].body), "Body"));

    api.answer_with(201);
    let (status, body) = post(&gateway, "/login", json!({"mobile": MOBILE})).await;
    assert_eq!(status, 200, "{body}");
    let requests = requests_at(&api, 3).await;
    let login_otp = otp_in_body(field(&form(&requests[2].body), "Body"));
    let (status, body) = post(
        &gateway,
        "/login",
        json!({"mobile": MOBILE, "otp": login_otp}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let response = client()
        .get(gateway.url("/user"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The last request is logged (access log) once it is answered.
    eventually(
        Duration::from_secs(10),
        "the access log of GET /user",
        || gateway.stderr().contains("/user"),
    )
    .await;
    let log = gateway.stderr();
    assert!(!log.is_empty(), "the gateway logs to stderr");
    assert!(
        !log.contains(TOKEN),
        "the Twilio auth token is in the log:\n{log}"
    );
    assert!(!log.contains(&token), "the JWT is in the log:\n{log}");
    for otp in [&register_otp, &failed_otp, &login_otp] {
        assert!(
            !contains_number(&log, otp),
            "OTP {otp} is in the log:\n{log}"
        );
    }
    let out = gateway.stdout();
    assert!(
        !out.contains(TOKEN),
        "the Twilio auth token is on stdout:\n{out}"
    );
}
