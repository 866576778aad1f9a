//! Load program for complete sign-up flows against a running gateway:
//! register -> verify-otp -> login (OTP) -> login (token), each flow with a
//! new mobile. OTPs are read from the gateway's `file` SMS outbox, which this
//! program follows as it grows. Loopback only: it refuses other addresses.
//!
//! `cargo run --release --example flow_load -- --gateway 127.0.0.1:8080 \
//!     --outbox data/sms-outbox.jsonl --concurrency 16 --seconds 10`

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::Notify;

#[derive(Parser)]
struct Args {
    /// The gateway's address (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway: SocketAddr,
    /// The gateway's SMS outbox (sms.provider: file).
    #[arg(long)]
    outbox: PathBuf,
    /// Flows in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// OTPs seen in the outbox, by (mobile, purpose).
#[derive(Default)]
struct Outbox {
    otps: Mutex<HashMap<(String, String), String>>,
    arrived: Notify,
}

impl Outbox {
    /// Follows the file from its current end, forever.
    fn follow(self: Arc<Self>, path: PathBuf) {
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&path)
                .expect("outbox");
            file.seek(SeekFrom::End(0)).unwrap();
            let mut reader = BufReader::new(file);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) => std::thread::sleep(Duration::from_micros(500)),
                    Ok(_) if !line.ends_with('\n') => {
                        // A line being written: re-read it whole next time.
                        let back = -(line.len() as i64);
                        reader.seek_relative(back).unwrap();
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Ok(_) => {
                        let record: Value = serde_json::from_str(&line).expect("outbox line");
                        let key = (
                            record["to"].as_str().unwrap().to_owned(),
                            record["purpose"].as_str().unwrap().to_owned(),
                        );
                        let otp = record["otp"].as_str().unwrap().to_owned();
                        self.otps.lock().unwrap().insert(key, otp);
                        self.arrived.notify_waiters();
                    }
                    Err(e) => panic!("outbox: {e}"),
                }
            }
        });
    }

    async fn take(&self, mobile: &str, purpose: &str) -> String {
        let key = (mobile.to_owned(), purpose.to_owned());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.arrived.notified();
            if let Some(otp) = self.otps.lock().unwrap().remove(&key) {
                return otp;
            }
            assert!(Instant::now() < deadline, "no OTP for {mobile} {purpose}");
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }
}

struct Flow<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
    outbox: &'a Outbox,
}

impl Flow<'_> {
    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {body}"));
        }
        Ok(body)
    }

    async fn run(&self, mobile: &str) -> Result<(), String> {
        let email = format!("{}@load.test", &mobile[1..]);
        self.post(
            "/register",
            json!({"mobile": mobile, "first_name": "Load", "last_name": "Test", "email": email}),
        )
        .await?;
        let otp = self.outbox.take(mobile, "register").await;
        self.post("/verify-otp", json!({"mobile": mobile, "otp": otp}))
            .await?;
        self.post("/login", json!({"mobile": mobile})).await?;
        let otp = self.outbox.take(mobile, "login").await;
        let token = self
            .post("/login", json!({"mobile": mobile, "otp": otp}))
            .await?;
        if token["token"].as_str().is_none_or(str::is_empty) {
            return Err("login answered no token".into());
        }
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    assert!(
        args.gateway.ip().is_loopback(),
        "flow_load only targets loopback addresses"
    );
    let outbox = Arc::new(Outbox::default());
    Arc::clone(&outbox).follow(args.outbox.clone());
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = format!("http://{}", args.gateway);
    // Mobiles unique to this run: +1, 4 digits of run id, 7 of counter.
    let run_id = std::process::id() % 10_000;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop_at = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();

    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, base, outbox, next) = (
            client.clone(),
            base.clone(),
            Arc::clone(&outbox),
            Arc::clone(&next),
        );
        workers.push(tokio::spawn(async move {
            let flow = Flow {
                client: &client,
                base: &base,
                outbox: &outbox,
            };
            let (mut latencies, mut errors) = (Vec::new(), Vec::new());
            while Instant::now() < stop_at {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mobile = format!("+1{run_id:04}{n:07}");
                let began = Instant::now();
                match flow.run(&mobile).await {
                    Ok(()) => latencies.push(began.elapsed()),
                    Err(e) => errors.push(e),
                }
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), Vec::new());
    for worker in workers {
        let (l, e) = worker.await.unwrap();
        latencies.extend(l);
        errors.extend(e);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "concurrency={} flows={} errors={} seconds={:.1} flows_per_s={:.1} p50_ms={:.1} p99_ms={:.1} max_ms={:.1}",
        args.concurrency,
        latencies.len(),
        errors.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 50.0).as_secs_f64() * 1000.0,
        percentile(&latencies, 99.0).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    if let Some(first) = errors.first() {
        eprintln!("first error: {first}");
        std::process::exit(1);
    }
}
