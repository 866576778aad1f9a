//! Two gateway instances sharing one MySQL database and one Redis prefix:
//! OTPs, cooldowns and tokens work across them as if they were one.

use crate::common::*;

use std::time::Duration;

use serde_json::{Value, json};

fn registration(mobile: &str) -> Value {
    json!({
        "mobile": mobile,
        "first_name": "Alan",
        "last_name": "Turing",
        "email": format!("{}@example.com", mobile.trim_start_matches('+')),
    })
}

/// Two instances on one fresh shared store, each with a `required` route to
/// the same upstream.
async fn pair(up: &Upstream) -> Option<(Gateway, Gateway)> {
    let store = Store::mysql_redis().await?;
    let shared = store.shared();
    let a = GatewaySpec::new(store)
        .route(route("api", "/api/", &[up.addr], "required"))
        .start()
        .await;
    let b = GatewaySpec::new(shared)
        .route(route("api", "/api/", &[up.addr], "required"))
        .start()
        .await;
    Some((a, b))
}

/// Every SMS either instance sent to `mobile` for `purpose`.
fn sent(gateways: &[&Gateway], mobile: &str, purpose: &str) -> Vec<String> {
    gateways
        .iter()
        .flat_map(|g| g.sms())
        .filter(|m| m["to"] == mobile && m["purpose"] == purpose)
        .map(|m| m["otp"].as_str().unwrap().to_owned())
        .collect()
}

async fn register_and_verify(on: &Gateway, mobile: &str) {
    let (status, body) = post(on, "/register", registration(mobile)).await;
    assert_eq!(status, 201, "{body}");
    let otp = on.otp(mobile, "register");
    let (status, body) = post(on, "/verify-otp", json!({"mobile": mobile, "otp": otp})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn otps_cooldowns_and_tokens_are_shared_by_the_instances() {
    let up = upstream("up");
    let Some((a, b)) = pair(&up).await else {
        return;
    };
    let mobile = "+15550005001";

    // Registered on A, verified on B.
    let (status, body) = post(&a, "/register", registration(mobile)).await;
    assert_eq!(status, 201, "{body}");
    let otp = a.otp(mobile, "register");
    let (status, body) = post(&b, "/verify-otp", json!({"mobile": mobile, "otp": otp})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&a, "/verify-otp", json!({"mobile": mobile, "otp": otp})).await;
    assert_eq!(status, 409, "A sees the account B verified: {body}");
    assert_eq!(body["code"], "already_verified", "{body}");
    let (status, body) = post(&a, "/register", registration(mobile)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "already_registered", "{body}");

    // Login step 1 on B starts a cooldown that A enforces.
    let (status, body) = post(&b, "/login", json!({"mobile": mobile})).await;
    assert_eq!(status, 200, "{body}");
    let response = client()
        .post(a.url("/login"))
        .json(&json!({"mobile": mobile}))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = json(response).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "cooldown", "{body}");
    let retry_after: u64 = retry_after
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=30).contains(&retry_after), "Retry-After {retry_after}");
    assert!(sent(&[&a], mobile, "login").is_empty(), "A sent nothing");

    // Step 2 on A with the OTP B sent; it is then used up for B as well.
    let otp = b.otp(mobile, "login");
    let (status, body) = post(&a, "/login", json!({"mobile": mobile, "otp": otp})).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("a token").to_owned();
    let (status, body) = post(&b, "/login", json!({"mobile": mobile, "otp": otp})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "otp_expired", "{body}");

    // A's token opens B's required route and B's /user.
    let response = client()
        .get(b.url("/api/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, echoed) = json(response).await;
    assert_eq!(echoed["upstream"], "up", "{echoed}");
    assert_eq!(echoed["headers"]["x-user-mobile"][0], mobile, "{echoed}");
    let user_id = echoed["headers"]["x-user-id"][0]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, body) = current_user(&b, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["mobile"], mobile, "{body}");
    assert_eq!(body["user"]["verified"], true, "{body}");
    assert_eq!(body["user"]["id"].to_string(), user_id, "{body}");

    // And the other way round: B's token on A.
    let token_b = signed_up_token(&b, "+15550005002").await;
    let response = client()
        .get(a.url("/api/whoami"))
        .bearer_auth(&token_b)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn wrong_guesses_are_counted_across_instances() {
    let up = upstream("up");
    let Some((a, b)) = pair(&up).await else {
        return;
    };
    let mobile = "+15550005101";
    let (status, body) = post(&a, "/register", registration(mobile)).await;
    assert_eq!(status, 201, "{body}");
    let otp = a.otp(mobile, "register");
    let wrong = if otp == "000000" { "111111" } else { "000000" };
    // max_attempts is 5: alternate the instances for the wrong guesses.
    for (i, gateway) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let (status, body) = post(
            gateway,
            "/verify-otp",
            json!({"mobile": mobile, "otp": wrong}),
        )
        .await;
        assert_eq!(status, 401, "guess {i}: {body}");
        assert_eq!(body["code"], "invalid_otp", "guess {i}: {body}");
    }
    let (status, body) = post(&b, "/verify-otp", json!({"mobile": mobile, "otp": otp})).await;
    assert_eq!(status, 401, "the OTP is burned for both: {body}");
    assert_eq!(body["code"], "otp_expired", "{body}");
}

#[tokio::test]
async fn concurrent_login_requests_on_both_instances_send_one_sms() {
    let up = upstream("up");
    let Some((a, b)) = pair(&up).await else {
        return;
    };
    let mobile = "+15550005201";
    register_and_verify(&a, mobile).await;

    let requests = (0..20).map(|i| {
        let gateway = if i % 2 == 0 { &a } else { &b };
        post(gateway, "/login", json!({"mobile": mobile}))
    });
    let answers = futures_util::future::join_all(requests).await;
    let ok = answers.iter().filter(|(status, _)| *status == 200).count();
    let cooled = answers.iter().filter(|(status, _)| *status == 429).count();
    assert_eq!(ok, 1, "{answers:?}");
    assert_eq!(cooled, 19, "{answers:?}");
    assert!(
        answers
            .iter()
            .filter(|(status, _)| *status == 429)
            .all(|(_, body)| body["code"] == "cooldown"),
        "{answers:?}"
    );

    // The file provider writes before the answer; allow for nothing else.
    eventually(Duration::from_secs(5), "the login SMS", || {
        !sent(&[&a, &b], mobile, "login").is_empty()
    })
    .await;
    let otps = sent(&[&a, &b], mobile, "login");
    assert_eq!(otps.len(), 1, "one SMS in total: {otps:?}");

    let (status, body) = post(&b, "/login", json!({"mobile": mobile, "otp": otps[0]})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn concurrent_correct_submissions_on_both_instances_have_one_winner() {
    let up = upstream("up");
    let Some((a, b)) = pair(&up).await else {
        return;
    };
    let mobile = "+15550005301";
    register_and_verify(&a, mobile).await;
    let (status, body) = post(&b, "/login", json!({"mobile": mobile})).await;
    assert_eq!(status, 200, "{body}");
    let otp = b.otp(mobile, "login");

    let requests = (0..10).map(|i| {
        let gateway = if i % 2 == 0 { &a } else { &b };
        post(gateway, "/login", json!({"mobile": mobile, "otp": otp}))
    });
    let answers = futures_util::future::join_all(requests).await;
    let winners: Vec<&(u16, Value)> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert!(winners[0].1["token"].is_string(), "{answers:?}");
    assert!(
        answers
            .iter()
            .filter(|(status, _)| *status != 200)
            .all(|(status, body)| *status == 401 && body["code"] == "otp_expired"),
        "{answers:?}"
    );
}
