//! Black-box tests of the auth endpoints (SPEC sections 3 and 4) through the
//! real `otpgate` binary, each scenario run on both storage backends.

use crate::common::*;

use std::collections::BTreeSet;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const REGISTERED: &str = "User registered successfully. OTP sent!";
const VERIFIED: &str = "OTP verified successfully! Account activated.";
const LOGIN_OTP_SENT: &str = "OTP sent for login";
const RESENT: &str = "OTP sent";

/// Each scenario is an `async fn(Store)`; this makes one test per backend.
macro_rules! on_both_backends {
    ($($scenario:ident => $embedded:ident, $mysql_redis:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $embedded() {
            $scenario(Store::Embedded).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $mysql_redis() {
            let Some(store) = Store::mysql_redis().await else {
                return;
            };
            $scenario(store).await;
        }
    )*};
}

on_both_backends! {
    full_flow => embedded_full_flow, mysql_redis_full_flow;
    registration_rules => embedded_registration_rules, mysql_redis_registration_rules;
    otp_rules => embedded_otp_rules, mysql_redis_otp_rules;
    empty_otp_is_never_a_match => embedded_empty_otp_is_never_a_match, mysql_redis_empty_otp_is_never_a_match;
    concurrent_requests => embedded_concurrent_requests, mysql_redis_concurrent_requests;
    cooldown => embedded_cooldown, mysql_redis_cooldown;
    cooldown_expires => embedded_cooldown_expires, mysql_redis_cooldown_expires;
    mobile_normalisation => embedded_mobile_normalisation, mysql_redis_mobile_normalisation;
    bad_input => embedded_bad_input, mysql_redis_bad_input;
    auth_endpoints_are_never_forwarded => embedded_auth_endpoints_are_never_forwarded, mysql_redis_auth_endpoints_are_never_forwarded;
    auth_path_prefix => embedded_auth_path_prefix, mysql_redis_auth_path_prefix;
    stale_registrations_lose_their_email => embedded_stale_registrations_lose_their_email, mysql_redis_stale_registrations_lose_their_email;
    emails_conflict_only_when_equal_bytes => embedded_emails_conflict_only_when_equal_bytes, mysql_redis_emails_conflict_only_when_equal_bytes;
    repeated_json_keys_are_refused => embedded_repeated_json_keys_are_refused, mysql_redis_repeated_json_keys_are_refused;
}

// ---------------------------------------------------------------- helpers

/// A gateway with the given `otp:` section and no routes of interest (the
/// config needs a route list: one that nothing here uses).
async fn gateway(store: Store, otp: &str) -> Gateway {
    let mut spec =
        GatewaySpec::new(store).route(route("unused", "/unused/", &[free_addr()], "required"));
    spec.otp = otp.into();
    spec.start().await
}

/// Status, headers and JSON body of a response.
async fn call(request: reqwest::RequestBuilder) -> (u16, HeaderMap, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}"));
    (status, headers, body)
}

async fn register(
    gw: &Gateway,
    mobile: &str,
    first: &str,
    last: &str,
    email: &str,
) -> (u16, Value) {
    post(
        gw,
        "/register",
        json!({"mobile": mobile, "first_name": first, "last_name": last, "email": email}),
    )
    .await
}

async fn verify(gw: &Gateway, mobile: &str, otp: &str) -> (u16, Value) {
    post(gw, "/verify-otp", json!({"mobile": mobile, "otp": otp})).await
}

async fn login_step1(gw: &Gateway, mobile: &str) -> (u16, Value) {
    post(gw, "/login", json!({"mobile": mobile})).await
}

async fn login_step2(gw: &Gateway, mobile: &str, otp: &str) -> (u16, Value) {
    post(gw, "/login", json!({"mobile": mobile, "otp": otp})).await
}

async fn resend(gw: &Gateway, mobile: &str, purpose: &str) -> (u16, Value) {
    post(
        gw,
        "/resend-otp",
        json!({"mobile": mobile, "purpose": purpose}),
    )
    .await
}

async fn get_user(gw: &Gateway, path: &str, token: &str) -> (u16, HeaderMap, Value) {
    call(client().get(gw.url(path)).bearer_auth(token)).await
}

/// Registers and verifies `mobile` (no login: the login cooldown stays free).
async fn verified_user(gw: &Gateway, mobile: &str, email: &str) {
    assert_message(
        &register(gw, mobile, "Test", "User", email).await,
        201,
        REGISTERED,
    );
    let otp = gw.otp(mobile, "register");
    assert_message(&verify(gw, mobile, &otp).await, 200, VERIFIED);
}

/// Login steps 1 and 2; returns the step-2 body.
async fn log_in(gw: &Gateway, mobile: &str) -> Value {
    assert_message(&login_step1(gw, mobile).await, 200, LOGIN_OTP_SENT);
    let otp = gw.otp(mobile, "login");
    let (status, body) = login_step2(gw, mobile, &otp).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["token"].is_string(), "{body}");
    body
}

/// The body is exactly `{"message": message}` with `status`.
#[track_caller]
fn assert_message(reply: &(u16, Value), status: u16, message: &str) {
    assert_eq!(reply, &(status, json!({ "message": message })));
}

/// The body is exactly `{"error": <non-empty>, "code": code}` with `status`;
/// returns the error text.
#[track_caller]
fn assert_error(reply: &(u16, Value), status: u16, code: &str) -> String {
    let (got, body) = reply;
    assert_eq!(
        (*got, body["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["code", "error"]), "{body}");
    let error = body["error"].as_str().expect("error is a string");
    assert!(!error.is_empty(), "{body}");
    error.to_owned()
}

/// As `assert_error`, also checking the JSON content type.
#[track_caller]
fn assert_error_response(reply: &(u16, HeaderMap, Value), status: u16, code: &str) -> String {
    let (got, headers, body) = reply;
    assert_content_type_json(headers);
    assert_error(&(*got, body.clone()), status, code)
}

#[track_caller]
fn assert_content_type_json(headers: &HeaderMap) {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "content-type {content_type:?}"
    );
}

/// How many SMS records went to `to` for `purpose`.
fn sms_count(gw: &Gateway, to: &str, purpose: &str) -> usize {
    gw.sms()
        .iter()
        .filter(|m| m["to"] == to && m["purpose"] == purpose)
        .count()
}

/// An OTP of the same length differing from `otp` in every digit.
fn other_otp(otp: &str) -> String {
    otp.bytes()
        .map(|b| char::from(b'0' + (b - b'0' + 1) % 10))
        .collect()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Verifies `token` as any JWT library would, with the test secret, and
/// returns its claims.
fn decode_claims(token: &str) -> Value {
    use base64::Engine;
    let header_segment = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header_segment)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&["otpgate"]);
    validation.set_audience(&["otpgate"]);
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["sub", "iat", "nbf", "exp", "iss", "aud"]);
    jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .unwrap_or_else(|e| panic!("token does not verify: {e}"))
    .claims
}

/// Runs `count` copies of `body` against `path` at once, each on its own
/// connection; returns every (status, headers, body).
async fn burst(
    gw: &Gateway,
    path: &str,
    body: Value,
    count: usize,
) -> Vec<(u16, HeaderMap, Value)> {
    let url = gw.url(path);
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(count));
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (url, body, start) = (url.clone(), body.clone(), std::sync::Arc::clone(&start));
            tokio::spawn(async move {
                let client = client();
                start.wait().await;
                call(client.post(url).json(&body)).await
            })
        })
        .collect();
    let mut replies = Vec::with_capacity(count);
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

fn retry_after(headers: &HeaderMap) -> u64 {
    let value = headers
        .get("retry-after")
        .expect("a 429 carries Retry-After")
        .to_str()
        .unwrap();
    value
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {value:?} is not whole seconds"))
}

// -------------------------------------------------------------- scenarios

/// Register, verify, log in, read /user; the SMS record and the JWT.
async fn full_flow(store: Store) {
    let gw = gateway(store, "otp: { cooldown: 0s }\n").await;
    let mobile = "+15550100001";
    let email = "full.flow@example.com";

    assert_message(
        &register(&gw, mobile, "Ada", "Lovelace", email).await,
        201,
        REGISTERED,
    );
    let sms = gw.sms();
    assert_eq!(sms.len(), 1, "{sms:?}");
    let record = &sms[0];
    assert_eq!(record["to"], mobile);
    assert_eq!(record["purpose"], "register");
    let otp = record["otp"].as_str().expect("otp is a string").to_owned();
    assert!(
        otp.len() == 6 && otp.bytes().all(|b| b.is_ascii_digit()),
        "otp {otp:?}"
    );
    let message = record["message"].as_str().expect("message is a string");
    assert!(message.contains(&otp), "message {message:?} lacks the OTP");
    let sent_at = record["sent_at"].as_i64().expect("sent_at is unix seconds");
    assert!((sent_at - now()).abs() <= 5, "sent_at {sent_at}");

    assert_message(&verify(&gw, mobile, &otp).await, 200, VERIFIED);

    assert_message(&login_step1(&gw, mobile).await, 200, LOGIN_OTP_SENT);
    let login_sms = gw.sms();
    assert_eq!(login_sms.len(), 2);
    assert_eq!(login_sms[1]["to"], mobile);
    assert_eq!(login_sms[1]["purpose"], "login");
    let login_otp = gw.otp(mobile, "login");
    assert!(
        login_sms[1]["message"]
            .as_str()
            .unwrap()
            .contains(&login_otp)
    );

    let before = now();
    let (status, body) = login_step2(&gw, mobile, &login_otp).await;
    let after = now();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        keys(&body),
        set(&[
            "token",
            "token_type",
            "expires_in",
            "refresh_token",
            "session_id",
            "first_name",
            "last_name",
            "email",
            "login_at"
        ])
    );
    let refresh = body["refresh_token"].as_str().unwrap();
    assert_eq!(refresh.len(), 64, "256 bits, hex");
    assert!(refresh.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["first_name"], "Ada");
    assert_eq!(body["last_name"], "Lovelace");
    assert_eq!(body["email"], email);
    let login_at = body["login_at"].as_i64().expect("login_at is unix seconds");
    assert!(
        (before - 1..=after + 1).contains(&login_at),
        "login_at {login_at}"
    );
    let token = body["token"].as_str().unwrap().to_owned();

    let reply = get_user(&gw, "/user", &token).await;
    assert_eq!(reply.0, 200, "{}", reply.2);
    assert_content_type_json(&reply.1);
    assert_eq!(keys(&reply.2), set(&["user"]));
    let user = &reply.2["user"];
    assert_eq!(
        keys(user),
        set(&[
            "id",
            "mobile",
            "first_name",
            "last_name",
            "email",
            "verified",
            "created_at"
        ])
    );
    let id = user["id"].as_u64().expect("id is a number");
    assert_eq!(user["mobile"], mobile);
    assert_eq!(user["first_name"], "Ada");
    assert_eq!(user["last_name"], "Lovelace");
    assert_eq!(user["email"], email);
    assert_eq!(user["verified"], true);
    let created_at = user["created_at"]
        .as_i64()
        .expect("created_at is unix seconds");
    assert!((created_at - now()).abs() <= 60, "created_at {created_at}");

    let claims = decode_claims(&token);
    assert_eq!(
        keys(&claims),
        set(&[
            "sub", "mobile", "iat", "nbf", "exp", "iss", "aud", "jti", "sid"
        ])
    );
    assert_eq!(claims["sub"], id.to_string());
    assert_eq!(
        claims["sid"], body["session_id"],
        "the token names its session"
    );
    assert_eq!(claims["mobile"], mobile);
    assert_eq!(claims["iss"], "otpgate");
    assert_eq!(claims["aud"], "otpgate");
    let iat = claims["iat"].as_i64().unwrap();
    assert!((iat - login_at).abs() <= 1, "iat {iat} login_at {login_at}");
    assert!(claims["nbf"].as_i64().unwrap() <= after);
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 3600);
    let jti = claims["jti"].as_str().unwrap().to_owned();
    assert!(!jti.is_empty());

    let second = log_in(&gw, mobile).await;
    let second_claims = decode_claims(second["token"].as_str().unwrap());
    assert_eq!(second_claims["sub"], id.to_string());
    assert_ne!(
        second_claims["jti"].as_str().unwrap(),
        jti,
        "jti must be unique"
    );
}

/// Re-registration, conflicts, unknown and unverified accounts.
async fn registration_rules(store: Store) {
    let gw = gateway(store, "otp: { cooldown: 0s }\n").await;
    let (a, b, c, unknown) = (
        "+15550100201",
        "+15550100202",
        "+15550100203",
        "+15550100299",
    );
    let (old_email, new_email) = ("rules.old@example.com", "rules.new@example.com");

    // An unverified mobile registering again: 200, details replaced, OTP re-sent.
    assert_message(
        &register(&gw, a, "Old", "Name", old_email).await,
        201,
        REGISTERED,
    );
    assert_message(
        &register(&gw, a, "New", "Person", new_email).await,
        200,
        REGISTERED,
    );
    assert_eq!(
        sms_count(&gw, a, "register"),
        2,
        "re-registration re-sends the OTP"
    );
    // The old email is free again: another user may take it.
    assert_message(
        &register(&gw, b, "Bea", "Other", old_email).await,
        201,
        REGISTERED,
    );
    // The new one belongs to A: refused to B, whether new or re-registering.
    assert_error(
        &register(&gw, c, "Cy", "Third", new_email).await,
        409,
        "email_taken",
    );
    assert_error(
        &register(&gw, b, "Bea", "Other", new_email).await,
        409,
        "email_taken",
    );
    // An unverified user cannot take a verified or unverified user's email either.
    assert_error(
        &register(&gw, a, "New", "Person", old_email).await,
        409,
        "email_taken",
    );

    // Login of an unverified account, step 1 and step 2.
    let error = assert_error(&login_step1(&gw, a).await, 403, "account_not_verified");
    assert_eq!(error, "Account is not verified");
    let error = assert_error(
        &login_step2(&gw, a, &gw.otp(a, "register")).await,
        403,
        "account_not_verified",
    );
    assert_eq!(error, "Account is not verified");

    let otp = gw.otp(a, "register");
    assert_message(&verify(&gw, a, &otp).await, 200, VERIFIED);
    let login = log_in(&gw, a).await;
    assert_eq!(
        (&login["first_name"], &login["last_name"], &login["email"]),
        (&json!("New"), &json!("Person"), &json!(new_email))
    );
    let (status, _, body) = get_user(&gw, "/user", login["token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["first_name"], "New");
    assert_eq!(body["user"]["last_name"], "Person");
    assert_eq!(body["user"]["email"], new_email);
    assert_eq!(body["user"]["verified"], true);

    // A verified mobile: 409 already_registered, even with fresh details.
    let sent = gw.sms().len();
    assert_error(
        &register(&gw, a, "X", "Y", "rules.x@example.com").await,
        409,
        "already_registered",
    );
    // Verifying again: 409 already_verified.
    assert_error(&verify(&gw, a, &otp).await, 409, "already_verified");
    assert_error(&verify(&gw, a, "123456").await, 409, "already_verified");
    assert_eq!(gw.sms().len(), sent, "refusals send no SMS");

    // Unknown mobile on every endpoint that names one.
    assert_error(&verify(&gw, unknown, "123456").await, 404, "user_not_found");
    assert_error(&login_step1(&gw, unknown).await, 404, "user_not_found");
    assert_error(
        &login_step2(&gw, unknown, "123456").await,
        404,
        "user_not_found",
    );
    assert_error(
        &resend(&gw, unknown, "register").await,
        404,
        "user_not_found",
    );
    assert_error(&resend(&gw, unknown, "login").await, 404, "user_not_found");
    assert_eq!(
        sms_count(&gw, unknown, "register") + sms_count(&gw, unknown, "login"),
        0
    );
}

/// Wrong OTPs, burning, single use, purpose binding, wrong lengths.
async fn otp_rules(store: Store) {
    // Many OTPs to one number: its SMS limit would be in the way.
    let gw = gateway(
        store,
        "otp: { cooldown: 0s, max_attempts: 3 }\nlimits: { sms_per_mobile: [] }\n",
    )
    .await;
    let mobile = "+15550100301";

    // max_attempts (3) wrong guesses burn the OTP; wrong lengths are wrong guesses.
    assert_message(
        &register(&gw, mobile, "Otto", "Rules", "otp.rules@example.com").await,
        201,
        REGISTERED,
    );
    let first = gw.otp(mobile, "register");
    assert_error(
        &verify(&gw, mobile, &other_otp(&first)).await,
        401,
        "invalid_otp",
    );
    assert_error(&verify(&gw, mobile, &first[..5]).await, 401, "invalid_otp");
    assert_error(
        &verify(&gw, mobile, &format!("{first}0")).await,
        401,
        "invalid_otp",
    );
    assert_error(&verify(&gw, mobile, &first).await, 401, "otp_expired");
    assert_error(&login_step1(&gw, mobile).await, 403, "account_not_verified");

    // Fewer than max_attempts wrong guesses leave the OTP usable.
    assert_message(&resend(&gw, mobile, "register").await, 200, RESENT);
    let second = gw.otp(mobile, "register");
    assert_error(
        &verify(&gw, mobile, &other_otp(&second)).await,
        401,
        "invalid_otp",
    );
    assert_error(
        &verify(&gw, mobile, &other_otp(&other_otp(&second))).await,
        401,
        "invalid_otp",
    );
    assert_message(&verify(&gw, mobile, &second).await, 200, VERIFIED);
    // The consumed registration OTP: the account is verified now.
    assert_error(&verify(&gw, mobile, &second).await, 409, "already_verified");

    // A login OTP is single use.
    assert_message(&login_step1(&gw, mobile).await, 200, LOGIN_OTP_SENT);
    let login = gw.otp(mobile, "login");
    assert_error(
        &login_step2(&gw, mobile, &login[..5]).await,
        401,
        "invalid_otp",
    );
    let (status, body) = login_step2(&gw, mobile, &login).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["token"].is_string());
    let reused = login_step2(&gw, mobile, &login).await;
    assert_error(&reused, 401, "otp_expired");

    // Purpose binding. With a live login OTP, the registration OTP does not
    // log in, and the login OTP does not verify; the login OTP still works.
    let mut login = second.clone();
    while login == second {
        assert_message(&login_step1(&gw, mobile).await, 200, LOGIN_OTP_SENT);
        login = gw.otp(mobile, "login");
    }
    let (status, body) = login_step2(&gw, mobile, &second).await;
    assert_eq!(status, 401, "registration OTP must not log in: {body}");
    assert!(body.get("token").is_none(), "{body}");
    assert_error(&(status, body), 401, "invalid_otp");
    assert_error(&verify(&gw, mobile, &login).await, 409, "already_verified");
    let (status, body) = login_step2(&gw, mobile, &login).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["token"].is_string());

    // Max attempts apply to login OTPs too.
    assert_message(&login_step1(&gw, mobile).await, 200, LOGIN_OTP_SENT);
    let login = gw.otp(mobile, "login");
    for _ in 0..3 {
        assert_error(
            &login_step2(&gw, mobile, &other_otp(&login)).await,
            401,
            "invalid_otp",
        );
    }
    assert_error(&login_step2(&gw, mobile, &login).await, 401, "otp_expired");

    // The registration OTP of an unverified user does not log in anyone else,
    // nor does a login OTP verify another user (OTPs are bound to the mobile).
    let other = "+15550100302";
    assert_message(
        &register(&gw, other, "Ot", "Her", "otp.other@example.com").await,
        201,
        REGISTERED,
    );
    let other_register = gw.otp(other, "register");
    assert_message(&login_step1(&gw, mobile).await, 200, LOGIN_OTP_SENT);
    let login = gw.otp(mobile, "login");
    if other_register != login {
        assert_error(
            &login_step2(&gw, mobile, &other_register).await,
            401,
            "invalid_otp",
        );
        assert_error(&verify(&gw, other, &login).await, 401, "invalid_otp");
    }
    assert_message(&verify(&gw, other, &other_register).await, 200, VERIFIED);
}

/// REGRESSION for the original bypass: an empty OTP must never match a
/// missing stored OTP.
async fn empty_otp_is_never_a_match(store: Store) {
    let gw = gateway(store, "otp: { cooldown: 0s }\n").await;
    let (verified, unverified) = ("+15550100351", "+15550100352");

    // A verified user with no pending login OTP (the last one was used).
    verified_user(&gw, verified, "empty.verified@example.com").await;
    log_in(&gw, verified).await;
    for otp in [json!(""), json!("   "), Value::Null] {
        let sent = sms_count(&gw, verified, "login");
        let (status, body) = post(&gw, "/login", json!({"mobile": verified, "otp": otp})).await;
        assert_eq!(
            (status, &body),
            (200, &json!({ "message": LOGIN_OTP_SENT })),
            "otp {otp} must mean step 1, never a token"
        );
        assert_eq!(
            sms_count(&gw, verified, "login"),
            sent + 1,
            "step 1 sends an OTP"
        );
    }

    // verify-otp with an empty OTP while one is pending, then while none is:
    // 400, and the account stays unverified.
    assert_message(
        &register(&gw, unverified, "Em", "Pty", "empty.unverified@example.com").await,
        201,
        REGISTERED,
    );
    let otp = gw.otp(unverified, "register");
    for empty in ["", "   "] {
        let error = assert_error(
            &verify(&gw, unverified, empty).await,
            400,
            "invalid_request",
        );
        assert!(error.contains("otp"), "error names the field: {error}");
    }
    let error = assert_error(
        &post(&gw, "/verify-otp", json!({"mobile": unverified})).await,
        400,
        "invalid_request",
    );
    assert!(error.contains("otp"), "{error}");
    assert_error(
        &login_step1(&gw, unverified).await,
        403,
        "account_not_verified",
    );
    // The pending OTP still works: empty submissions are not guesses.
    assert_message(&verify(&gw, unverified, &otp).await, 200, VERIFIED);

    // Once consumed, nothing is pending: an empty OTP still verifies nothing.
    let third = "+15550100353";
    assert_message(
        &register(&gw, third, "No", "Pending", "empty.third@example.com").await,
        201,
        REGISTERED,
    );
    let otp = gw.otp(third, "register");
    for _ in 0..5 {
        // Burn it (default max_attempts is 5).
        assert_error(
            &verify(&gw, third, &other_otp(&otp)).await,
            401,
            "invalid_otp",
        );
    }
    assert_error(&verify(&gw, third, &otp).await, 401, "otp_expired");
    assert_error(&verify(&gw, third, "").await, 400, "invalid_request");
    assert_error(&login_step1(&gw, third).await, 403, "account_not_verified");
}

/// N concurrent correct submissions: one winner; N concurrent sends: one SMS.
async fn concurrent_requests(store: Store) {
    let gw = gateway(store, "otp: { cooldown: 30s }\n").await;
    let mobile = "+15550100401";
    verified_user(&gw, mobile, "concurrent@example.com").await;

    let replies = burst(&gw, "/login", json!({ "mobile": mobile }), 20).await;
    let mut sent = 0;
    for reply in &replies {
        if reply.0 == 200 {
            sent += 1;
            assert_eq!(reply.2, json!({ "message": LOGIN_OTP_SENT }));
        } else {
            assert_error_response(reply, 429, "cooldown");
            assert!((1..=30).contains(&retry_after(&reply.1)));
        }
    }
    assert_eq!(
        sent, 1,
        "exactly one of 20 concurrent step-1 requests sends"
    );
    assert_eq!(sms_count(&gw, mobile, "login"), 1, "exactly one login SMS");

    let otp = gw.otp(mobile, "login");
    let replies = burst(&gw, "/login", json!({ "mobile": mobile, "otp": otp }), 20).await;
    let mut tokens = 0;
    for reply in &replies {
        if reply.0 == 200 {
            tokens += 1;
            assert!(reply.2["token"].is_string(), "{}", reply.2);
        } else {
            assert_error_response(reply, 401, "otp_expired");
        }
    }
    assert_eq!(
        tokens, 1,
        "exactly one of 20 concurrent correct submissions wins"
    );
}

/// Cooldown: 429 with Retry-After, shared by re-registration and resend;
/// resend's purpose rules.
async fn cooldown(store: Store) {
    let gw = gateway(store, "otp: { cooldown: 30s }\n").await;
    let (unverified, verified) = ("+15550100501", "+15550100502");

    assert_message(
        &register(&gw, unverified, "Cool", "Down", "cool.down@example.com").await,
        201,
        REGISTERED,
    );
    let again = call(
        client()
            .post(gw.url("/resend-otp"))
            .json(&json!({"mobile": unverified, "purpose": "register"})),
    )
    .await;
    assert_error_response(&again, 429, "cooldown");
    let seconds = retry_after(&again.1);
    assert!((1..=30).contains(&seconds), "Retry-After {seconds}");
    let reregister = call(client().post(gw.url("/register")).json(
        &json!({"mobile": unverified, "first_name": "Cool", "last_name": "Down", "email": "cool.down@example.com"}),
    ))
    .await;
    assert_error_response(&reregister, 429, "cooldown");
    assert!((1..=30).contains(&retry_after(&reregister.1)));
    assert_eq!(
        sms_count(&gw, unverified, "register"),
        1,
        "a refused request sends nothing"
    );

    verified_user(&gw, verified, "cool.verified@example.com").await;
    assert_message(&login_step1(&gw, verified).await, 200, LOGIN_OTP_SENT);
    let again = call(
        client()
            .post(gw.url("/login"))
            .json(&json!({ "mobile": verified })),
    )
    .await;
    assert_error_response(&again, 429, "cooldown");
    assert!((1..=30).contains(&retry_after(&again.1)));
    let again = call(
        client()
            .post(gw.url("/resend-otp"))
            .json(&json!({"mobile": verified, "purpose": "login"})),
    )
    .await;
    assert_error_response(&again, 429, "cooldown");
    assert!((1..=30).contains(&retry_after(&again.1)));
    assert_eq!(sms_count(&gw, verified, "login"), 1);
    // The OTP sent before the refusals still works.
    let otp = gw.otp(verified, "login");
    let (status, body) = login_step2(&gw, verified, &otp).await;
    assert_eq!(status, 200, "{body}");

    // Purpose rules of resend-otp.
    assert_error(
        &resend(&gw, unverified, "login").await,
        403,
        "account_not_verified",
    );
    assert_error(
        &resend(&gw, verified, "register").await,
        409,
        "already_verified",
    );
    for purpose in [json!("sms"), json!(""), json!("REGISTER"), json!(1)] {
        let reply = post(
            &gw,
            "/resend-otp",
            json!({"mobile": verified, "purpose": purpose}),
        )
        .await;
        let error = assert_error(&reply, 400, "invalid_request");
        assert!(error.contains("purpose"), "{error}");
    }
    let error = assert_error(
        &post(&gw, "/resend-otp", json!({ "mobile": verified })).await,
        400,
        "invalid_request",
    );
    assert!(error.contains("purpose"), "{error}");
}

/// After the cooldown, resend-otp {purpose: register} works and the new OTP
/// verifies. (That a running cooldown refuses is `cooldown`'s business, with
/// one long enough that no timing can blur it.)
async fn cooldown_expires(store: Store) {
    let gw = gateway(store, "otp: { cooldown: 1s }\n").await;
    let mobile = "+15550100551";
    assert_message(
        &register(&gw, mobile, "Re", "Send", "re.send@example.com").await,
        201,
        REGISTERED,
    );
    let first = gw.otp(mobile, "register");
    let reply = poll_until(
        Duration::from_secs(10),
        "the 1s cooldown to end",
        async || {
            let reply = resend(&gw, mobile, "register").await;
            if reply.0 == 200 {
                return Some(reply);
            }
            assert_error(&reply, 429, "cooldown");
            None
        },
    )
    .await;
    assert_message(&reply, 200, RESENT);
    assert_eq!(sms_count(&gw, mobile, "register"), 2);
    let second = gw.otp(mobile, "register");
    if second != first {
        // The new OTP replaced the old one.
        assert_error(&verify(&gw, mobile, &first).await, 401, "invalid_otp");
    }
    assert_message(&verify(&gw, mobile, &second).await, 200, VERIFIED);
}

/// With default_country_code "+91", local and international forms are one account.
async fn mobile_normalisation(store: Store) {
    let gw = gateway(
        store,
        "otp: { cooldown: 30s, max_attempts: 3, default_country_code: \"+91\" }\n",
    )
    .await;
    let normal = "+919876543210";

    assert_message(
        &register(&gw, "98765 43210", "Ravi", "Kumar", "ravi@example.com").await,
        201,
        REGISTERED,
    );
    let sms = gw.sms();
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0]["to"], normal);
    let otp = gw.otp(normal, "register");
    assert_message(&verify(&gw, "9876543210", &otp).await, 200, VERIFIED);
    assert_error(
        &register(&gw, normal, "Ravi", "Kumar", "ravi2@example.com").await,
        409,
        "already_registered",
    );

    assert_message(&login_step1(&gw, normal).await, 200, LOGIN_OTP_SENT);
    assert_eq!(gw.sms()[1]["to"], normal);
    let otp = gw.otp(normal, "login");
    let (status, body) = login_step2(&gw, "+91 98765-43210", &otp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["first_name"], "Ravi");
    let token = body["token"].as_str().unwrap();
    assert_eq!(decode_claims(token)["mobile"], normal);
    let (status, _, body) = get_user(&gw, "/user", token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["mobile"], normal);
}

/// Malformed, missing, invalid, oversized and mistyped requests.
async fn bad_input(store: Store) {
    let gw = gateway(store, "otp: { cooldown: 30s }\n").await;
    let mobile = "+15550100701";
    let valid = json!({"mobile": mobile, "first_name": "Bad", "last_name": "Input", "email": "bad.input@example.com"});
    let raw = |path: &str, content_type: &str, body: String| {
        client()
            .post(gw.url(path))
            .header("content-type", content_type)
            .body(body)
    };

    for path in ["/register", "/verify-otp", "/login", "/resend-otp"] {
        for body in ["{", "", "[1]", "\"x\"", "{\"mobile\": }"] {
            let reply = call(raw(path, "application/json", body.into())).await;
            assert_error_response(&reply, 400, "invalid_request");
        }
    }

    // Missing fields, each named.
    for field in ["mobile", "first_name", "last_name", "email"] {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(field);
        let error = assert_error(&post(&gw, "/register", body).await, 400, "invalid_request");
        assert!(error.contains(field), "{field}: {error}");
    }
    for (path, body, field) in [
        ("/verify-otp", json!({"otp": "123456"}), "mobile"),
        ("/verify-otp", json!({"mobile": mobile}), "otp"),
        ("/login", json!({}), "mobile"),
        ("/login", json!({"otp": "123456"}), "mobile"),
        ("/resend-otp", json!({"purpose": "login"}), "mobile"),
        ("/resend-otp", json!({"mobile": mobile}), "purpose"),
    ] {
        let error = assert_error(&post(&gw, path, body).await, 400, "invalid_request");
        assert!(error.contains(field), "{path} {field}: {error}");
    }

    // Invalid values, each named.
    for (field, value) in [
        ("mobile", json!("123")),
        ("mobile", json!("1234567890123456")),
        ("mobile", json!("98765abc10")),
        ("mobile", json!(5550100701u64)),
        ("email", json!("not-an-email")),
        ("email", json!("a@b")),
        ("email", json!("a b@example.com")),
        ("first_name", json!("")),
        ("first_name", json!("   ")),
        ("last_name", json!("x".repeat(101))),
        ("first_name", json!(7)),
    ] {
        let mut body = valid.clone();
        body[field] = value.clone();
        let error = assert_error(&post(&gw, "/register", body).await, 400, "invalid_request");
        assert!(error.contains(field), "{field} = {value}: {error}");
    }
    for path in ["/verify-otp", "/login", "/resend-otp"] {
        let body = json!({"mobile": "123", "otp": "123456", "purpose": "login"});
        let error = assert_error(&post(&gw, path, body).await, 400, "invalid_request");
        assert!(error.contains("mobile"), "{path}: {error}");
    }
    let error = assert_error(
        &post(&gw, "/verify-otp", json!({"mobile": mobile, "otp": 123456})).await,
        400,
        "invalid_request",
    );
    assert!(error.contains("otp"), "{error}");

    // 16 KiB is the limit: exactly 16384 bytes are read, one more is 413.
    let padded = |size: usize| {
        let bare = json!({"mobile": "+15550100799", "pad": ""}).to_string();
        json!({"mobile": "+15550100799", "pad": "x".repeat(size - bare.len())}).to_string()
    };
    assert_eq!(padded(16 * 1024).len(), 16 * 1024);
    let at_limit = call(raw("/login", "application/json", padded(16 * 1024))).await;
    assert_error_response(&at_limit, 404, "user_not_found");
    for path in ["/register", "/verify-otp", "/login", "/resend-otp"] {
        let over = call(raw(path, "application/json", padded(16 * 1024 + 1))).await;
        assert_error_response(&over, 413, "payload_too_large");
        let far_over = call(raw(path, "application/json", padded(100 * 1024))).await;
        assert_error_response(&far_over, 413, "payload_too_large");
    }

    // Content type.
    for path in ["/register", "/verify-otp", "/login", "/resend-otp"] {
        let reply = call(raw(path, "text/plain", valid.to_string())).await;
        assert_error_response(&reply, 415, "unsupported_media_type");
        let reply = call(client().post(gw.url(path)).body(valid.to_string())).await;
        assert_error_response(&reply, 415, "unsupported_media_type");
    }
    let charset = call(raw(
        "/login",
        "application/json; charset=utf-8",
        json!({"mobile": "+15550100798"}).to_string(),
    ))
    .await;
    assert_error_response(&charset, 404, "user_not_found");

    // Methods.
    for path in ["/register", "/verify-otp", "/login", "/resend-otp"] {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let reply = call(client().request(method.clone(), gw.url(path))).await;
            assert_error_response(&reply, 405, "method_not_allowed");
            assert_eq!(
                reply.1.get("allow").and_then(|v| v.to_str().ok()),
                Some("POST"),
                "{method} {path}"
            );
        }
    }
    let reply = call(client().post(gw.url("/user")).json(&json!({}))).await;
    assert_error_response(&reply, 405, "method_not_allowed");
    assert_eq!(
        reply.1.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, DELETE")
    );

    // GET /user token errors.
    let reply = call(client().get(gw.url("/user"))).await;
    assert_error_response(&reply, 401, "unauthorized");
    let challenge = reply
        .1
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("realm=\"otpgate\""),
        "{challenge:?}"
    );
    let wrong_secret = tokens::sign(
        &tokens::claims("1", now(), now() + 600),
        "another-secret-0123456789abcdef0123456789",
        Algorithm::HS256,
    );
    let expired = tokens::sign(
        &tokens::claims("1", now() - 7200, now() - 3600),
        SECRET,
        Algorithm::HS256,
    );
    let unsigned = format!(
        "{}.{}.",
        tokens::b64(br#"{"alg":"none","typ":"JWT"}"#),
        tokens::b64(
            tokens::claims("1", now(), now() + 600)
                .to_string()
                .as_bytes()
        )
    );
    for token in ["garbage", "a.b.c", "", &wrong_secret, &expired, &unsigned] {
        let reply = get_user(&gw, "/user", token).await;
        assert_error_response(&reply, 401, "invalid_token");
        let challenge = reply
            .1
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
            "{challenge:?}"
        );
    }

    // None of the refusals registered anyone or sent anything.
    assert!(gw.sms().is_empty(), "{:?}", gw.sms());
    assert_error(&login_step1(&gw, mobile).await, 404, "user_not_found");
    // 100-character names are fine.
    let mut body = valid.clone();
    body["last_name"] = json!("y".repeat(100));
    assert_message(&post(&gw, "/register", body).await, 201, REGISTERED);
}

/// A catch-all route never receives the auth endpoints.
async fn auth_endpoints_are_never_forwarded(store: Store) {
    let up = upstream("up");
    let gw = GatewaySpec::new(store)
        .route(route("all", "/", &[up.addr], "public"))
        .start()
        .await;
    let mobile = "+15550100801";
    let from_gateway = |reply: &(u16, HeaderMap, Value), what: &str| {
        assert!(
            reply.1.get("x-upstream").is_none(),
            "{what} was forwarded: {}",
            reply.2
        );
        assert_content_type_json(&reply.1);
    };

    let reply = call(client().post(gw.url("/register")).json(
        &json!({"mobile": mobile, "first_name": "Never", "last_name": "Forwarded", "email": "never@example.com"}),
    ))
    .await;
    from_gateway(&reply, "POST /register");
    assert_eq!(
        (reply.0, &reply.2),
        (201, &json!({ "message": REGISTERED }))
    );

    for path in ["/register", "/verify-otp", "/login", "/resend-otp"] {
        let reply = call(client().post(gw.url(path)).json(&json!({}))).await;
        from_gateway(&reply, path);
        assert_error_response(&reply, 400, "invalid_request");
        let reply = call(client().get(gw.url(path))).await;
        from_gateway(&reply, path);
        assert_error_response(&reply, 405, "method_not_allowed");
        let reply = call(
            client()
                .post(gw.url(&format!("{path}?via=query")))
                .json(&json!({})),
        )
        .await;
        from_gateway(&reply, path);
        assert_error_response(&reply, 400, "invalid_request");
    }
    let reply = call(client().get(gw.url("/user"))).await;
    from_gateway(&reply, "GET /user");
    assert_error_response(&reply, 401, "unauthorized");

    let otp = gw.otp(mobile, "register");
    let reply = call(
        client()
            .post(gw.url("/verify-otp"))
            .json(&json!({"mobile": mobile, "otp": otp})),
    )
    .await;
    from_gateway(&reply, "POST /verify-otp");
    assert_eq!((reply.0, &reply.2), (200, &json!({ "message": VERIFIED })));
    let token = log_in(&gw, mobile).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = get_user(&gw, "/user", &token).await;
    from_gateway(&reply, "GET /user");
    assert_eq!(reply.0, 200);
    assert_eq!(reply.2["user"]["mobile"], mobile);

    // Paths that only look like auth endpoints go to the upstream.
    for path in ["/registerx", "/register/", "/users", "/api/login"] {
        let response = client()
            .post(gw.url(path))
            .json(&json!({"mobile": mobile}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response
                .headers()
                .get("x-upstream")
                .and_then(|v| v.to_str().ok()),
            Some("up"),
            "{path} must reach the upstream"
        );
    }
}

/// auth.path_prefix moves every endpoint under it.
async fn auth_path_prefix(store: Store) {
    let up = upstream("up");
    let mut spec = GatewaySpec::new(store).route(route("api", "/api/", &[up.addr], "public"));
    spec.extra = "auth: { path_prefix: \"/auth\" }\n".into();
    let gw = spec.start().await;
    let mobile = "+15550100901";
    let registration = json!({"mobile": mobile, "first_name": "Pre", "last_name": "Fix", "email": "pre.fix@example.com"});

    // The unprefixed paths are not auth endpoints.
    assert_error(
        &post(&gw, "/register", registration.clone()).await,
        404,
        "no_route",
    );
    for path in ["/verify-otp", "/login", "/resend-otp"] {
        assert_error(
            &post(&gw, path, json!({ "mobile": mobile })).await,
            404,
            "no_route",
        );
    }
    assert_error_response(&call(client().get(gw.url("/user"))).await, 404, "no_route");
    assert!(gw.sms().is_empty());

    assert_message(
        &post(&gw, "/auth/register", registration).await,
        201,
        REGISTERED,
    );
    let otp = gw.otp(mobile, "register");
    assert_message(
        &post(
            &gw,
            "/auth/verify-otp",
            json!({"mobile": mobile, "otp": otp}),
        )
        .await,
        200,
        VERIFIED,
    );
    assert_message(
        &post(&gw, "/auth/login", json!({ "mobile": mobile })).await,
        200,
        LOGIN_OTP_SENT,
    );
    assert_error(
        &post(
            &gw,
            "/auth/resend-otp",
            json!({"mobile": mobile, "purpose": "login"}),
        )
        .await,
        429,
        "cooldown",
    );
    let otp = gw.otp(mobile, "login");
    let (status, body) = post(&gw, "/auth/login", json!({"mobile": mobile, "otp": otp})).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    let (status, _, body) = get_user(&gw, "/auth/user", token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["mobile"], mobile);
    assert_error_response(&get_user(&gw, "/user", token).await, 404, "no_route");
    assert_error_response(
        &call(client().get(gw.url("/auth/register"))).await,
        405,
        "method_not_allowed",
    );
}

async fn stale_registrations_lose_their_email(store: Store) {
    // A 1s OTP: the squatter's registration goes stale quickly.
    let gw = gateway(store, "otp: { ttl: 1s, cooldown: 0s }\n").await;
    let (squatter, owner, late) = ("+15550100701", "+15550100702", "+15550100703");
    let email = "victim@example.com";
    assert_message(
        &register(&gw, squatter, "Squat", "Ter", email).await,
        201,
        REGISTERED,
    );
    // While the squatter's OTP is live, the email is taken.
    assert_error(
        &register(&gw, owner, "Real", "Owner", email).await,
        409,
        "email_taken",
    );
    // Once it is not, the real owner registers; the stale account is gone.
    poll_until(
        Duration::from_secs(10),
        "the squatter's OTP to expire",
        async || {
            let reply = register(&gw, owner, "Real", "Owner", email).await;
            match reply.0 {
                409 => None,
                _ => {
                    assert_message(&reply, 201, REGISTERED);
                    Some(())
                }
            }
        },
    )
    .await;
    assert_error(&login_step1(&gw, squatter).await, 404, "user_not_found");
    assert_message(&resend(&gw, owner, "register").await, 200, RESENT);
    let otp = gw.otp(owner, "register");
    assert_message(&verify(&gw, owner, &otp).await, 200, VERIFIED);
    // A verified account keeps its email for good.
    assert_error(
        &register(&gw, late, "Late", "Comer", email).await,
        409,
        "email_taken",
    );
}

async fn emails_conflict_only_when_equal_bytes(store: Store) {
    let gw = gateway(store, "otp: { cooldown: 0s }\n").await;
    // Equal under MySQL's utf8mb4_unicode_ci, different byte for byte.
    for (i, email) in [
        "strasse@example.com",
        "straße@example.com",
        "\u{ff41}nna@example.com",
        "anna@example.com",
    ]
    .iter()
    .enumerate()
    {
        let mobile = format!("+155501008{i:02}");
        assert_message(
            &register(&gw, &mobile, "E", "Mail", email).await,
            201,
            REGISTERED,
        );
    }
    // Trimmed and lower-cased first, so these are the same as an email above.
    for (i, email) in [" Strasse@Example.COM ", "ANNA@example.com"]
        .iter()
        .enumerate()
    {
        let mobile = format!("+155501009{i:02}");
        assert_error(
            &register(&gw, &mobile, "E", "Mail", email).await,
            409,
            "email_taken",
        );
    }
}

async fn repeated_json_keys_are_refused(store: Store) {
    let gw = gateway(store, "otp: { cooldown: 0s }\n").await;
    verified_user(&gw, "+15550101001", "keys@example.com").await;
    for (path, body) in [
        (
            "/login",
            r#"{"mobile": "+15550101001", "mobile": "+15550101002"}"#,
        ),
        (
            "/login",
            r#"{"mobile": "+15550101001", "otp": "", "otp": "123456"}"#,
        ),
        (
            "/register",
            r#"{"mobile": "+15550101003", "first_name": "A", "last_name": "B", "email": "a@example.com", "email": "b@example.com"}"#,
        ),
    ] {
        let reply = call(
            client()
                .post(gw.url(path))
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        let message = assert_error_response(&reply, 400, "invalid_request");
        let key = if body.contains(r#""otp": """#) {
            "otp"
        } else if path == "/register" {
            "email"
        } else {
            "mobile"
        };
        assert!(message.contains(key), "{message:?} does not name {key}");
    }
    // Nothing was sent for them.
    assert_eq!(sms_count(&gw, "+15550101001", "login"), 0);
    assert_eq!(sms_count(&gw, "+15550101003", "register"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_database_and_the_sms_outbox_are_private() {
    let gw = gateway(Store::Embedded, "otp: { cooldown: 0s }\n").await;
    assert_message(
        &register(&gw, "+15550101101", "Pri", "Vate", "private@example.com").await,
        201,
        REGISTERED,
    );
    use std::os::unix::fs::PermissionsExt;
    for file in ["data/users.sqlite3", "data/sms.jsonl"] {
        let mode = std::fs::metadata(gw.dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} has mode {mode:o}");
    }
}
