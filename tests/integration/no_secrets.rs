//! SPEC section 8's last rule: no log line, audit or other, ever holds an
//! OTP, a token, a refresh token or a secret. Flows with wrong codes, limits
//! hit, bad and good tokens (proxied upstream) and refresh reuse run at the
//! most verbose log level, with the audit log on stderr, against Twilio's
//! API (a local fake, so its auth token is in play); then every secret that
//! existed is searched for in everything the process printed.

use crate::common::*;

use serde_json::{Value, json};

const TWILIO_TOKEN: &str = "twilio-auth-token-4f9a0c2e71b3";

on_both_backends!(nothing_secret_is_logged);

/// The 8-digit codes in the SMS bodies Twilio was asked to send.
fn sent_otps(api: &FakeSmsApi) -> Vec<String> {
    api.requests
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let body = String::from_utf8_lossy(&r.body).into_owned();
            let text: String = url::form_urlencoded::parse(body.as_bytes())
                .filter(|(k, _)| k == "Body")
                .map(|(_, v)| v.into_owned())
                .collect();
            text.split(|c: char| !c.is_ascii_digit())
                .filter(|run| run.len() == 8)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn nothing_secret_is_logged(store: Store) {
    let up = upstream("up");
    let api = FakeSmsApi::start();
    let mut spec = GatewaySpec::new(store).route(route("api", "/api/", &[up.addr], "required"));
    spec.sms = Some(format!(
        "sms: {{ provider: twilio, twilio: {{ account_sid: \"AC123\", auth_token: {TWILIO_TOKEN:?}, from: \"+15550009999\", api_base: {:?} }} }}\n",
        api.url()
    ));
    // Eight digits: a six-digit run turns up by chance in timestamps.
    spec.otp = "otp: { length: 8, cooldown: 0s, max_attempts: 2 }\n".into();
    spec.server = "audit_log: stderr".into();
    spec.extra = "limits: { sms_per_mobile: [\"4/1h\"], verify_per_ip: [\"30/1h\"] }\n".into();
    spec.log = Some("trace".into());
    let gw = spec.start().await;
    let mobile = "+15550410001";
    let otp_of = |n: usize| sent_otps(&api).get(n).cloned().unwrap();
    let wrong = |otp: &str| {
        if otp == "00000000" {
            "11111111"
        } else {
            "00000000"
        }
        .to_owned()
    };

    let mut tokens: Vec<String> = Vec::new();
    let register = json!({"mobile": mobile, "first_name": "No", "last_name": "Secret", "email": "no.secret@example.com"});
    assert_eq!(post(&gw, "/register", register).await.0, 201);
    let first = otp_of(0);
    let (status, _) = post(
        &gw,
        "/verify-otp",
        json!({"mobile": mobile, "otp": wrong(&first)}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        post(&gw, "/verify-otp", json!({"mobile": mobile, "otp": first}))
            .await
            .0,
        200
    );
    assert_eq!(post(&gw, "/login", json!({"mobile": mobile})).await.0, 200);
    let login_otp = otp_of(1);
    let (status, _) = post(
        &gw,
        "/login",
        json!({"mobile": mobile, "otp": wrong(&login_otp)}),
    )
    .await;
    assert_eq!(status, 401);
    let (status, login) = post(&gw, "/login", json!({"mobile": mobile, "otp": login_otp})).await;
    assert_eq!(status, 200, "{login}");
    let field = |v: &Value, k: &str| v[k].as_str().unwrap().to_owned();
    tokens.push(field(&login, "token"));
    tokens.push(field(&login, "refresh_token"));

    // A good token proxied upstream, a forged one and a bad one refused.
    let call = |token: String| client().get(gw.url("/api/data")).bearer_auth(token).send();
    assert_eq!(call(tokens[0].clone()).await.unwrap().status(), 200);
    let forged = tokens::sign(
        &tokens::claims("1", now(), now() + 600),
        "another-secret-0123456789abcdef0123",
        jsonwebtoken::Algorithm::HS256,
    );
    assert_eq!(call(forged.clone()).await.unwrap().status(), 401);
    tokens.push(forged);
    // Refresh, then replay the spent refresh token.
    let (status, renewed) = post(&gw, "/token/refresh", json!({"refresh_token": tokens[1]})).await;
    assert_eq!(status, 200, "{renewed}");
    tokens.push(field(&renewed, "token"));
    tokens.push(field(&renewed, "refresh_token"));
    let (status, _) = post(&gw, "/token/refresh", json!({"refresh_token": tokens[1]})).await;
    assert_eq!(status, 401);
    // Limits hit: the mobile's SMS budget (4) runs out.
    for _ in 0..3 {
        post(
            &gw,
            "/resend-otp",
            json!({"mobile": mobile, "purpose": "login"}),
        )
        .await;
    }
    let (status, body) = post(
        &gw,
        "/resend-otp",
        json!({"mobile": mobile, "purpose": "login"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("mobile_limit")),
        "{body}"
    );
    let logout = client()
        .post(gw.url("/logout"))
        .bearer_auth(&tokens[3])
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);

    let printed = format!("{}{}", gw.stdout(), gw.stderr());
    assert!(
        printed.contains("\"event\":\"login\"") && printed.contains("INFO"),
        "the audit and the log went to the output:\n{printed}"
    );
    let otps = sent_otps(&api);
    assert!(otps.len() >= 4, "{otps:?}");
    let secrets = otps
        .iter()
        .map(String::as_str)
        .chain(tokens.iter().map(String::as_str))
        .chain([SECRET, TWILIO_TOKEN]);
    for secret in secrets {
        // A token's signature alone would give it away too.
        let tell = secret.rsplit('.').next().unwrap();
        assert!(
            !printed.contains(tell),
            "{tell:?} (of a secret) was printed:\n{printed}"
        );
    }
}
