//! SPEC section 5 through the real binary: routing, token enforcement,
//! identity and forwarding headers, streaming bodies, load balancing, health
//! checks and upstream failures.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().get(gw.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The upstream's report of what reached it.
async fn seen_by_upstream(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-upstream"));
    response.json().await.unwrap()
}

fn header_values(report: &Value, name: &str) -> Vec<String> {
    report["headers"][name]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn single_route(auth: &'static str) -> (Upstream, Gateway) {
    let up = upstream("up");
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("r", "/", &[up.addr], auth))
        .start()
        .await;
    (up, gw)
}

#[tokio::test]
async fn an_unrouted_path_is_404_no_route() {
    let up = upstream("up");
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("api", "/api/", &[up.addr], "public"))
        .start()
        .await;
    let (status, body) = json(get(&gw, "/other", &[]).await).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "no_route");
    assert!(body["error"].is_string());
    // The admin paths live on the admin listener only.
    assert_eq!(get(&gw, "/metrics", &[]).await.status(), 404);
    let health = client().get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(up.seen(), 0);
}

#[tokio::test]
async fn the_longest_prefix_and_a_named_host_win() {
    let (root, api, v2, admin) = (
        upstream("root"),
        upstream("api"),
        upstream("v2"),
        upstream("admin"),
    );
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("root", "/", &[root.addr], "public"))
        .route(route("api", "/api/", &[api.addr], "public"))
        .route(route("v2", "/api/v2/", &[v2.addr], "public"))
        .route(route("admin", "/api/", &[admin.addr], "public").with("host: admin.example.com"))
        .start()
        .await;
    let cases = [
        ("/api/v2/users", None, "v2"),
        ("/api/v1/users", None, "api"),
        ("/api", None, "root"),
        ("/elsewhere", None, "root"),
        ("/api/users", Some("Admin.Example.com:8080"), "admin"),
        ("/api/v2/users", Some("admin.example.com"), "v2"),
        ("/api/users", Some("other.example.com"), "api"),
    ];
    for (path, host, expected) in cases {
        let mut request = client().get(gw.url(path));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.headers()["x-upstream"],
            expected,
            "{path} with host {host:?}"
        );
    }
}

#[tokio::test]
async fn strip_prefix_rewrites_only_the_path() {
    let up = upstream("up");
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("svc", "/svc/", &[up.addr], "public").with("strip_prefix: true"))
        .route(route("keep", "/keep/", &[up.addr], "public"))
        .start()
        .await;
    let report = seen_by_upstream(get(&gw, "/svc/items/7?x=1&y=2", &[]).await).await;
    assert_eq!(report["path"], "/items/7");
    assert_eq!(report["query"], "x=1&y=2");
    let report = seen_by_upstream(get(&gw, "/keep/items", &[]).await).await;
    assert_eq!(report["path"], "/keep/items");
}

#[tokio::test]
async fn a_required_route_without_a_token_is_401_with_a_challenge() {
    let (up, gw) = single_route("required").await;
    for headers in [vec![], vec![("authorization", "Basic dXNlcjpwYXNz")]] {
        let response = get(&gw, "/private", &headers).await;
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer realm="otpgate""#
        );
        assert!(!response.headers().contains_key("x-upstream"));
        let (_, body) = json(response).await;
        assert_eq!(body["code"], "unauthorized");
    }
    assert_eq!(up.seen(), 0);
}

/// Every way a token can be wrong; none may reach the upstream.
fn bad_tokens() -> Vec<(&'static str, String)> {
    let t = now();
    let good = tokens::valid("42");
    let (header, rest) = good.split_once('.').unwrap();
    let (payload, _signature) = rest.split_once('.').unwrap();
    let none_header = tokens::b64(br#"{"alg":"none","typ":"JWT"}"#);
    let mut tampered_claims = tokens::claims("42", t, t + 600);
    tampered_claims["sub"] = json!("1");
    let tampered_payload = tokens::b64(tampered_claims.to_string().as_bytes());
    let with = |f: &dyn Fn(&mut Value)| {
        let mut claims = tokens::claims("42", t, t + 600);
        f(&mut claims);
        tokens::sign(&claims, SECRET, Algorithm::HS256)
    };
    vec![
        ("alg none", format!("{none_header}.{payload}.")),
        ("alg none with signature", format!("{none_header}.{rest}")),
        (
            "another key",
            tokens::sign(
                &tokens::claims("42", t, t + 600),
                "another-secret-0123456789abcdef0123",
                Algorithm::HS256,
            ),
        ),
        (
            "expired",
            with(&|c| {
                c["exp"] = json!(t - 120);
                c["iat"] = json!(t - 720);
                c["nbf"] = json!(t - 720);
            }),
        ),
        ("not yet valid", with(&|c| c["nbf"] = json!(t + 120))),
        ("wrong iss", with(&|c| c["iss"] = json!("someone-else"))),
        ("wrong aud", with(&|c| c["aud"] = json!("another-service"))),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "tampered payload",
            format!(
                "{header}.{tampered_payload}.{}",
                good.rsplit('.').next().unwrap()
            ),
        ),
        ("stripped signature", format!("{header}.{payload}.")),
        ("no signature part", format!("{header}.{payload}")),
        (
            "HS512 header",
            tokens::sign(&tokens::claims("42", t, t + 600), SECRET, Algorithm::HS512),
        ),
        ("garbage", "not-a-jwt".to_owned()),
        ("empty", String::new()),
    ]
}

#[tokio::test]
async fn bad_tokens_are_401_invalid_token_and_never_forwarded() {
    let up = upstream("up");
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("required", "/required/", &[up.addr], "required"))
        .route(route("optional", "/optional/", &[up.addr], "optional"))
        .start()
        .await;
    for (case, token) in bad_tokens() {
        for path in ["/required/x", "/optional/x"] {
            let response = get(&gw, path, &[("authorization", &bearer(&token))]).await;
            assert_eq!(response.status(), 401, "{case} on {path}");
            let challenge = response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(challenge.starts_with("Bearer"), "{case}: {challenge}");
            assert!(
                challenge.contains(r#"error="invalid_token""#),
                "{case}: {challenge}"
            );
            let (_, body) = json(response).await;
            assert_eq!(body["code"], "invalid_token", "{case}");
        }
    }
    assert_eq!(up.seen(), 0, "a bad token reached the upstream");
    // The same gateway lets a good token through, in any scheme letter case.
    let response = get(
        &gw,
        "/required/x",
        &[("authorization", &format!("bEaReR {}", tokens::valid("42")))],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(up.seen(), 1);
}

#[tokio::test]
async fn identity_headers_come_only_from_verified_claims() {
    let up = upstream("up");
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("required", "/required/", &[up.addr], "required"))
        .route(route("optional", "/optional/", &[up.addr], "optional"))
        .route(route("public", "/public/", &[up.addr], "public"))
        .start()
        .await;
    let token = tokens::valid("42");
    let auth = bearer(&token);
    let spoofed = |request: reqwest::RequestBuilder| {
        request
            .header("X-User-Id", "999")
            .header("x-user-id", "998")
            .header("X-USER-MOBILE", "+19999999999")
            .header("x-user-mobile", "+18888888888")
    };
    // (path, Authorization, the (user id, mobile) the upstream must see)
    type Case<'a> = (&'a str, Option<&'a str>, Option<(&'a str, &'a str)>);
    let cases: [Case; 5] = [
        ("/public/a", None, None),
        ("/public/a", Some(auth.as_str()), None),
        ("/optional/a", None, None),
        (
            "/optional/a",
            Some(auth.as_str()),
            Some(("42", "+15550000000")),
        ),
        (
            "/required/a",
            Some(auth.as_str()),
            Some(("42", "+15550000000")),
        ),
    ];
    for (path, authorization, expected) in cases {
        let mut request = spoofed(client().get(gw.url(path)));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let report = seen_by_upstream(request.send().await.unwrap()).await;
        let ids = header_values(&report, "x-user-id");
        let mobiles = header_values(&report, "x-user-mobile");
        match expected {
            None => assert!(
                ids.is_empty() && mobiles.is_empty(),
                "{path}: {ids:?} {mobiles:?}"
            ),
            Some((id, mobile)) => {
                assert_eq!(ids, vec![id.to_owned()], "{path}");
                assert_eq!(mobiles, vec![mobile.to_owned()], "{path}");
            }
        }
    }
}

#[tokio::test]
async fn request_id_and_forwarded_for_are_set() {
    let (_up, gw) = single_route("public").await;
    let report = seen_by_upstream(get(&gw, "/a", &[]).await).await;
    let generated = header_values(&report, "x-request-id");
    assert_eq!(generated.len(), 1);
    assert!(generated[0].len() >= 8);
    assert_eq!(header_values(&report, "x-forwarded-for"), vec!["127.0.0.1"]);
    let report = seen_by_upstream(get(&gw, "/a", &[]).await).await;
    assert_ne!(
        header_values(&report, "x-request-id"),
        generated,
        "ids are unique"
    );

    let report = seen_by_upstream(
        get(
            &gw,
            "/a",
            &[
                ("x-request-id", "client-id-1"),
                ("x-forwarded-for", "203.0.113.9"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(header_values(&report, "x-request-id"), vec!["client-id-1"]);
    assert_eq!(
        header_values(&report, "x-forwarded-for"),
        vec!["203.0.113.9, 127.0.0.1"]
    );
}

#[tokio::test]
async fn method_path_query_headers_and_body_reach_the_upstream_unchanged() {
    let (_up, gw) = single_route("public").await;
    let body = b"{\"hello\": \"world\"}".to_vec();
    let response = client()
        .put(gw.url("/things/1?a=1&b=%20x"))
        .header("x-custom", "value-1")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let report = seen_by_upstream(response).await;
    assert_eq!(report["method"], "PUT");
    assert_eq!(report["path"], "/things/1");
    assert_eq!(report["query"], "a=1&b=%20x");
    assert_eq!(header_values(&report, "x-custom"), vec!["value-1"]);
    assert_eq!(report["body_bytes"], body.len());
    use sha2::Digest;
    assert_eq!(
        report["body_sha256"],
        format!("{:x}", sha2::Sha256::digest(&body))
    );
}

#[tokio::test]
async fn the_upstream_status_headers_and_body_reach_the_client_unchanged() {
    let (_up, gw) = single_route("public").await;
    for code in [201u16, 404, 418, 500, 503] {
        let response = get(&gw, &format!("/x/status?code={code}"), &[]).await;
        assert_eq!(response.status().as_u16(), code);
        assert_eq!(response.headers()["x-custom"], "kept");
        assert_eq!(response.text().await.unwrap(), format!("status {code}\n"));
    }
}

#[tokio::test]
async fn five_mebibytes_pass_intact_both_ways() {
    let (_up, gw) = single_route("required").await;
    let auth = bearer(&tokens::valid("7"));
    const SIZE: usize = 5 * 1024 * 1024;
    let sent: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 256) as u8).collect();

    // Upload with a length, echoed back.
    let response = client()
        .post(gw.url("/files/echo"))
        .header("authorization", &auth)
        .body(sent.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed = response.bytes().await.unwrap();
    assert_eq!(echoed.len(), SIZE);
    assert!(echoed[..] == sent[..], "echoed body differs");

    // Upload streamed in chunks (no length), echoed back.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        sent.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    let response = client()
        .post(gw.url("/files/echo"))
        .header("authorization", &auth)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.unwrap()[..] == sent[..],
        "streamed body differs"
    );

    // Download of a streamed response.
    let response = get(
        &gw,
        &format!("/files/stream?bytes={SIZE}"),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(response.status(), 200);
    let got = response.bytes().await.unwrap();
    assert_eq!(got.len(), SIZE);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, b)| *b == echo::pattern_byte(i))
    );
}

#[tokio::test]
async fn upstreams_take_turns() {
    let (a, b) = (upstream("a"), upstream("b"));
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("lb", "/", &[a.addr, b.addr], "public"))
        .start()
        .await;
    let mut names = Vec::new();
    for _ in 0..10 {
        let response = get(&gw, "/x", &[]).await;
        names.push(
            response.headers()["x-upstream"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(names.iter().filter(|n| *n == "a").count(), 5, "{names:?}");
    assert!(
        names.windows(2).all(|w| w[0] != w[1]),
        "round robin alternates: {names:?}"
    );
}

#[tokio::test]
async fn traffic_survives_the_death_of_one_upstream() {
    let (a, mut b) = (upstream("a"), upstream("b"));
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("lb", "/", &[a.addr, b.addr], "public"))
        .start()
        .await;
    assert_eq!(get(&gw, "/x", &[]).await.status(), 200);
    b.kill();
    // Before and after the health check notices, every request succeeds on "a".
    for _ in 0..20 {
        let response = get(&gw, "/x", &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-upstream"], "a");
    }
    // "b" comes back on the same address and gets traffic again.
    let b = upstream_at(b.addr, "b");
    poll_until(Duration::from_secs(10), "b back in rotation", async || {
        let response = get(&gw, "/x", &[]).await;
        assert_eq!(response.status(), 200);
        (response.headers()["x-upstream"] == "b").then_some(())
    })
    .await;
    drop(b);
}

#[tokio::test]
async fn all_upstreams_dead_is_502_upstream_unavailable() {
    let (mut a, mut b) = (upstream("a"), upstream("b"));
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("lb", "/", &[a.addr, b.addr], "public"))
        .start()
        .await;
    a.kill();
    b.kill();
    // Both at once before health checks notice (connect refused), and after.
    for _ in 0..6 {
        let (status, body) = json(get(&gw, "/x", &[]).await).await;
        assert_eq!(status, 502);
        assert_eq!(body["code"], "upstream_unavailable");
    }
}

#[tokio::test]
async fn a_slow_upstream_is_504_upstream_timeout() {
    let (_up, gw) = single_route("public").await;
    // The harness sets read_timeout: 2s.
    let (status, body) = json(get(&gw, "/x/slow?ms=5000", &[]).await).await;
    assert_eq!(status, 504);
    assert_eq!(body["code"], "upstream_timeout");
}

/// Sends raw HTTP/1.1 on one connection and reads one response head and body.
fn exchange(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "connection closed; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn a_401_keeps_the_connection_alive() {
    let (up, gw) = single_route("required").await;
    let addr = gw.addr;
    let token = tokens::valid("5");
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let first = exchange(
            &mut stream,
            "POST /x HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\": true}",
        );
        assert!(first.starts_with("HTTP/1.1 401"), "{first}");
        assert!(!first.to_ascii_lowercase().contains("connection: close"), "{first}");
        let second = exchange(
            &mut stream,
            &format!("GET /y HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n"),
        );
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    })
    .await
    .unwrap();
    assert_eq!(up.seen(), 1);
}
