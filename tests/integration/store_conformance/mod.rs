//! One conformance suite for the storage layer, run identically against
//! every backend (the object_store pattern): one file per store trait, each
//! case an async function taking the backend under test, and `conformance!`
//! generating one `#[tokio::test]` per (backend, case) over the one list of
//! backends below.
//!
//! The `mysql_redis` variants need OTPGATE_TEST_MYSQL_URL and
//! OTPGATE_TEST_REDIS_URL: unset, they fail (or are skipped with
//! OTPGATE_TEST_SKIP_MYSQL_REDIS=1); set, an unreachable service fails them.

mod counters;
mod otps;
mod redis_keys;
mod sessions;
mod users;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{TestDatabase, check_redis, mysql_redis_urls, unique};
use otpgate::config::{Secret, StorageBackend, StorageConfig};
use otpgate::store::keys::Keys;
use otpgate::store::{
    IssueOutcome, OtpDigest, OtpLimits, Purpose, Registration, SmsCount, Storage, StoreError,
    Ticket, UniqueField, VerifyOutcome,
};

/// A fixed "now" for user writes (unix seconds), so round trips are exact.
const NOW: i64 = 1_700_000_000;

/// Storage calls never take longer than this in these tests.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a time-based case may poll before it fails.
const POLL_LIMIT: Duration = Duration::from_secs(3);

/// What keeps a backend's data alive (and removes it afterwards).
#[allow(dead_code)]
enum Guard {
    Dir(tempfile::TempDir),
    Database(TestDatabase),
}

/// A backend under test: fresh state that no other test shares.
struct Backend {
    name: &'static str,
    storage: Storage,
    /// Redis URL and key prefix, for the mysql_redis backend.
    redis: Option<(String, String)>,
    _guard: Guard,
}

async fn embedded() -> Option<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        backend: StorageBackend::Embedded {
            sqlite_path: dir.path().join("users.sqlite3"),
        },
        timeout: STORE_TIMEOUT,
        connect_attempts: 1,
    };
    let storage = Storage::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("embedded storage did not connect: {e}"));
    Some(Backend {
        name: "embedded",
        storage,
        redis: None,
        _guard: Guard::Dir(dir),
    })
}

/// `None` (after a note) when the services are not configured.
async fn mysql_redis() -> Option<Backend> {
    let (mysql_url, redis_url) = mysql_redis_urls()?;
    check_redis(&redis_url).await;
    let database = TestDatabase::create(&mysql_url).await;
    let prefix = format!("{}:", unique("conf"));
    let storage = connect_mysql_redis(&database.url, &redis_url, &prefix).await;
    Some(Backend {
        name: "mysql_redis",
        storage,
        redis: Some((redis_url, prefix)),
        _guard: Guard::Database(database),
    })
}

async fn connect_mysql_redis(mysql_url: &str, redis_url: &str, prefix: &str) -> Storage {
    let config = StorageConfig {
        backend: StorageBackend::MysqlRedis {
            mysql_url: Secret::new(mysql_url),
            redis_url: Secret::new(redis_url),
            redis_key_prefix: prefix.to_owned(),
            auto_migrate: true,
            mysql_pool_max: 16,
        },
        timeout: STORE_TIMEOUT,
        connect_attempts: 1,
    };
    Storage::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("mysql_redis storage did not connect: {e}"))
}

/// One `#[tokio::test]` per (backend, case) for the cases given, in a module
/// per backend: `users::embedded::unknown_user_is_none`. Every backend is
/// named here and only here.
macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        conformance!(@backends [embedded, mysql_redis] [$($case),+]);
    };
    (@backends [$($backend:ident),+] $cases:tt) => {
        $( conformance!(@one $backend $cases); )+
    };
    (@one $backend:ident [$($case:ident),+]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(backend) = crate::store_conformance::$backend().await else {
                        return;
                    };
                    super::$case(&backend).await;
                }
            )+
        }
    };
}
use conformance;

// ---------------------------------------------------------------- helpers

fn registration(mobile: &str, first: &str, last: &str, email: &str) -> Registration {
    Registration {
        mobile: mobile.into(),
        first_name: first.into(),
        last_name: last.into(),
        email: email.into(),
    }
}

fn digest(n: u8) -> OtpDigest {
    OtpDigest([n; 32])
}

fn limits(ttl: Duration, cooldown: Duration, max_attempts: u32) -> OtpLimits {
    OtpLimits {
        ttl,
        cooldown,
        max_attempts,
        lockout: None,
    }
}

/// A long TTL, no cooldown, five attempts.
fn relaxed() -> OtpLimits {
    limits(Duration::from_secs(60), Duration::ZERO, 5)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Backend {
    /// Two unverified users: Ann (+15550000001, ann@example.com) and Bob
    /// (+15550000002, bob@example.com).
    async fn ann_and_bob(&self) -> (otpgate::store::User, otpgate::store::User) {
        let ann = self
            .insert(&registration("+15550000001", "Ann", "A", "ann@example.com"))
            .await;
        let bob = self
            .insert(&registration("+15550000002", "Bob", "B", "bob@example.com"))
            .await;
        (ann, bob)
    }

    async fn insert(&self, r: &Registration) -> otpgate::store::User {
        self.storage
            .users
            .insert(r, NOW)
            .await
            .unwrap_or_else(|e| panic!("[{}] insert {r:?}: {e}", self.name))
    }

    async fn issue(
        &self,
        purpose: Purpose,
        mobile: &str,
        d: &OtpDigest,
        l: &OtpLimits,
    ) -> IssueOutcome {
        let sms = SmsCount {
            rates: &[],
            ticket: &Ticket::new(),
        };
        self.storage
            .otps
            .issue(purpose, mobile, d, l, sms)
            .await
            .unwrap_or_else(|e| panic!("[{}] issue: {e}", self.name))
    }

    async fn verify(
        &self,
        purpose: Purpose,
        mobile: &str,
        d: &OtpDigest,
        l: &OtpLimits,
    ) -> VerifyOutcome {
        self.storage
            .otps
            .verify(purpose, mobile, d, l)
            .await
            .unwrap_or_else(|e| panic!("[{}] verify: {e}", self.name))
    }

    async fn revoke(&self, purpose: Purpose, mobile: &str, d: &OtpDigest) {
        self.storage
            .otps
            .revoke(purpose, mobile, d, &Ticket::new())
            .await
            .unwrap_or_else(|e| panic!("[{}] revoke: {e}", self.name))
    }

    /// Issues and asserts it was issued.
    async fn issued(&self, purpose: Purpose, mobile: &str, d: &OtpDigest, l: &OtpLimits) {
        let outcome = self.issue(purpose, mobile, d, l).await;
        assert_eq!(outcome, IssueOutcome::Issued, "[{}] issue", self.name);
    }
}

/// Polls `probe` until it returns `Some`, failing after `POLL_LIMIT`.
async fn poll_until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + POLL_LIMIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(millis(20)).await;
    }
}

/// Runs `count` copies of `task` on the runtime's worker threads, released
/// together by a barrier, and returns their results.
async fn race<T, F, Fut>(count: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(count));
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let work = task(i);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(count);
    for handle in handles {
        results.push(handle.await.expect("task panicked"));
    }
    results
}
