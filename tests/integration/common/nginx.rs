//! A real nginx, as the upstream that normalises paths the way most
//! production upstreams do. Missing nginx fails the test: CI installs it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_addr, poll_until};

pub struct Nginx {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Child,
}

fn binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect(
            "nginx is needed for these tests (apt-get install nginx-light); .ci/run installs it",
        )
}

impl Nginx {
    /// nginx in the foreground on a reserved loopback port, with `servers`
    /// (server blocks; `LISTEN` stands for the listen address) inside `http`.
    pub async fn start(servers: &str) -> Self {
        let addr = free_addr();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        // `reuseport` (once per address) joins the port reservation of `free_addr`.
        let servers = servers
            .replacen("LISTEN", &format!("{addr} reuseport"), 1)
            .replace("LISTEN", &addr.to_string());
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  default_type text/plain;\n{servers}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("stderr.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let mut nginx = Self { addr, dir, child };
        let (addr, stderr) = (nginx.addr, nginx.dir.path().join("stderr.log"));
        let child = &mut nginx.child;
        poll_until(Duration::from_secs(10), "nginx to listen", async || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "nginx exited ({status}):\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
        })
        .await;
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
