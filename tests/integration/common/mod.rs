//! Test harness: the real `otpgate` binary, real upstream servers, a fake
//! SMS API, a TCP relay that can cut a backend off, and per-test MySQL
//! databases and Redis prefixes. Each test crate uses part of it.
#![allow(dead_code)]

#[path = "../../../examples/demo_upstream/echo.rs"]
pub mod echo;
pub mod nginx;
pub mod redis_server;

use std::io::Read;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// 38 bytes: long enough for HS256.
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";

/// A name no other test, run or process uses.
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{tag}_{}_{}_{nanos:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A socket bound with SO_REUSEPORT: bound, never listening. While it lives no
/// other process can bind its port, yet a server of this test that also sets
/// SO_REUSEPORT (otpgate with `server.reuse_port: true`, `Background`) binds
/// it and takes every connection; with nothing listening, connections are
/// refused. So a port is never bound, dropped and bound again by a stranger.
fn reuse_port_socket(addr: SocketAddr) -> socket2::Socket {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket
}

/// A loopback address reserved for this test process until it exits (see
/// `reuse_port_socket`): for otpgate's listeners, upstreams started later,
/// and addresses where nothing answers.
pub fn free_addr() -> SocketAddr {
    static RESERVED: Mutex<Vec<socket2::Socket>> = Mutex::new(Vec::new());
    let socket = reuse_port_socket("127.0.0.1:0".parse().unwrap());
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    RESERVED.lock().unwrap().push(socket);
    addr
}

/// A listening socket at `addr`, which may be a `free_addr()` reservation.
pub fn listen_at(addr: SocketAddr) -> StdListener {
    let socket = reuse_port_socket(addr);
    socket.listen(1024).unwrap();
    socket.into()
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// How often a poll retries.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// Retries `attempt` until it gives a value, failing the test once `limit`
/// has passed. For states with no event to await (a cooldown running out, a
/// server coming back).
pub async fn poll_until<T>(
    limit: Duration,
    what: &str,
    mut attempt: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// `poll_until` for a plain condition.
pub async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    poll_until(limit, what, async || check().then_some(())).await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A server running on its own runtime, so that killing it closes every
/// socket it holds (listener and open connections) at once.
pub struct Background {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Background {
    fn start<F, Fut>(bind: SocketAddr, serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = listen_at(bind);
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            serve(listener).await;
        });
        Self {
            addr,
            runtime: Some(runtime),
        }
    }

    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The demo upstream (`examples/demo_upstream`), named `name`, counting
/// the requests that reach it.
pub struct Upstream {
    pub server: Background,
    pub addr: SocketAddr,
    seen: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    pub fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    pub fn kill(&mut self) {
        self.server.kill();
    }
}

pub fn upstream(name: &str) -> Upstream {
    upstream_at("127.0.0.1:0".parse().unwrap(), name)
}

pub fn upstream_at(addr: SocketAddr, name: &str) -> Upstream {
    let name = name.to_owned();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let server = Background::start(addr, move |listener| {
        echo::serve_counted(listener, name, counter)
    });
    Upstream {
        addr: server.addr,
        server,
        seen,
    }
}

/// One request a fake SMS API received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// A stand-in for Twilio or an SMS webhook: records what it is sent and
/// answers with the status it is told to.
pub struct FakeSmsApi {
    pub server: Background,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    status: Arc<AtomicU16>,
}

impl FakeSmsApi {
    pub fn start() -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(201));
        let (log, answer) = (Arc::clone(&requests), Arc::clone(&status));
        let server =
            Background::start("127.0.0.1:0".parse().unwrap(), move |listener| async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (log, answer) = (Arc::clone(&log), Arc::clone(&answer));
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                let (log, answer) = (Arc::clone(&log), Arc::clone(&answer));
                                async move {
                                    let header = |name: &str| {
                                        req.headers()
                                            .get(name)
                                            .map(|v| v.to_str().unwrap_or("").to_owned())
                                    };
                                    let recorded = Recorded {
                                        method: req.method().to_string(),
                                        path: req.uri().path().to_owned(),
                                        authorization: header("authorization"),
                                        content_type: header("content-type"),
                                        body: Bytes::new(),
                                    };
                                    let body = req.into_body().collect().await.unwrap().to_bytes();
                                    log.lock().unwrap().push(Recorded { body, ..recorded });
                                    let status = answer.load(Ordering::SeqCst);
                                    Ok::<_, std::convert::Infallible>(
                                        hyper::Response::builder()
                                            .status(status)
                                            .header("content-type", "application/json")
                                            .body(Full::new(Bytes::from_static(
                                                br#"{"sid":"SM1"}"#,
                                            )))
                                            .unwrap(),
                                    )
                                }
                            });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        Self {
            server,
            requests,
            status,
        }
    }

    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }
}

/// A TCP relay in front of a backend (MySQL, Redis) that a test can cut:
/// `Refuse` closes every connection at once, `Pass` relays again.
pub struct Relay {
    pub server: Background,
    mode: Arc<AtomicU8>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

const PASS: u8 = 0;
const REFUSE: u8 = 1;

impl Relay {
    pub fn start(target: SocketAddr) -> Self {
        let mode = Arc::new(AtomicU8::new(PASS));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(generation);
        let (m, g) = (Arc::clone(&mode), Arc::clone(&generation));
        let server =
            Background::start("127.0.0.1:0".parse().unwrap(), move |listener| async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    if m.load(Ordering::SeqCst) == REFUSE {
                        drop(inbound);
                        continue;
                    }
                    let mut cut = g.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            });
        Self {
            server,
            mode,
            generation,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Closes open connections and refuses new ones.
    pub fn cut(&self) {
        self.mode.store(REFUSE, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.mode.store(PASS, Ordering::SeqCst);
    }
}

/// Where the mysql_redis backend's tests find their services. Unset
/// variables fail the test, loudly, unless OTPGATE_TEST_SKIP_MYSQL_REDIS=1
/// says to skip (then `None`, with a note); a set variable whose service is
/// down fails the test too. A test never passes without having run.
pub fn mysql_redis_urls() -> Option<(String, String)> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    match (var("OTPGATE_TEST_MYSQL_URL"), var("OTPGATE_TEST_REDIS_URL")) {
        (Some(mysql), Some(redis)) => Some((mysql, redis)),
        _ if var("OTPGATE_TEST_SKIP_MYSQL_REDIS").as_deref() == Some("1") => {
            eprintln!("SKIPPED: mysql_redis variant (OTPGATE_TEST_SKIP_MYSQL_REDIS=1)");
            None
        }
        _ => panic!(
            "OTPGATE_TEST_MYSQL_URL and OTPGATE_TEST_REDIS_URL must be set for the mysql_redis \
             tests (scripts/test sets them), or OTPGATE_TEST_SKIP_MYSQL_REDIS=1 to skip them"
        ),
    }
}

/// A MySQL database of its own for one test, dropped afterwards.
pub struct TestDatabase {
    pub url: String,
    server_url: String,
    name: String,
}

impl TestDatabase {
    pub async fn create(server_url: &str) -> Self {
        use mysql_async::prelude::*;
        let name = unique("otpgate_test");
        let mut conn = mysql_async::Conn::from_url(server_url)
            .await
            .unwrap_or_else(|e| {
                panic!("OTPGATE_TEST_MYSQL_URL is set but MySQL is unreachable: {e}")
            });
        conn.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
        let mut url = url::Url::parse(server_url).unwrap();
        url.set_path(&format!("/{name}"));
        Self {
            url: url.into(),
            server_url: server_url.to_owned(),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        // Drop may run inside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use mysql_async::prelude::*;
                if let Ok(mut conn) = mysql_async::Conn::from_url(server_url.as_str()).await {
                    let _ = conn
                        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                        .await;
                    let _ = conn.disconnect().await;
                }
            });
        })
        .join();
    }
}

/// Fails loudly when a configured Redis does not answer.
pub async fn check_redis(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .expect("OTPGATE_TEST_REDIS_URL is set but Redis does not answer")
    .unwrap_or_else(|e| panic!("OTPGATE_TEST_REDIS_URL is set but Redis is unreachable: {e}"));
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

/// The storage a gateway under test uses.
pub enum Store {
    Embedded,
    MysqlRedis {
        database: Arc<TestDatabase>,
        redis_url: String,
        prefix: String,
    },
}

impl Store {
    /// A fresh MySQL database and Redis prefix, or `None` when not configured.
    pub async fn mysql_redis() -> Option<Self> {
        let (mysql, redis) = mysql_redis_urls()?;
        check_redis(&redis).await;
        Some(Self::MysqlRedis {
            database: Arc::new(TestDatabase::create(&mysql).await),
            redis_url: redis,
            prefix: format!("{}:", unique("otpgate_test")),
        })
    }

    /// The same backend again (another instance sharing it).
    pub fn shared(&self) -> Self {
        match self {
            Self::Embedded => Self::Embedded,
            Self::MysqlRedis {
                database,
                redis_url,
                prefix,
            } => Self::MysqlRedis {
                database: Arc::clone(database),
                redis_url: redis_url.clone(),
                prefix: prefix.clone(),
            },
        }
    }

    fn yaml(&self) -> String {
        match self {
            Self::Embedded => {
                "storage: { backend: embedded, sqlite_path: data/users.sqlite3 }\n".into()
            }
            Self::MysqlRedis {
                database,
                redis_url,
                prefix,
            } => format!(
                "storage: {{ backend: mysql_redis, mysql_url: {:?}, redis_url: {:?}, redis_key_prefix: {:?}, connect_attempts: 1 }}\n",
                database.url, redis_url, prefix
            ),
        }
    }
}

/// A route of a gateway under test.
pub struct RouteSpec {
    pub name: String,
    pub prefix: String,
    pub upstreams: Vec<SocketAddr>,
    pub auth: &'static str,
    pub extra: String,
}

pub fn route(name: &str, prefix: &str, upstreams: &[SocketAddr], auth: &'static str) -> RouteSpec {
    RouteSpec {
        name: name.into(),
        prefix: prefix.into(),
        upstreams: upstreams.to_vec(),
        auth,
        extra: String::new(),
    }
}

impl RouteSpec {
    /// Extra YAML keys for the route, e.g. `strip_prefix: true`.
    pub fn with(mut self, extra: &str) -> Self {
        self.extra = format!(", {extra}");
        self
    }
}

pub struct GatewaySpec {
    pub store: Store,
    pub routes: Vec<RouteSpec>,
    /// YAML of the `sms` section (default: the file provider).
    pub sms: Option<String>,
    /// YAML of the `otp` section.
    pub otp: String,
    /// More top-level YAML.
    pub extra: String,
    /// More keys of the `server` section, e.g. `header_timeout: 1s`.
    pub server: String,
    /// More keys of the `jwt` section, e.g. `algorithm: ES256, keys: [...]`.
    pub jwt: String,
    /// `OTPGATE_LOG` instead of the tests' usual filter.
    pub log: Option<String>,
}

impl GatewaySpec {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            routes: Vec::new(),
            sms: None,
            otp: "otp: { cooldown: 30s }\n".into(),
            extra: String::new(),
            server: String::new(),
            jwt: String::new(),
            log: None,
        }
    }

    pub fn route(mut self, route: RouteSpec) -> Self {
        self.routes.push(route);
        self
    }

    pub fn render(&self, listen: SocketAddr, admin: SocketAddr) -> String {
        let mut yaml = format!(
            "server: {{ listen: \"{listen}\", threads: 2, admin_listen: \"{admin}\", grace_period: 0s, shutdown_timeout: 1s, reuse_port: true{} }}\n",
            if self.server.is_empty() {
                String::new()
            } else {
                format!(", {}", self.server)
            }
        );
        yaml += &self.store.yaml();
        yaml += &self.otp;
        yaml += self
            .sms
            .as_deref()
            .unwrap_or("sms: { provider: file, file_path: data/sms.jsonl }\n");
        yaml += &format!(
            "jwt: {{ secret: {SECRET:?}, ttl: 1h, leeway: 5s{} }}\n",
            if self.jwt.is_empty() {
                String::new()
            } else {
                format!(", {}", self.jwt)
            }
        );
        yaml += &self.extra;
        yaml += if self.routes.is_empty() {
            "routes: []\n"
        } else {
            "routes:\n"
        };
        for r in &self.routes {
            let upstreams: Vec<String> = r.upstreams.iter().map(|a| format!("\"{a}\"")).collect();
            yaml += &format!(
                "  - {{ name: {}, prefix: {:?}, upstreams: [{}], auth: {}, connect_timeout: 1s, read_timeout: 2s, health_check_interval: 200ms{} }}\n",
                r.name,
                r.prefix,
                upstreams.join(", "),
                r.auth,
                r.extra
            );
        }
        yaml
    }

    pub async fn start(self) -> Gateway {
        Gateway::start(self).await
    }
}

/// A running `otpgate serve` process in a directory of its own.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub spec: GatewaySpec,
    child: Child,
}

/// The seed variables that would override a test's config if inherited.
const SEED_VARS: [&str; 13] = [
    "PORT",
    "DB_USER",
    "DB_PASSWORD",
    "DB_NAME",
    "DB_HOST",
    "DB_PORT",
    "REDIS_HOST",
    "REDIS_PORT",
    "SECRET_KEY",
    "OTP_EXPIRY",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_PHONE_NUMBER",
];

/// The log filter of test gateways unless a spec sets its own.
const TEST_LOG: &str = "info,pingora_core=error,pingora_proxy=error,pingora_load_balancing=off";

/// `otpgate serve` of the `gateway.yaml` in `dir`, logging to files there.
fn spawn_gateway(dir: &Path, log: &str) -> Child {
    let append = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .unwrap()
    };
    otpgate(dir)
        .arg("--config")
        .arg(dir.join("gateway.yaml"))
        .env("OTPGATE_LOG", log)
        .stdout(Stdio::from(append("stdout.log")))
        .stderr(Stdio::from(append("stderr.log")))
        .spawn()
        .unwrap()
}

/// Writes `yaml` as `dir/gateway.yaml`, runs `otpgate check` on it, asserts
/// that it refused (exit 1) and returns what it printed on stderr.
pub fn check_refused(dir: &Path, yaml: &str) -> String {
    let config = dir.join("gateway.yaml");
    std::fs::write(&config, yaml).unwrap();
    let out = otpgate(dir)
        .arg("check")
        .arg("--config")
        .arg(&config)
        .env("OTPGATE_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "accepted:\n{yaml}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `otpgate` with a clean environment in `dir`.
pub fn otpgate(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_otpgate"));
    command.current_dir(dir);
    for var in SEED_VARS {
        command.env_remove(var);
    }
    command
}

impl Gateway {
    pub async fn start(spec: GatewaySpec) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let (addr, admin) = (free_addr(), free_addr());
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, spec.render(addr, admin)).unwrap();
        let child = spawn_gateway(dir.path(), spec.log.as_deref().unwrap_or(TEST_LOG));
        let mut gateway = Self {
            addr,
            admin,
            dir,
            spec,
            child,
        };
        gateway.wait_until_listening().await;
        gateway
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process and starts it again: same config, ports and files.
    pub async fn restart(&mut self) {
        self.kill();
        let log = self.spec.log.as_deref().unwrap_or(TEST_LOG);
        self.child = spawn_gateway(self.dir.path(), log);
        self.wait_until_listening().await;
    }

    async fn wait_until_listening(&mut self) {
        let (addr, admin) = (self.addr, self.admin);
        let stderr = self.dir.path().join("stderr.log");
        let child = &mut self.child;
        poll_until(Duration::from_secs(30), "otpgate to listen", async || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("otpgate exited ({status}) at start:\n{}", read(&stderr));
            }
            let up = |addr| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
            (up(addr) && up(admin)).then_some(())
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn stderr(&self) -> String {
        read(&self.dir.path().join("stderr.log"))
    }

    pub fn stdout(&self) -> String {
        read(&self.dir.path().join("stdout.log"))
    }

    pub fn sms_path(&self) -> PathBuf {
        self.dir.path().join("data/sms.jsonl")
    }

    /// Every SMS record the file provider wrote.
    pub fn sms(&self) -> Vec<Value> {
        read(&self.sms_path())
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The newest OTP sent to `mobile` for `purpose`.
    pub fn otp(&self, mobile: &str, purpose: &str) -> String {
        self.sms()
            .iter()
            .rev()
            .find(|m| m["to"] == mobile && m["purpose"] == purpose)
            .unwrap_or_else(|| panic!("no {purpose} SMS to {mobile}"))["otp"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// The JSON body of a response, with its status.
pub async fn json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, value)
}

/// A POST of `body` as JSON to the gateway, answered as (status, JSON).
pub async fn post(gateway: &Gateway, path: &str, body: Value) -> (u16, Value) {
    json(
        client()
            .post(gateway.url(path))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// `GET /user` with `token`, answered as (status, JSON).
pub async fn current_user(gateway: &Gateway, token: &str) -> (u16, Value) {
    json(
        client()
            .get(gateway.url("/user"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Registers, verifies and logs in `mobile`; returns the token.
pub async fn signed_up_token(gateway: &Gateway, mobile: &str) -> String {
    signed_up(gateway, mobile).await["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Registers, verifies and logs in `mobile`; returns the login's body
/// (`token`, `refresh_token`, `session_id`, ...).
pub async fn signed_up(gateway: &Gateway, mobile: &str) -> Value {
    let email = format!("{}@example.com", mobile.trim_start_matches('+'));
    let (status, body) = post(
        gateway,
        "/register",
        serde_json::json!({"mobile": mobile, "first_name": "Test", "last_name": "User", "email": email}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let otp = gateway.otp(mobile, "register");
    let (status, body) = post(
        gateway,
        "/verify-otp",
        serde_json::json!({"mobile": mobile, "otp": otp}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    log_in(gateway, mobile).await
}

/// Logs a verified `mobile` in (both steps); returns the login's body.
pub async fn log_in(gateway: &Gateway, mobile: &str) -> Value {
    let (status, body) = post(gateway, "/login", serde_json::json!({"mobile": mobile})).await;
    assert_eq!(status, 200, "{body}");
    let otp = gateway.otp(mobile, "login");
    let (status, body) = post(
        gateway,
        "/login",
        serde_json::json!({"mobile": mobile, "otp": otp}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// HS256 tokens made outside the gateway, for the negative cases.
pub mod tokens {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    pub fn claims(sub: &str, iat: i64, exp: i64) -> Value {
        serde_json::json!({
            "sub": sub, "mobile": "+15550000000", "iat": iat, "nbf": iat, "exp": exp,
            "iss": "otpgate", "aud": "otpgate", "jti": unique("jti"),
            "sid": format!("{:032x}", iat),
        })
    }

    pub fn sign(claims: &Value, secret: &str, alg: Algorithm) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    pub fn valid(sub: &str) -> String {
        sign(&claims(sub, now(), now() + 600), SECRET, Algorithm::HS256)
    }

    /// URL-safe base64 without padding, as JWT segments are.
    pub fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}

/// Waits for an idle connection, opened just before, to be cut with 408:
/// the event that `server.header_timeout` has passed, so no fixed sleep has
/// to guess how long that takes.
pub async fn cut_for_idling<S>(mut control: S)
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), control.read_to_end(&mut answer))
        .await
        .expect("an idle connection was never cut");
    // Over TLS the cut comes without close_notify: an unexpected EOF, after the answer.
    if let Err(e) = read {
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }
    let answer = raw::parse(&answer).expect("an answer before the close");
    assert_eq!(answer.status, 408);
}

/// An HTTP/1.1 exchange over a raw socket, for requests that an HTTP client
/// would tidy up first (dot-segments, repeated headers, odd spacing).
pub mod raw {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Debug)]
    pub struct Response {
        pub status: u16,
        /// Header lines, names lower-cased.
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl Response {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }

        /// `code` of a JSON error body.
        pub fn code(&self) -> String {
            serde_json::from_str::<serde_json::Value>(&self.body)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_owned))
                .unwrap_or_default()
        }
    }

    /// Parses one response from the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Option<Response> {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(Response {
            status,
            headers,
            body: body.to_owned(),
        })
    }

    /// Sends `request` as is (it should say `Connection: close`) and reads
    /// the answer until the server closes.
    pub async fn send(addr: SocketAddr, request: &[u8]) -> Response {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
            .await
            .expect("no answer within 20s")
            .unwrap();
        parse(&answer).unwrap_or_else(|| {
            panic!(
                "not an HTTP response: {:?}",
                String::from_utf8_lossy(&answer)
            )
        })
    }

    /// `GET target` with `headers` (name, value), closing after the answer.
    pub async fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = format!("GET {target} HTTP/1.1\r\n");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            request += &format!("Host: {addr}\r\n");
        }
        for (name, value) in headers {
            request += &format!("{name}: {value}\r\n");
        }
        request += "Connection: close\r\n\r\n";
        send(addr, request.as_bytes()).await
    }
}

/// Certificates made on the fly.
pub mod tls {
    use std::path::{Path, PathBuf};

    /// A self-signed certificate for 127.0.0.1 and localhost, written as
    /// `cert.pem` and `key.pem` into `dir`.
    pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let certified = rcgen::generate_simple_self_signed(names).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    /// A TLS connection to `addr` as `localhost`, trusting only `cert`,
    /// offering only HTTP/1.1 by ALPN.
    pub async fn connect_http1(
        addr: std::net::SocketAddr,
        cert: &Path,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for der in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
            roots.add(der.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    }
}

/// Each scenario is an `async fn(Store)`; this makes one test per backend,
/// in modules `embedded` and `mysql_redis` of the calling module.
macro_rules! on_both_backends {
    ($($scenario:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(crate::common::Store::Embedded).await;
                }
            )+
        }
        mod mysql_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    let Some(store) = crate::common::Store::mysql_redis().await else {
                        return;
                    };
                    super::$scenario(store).await;
                }
            )+
        }
    };
}
pub(crate) use on_both_backends;
