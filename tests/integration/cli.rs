//! The `otpgate` command line: check, migrate, start-up refusals, `.env`.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::*;

fn run(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = otpgate(dir);
    command.args(args).env("OTPGATE_LOG", "warn");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_config(dir: &std::path::Path, yaml: &str) -> String {
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.to_str().unwrap().to_owned()
}

const ROUTES: &str = r#"
routes:
  - { name: api, prefix: /api/, upstreams: ["127.0.0.1:9001", "127.0.0.1:9002"], auth: required }
  - { name: files, prefix: /files/, host: files.example.com, upstreams: ["127.0.0.1:9003"], auth: public, strip_prefix: true }
"#;

#[test]
fn check_prints_the_route_table() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("jwt: {{ secret: {SECRET:?} }}\n{ROUTES}"),
    );
    let out = run(dir.path(), &["check", "--config", &config], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("OK"), "{stdout}");
    // The limits in force, defaults included.
    assert!(
        stdout.contains("limits sms_per_mobile 5/1h,10/1day  sms_per_ip off")
            && stdout.contains("lockout 3 burned in 1h -> 1h"),
        "{stdout}"
    );
    let api = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("api "))
        .expect(&stdout);
    assert!(
        api.contains("/api/") && api.contains("required") && api.contains("127.0.0.1:9002"),
        "{api}"
    );
    let files = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("files "))
        .expect(&stdout);
    assert!(
        files.contains("files.example.com") && files.contains("public") && files.contains("true"),
        "{files}"
    );
}

#[test]
fn check_refuses_bad_configs_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("jwt: {{ secret: {SECRET:?} }}\n");
    let cases = [
        (
            format!(
                "{secret}routes:\n  - {{ name: a, prefix: /a/, upstreams: [\"127.0.0.1:1\"] }}\n  - {{ name: b, prefix: /b/, upstreams: [\"127.0.0.1:1\"] }}\n  - {{ name: c, prefix: /c/, upstreams: [\"nope\"] }}\n"
            ),
            "routes[2].upstreams[0]",
        ),
        (
            format!("{secret}server: {{ listen: \"127.0.0.1:1\", workers: 2 }}\n"),
            "workers",
        ),
        (format!("{secret}otp: {{ ttl: forever }}\n"), "otp.ttl"),
        ("jwt: { secret: too-short }\n".to_owned(), "jwt.secret"),
        ("routes: []\n".to_owned(), "jwt.secret"),
        (
            format!(
                "{secret}routes: [{{ name: a, prefix: /, upstreams: [\"127.0.0.1:1\"], auth: sometimes }}]\n"
            ),
            "routes[0].auth",
        ),
        ("server: [unclosed\n".to_owned(), "invalid YAML"),
    ];
    for (yaml, expected) in cases {
        let stderr = check_refused(dir.path(), &yaml);
        assert!(stderr.contains(expected), "{yaml}\n=> {stderr}");
    }
}

#[test]
fn serve_refuses_to_start_without_a_strong_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "jwt: { secret: \"${SECRET_KEY}\" }\n");
    let out = run(dir.path(), &["--config", &config], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("SECRET_KEY"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        dir.path(),
        &["--config", &config],
        &[("SECRET_KEY", "short")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("jwt.secret"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("short\""),
        "the secret is not echoed"
    );
}

#[test]
fn the_dot_env_file_and_seed_variables_override_the_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "server: { listen: \"127.0.0.1:8080\" }\njwt: { secret: \"${SECRET_KEY}\" }\n",
    );
    std::fs::write(
        dir.path().join(".env"),
        format!("SECRET_KEY={SECRET}\nPORT=18123\n"),
    )
    .unwrap();
    let out = run(dir.path(), &["check", "--config", &config], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("listen 127.0.0.1:18123"),
        "{}",
        text(&out.stdout)
    );
    // The process environment wins over the file.
    let out = run(
        dir.path(),
        &["check", "--config", &config],
        &[("PORT", "18124")],
    );
    assert!(
        text(&out.stdout).contains("listen 127.0.0.1:18124"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn an_unreachable_storage_backend_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_addr();
    let config = write_config(
        dir.path(),
        &format!(
            "jwt: {{ secret: {SECRET:?} }}\nstorage: {{ backend: mysql_redis, mysql_url: \"mysql://root@{closed}/x\", redis_url: \"redis://{closed}/\", connect_attempts: 2, timeout: 1s }}\nserver: {{ listen: \"{}\", reuse_port: true }}\n",
            free_addr()
        ),
    );
    let started = Instant::now();
    let out = run(dir.path(), &["--config", &config], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("mysql_redis") && stderr.contains("2 attempt"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "bounded retry");
}

#[tokio::test]
async fn migrate_applies_each_migration_once_even_when_run_twice_at_once() {
    let Some((mysql, _)) = mysql_redis_urls() else {
        return;
    };
    let database = TestDatabase::create(&mysql).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "jwt: {{ secret: {SECRET:?} }}\nstorage: {{ backend: mysql_redis, mysql_url: {:?}, redis_url: \"redis://127.0.0.1:1/\" }}\n",
            database.url
        ),
    );
    let spawn = || {
        otpgate(dir.path())
            .args(["migrate", "--config", &config])
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert!(a.status.success(), "{}", text(&a.stderr));
    assert!(b.status.success(), "{}", text(&b.stderr));
    let outputs = text(&a.stdout) + &text(&b.stdout);
    let names = [
        "0001_create_users",
        "0002_email_byte_equality",
        "0003_sessions",
        "0004_refresh_tokens",
        "0005_revoked_sessions",
    ];
    for name in names {
        assert_eq!(
            outputs.matches(&format!("applied {name}")).count(),
            1,
            "{outputs}"
        );
    }
    let again = spawn().unwrap();
    assert!(
        text(&again.stdout).contains("up to date"),
        "{}",
        text(&again.stdout)
    );

    use mysql_async::prelude::*;
    let mut conn = mysql_async::Conn::from_url(database.url.as_str())
        .await
        .unwrap();
    let rows: Vec<(u32, String)> = conn
        .query("SELECT version, name FROM otpgate_migrations")
        .await
        .unwrap();
    assert_eq!(
        rows,
        names
            .iter()
            .zip(1..)
            .map(|(name, version)| (version, name[5..].to_owned()))
            .collect::<Vec<(u32, String)>>()
    );
    conn.disconnect().await.unwrap();
}
