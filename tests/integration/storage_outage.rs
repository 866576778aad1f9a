//! The mysql_redis backend going away under a running gateway (through TCP
//! relays that the tests cut and restore), and a backend that is not there
//! at start. The shared MySQL and Redis servers themselves are never touched.

use crate::common::*;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The address a `mysql://` or `redis://` URL names.
fn service_addr(url: &str, default_port: u16) -> SocketAddr {
    let parsed = url::Url::parse(url).unwrap();
    let host = parsed.host_str().expect("a host in the URL");
    let port = parsed.port().unwrap_or(default_port);
    (host, port)
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap_or_else(|| panic!("{url} resolves to no address"))
}

fn via(url: &str, relay: &Relay) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_host(Some(&relay.addr().ip().to_string())).unwrap();
    url.set_port(Some(relay.addr().port())).unwrap();
    url.into()
}

/// A fresh database and Redis prefix reached only through relays.
struct Relayed {
    store: Store,
    mysql: Relay,
    redis: Relay,
}

async fn relayed() -> Option<Relayed> {
    let Store::MysqlRedis {
        mut database,
        redis_url,
        prefix,
    } = Store::mysql_redis().await?
    else {
        unreachable!("mysql_redis() gives the mysql_redis backend")
    };
    let mysql = Relay::start(service_addr(&database.url, 3306));
    let redis = Relay::start(service_addr(&redis_url, 6379));
    let db = Arc::get_mut(&mut database).expect("a database of our own");
    db.url = via(&db.url, &mysql);
    Some(Relayed {
        store: Store::MysqlRedis {
            database,
            redis_url: via(&redis_url, &redis),
            prefix,
        },
        mysql,
        redis,
    })
}

fn registration(mobile: &str) -> Value {
    json!({
        "mobile": mobile,
        "first_name": "Grace",
        "last_name": "Hopper",
        "email": format!("{}@example.com", mobile.trim_start_matches('+')),
    })
}

async fn readyz(gateway: &Gateway) -> u16 {
    client()
        .get(gateway.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A call made while storage is down: 503 storage_unavailable, quickly.
async fn assert_unavailable(what: &str, call: impl Future<Output = (u16, Value)>) {
    let started = Instant::now();
    let (status, body) = call.await;
    let elapsed = started.elapsed();
    assert_eq!(status, 503, "{what}: {body}");
    assert_eq!(body["code"], "storage_unavailable", "{what}: {body}");
    assert!(elapsed < Duration::from_secs(5), "{what} took {elapsed:?}");
}

async fn assert_not_ready(gateway: &Gateway) {
    let started = Instant::now();
    assert_eq!(readyz(gateway).await, 503, "/readyz with storage down");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "/readyz took {elapsed:?}");
}

/// Polls until the gateway is ready again and `mobile` can register (201),
/// within 15 s of the restore, with no help from outside.
async fn assert_recovers(gateway: &Gateway, mobile: &str) {
    let restored = Instant::now();
    poll_until(
        Duration::from_secs(15),
        "/readyz to answer 200",
        async || (readyz(gateway).await == 200).then_some(()),
    )
    .await;
    let left = Duration::from_secs(15).saturating_sub(restored.elapsed());
    poll_until(left, "register to work again", async || {
        let (status, body) = post(gateway, "/register", registration(mobile)).await;
        if status == 503 {
            return None;
        }
        assert_eq!(status, 201, "{body}");
        Some(())
    })
    .await;
    let otp = gateway.otp(mobile, "register");
    let (status, body) = post(
        gateway,
        "/verify-otp",
        json!({"mobile": mobile, "otp": otp}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn redis_outage_is_503_and_the_gateway_recovers_by_itself() {
    let Some(relayed) = relayed().await else {
        return;
    };
    let gateway = GatewaySpec::new(relayed.store)
        .route(route("unused", "/unused/", &[free_addr()], "public"))
        .start()
        .await;
    assert_eq!(readyz(&gateway).await, 200);
    let (status, body) = post(&gateway, "/register", registration("+15550003001")).await;
    assert_eq!(status, 201, "{body}");

    relayed.redis.cut();
    assert_unavailable(
        "register",
        post(&gateway, "/register", registration("+15550003002")),
    )
    .await;
    assert_unavailable(
        "verify-otp",
        post(
            &gateway,
            "/verify-otp",
            json!({"mobile": "+15550003001", "otp": "123456"}),
        ),
    )
    .await;
    assert_not_ready(&gateway).await;
    // Still answering, and still quick, on a second round.
    assert_unavailable(
        "register again",
        post(&gateway, "/register", registration("+15550003002")),
    )
    .await;
    let health = client()
        .get(gateway.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the process itself is healthy");

    relayed.redis.restore();
    assert_recovers(&gateway, "+15550003002").await;
    // The OTP stored before the outage is still there.
    let otp = gateway.otp("+15550003001", "register");
    let (status, body) = post(
        &gateway,
        "/verify-otp",
        json!({"mobile": "+15550003001", "otp": otp}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn mysql_outage_is_503_and_the_gateway_recovers_by_itself() {
    let Some(relayed) = relayed().await else {
        return;
    };
    let gateway = GatewaySpec::new(relayed.store)
        .route(route("unused", "/unused/", &[free_addr()], "public"))
        .start()
        .await;
    assert_eq!(readyz(&gateway).await, 200);
    let token = signed_up_token(&gateway, "+15550004001").await;

    relayed.mysql.cut();
    assert_unavailable(
        "register",
        post(&gateway, "/register", registration("+15550004002")),
    )
    .await;
    assert_unavailable(
        "login",
        post(&gateway, "/login", json!({"mobile": "+15550004001"})),
    )
    .await;
    let user = current_user(&gateway, &token);
    assert_unavailable("GET /user", user).await;
    assert_not_ready(&gateway).await;
    assert_unavailable(
        "register again",
        post(&gateway, "/register", registration("+15550004002")),
    )
    .await;

    relayed.mysql.restore();
    assert_recovers(&gateway, "+15550004002").await;
    let (status, body) = current_user(&gateway, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["mobile"], "+15550004001", "{body}");
}

/// Runs `otpgate` on `storage_yaml` and waits (bounded) for it to exit.
/// Returns whether it succeeded and its stderr.
async fn run_until_exit(storage_yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {{ listen: \"{}\", admin_listen: \"{}\", reuse_port: true }}\n{storage_yaml}sms: {{ provider: file, file_path: data/sms.jsonl }}\njwt: {{ secret: {SECRET:?} }}\nroutes: []\n",
            free_addr(),
            free_addr()
        ),
    )
    .unwrap();
    let child = otpgate(dir.path())
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("stderr.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    // Await the exit itself, bounded: a start that hangs fails the test.
    let pid = child.id().to_string();
    let mut child = child;
    let exited = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await;
    let status = match exited {
        Ok(joined) => joined.unwrap().unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
            panic!(
                "otpgate still running 20s after start:\n{}",
                std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
            );
        }
    };
    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    (status.success(), stderr)
}

#[tokio::test]
async fn an_unreachable_mysql_at_start_is_refused_with_a_clear_message() {
    let Some((_, redis)) = mysql_redis_urls() else {
        return;
    };
    let closed = free_addr();
    let (ok, stderr) = run_until_exit(&format!(
        "storage: {{ backend: mysql_redis, mysql_url: \"mysql://root:pw-never-logged-31337@{closed}/otp_auth\", redis_url: {redis:?}, redis_key_prefix: {:?}, connect_attempts: 1 }}\n",
        format!("{}:", unique("otpgate_test"))
    ))
    .await;
    assert!(!ok, "otpgate must exit non-zero:\n{stderr}");
    // The backend's name (mysql_redis) alone does not say which part failed.
    let lower = stderr.to_lowercase().replace("mysql_redis", "");
    assert!(
        lower.contains("mysql"),
        "the message names MySQL:\n{stderr}"
    );
    assert!(
        !lower.contains("redis"),
        "the message blames Redis:\n{stderr}"
    );
    assert!(
        lower.contains("unreachable") || lower.contains("refused"),
        "the message says why:\n{stderr}"
    );
    assert!(
        !stderr.contains("pw-never-logged-31337"),
        "the MySQL password is in the message:\n{stderr}"
    );
}

#[tokio::test]
async fn an_unreachable_redis_at_start_is_refused_with_a_clear_message() {
    let Some((mysql, _)) = mysql_redis_urls() else {
        return;
    };
    let database = TestDatabase::create(&mysql).await;
    let closed = free_addr();
    let (ok, stderr) = run_until_exit(&format!(
        "storage: {{ backend: mysql_redis, mysql_url: {:?}, redis_url: \"redis://:redis-pw-never-logged-4242@{closed}/0\", redis_key_prefix: {:?}, connect_attempts: 1 }}\n",
        database.url,
        format!("{}:", unique("otpgate_test"))
    ))
    .await;
    assert!(!ok, "otpgate must exit non-zero:\n{stderr}");
    let lower = stderr.to_lowercase().replace("mysql_redis", "");
    assert!(
        lower.contains("redis"),
        "the message names Redis:\n{stderr}"
    );
    assert!(
        !lower.contains("mysql"),
        "the message blames MySQL:\n{stderr}"
    );
    assert!(
        !stderr.contains("redis-pw-never-logged-4242"),
        "the Redis password is in the message:\n{stderr}"
    );
}

#[tokio::test]
async fn a_mysql_that_accepts_but_never_answers_at_start_is_refused_in_bounded_time() {
    let Some((_, redis)) = mysql_redis_urls() else {
        return;
    };
    // The kernel completes the handshake; nothing ever reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let (ok, stderr) = run_until_exit(&format!(
        "storage: {{ backend: mysql_redis, mysql_url: \"mysql://root@{}/otp_auth\", redis_url: {redis:?}, redis_key_prefix: {:?}, connect_attempts: 1, timeout: 1s }}\n",
        silent.local_addr().unwrap(),
        format!("{}:", unique("otpgate_test"))
    ))
    .await;
    let elapsed = started.elapsed();
    assert!(!ok, "otpgate must exit non-zero:\n{stderr}");
    assert!(
        elapsed < Duration::from_secs(15),
        "refusing took {elapsed:?}:\n{stderr}"
    );
    let lower = stderr.to_lowercase().replace("mysql_redis", "");
    assert!(
        lower.contains("mysql"),
        "the message names MySQL:\n{stderr}"
    );
    drop(silent);
}

/// The mysql_redis backend with its Redis over TLS (`rediss://`), on a
/// redis-server of this test's own with a self-signed certificate.
async fn tls_redis_store(
    redis: &crate::common::redis_server::RedisServer,
    fragment: &str,
) -> Option<Store> {
    let Store::MysqlRedis {
        database, prefix, ..
    } = Store::mysql_redis().await?
    else {
        unreachable!("mysql_redis() gives the mysql_redis backend")
    };
    Some(Store::MysqlRedis {
        database,
        redis_url: format!("rediss://{}/{fragment}", redis.addr),
        prefix,
    })
}

#[tokio::test]
async fn redis_over_tls_serves_the_otp_flow() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = tls::self_signed(certs.path());
    let redis = crate::common::redis_server::RedisServer::start_tls(&cert, &key).await;
    // The certificate is self-signed: `#insecure` is the redis client's way to accept it.
    let Some(store) = tls_redis_store(&redis, "#insecure").await else {
        return;
    };
    let prefix = match &store {
        Store::MysqlRedis { prefix, .. } => prefix.clone(),
        Store::Embedded => unreachable!(),
    };
    let gw = GatewaySpec::new(store)
        .route(route("unused", "/unused/", &[free_addr()], "public"))
        .start()
        .await;
    let token = signed_up_token(&gw, "+15550001234").await;
    assert_eq!(current_user(&gw, &token).await.0, 200);
    // The OTP state lives in the TLS server.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = redis::Client::open(format!("rediss://{}/#insecure", redis.addr)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "no key under {prefix} in the TLS Redis");
}

#[tokio::test]
async fn an_unverifiable_redis_certificate_refuses_start() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = tls::self_signed(certs.path());
    let redis = crate::common::redis_server::RedisServer::start_tls(&cert, &key).await;
    let Some((mysql, _)) = mysql_redis_urls() else {
        return;
    };
    let database = TestDatabase::create(&mysql).await;
    let (ok, stderr) = run_until_exit(&format!(
        "storage: {{ backend: mysql_redis, mysql_url: {:?}, redis_url: \"rediss://{}/\", redis_key_prefix: {:?}, connect_attempts: 1 }}\n",
        database.url,
        redis.addr,
        format!("{}:", unique("otpgate_test"))
    ))
    .await;
    assert!(!ok, "otpgate must exit non-zero:\n{stderr}");
    assert!(stderr.to_lowercase().contains("redis"), "{stderr}");
}
