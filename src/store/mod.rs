//! Storage: one small trait per concern, each with an implementation per
//! backend. `UserStore` keeps accounts (SQLite or MySQL); `OtpStore` keeps
//! OTP digests, attempt counters, cooldowns and lockouts with real expiry (in
//! process or Redis); `CounterStore` keeps the abuse limits' rate counters.
//! A backend opens its connections once (`backend`) and every store of it
//! shares them. The store never knows about HTTP; the auth
//! services never know which backend they talk to.

pub mod backend;
pub mod counters;
pub mod keys;
pub mod migrations;
pub mod otps;
pub mod revocation;
pub mod sessions;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{StorageBackend, StorageConfig};

use self::backend::mysql::MysqlDb;
use self::backend::redis::RedisConn;
use self::backend::sqlite::SqliteDb;

pub use counters::{
    Bucket, CounterStore, MemoryCounterStore, Rate, RedisCounterStore, Taken, Ticket,
};
pub use otps::{
    IssueOutcome, Lockout, MemoryOtpStore, OtpDigest, OtpLimits, OtpStore, Purpose, RedisOtpStore,
    SmsCount, VerifyOutcome,
};
pub use revocation::{LocalFeed, RedisFeed, RevocationFeed};
pub use sessions::{
    MysqlSessionStore, Refreshed, Revoke, RevokedSession, Session, SessionStore,
    SqliteSessionStore, TokenHash,
};
pub use users::{MysqlUserStore, Registration, SqliteUserStore, User, UserStore};

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

/// The stores a backend provides, and its revocation feed.
#[derive(Clone)]
pub struct Storage {
    pub users: Arc<dyn UserStore>,
    pub otps: Arc<dyn OtpStore>,
    pub counters: Arc<dyn CounterStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub revocations: Arc<dyn RevocationFeed>,
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
            StorageBackend::Embedded { sqlite_path } => {
                let db = SqliteDb::open(sqlite_path).await?;
                Ok(Self {
                    users: Arc::new(SqliteUserStore::new(db.clone())),
                    otps: Arc::new(MemoryOtpStore::new()),
                    counters: Arc::new(MemoryCounterStore::new()),
                    sessions: Arc::new(SqliteSessionStore::new(db)),
                    revocations: Arc::new(LocalFeed),
                })
            }
            StorageBackend::MysqlRedis {
                mysql_url,
                redis_url,
                redis_key_prefix,
                auto_migrate,
                mysql_pool_max,
            } => {
                let db =
                    MysqlDb::connect(mysql_url.expose(), *mysql_pool_max, config.timeout).await?;
                if *auto_migrate {
                    db.migrate().await?;
                }
                let redis = RedisConn::connect(redis_url.expose(), config.timeout).await?;
                let channel = keys::Keys::new(redis_key_prefix).revocations();
                Ok(Self {
                    users: Arc::new(MysqlUserStore::new(db.clone())),
                    otps: Arc::new(RedisOtpStore::new(redis.clone(), redis_key_prefix)),
                    counters: Arc::new(RedisCounterStore::new(redis.clone(), redis_key_prefix)),
                    sessions: Arc::new(MysqlSessionStore::new(db)),
                    revocations: Arc::new(RedisFeed::new(redis, channel)),
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
