//! The review's bypasses, each tried as an attacker would, through the real
//! binary: path confusion against a real nginx that normalises paths,
//! trailing-dot hosts, identity-header spellings, ambiguous credentials,
//! request ids, slow clients, and query strings in logs.

use std::time::Duration;

use crate::common::nginx::Nginx;
use crate::common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// nginx answers with the location it matched (`secret` for /api/, `public`
/// otherwise), the path it resolved (`$uri`) and the target it received.
const NGINX_SERVERS: &str = r#"
  server {
    listen LISTEN;
    server_name _;
    location /api/ { return 200 "secret|$uri|$request_uri"; }
    location / { return 200 "public|$uri|$request_uri"; }
  }
  server {
    listen LISTEN;
    server_name admin.example.com;
    location / { return 200 "admin|$uri|$request_uri"; }
  }
"#;

/// The gateway in front of nginx: /api/ requires a token, / is public, and
/// every path of admin.example.com requires one.
async fn gateway_before_nginx() -> (Nginx, Gateway) {
    let nginx = Nginx::start(NGINX_SERVERS).await;
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("api", "/api/", &[nginx.addr], "required"))
        .route(route("public", "/", &[nginx.addr], "public"))
        .route(route("admin", "/", &[nginx.addr], "required").with("host: admin.example.com"))
        .start()
        .await;
    (nginx, gw)
}

/// Paths that reach nginx's /api/ location once nginx has normalised them,
/// from the Envoy, nginx, Spring and Node path-confusion write-ups.
const NORMALISED_TO_API: &[&str] = &[
    "/public/../api/secret",
    "/public/%2e%2e/api/secret",
    "/public/%2E%2e/api/secret",
    "/public/.%2e/api/secret",
    "/public/./../api/secret",
    "/public/%2e/%2e%2e/api/secret",
    "//api/secret",
    "///api//secret",
    "/%61pi/secret",
    "/%61%70%69/secret",
    "/./api/secret",
    "/api/./secret",
    "/api/x/../secret",
];

/// Paths that must be refused outright (400 invalid_path).
const REFUSED: &[&str] = &[
    "/api%2fsecret",
    "/api%2Fsecret",
    "/public/..%2fapi/secret",
    "/public/..%2Fapi/secret",
    "/public/%2e%2e%2fapi/secret",
    "/public/..%5capi/secret",
    "/public/..%5Capi/secret",
    "/public/..\\api/secret",
    "/api;/secret",
    "/public;/../api/secret",
    "/api/secret;jsessionid=1",
    "/public/%00/../api/secret",
    "/public/%0a/api/secret",
    "/..",
    "/../api/secret",
    "/public/../../api/secret",
    "/public/%2e%2e/%2e%2e/api/secret",
    "/api/%zz",
    "/api/%2",
];

#[tokio::test]
async fn no_path_trick_reaches_a_required_route_without_a_token() {
    let (_nginx, gw) = gateway_before_nginx().await;
    for path in NORMALISED_TO_API {
        let answer = raw::get(gw.addr, path, &[]).await;
        assert!(
            !answer.body.starts_with("secret"),
            "{path} reached /api/: {answer:?}"
        );
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (401, "unauthorized"),
            "{path}"
        );
    }
    for path in REFUSED {
        let answer = raw::get(gw.addr, path, &[]).await;
        assert!(
            !answer.body.starts_with("secret"),
            "{path} reached /api/: {answer:?}"
        );
        assert_eq!(answer.status, 400, "{path}: {answer:?}");
        // Pingora itself may refuse a few raw bytes before the gateway sees them.
        assert!(
            matches!(answer.code().as_str(), "invalid_path" | ""),
            "{path}: {answer:?}"
        );
    }
    // The public route still works, for normal paths and normalisable ones.
    let answer = raw::get(gw.addr, "/public/./docs//a/../b", &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "public|/public/docs/b|/public/docs/b");
}

#[tokio::test]
async fn the_upstream_receives_exactly_the_normalised_path_and_the_query_unchanged() {
    let (_nginx, gw) = gateway_before_nginx().await;
    let token = tokens::valid("7");
    let auth = format!("Bearer {token}");
    for path in NORMALISED_TO_API {
        let answer = raw::get(gw.addr, path, &[("Authorization", &auth)]).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(answer.body, "secret|/api/secret|/api/secret", "{path}");
    }
    let answer = raw::get(
        gw.addr,
        "/public/../api/secret?next=/a/../b&x=%2F%2e&y",
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(
        answer.body,
        "secret|/api/secret|/api/secret?next=/a/../b&x=%2F%2e&y"
    );
    // Other escapes stay encoded, with upper-case hex.
    let answer = raw::get(gw.addr, "/public/a%20b%3f%c3%a9", &[]).await;
    assert_eq!(
        answer.body,
        "public|/public/a b?\u{e9}|/public/a%20b%3F%C3%A9"
    );
}

#[tokio::test]
async fn trailing_dot_and_cased_hosts_get_their_host_route() {
    let (_nginx, gw) = gateway_before_nginx().await;
    for host in [
        "admin.example.com",
        "admin.example.com.",
        "Admin.Example.COM.",
        "admin.example.com.:8080",
    ] {
        let answer = raw::get(gw.addr, "/x", &[("Host", host)]).await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (401, "unauthorized"),
            "{host}"
        );
    }
    // An absolute-form target must agree with Host; then it is an ordinary request.
    let answer = raw::get(
        gw.addr,
        "http://admin.example.com./x",
        &[("Host", "admin.example.com.")],
    )
    .await;
    assert_eq!(answer.status, 401, "{answer:?}");
    let answer = raw::get(
        gw.addr,
        "http://admin.example.com./x",
        &[("Host", "public.example.com")],
    )
    .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    let token = format!("Bearer {}", tokens::valid("7"));
    let answer = raw::get(
        gw.addr,
        "/x/../y",
        &[("Host", "Admin.example.com."), ("Authorization", &token)],
    )
    .await;
    assert_eq!(answer.body, "admin|/y|/y", "{answer:?}");
    // Two Host headers: the router and the upstream could read different ones.
    let answer = raw::get(
        gw.addr,
        "/x",
        &[
            ("Host", "public.example.com"),
            ("Host", "admin.example.com"),
        ],
    )
    .await;
    assert_eq!(answer.status, 400, "{answer:?}");
}

fn identity_headers_seen(report: &Value) -> Vec<(String, Vec<Value>)> {
    let mut seen: Vec<(String, Vec<Value>)> = report["headers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.replace('_', "-").starts_with("x-user-"))
        .map(|(name, values)| (name.clone(), values.as_array().unwrap().clone()))
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    seen
}

#[tokio::test]
async fn identity_headers_are_scrubbed_in_every_spelling() {
    let up = upstream("up");
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("api", "/api/", &[up.addr], "required"))
        .route(route("public", "/", &[up.addr], "public"))
        .start()
        .await;
    let spoofed = [
        ("X_User_Id", "999"),
        ("x_user_id", "998"),
        ("X-USER-ID", "997"),
        ("X-User_Mobile", "+10000000000"),
        ("x_user_mobile", "+10000000001"),
    ];
    let answer = raw::get(gw.addr, "/public/x", &spoofed).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let report: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(identity_headers_seen(&report), vec![], "{report}");

    let token = format!("Bearer {}", tokens::valid("7"));
    let mut headers = spoofed.to_vec();
    headers.push(("Authorization", &token));
    let answer = raw::get(gw.addr, "/api/x", &headers).await;
    let report: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        identity_headers_seen(&report),
        vec![
            ("x-user-id".to_owned(), vec![Value::from("7")]),
            (
                "x-user-mobile".to_owned(),
                vec![Value::from("+15550000000")]
            ),
        ],
        "{report}"
    );
}

#[tokio::test]
async fn ambiguous_credentials_are_refused_and_never_forwarded() {
    let up = upstream("up");
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("api", "/api/", &[up.addr], "required"))
        .route(route("feed", "/feed/", &[up.addr], "optional"))
        .start()
        .await;
    let token = tokens::valid("7");
    let bearer = format!("Bearer {token}");
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![
            ("Authorization", bearer.clone()),
            ("Authorization", "Bearer garbage".into()),
        ],
        vec![
            ("Authorization", "Bearer garbage".into()),
            ("Authorization", bearer.clone()),
        ],
        vec![
            ("Authorization", "Basic dXNlcjpwYXNz".into()),
            ("Authorization", bearer.clone()),
        ],
        vec![
            ("Authorization", bearer.clone()),
            ("authorization", bearer.clone()),
        ],
        vec![("Authorization", format!("{bearer}, Bearer garbage"))],
        vec![("Authorization", format!("Basic dXNlcjpwYXNz, {bearer}"))],
        vec![("Authorization", format!("{bearer} garbage"))],
    ];
    for prefix in ["/api/x", "/feed/x", "/user"] {
        for case in &cases {
            let headers: Vec<(&str, &str)> = case.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let answer = raw::get(gw.addr, prefix, &headers).await;
            assert_eq!(
                (answer.status, answer.code().as_str()),
                (401, "invalid_token"),
                "{prefix} {case:?}"
            );
            assert!(
                answer
                    .header("www-authenticate")
                    .is_some_and(|v| v.contains("error=\"invalid_token\"")),
                "{answer:?}"
            );
        }
    }
    assert_eq!(up.seen(), 0, "an ambiguous credential reached the upstream");
    // Spaces or tabs, any number, may separate the scheme and the token.
    for value in [format!("Bearer\t{token}"), format!("bearer \t  {token}")] {
        let answer = raw::get(gw.addr, "/api/x", &[("Authorization", &value)]).await;
        assert_eq!(answer.status, 200, "{value:?}: {answer:?}");
    }
}

#[tokio::test]
async fn only_a_sane_client_request_id_is_kept() {
    let up = upstream("up");
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("public", "/", &[up.addr], "public"))
        .start()
        .await;
    let seen_id = |answer: &raw::Response| -> Vec<String> {
        let report: Value = serde_json::from_str(&answer.body)
            .unwrap_or_else(|_| panic!("not the upstream's report: {answer:?}"));
        report["headers"]["x-request-id"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let longest = "r".repeat(128);
    let answer = raw::get(gw.addr, "/x", &[("X-Request-Id", &longest)]).await;
    assert_eq!(seen_id(&answer), vec![longest.clone()]);
    for bad in [
        vec!["r".repeat(129)],
        vec!["has space".to_owned()],
        vec!["caf\u{e9}".to_owned()],
        vec!["one".to_owned(), "two".to_owned()],
    ] {
        let headers: Vec<(&str, &str)> = bad.iter().map(|v| ("X-Request-Id", v.as_str())).collect();
        let answer = raw::get(gw.addr, "/x", &headers).await;
        let ids = seen_id(&answer);
        assert_eq!(ids.len(), 1, "{bad:?}: {ids:?}");
        assert!(!bad.contains(&ids[0]), "{bad:?} was kept");
    }
}

/// Writes `chunks` one by one, `every` apart, until the server answers or
/// closes; returns what it answered (empty if it closed without a word) and
/// how many chunks went out.
async fn drip(
    stream: &mut tokio::net::TcpStream,
    chunks: &[&[u8]],
    every: Duration,
) -> (Vec<u8>, usize) {
    let mut answer = Vec::new();
    for (sent, chunk) in chunks.iter().enumerate() {
        if stream.write_all(chunk).await.is_err() {
            return (answer, sent);
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(every, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (answer, sent + 1),
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                // Read the rest of the answer until close.
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
                        .await;
                return (answer, sent + 1);
            }
            Err(_) => {}
        }
    }
    (answer, chunks.len())
}

async fn slow_client_gateway() -> (Upstream, Gateway) {
    let up = upstream("up");
    let mut spec =
        GatewaySpec::new(Store::Embedded).route(route("public", "/", &[up.addr], "public"));
    spec.server = "header_timeout: 1s, body_timeout: 1s".into();
    (up, spec.start().await)
}

#[tokio::test]
async fn headers_dripped_slowly_are_cut_off_with_408() {
    let (up, gw) = slow_client_gateway().await;
    // 40 header lines, 250 ms apart: each read is quick, the whole takes 10 s.
    let mut chunks: Vec<&[u8]> = vec![b"GET /x HTTP/1.1\r\nHost: a\r\n"];
    chunks.extend(std::iter::repeat_n(&b"X-Drip: 1\r\n"[..], 40));
    chunks.push(b"\r\n");
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (answer, sent) = drip(&mut stream, &chunks, Duration::from_millis(250)).await;
    let answer = raw::parse(&answer).unwrap_or_else(|| panic!("no answer after {sent} chunks"));
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (408, "request_timeout")
    );
    assert!(sent < chunks.len(), "the headers were all accepted");
    assert_eq!(up.seen(), 0);

    // A connection that sends nothing at all is closed the same way.
    let mut idle = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut answer))
        .await
        .expect("an idle connection was kept open")
        .unwrap();
    assert_eq!(raw::parse(&answer).unwrap().status, 408);
}

#[tokio::test]
async fn an_auth_body_dripped_slowly_is_cut_off_with_408() {
    let (_up, gw) = slow_client_gateway().await;
    let head = b"POST /register HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n";
    let mut chunks: Vec<&[u8]> = vec![head];
    chunks.extend(std::iter::repeat_n(&b"     "[..], 40));
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (answer, sent) = drip(&mut stream, &chunks, Duration::from_millis(250)).await;
    let answer = raw::parse(&answer).unwrap_or_else(|| panic!("no answer after {sent} chunks"));
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (408, "request_timeout"),
        "{answer:?}"
    );
    assert!(sent < chunks.len());
}

#[tokio::test]
async fn a_keep_alive_connection_may_idle_between_requests() {
    let (up, gw) = slow_client_gateway().await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let request = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    for round in 0..2 {
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 8192];
        while raw::parse(&answer).is_none_or(|r| {
            r.header("content-length")
                .and_then(|n| n.parse::<usize>().ok())
                != Some(r.body.len())
        }) {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .expect("no answer")
                .unwrap();
            assert!(n > 0, "round {round}: closed");
            answer.extend_from_slice(&buf[..n]);
        }
        assert_eq!(raw::parse(&answer).unwrap().status, 200);
        // Idle for longer than header_timeout (a connection opened now and
        // left idle is cut first): idling between requests is the keep-alive
        // timeout's business.
        cut_for_idling(tokio::net::TcpStream::connect(gw.addr).await.unwrap()).await;
    }
    assert_eq!(up.seen(), 2);
}

#[tokio::test]
async fn no_log_line_holds_a_query_string() {
    let dead = free_addr();
    let up = upstream("up");
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("dead", "/dead/", &[dead], "public"))
        .route(route("public", "/", &[up.addr], "public"))
        .start()
        .await;
    let answer = raw::get(gw.addr, "/dead/x?token=QUERYSECRET1", &[]).await;
    assert_eq!(answer.status, 502);
    let answer = raw::get(gw.addr, "/ok?token=QUERYSECRET2", &[]).await;
    assert_eq!(answer.status, 200);
    let answer = raw::get(gw.addr, "/api%2f?token=QUERYSECRET3", &[]).await;
    assert_eq!(answer.status, 400);
    let logs = gw.stderr() + &gw.stdout();
    assert!(logs.contains("/dead/x"), "the failure is logged: {logs}");
    assert!(!logs.contains("QUERYSECRET"), "{logs}");
}
