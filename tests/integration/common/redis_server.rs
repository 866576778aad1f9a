//! Redis servers a test starts itself (on free loopback ports) and stops.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::poll_until;

pub struct RedisServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Child,
}

/// A loopback port nothing listens on right now. redis-server cannot join a
/// SO_REUSEPORT reservation, so `start` retries when the port was taken.
fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// redis-server with TLS only, serving `cert`/`key`.
    pub async fn start_tls(cert: &Path, key: &Path) -> Self {
        for _ in 0..5 {
            let port = unused_port();
            let args = vec![
                "--port".to_owned(),
                "0".to_owned(),
                "--tls-port".to_owned(),
                port.to_string(),
                "--tls-cert-file".to_owned(),
                cert.display().to_string(),
                "--tls-key-file".to_owned(),
                key.display().to_string(),
                "--tls-ca-cert-file".to_owned(),
                cert.display().to_string(),
                "--tls-auth-clients".to_owned(),
                "no".to_owned(),
            ];
            if let Some(server) = Self::try_start(port, &args).await {
                return server;
            }
        }
        panic!("redis-server could not bind a free port in 5 tries");
    }

    async fn try_start(port: u16, args: &[String]) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("redis.log");
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed for these tests; .ci/run installs it");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let started = poll_until(
            Duration::from_secs(10),
            "redis-server to listen",
            async || {
                if child.try_wait().unwrap().is_some() {
                    return Some(false);
                }
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                text.contains("Ready to accept connections").then_some(true)
            },
        )
        .await;
        if !started {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                text.contains("Address already in use"),
                "redis-server failed:\n{text}"
            );
            return None;
        }
        Some(Self { addr, dir, child })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
