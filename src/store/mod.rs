//! Storage: two small traits and their backends. `UserStore` keeps accounts
//! (SQLite or MySQL); `OtpStore` keeps OTP digests, attempt counters and
//! cooldowns with real expiry (in process or Redis). The store never knows
//! about HTTP; the auth service never knows which backend it talks to.

mod embedded;
pub mod keys;
mod memory;
pub mod migrations;
mod mysql;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::config::{StorageBackend, StorageConfig};

pub use embedded::SqliteUserStore;
pub use memory::MemoryOtpStore;
pub use mysql::MysqlUserStore;
pub use redis::RedisOtpStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule refused the write.
    #[error("{0} is already used by another user")]
    Conflict(UniqueField),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueField {
    Mobile,
    Email,
}

impl std::fmt::Display for UniqueField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Mobile => "mobile",
            Self::Email => "email",
        })
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// `SELECT <the User columns, in User's field order> FROM users WHERE <condition>`,
/// as a compile-time string shared by the SQLite and MySQL backends.
macro_rules! select_user {
    ($condition:literal) => {
        concat!(
            "SELECT id, mobile, first_name, last_name, email, verified, created_at FROM users WHERE ",
            $condition
        )
    };
}
use select_user;

/// Bounds a storage call so a dead backend answers "unavailable", never hangs.
pub async fn within<T, E: std::fmt::Display>(
    limit: Duration,
    what: &str,
    call: impl Future<Output = Result<T, E>>,
) -> StoreResult<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(StoreError::Unavailable(format!("{what}: {e}"))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "{what}: no answer within {limit:?}"
        ))),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: u64,
    pub mobile: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub verified: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// Splits the rows matching (mobile OR email) into the mobile's owner and
/// another user owning the email.
fn split_registration(rows: Vec<User>, mobile: &str) -> (Option<User>, Option<User>) {
    let (by_mobile, others): (Vec<User>, Vec<User>) =
        rows.into_iter().partition(|u| u.mobile == mobile);
    (by_mobile.into_iter().next(), others.into_iter().next())
}

/// The details a registration supplies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub mobile: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn find_by_mobile(&self, mobile: &str) -> StoreResult<Option<User>>;
    async fn find_by_id(&self, id: u64) -> StoreResult<Option<User>>;
    /// The user owning this email, if any.
    async fn find_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// In one round trip: the user with this mobile, and the user with this
    /// email (`None` when it is the same user or nobody).
    async fn find_registration(
        &self,
        mobile: &str,
        email: &str,
    ) -> StoreResult<(Option<User>, Option<User>)>;
    /// Inserts an unverified user; `Conflict` when mobile or email is taken.
    async fn insert(&self, registration: &Registration, now: i64) -> StoreResult<User>;
    /// Replaces the details of a still unverified user. `Ok(false)` when the
    /// user is gone or verified meanwhile; `Conflict` when the email is taken.
    async fn update_unverified(
        &self,
        id: u64,
        registration: &Registration,
        now: i64,
    ) -> StoreResult<bool>;
    /// Marks the user verified; `Ok(false)` when it was not unverified.
    async fn mark_verified(&self, mobile: &str, now: i64) -> StoreResult<bool>;
    /// Removes a still unverified user (a stale registration giving up its
    /// email); `Ok(false)` when the user is gone or verified meanwhile.
    async fn delete_unverified(&self, id: u64) -> StoreResult<bool>;
    async fn ping(&self) -> StoreResult<()>;
}

/// Why an OTP exists: a registration and a login never share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    Register,
    Login,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Login => "login",
        }
    }
}

/// The HMAC of an OTP; the OTP itself is never stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OtpDigest(pub [u8; 32]);

impl std::fmt::Debug for OtpDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtpDigest(..)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueOutcome {
    Issued,
    /// Another OTP for this mobile and purpose was issued too recently.
    Cooldown {
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// It matched and is now consumed.
    Valid,
    /// It did not match; the attempt was counted (and the OTP burned at the limit).
    Invalid,
    /// No live OTP: never sent, expired, used or burned.
    Missing,
}

/// The rules an OTP lives by, handed to the store with each call.
#[derive(Debug, Clone, Copy)]
pub struct OtpLimits {
    pub ttl: Duration,
    pub cooldown: Duration,
    pub max_attempts: u32,
}

#[async_trait]
pub trait OtpStore: Send + Sync {
    /// In one atomic step: refuse if a cooldown runs for (purpose, mobile),
    /// else start the cooldown and store `digest` as the live OTP (replacing
    /// any older one, with a fresh attempt counter).
    async fn issue(
        &self,
        purpose: Purpose,
        mobile: &str,
        digest: &OtpDigest,
        limits: &OtpLimits,
    ) -> StoreResult<IssueOutcome>;
    /// Undoes `issue` after a failed delivery: removes the OTP (if it is still
    /// `digest`) and the cooldown, so the user can ask again at once.
    async fn revoke(&self, purpose: Purpose, mobile: &str, digest: &OtpDigest) -> StoreResult<()>;
    /// In one atomic step: compare `candidate` in constant time; consume on a
    /// match, else count the attempt and burn the OTP at `max_attempts`.
    async fn verify(
        &self,
        purpose: Purpose,
        mobile: &str,
        candidate: &OtpDigest,
        limits: &OtpLimits,
    ) -> StoreResult<VerifyOutcome>;
    /// Whether a live (unexpired, unused, unburned) OTP exists for (purpose, mobile).
    async fn is_live(&self, purpose: Purpose, mobile: &str) -> StoreResult<bool>;
    async fn ping(&self) -> StoreResult<()>;
}

/// The two stores a backend provides.
#[derive(Clone)]
pub struct Storage {
    pub users: Arc<dyn UserStore>,
    pub otps: Arc<dyn OtpStore>,
}

impl Storage {
    /// Connects the configured backend, retrying `connect_attempts` times one
    /// second apart, and applies migrations when the config asks for it.
    pub async fn connect(config: &StorageConfig) -> Result<Self, String> {
        let mut attempt = 1;
        loop {
            match Self::connect_once(config).await {
                Ok(storage) => return Ok(storage),
                Err(e) if attempt >= config.connect_attempts => {
                    return Err(format!(
                        "storage backend {} unreachable after {attempt} attempt(s): {e}",
                        config.backend.name()
                    ));
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "storage not reachable yet, retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn connect_once(config: &StorageConfig) -> Result<Self, String> {
        match &config.backend {
            StorageBackend::Embedded { sqlite_path } => Ok(Self {
                users: Arc::new(SqliteUserStore::open(sqlite_path).await?),
                otps: Arc::new(MemoryOtpStore::new()),
            }),
            StorageBackend::MysqlRedis {
                mysql_url,
                redis_url,
                redis_key_prefix,
                auto_migrate,
                mysql_pool_max,
            } => {
                let users =
                    MysqlUserStore::connect(mysql_url.expose(), *mysql_pool_max, config.timeout)
                        .await?;
                if *auto_migrate {
                    users.migrate().await?;
                }
                let otps =
                    RedisOtpStore::connect(redis_url.expose(), redis_key_prefix, config.timeout)
                        .await?;
                Ok(Self {
                    users: Arc::new(users),
                    otps: Arc::new(otps),
                })
            }
        }
    }

    /// Both stores answer.
    pub async fn ping(&self) -> StoreResult<()> {
        self.users.ping().await?;
        self.otps.ping().await
    }
}
