//! SPEC section 6 through the real binary, on both backends: refresh token
//! rotation and reuse, expiry and max lifetime, the logout scopes, session
//! listing and deletion, account deletion, refresh races, and revocation
//! reaching a second instance within a second, through a lost feed too.

use crate::common::*;

use std::time::Duration;

use serde_json::{Value, json};

on_both_backends!(
    refresh_rotates_and_a_reuse_within_the_grace_revokes_nothing,
    a_reuse_past_the_grace_revokes_the_session,
    refresh_tokens_expire_and_sessions_end_at_max_lifetime,
    logout_scopes,
    sessions_are_listed_and_deleted_one_by_one,
    account_deletion_revokes_everything_and_frees_mobile_and_email,
    of_twenty_parallel_refreshes_exactly_one_wins,
    revocations_survive_a_restart,
);

/// A gateway with a `required` route, no OTP cooldown (several logins per
/// mobile) and the given `session` section.
async fn gateway(store: Store, session: &str) -> (Upstream, Gateway) {
    let up = upstream("up");
    let mut spec = GatewaySpec::new(store)
        .route(route("api", "/api/", &[up.addr], "required"))
        .route(route("feed", "/feed/", &[up.addr], "optional"));
    // Tests here log one user in many times: its SMS limit would be in the way.
    spec.otp = "otp: { cooldown: 0s }\nlimits: { sms_per_mobile: [] }\n".into();
    spec.extra = session.into();
    (up, spec.start().await)
}

/// `POST /logout` with `token`, and a JSON body when given (else none at all).
async fn logout(gw: &Gateway, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = client().post(gw.url("/logout")).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    json(request.send().await.unwrap()).await
}

async fn refresh(gw: &Gateway, token: &str) -> (u16, Value) {
    post(gw, "/token/refresh", json!({ "refresh_token": token })).await
}

fn field(body: &Value, name: &str) -> String {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .to_owned()
}

/// Status and error code of a protected route and of GET /user with `token`.
async fn token_status(gw: &Gateway, token: &str) -> (u16, String) {
    let response = client()
        .get(gw.url("/api/x"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let code = if status == 200 {
        String::new()
    } else {
        response.json::<Value>().await.unwrap()["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (user_status, user) = current_user(gw, token).await;
    if status == 200 {
        assert_eq!(user_status, 200, "{user}");
    } else {
        assert_eq!(
            (user_status, user["code"].as_str().unwrap()),
            (status, code.as_str())
        );
    }
    (status, code)
}

fn revoked() -> (u16, String) {
    (401, "token_revoked".to_owned())
}

fn ok() -> (u16, String) {
    (200, String::new())
}

async fn refresh_rotates_and_a_reuse_within_the_grace_revokes_nothing(store: Store) {
    let (_up, gw) = gateway(store, "session: { reuse_grace: 1h }\n").await;
    let login = signed_up(&gw, "+15550200001").await;
    let first = field(&login, "refresh_token");
    let (status, body) = refresh(&gw, &first).await;
    assert_eq!(status, 200, "{body}");
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["expires_in", "refresh_token", "token", "token_type"]);
    assert_eq!(body["token_type"], "Bearer");
    let second = field(&body, "refresh_token");
    assert_ne!(second, first, "rotated");
    let token = field(&body, "token");
    assert_eq!(token_status(&gw, &token).await, ok());
    // The new token names the same session.
    let sid = |t: &str| {
        let payload = t.split('.').nth(1).unwrap();
        use base64::Engine;
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        claims["sid"].as_str().unwrap().to_owned()
    };
    assert_eq!(sid(&token), field(&login, "session_id"));
    // The spent token again: refused, but within the grace nothing is revoked.
    let (status, body) = refresh(&gw, &first).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("refresh_token_reused"))
    );
    assert_eq!(token_status(&gw, &token).await, ok());
    let (status, body) = refresh(&gw, &second).await;
    assert_eq!(status, 200, "the current refresh token still works: {body}");
    // Garbage and unknown tokens.
    for bad in ["nope", &"0".repeat(64)] {
        let (status, body) = refresh(&gw, bad).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_refresh_token"))
        );
    }
    let (status, body) = post(&gw, "/token/refresh", json!({})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request"))
    );
}

async fn a_reuse_past_the_grace_revokes_the_session(store: Store) {
    // 0s: no grace at all.
    let (_up, gw) = gateway(store, "session: { reuse_grace: 0s }\n").await;
    let login = signed_up(&gw, "+15550200101").await;
    let other = log_in(&gw, "+15550200101").await;
    let first = field(&login, "refresh_token");
    let (status, body) = refresh(&gw, &first).await;
    assert_eq!(status, 200, "{body}");
    let (current, token) = (field(&body, "refresh_token"), field(&body, "token"));
    // A thief replays the spent token: the whole session ends.
    let (status, body) = refresh(&gw, &first).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("refresh_token_reused"))
    );
    assert_eq!(token_status(&gw, &token).await, revoked());
    assert_eq!(token_status(&gw, &field(&login, "token")).await, revoked());
    let (status, body) = refresh(&gw, &current).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_refresh_token"))
    );
    // Another session of the same user is untouched.
    assert_eq!(token_status(&gw, &field(&other, "token")).await, ok());
}

async fn refresh_tokens_expire_and_sessions_end_at_max_lifetime(store: Store) {
    let shared = store.shared();
    // Refresh tokens of 1s.
    let (_up, gw) = gateway(store, "session: { refresh_ttl: 1s, reuse_grace: 0s }\n").await;
    let login = signed_up(&gw, "+15550200201").await;
    let (access, token) = (field(&login, "token"), field(&login, "refresh_token"));
    // Watched without refreshing (a refresh would start a new token).
    poll_until(
        Duration::from_secs(10),
        "the refresh token to expire",
        async || {
            let reply = json(
                client()
                    .get(gw.url("/sessions"))
                    .bearer_auth(&access)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(reply.0, 200, "{}", reply.1);
            reply.1["sessions"]
                .as_array()
                .unwrap()
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let (status, body) = refresh(&gw, &token).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_refresh_token"))
    );
    // Sessions of 2s, refreshed or not.
    let (_up2, gw) = gateway(shared, "session: { max_lifetime: 2s }\n").await;
    let mut token = field(&signed_up(&gw, "+15550200202").await, "refresh_token");
    let ended = poll_until(Duration::from_secs(10), "the session to end", async || {
        let (status, body) = refresh(&gw, &token).await;
        if status == 200 {
            token = field(&body, "refresh_token");
            return None;
        }
        Some(body)
    })
    .await;
    assert_eq!(ended["code"], "invalid_refresh_token");
}

async fn logout_scopes(store: Store) {
    let (up, gw) = gateway(store, "").await;
    let mobile = "+15550200301";
    let a = signed_up(&gw, mobile).await;
    let b = log_in(&gw, mobile).await;
    let c = log_in(&gw, mobile).await;
    let d = log_in(&gw, mobile).await;
    let token = |s: &Value| field(s, "token");
    let logout = async |token: &str, body: Option<Value>| logout(&gw, token, body).await;
    // local (an empty body, no Content-Type): only this session.
    let reply = logout(&token(&a), None).await;
    assert_eq!(reply, (200, json!({"message": "Logged out"})));
    assert_eq!(token_status(&gw, &token(&a)).await, revoked());
    for s in [&b, &c, &d] {
        assert_eq!(token_status(&gw, &token(s)).await, ok());
    }
    let (status, body) = refresh(&gw, &field(&a, "refresh_token")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_refresh_token"))
    );
    // others: every session but the caller's.
    assert_eq!(
        logout(&token(&b), Some(json!({"scope": "others"}))).await.0,
        200
    );
    assert_eq!(token_status(&gw, &token(&b)).await, ok());
    assert_eq!(token_status(&gw, &token(&c)).await, revoked());
    assert_eq!(token_status(&gw, &token(&d)).await, revoked());
    // global: every session, the caller's too.
    let e = log_in(&gw, mobile).await;
    assert_eq!(
        logout(&token(&b), Some(json!({"scope": "global"}))).await.0,
        200
    );
    assert_eq!(token_status(&gw, &token(&b)).await, revoked());
    assert_eq!(token_status(&gw, &token(&e)).await, revoked());
    // A bad scope, and a revoked caller.
    let f = log_in(&gw, mobile).await;
    let (status, body) = logout(&token(&f), Some(json!({"scope": "everything"}))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = logout(&token(&a), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_revoked"))
    );
    // Revoked tokens never reached the upstream: only the `ok` checks did.
    assert_eq!(up.seen(), 4);
}

async fn sessions_are_listed_and_deleted_one_by_one(store: Store) {
    let (_up, gw) = gateway(store, "").await;
    let mobile = "+15550200401";
    let a = signed_up(&gw, mobile).await;
    let b = log_in(&gw, mobile).await;
    let stranger = signed_up(&gw, "+15550200402").await;
    let list = async |token: &str| {
        json(
            client()
                .get(gw.url("/sessions"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    let (status, body) = list(&field(&b, "token")).await;
    assert_eq!(status, 200, "{body}");
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{body}");
    for s in sessions {
        let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["created_at", "current", "id", "last_used_at"]);
        assert!((s["created_at"].as_i64().unwrap() - now()).abs() < 60);
        assert_eq!(s["current"], s["id"] == b["session_id"], "{s}");
    }
    let delete = async |token: &str, id: &str| {
        json(
            client()
                .delete(gw.url(&format!("/sessions/{id}")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    // Not one of the caller's sessions: 404, and the stranger's stays.
    for id in [field(&stranger, "session_id"), "0".repeat(32)] {
        let (status, body) = delete(&field(&b, "token"), &id).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("session_not_found"))
        );
    }
    assert_eq!(token_status(&gw, &field(&stranger, "token")).await, ok());
    let reply = delete(&field(&b, "token"), &field(&a, "session_id")).await;
    assert_eq!(reply, (200, json!({"message": "Session revoked"})));
    assert_eq!(token_status(&gw, &field(&a, "token")).await, revoked());
    let (_, body) = list(&field(&b, "token")).await;
    assert_eq!(body["sessions"].as_array().unwrap().len(), 1);
    // Already revoked: no longer live, so 404.
    let (status, _) = delete(&field(&b, "token"), &field(&a, "session_id")).await;
    assert_eq!(status, 404);
}

async fn account_deletion_revokes_everything_and_frees_mobile_and_email(store: Store) {
    let (_up, gw) = gateway(store, "").await;
    let mobile = "+15550200501";
    let a = signed_up(&gw, mobile).await;
    let b = log_in(&gw, mobile).await;
    let (status, body) = json(
        client()
            .delete(gw.url("/user"))
            .bearer_auth(field(&a, "token"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body), (200, json!({"message": "Account deleted"})));
    for s in [&a, &b] {
        assert_eq!(token_status(&gw, &field(s, "token")).await, revoked());
        let (status, _) = refresh(&gw, &field(s, "refresh_token")).await;
        assert_eq!(status, 401);
    }
    let (status, body) = post(&gw, "/login", json!({ "mobile": mobile })).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("user_not_found"))
    );
    // The mobile and the email register again, as a new account.
    let again = signed_up(&gw, mobile).await;
    assert_eq!(token_status(&gw, &field(&again, "token")).await, ok());
}

async fn of_twenty_parallel_refreshes_exactly_one_wins(store: Store) {
    let (_up, gw) = gateway(store, "session: { reuse_grace: 1h }\n").await;
    let token = field(&signed_up(&gw, "+15550200601").await, "refresh_token");
    let gw = std::sync::Arc::new(gw);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (gw, barrier, token) = (gw.clone(), barrier.clone(), token.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                refresh(&gw, &token).await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            200 => wins += 1,
            _ => assert_eq!(
                (status, body["code"].as_str()),
                (401, Some("refresh_token_reused"))
            ),
        }
    }
    assert_eq!(wins, 1);
}

async fn revocations_survive_a_restart(store: Store) {
    let (_up, mut gw) = gateway(store, "").await;
    let a = signed_up(&gw, "+15550200701").await;
    let token = field(&a, "token");
    let reply = logout(&gw, &token, None).await;
    assert_eq!(reply.0, 200);
    gw.restart().await;
    assert_eq!(token_status(&gw, &token).await, revoked());
}

// ------------------------------------------------------- several instances

/// Two instances on one mysql_redis store; the second reaches Redis through
/// a relay the test can cut.
async fn pair(on_feed_loss: &str) -> Option<(Upstream, Gateway, Gateway, Relay)> {
    let store = Store::mysql_redis().await?;
    let Store::MysqlRedis {
        database,
        redis_url,
        prefix,
    } = store.shared()
    else {
        unreachable!()
    };
    let url = url::Url::parse(&redis_url).unwrap();
    let target = (url.host_str().unwrap(), url.port().unwrap_or(6379));
    let relay = Relay::start(
        std::net::ToSocketAddrs::to_socket_addrs(&target)
            .unwrap()
            .next()
            .unwrap(),
    );
    let relayed = Store::MysqlRedis {
        database,
        redis_url: format!("redis://{}/", relay.addr()),
        prefix,
    };
    let up = upstream("up");
    let spec = |store| {
        let mut spec = GatewaySpec::new(store)
            .route(route("api", "/api/", &[up.addr], "required"))
            .route(route("feed", "/feed/", &[up.addr], "optional"));
        spec.otp = "otp: { cooldown: 0s }\n".into();
        spec.extra = format!("session: {{ on_feed_loss: {on_feed_loss} }}\n");
        spec
    };
    let a = spec(store).start().await;
    let b = spec(relayed).start().await;
    wait_ready(&b).await;
    Some((up, a, b, relay))
}

async fn readyz(gw: &Gateway) -> (u16, Value) {
    json(client().get(gw.admin_url("/readyz")).send().await.unwrap()).await
}

/// Until `/readyz` says the revocation feed is lost.
async fn wait_feed_lost(gw: &Gateway) {
    poll_until(
        Duration::from_secs(10),
        "the lost feed to show",
        async || {
            let (status, body) = readyz(gw).await;
            let failing = body["failing"].as_array().cloned().unwrap_or_default();
            (status == 503).then(|| assert!(failing.contains(&json!("revocation")), "{body}"))
        },
    )
    .await;
}

async fn wait_ready(gw: &Gateway) {
    poll_until(
        Duration::from_secs(10),
        "/readyz to answer 200",
        async || (readyz(gw).await.0 == 200).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_reaches_the_other_instance_within_a_second() {
    let Some((_up, a, b, _relay)) = pair("open").await else {
        return;
    };
    let login = signed_up(&a, "+15550200801").await;
    let token = field(&login, "token");
    assert_eq!(token_status(&b, &token).await, ok());
    let reply = logout(&a, &token, None).await;
    assert_eq!(reply.0, 200);
    poll_until(
        Duration::from_secs(1),
        "the revocation to reach B",
        async || (token_status(&b, &token).await == revoked()).then_some(()),
    )
    .await;
    // A refresh race split over both instances: one winner.
    let refresh_token = field(&log_in(&a, "+15550200801").await, "refresh_token");
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let gw = if i % 2 == 0 { a.clone() } else { b.clone() };
            let token = refresh_token.clone();
            tokio::spawn(async move { refresh(&gw, &token).await.0 })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        if task.await.unwrap() == 200 {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_feed_in_open_mode_keeps_serving_and_resyncs() {
    let Some((_up, a, b, relay)) = pair("open").await else {
        return;
    };
    let first = field(&signed_up(&a, "+15550200901").await, "token");
    let second = field(&log_in(&a, "+15550200901").await, "token");
    relay.cut();
    wait_feed_lost(&b).await;
    // Open: tokens are accepted by what B knows.
    assert_eq!(token_status(&b, &second).await, ok());
    // A revocation while B cannot hear it...
    let reply = logout(&a, &first, None).await;
    assert_eq!(reply.0, 200);
    relay.restore();
    wait_ready(&b).await;
    // ...is found by the resync when the feed is back.
    assert_eq!(token_status(&b, &first).await, revoked());
    assert_eq!(token_status(&b, &second).await, ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_feed_in_closed_mode_refuses_tokens() {
    let Some((up, a, b, relay)) = pair("closed").await else {
        return;
    };
    let token = field(&signed_up(&a, "+15550201001").await, "token");
    assert_eq!(token_status(&b, &token).await, ok());
    relay.cut();
    wait_feed_lost(&b).await;
    let seen = up.seen();
    let (status, body) = json(
        client()
            .get(b.url("/api/x"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("revocation_unavailable"))
    );
    // Anonymous requests to an optional route still pass; nothing with a token did.
    let anonymous = client().get(b.url("/feed/x")).send().await.unwrap();
    assert_eq!(anonymous.status(), 200);
    assert_eq!(up.seen(), seen + 1);
    relay.restore();
    wait_ready(&b).await;
    assert_eq!(token_status(&b, &token).await, ok());
}
