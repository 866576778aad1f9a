//! SPEC section 12, the listener side: HTTPS with TLS 1.2 and 1.3 only,
//! HTTP/2 by ALPN with the gateway's rules holding over it, and the
//! certificate reloaded on SIGHUP for new handshakes while open connections
//! keep working.

use crate::common::*;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// A gateway serving HTTPS with the certificate in `certs` (cert.pem, key.pem).
async fn https_gateway(certs: &Path) -> (Upstream, Gateway) {
    let up = upstream("up");
    let mut spec = GatewaySpec::new(Store::Embedded)
        .route(route("api", "/api/", &[up.addr], "required"))
        .route(route("public", "/", &[up.addr], "public"));
    spec.server = format!(
        "tls: {{ cert_file: {:?}, key_file: {:?} }}",
        certs.join("cert.pem").display().to_string(),
        certs.join("key.pem").display().to_string()
    );
    (up, spec.start().await)
}

/// A client that trusts exactly the certificate at `cert`.
fn trusting(cert: &Path) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(&std::fs::read(cert).unwrap()).unwrap();
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([root])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn https(gw: &Gateway, path: &str) -> String {
    format!("https://localhost:{}{path}", gw.addr.port())
}

async fn call(
    client: &reqwest::Client,
    request: reqwest::RequestBuilder,
) -> (u16, reqwest::Version, Value) {
    let response = client.execute(request.build().unwrap()).await.unwrap();
    let (status, version) = (response.status().as_u16(), response.version());
    (
        status,
        version,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_negotiated_and_the_rules_hold_over_it() {
    let certs = tempfile::tempdir().unwrap();
    tls::self_signed(certs.path());
    let (up, gw) = https_gateway(certs.path()).await;
    let client = trusting(&certs.path().join("cert.pem"));
    let post = |path: &str, body: Value| client.post(https(&gw, path)).json(&body);
    let mobile = "+15550400001";
    let (status, version, body) = call(
        &client,
        post("/register", json!({"mobile": mobile, "first_name": "H", "last_name": "Two", "email": "h2@example.com"})),
    )
    .await;
    assert_eq!((status, version), (201, reqwest::Version::HTTP_2), "{body}");
    let otp = gw.otp(mobile, "register");
    assert_eq!(
        call(
            &client,
            post("/verify-otp", json!({"mobile": mobile, "otp": otp}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&client, post("/login", json!({"mobile": mobile})))
            .await
            .0,
        200
    );
    let otp = gw.otp(mobile, "login");
    let (status, _, login) = call(
        &client,
        post("/login", json!({"mobile": mobile, "otp": otp})),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let token = login["token"].as_str().unwrap();

    // A protected route: refused without a token, identity headers set with one.
    let (status, _, body) = call(&client, client.get(https(&gw, "/api/x"))).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let (status, version, seen) = call(
        &client,
        client
            .get(https(&gw, "/api/x"))
            .bearer_auth(token)
            .header("x-user-id", "999"),
    )
    .await;
    assert_eq!((status, version), (200, reqwest::Version::HTTP_2), "{seen}");
    // The first account of a fresh database: user 1; the client's copy is gone.
    assert_eq!(seen["headers"]["x-user-id"], json!(["1"]));
    // Path normalisation and refusals are the same over HTTP/2.
    let (status, _, body) = call(&client, client.get(https(&gw, "/api%2fx"))).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_path")));
    let (status, _, body) = call(&client, client.get(https(&gw, "/public/../api/x"))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    // Refresh and logout over HTTP/2 too.
    let (status, _, _) = call(
        &client,
        post(
            "/token/refresh",
            json!({"refresh_token": login["refresh_token"]}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = call(
        &client,
        client.post(https(&gw, "/logout")).bearer_auth(token),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, body) =
        call(&client, client.get(https(&gw, "/api/x")).bearer_auth(token)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_revoked"))
    );
    assert_eq!(up.seen(), 1);
    // HTTP/1.1 is offered too.
    let h1 = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(
            &std::fs::read(certs.path().join("cert.pem")).unwrap(),
        )
        .unwrap()])
        .http1_only()
        .build()
        .unwrap();
    let response = h1.get(https(&gw, "/public/x")).send().await.unwrap();
    assert_eq!(
        (response.status().as_u16(), response.version()),
        (200, reqwest::Version::HTTP_11)
    );
}

/// Runs `openssl s_client` against the gateway with `args`; whether the
/// handshake completed.
fn handshake(gw: &Gateway, args: &[&str]) -> bool {
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", gw.addr.port()),
        ])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is needed for this test; .ci/run installs it");
    String::from_utf8_lossy(&out.stdout).contains("BEGIN CERTIFICATE") && out.status.success()
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_spoken() {
    let certs = tempfile::tempdir().unwrap();
    tls::self_signed(certs.path());
    let (_up, gw) = https_gateway(certs.path()).await;
    assert!(handshake(&gw, &["-tls1_3"]));
    assert!(handshake(&gw, &["-tls1_2"]));
    // The client is told to allow the old versions, so a refusal is the server's.
    for old in ["-tls1_1", "-tls1"] {
        assert!(
            !handshake(&gw, &[old, "-cipher", "DEFAULT:@SECLEVEL=0"]),
            "{old} accepted"
        );
    }
}

#[tokio::test]
async fn sighup_reloads_the_certificate_for_new_connections_only() {
    let certs = tempfile::tempdir().unwrap();
    tls::self_signed(certs.path());
    let first = certs.path().join("first.pem");
    std::fs::copy(certs.path().join("cert.pem"), &first).unwrap();
    let (_up, gw) = https_gateway(certs.path()).await;
    let old_client = trusting(&first);
    let response = old_client
        .get(https(&gw, "/public/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // A new certificate at the same paths, then SIGHUP.
    let fresh = tempfile::tempdir().unwrap();
    tls::self_signed(fresh.path());
    for file in ["cert.pem", "key.pem"] {
        std::fs::copy(fresh.path().join(file), certs.path().join(file)).unwrap();
    }
    let hup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &gw.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    hup();
    let new_client = trusting(&fresh.path().join("cert.pem"));
    poll_until(
        Duration::from_secs(10),
        "new handshakes to get the new certificate",
        async || {
            new_client
                .get(https(&gw, "/public/b"))
                .send()
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    // The open connection keeps working; a new one trusting only the old
    // certificate is refused.
    let response = old_client
        .get(https(&gw, "/public/c"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        trusting(&first)
            .get(https(&gw, "/public/d"))
            .send()
            .await
            .is_err()
    );

    // A broken file on reload: logged, naming server.tls; the current certificate stays.
    std::fs::write(certs.path().join("cert.pem"), "not a certificate").unwrap();
    hup();
    eventually(
        Duration::from_secs(10),
        "the failed reload to be logged",
        || gw.stderr().contains("server.tls"),
    )
    .await;
    let response = trusting(&fresh.path().join("cert.pem"))
        .get(https(&gw, "/public/e"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn bad_certificate_files_refuse_start_naming_server_tls() {
    let dir = tempfile::tempdir().unwrap();
    tls::self_signed(dir.path());
    let other = tempfile::tempdir().unwrap();
    tls::self_signed(other.path());
    let p = |path: std::path::PathBuf| format!("{:?}", path.display().to_string());
    for (cert, key) in [
        (
            p(dir.path().join("missing.pem")),
            p(dir.path().join("key.pem")),
        ),
        (
            p(dir.path().join("cert.pem")),
            p(dir.path().join("missing.pem")),
        ),
        (p(dir.path().join("key.pem")), p(dir.path().join("key.pem"))),
        (
            p(dir.path().join("cert.pem")),
            p(other.path().join("key.pem")),
        ),
    ] {
        let stderr = check_refused(
            dir.path(),
            &format!(
                "server: {{ tls: {{ cert_file: {cert}, key_file: {key} }} }}\njwt: {{ secret: {SECRET:?} }}\n"
            ),
        );
        assert!(stderr.contains("server.tls:"), "{stderr}");
        assert!(!stderr.contains("BEGIN"), "{stderr}");
    }
}

#[tokio::test]
async fn upstream_tls_is_always_verified() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = tls::self_signed(certs.path());
    let stranger = tempfile::tempdir().unwrap();
    let (other_ca, _) = tls::self_signed(stranger.path());
    let nginx = crate::common::nginx::Nginx::start(&format!(
        "  server {{\n    listen LISTEN ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    location / {{ return 200 \"tls|$ssl_protocol|$ssl_server_name\"; }}\n  }}\n",
        cert.display(),
        key.display()
    ))
    .await;
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("ip", "/ip/", &[nginx.addr], "public").with(&format!(
            "upstream_tls: true, upstream_ca_file: {}",
            q(&cert)
        )))
        .route(
            route("named", "/named/", &[nginx.addr], "public").with(&format!(
                "upstream_tls: true, upstream_sni: localhost, upstream_ca_file: {}",
                q(&cert)
            )),
        )
        .route(
            route("wrongca", "/wrongca/", &[nginx.addr], "public").with(&format!(
                "upstream_tls: true, upstream_ca_file: {}",
                q(&other_ca)
            )),
        )
        .route(
            route("wrongname", "/wrongname/", &[nginx.addr], "public").with(&format!(
                "upstream_tls: true, upstream_sni: wrong.example, upstream_ca_file: {}",
                q(&cert)
            )),
        )
        .route(route("system", "/system/", &[nginx.addr], "public").with("upstream_tls: true"))
        .start()
        .await;
    // Verified against the route's roots: by the upstream's IP, or a name sent as SNI.
    let answer = raw::get(gw.addr, "/ip/x", &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.starts_with("tls|TLSv1."), "{answer:?}");
    let answer = raw::get(gw.addr, "/named/x", &[]).await;
    assert_eq!(
        (answer.status, answer.body.rsplit('|').next()),
        (200, Some("localhost")),
        "{answer:?}"
    );
    // A certificate that does not verify is 502, never a fallback.
    for path in ["/wrongca/x", "/wrongname/x", "/system/x"] {
        let answer = raw::get(gw.addr, path, &[]).await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (502, "upstream_unavailable"),
            "{path}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn upstream_tls_settings_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, key) in [
        ("upstream_sni: x.example", "routes[0].upstream_sni"),
        (
            "upstream_ca_file: /nonexistent/ca.pem",
            "routes[0].upstream_ca_file",
        ),
        (
            "upstream_tls: true, upstream_ca_file: /nonexistent/ca.pem",
            "routes[0].upstream_ca_file",
        ),
    ] {
        let stderr = check_refused(
            dir.path(),
            &format!(
                "jwt: {{ secret: {SECRET:?} }}\nroutes: [{{ name: a, prefix: /, upstreams: [\"127.0.0.1:9\"], {extra} }}]\n"
            ),
        );
        assert!(stderr.contains(&format!("{key}:")), "{extra}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_outlives_the_header_deadline() {
    let certs = tempfile::tempdir().unwrap();
    tls::self_signed(certs.path());
    let up = upstream("up");
    let mut spec =
        GatewaySpec::new(Store::Embedded).route(route("public", "/", &[up.addr], "public"));
    spec.server = format!(
        "header_timeout: 1s, tls: {{ cert_file: {:?}, key_file: {:?} }}",
        certs.path().join("cert.pem").display().to_string(),
        certs.path().join("key.pem").display().to_string()
    );
    let gw = spec.start().await;
    let client = trusting(&certs.path().join("cert.pem"));
    for round in 0..2 {
        let response = client.get(https(&gw, "/x")).send().await.unwrap();
        assert_eq!(
            (response.status().as_u16(), response.version()),
            (200, reqwest::Version::HTTP_2),
            "round {round}"
        );
        // Idle for longer than header_timeout on the same HTTP/2 connection:
        // an HTTP/1.1 connection opened now and left idle is cut first.
        cut_for_idling(tls::connect_http1(gw.addr, &certs.path().join("cert.pem")).await).await;
    }
}
