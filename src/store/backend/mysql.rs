//! The production database: one MySQL / MariaDB pool per instance, shared by
//! every MySQL store, with the migrations of `migrations/` applied under a
//! server-side lock so that instances starting together apply each once.

use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts};

use crate::store::migrations::MYSQL;
use crate::store::{StoreError, StoreResult, UniqueField, within};

#[derive(Clone)]
pub struct MysqlDb {
    pool: Pool,
    timeout: Duration,
}

impl MysqlDb {
    /// Builds the pool and checks the server answers.
    pub async fn connect(url: &str, pool_max: usize, timeout: Duration) -> Result<Self, String> {
        let opts = Opts::from_url(url).map_err(|e| format!("storage.mysql_url: {e}"))?;
        let constraints = PoolConstraints::new(0, pool_max)
            .ok_or_else(|| "storage.mysql_pool_max: invalid".to_owned())?;
        let opts = OptsBuilder::from_opts(opts)
            // UPDATE reports matched rows, so "nothing changed" never reads as "not found".
            .client_found_rows(true)
            // Stay on the address configured, not a local socket it may advertise.
            .prefer_socket(false)
            .tcp_nodelay(true)
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    // Keep up to `pool_max` idle connections for a minute; with
                    // the default (zero) every returned connection is closed and
                    // each query pays a connect and a statement prepare.
                    .with_inactive_connection_ttl(Duration::from_secs(60))
                    // No session state is ever left on a connection: skip the
                    // reset on return (a round trip, and it drops the prepared
                    // statement cache).
                    .with_reset_connection(false),
            );
        let db = Self {
            pool: Pool::new(opts),
            timeout,
        };
        db.ping().await.map_err(|e| e.to_string())?;
        Ok(db)
    }

    /// Applies pending migrations; returns the names of those applied now.
    pub async fn migrate(&self) -> Result<Vec<String>, String> {
        // DDL commits implicitly in MySQL, so a transaction cannot serialize
        // two migrating instances: a named lock (per database) does.
        let limit = self.timeout.max(Duration::from_secs(30));
        let work = async {
            let mut conn = self.pool.get_conn().await?;
            let locked: Option<i64> = conn
                .query_first("SELECT GET_LOCK(CONCAT('otpgate_migrations.', DATABASE()), 30)")
                .await?;
            if locked != Some(1) {
                return Ok(Err(
                    "could not take the migration lock within 30s".to_owned()
                ));
            }
            let result = apply_pending(&mut conn).await;
            conn.query_drop("DO RELEASE_LOCK(CONCAT('otpgate_migrations.', DATABASE()))")
                .await?;
            result.map(Ok)
        };
        match tokio::time::timeout(limit, work).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(format!("migration failed: {e}")),
            Err(_) => Err(format!("migration did not finish within {limit:?}")),
        }
    }

    /// The pool, for a store's own transactions (bound them with `timeout`).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The bound on any one storage call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The first row of `query`, bounded by the storage timeout.
    pub async fn first<T: FromRow + Send + 'static>(
        &self,
        query: &'static str,
        params: impl Into<Params> + Send,
    ) -> StoreResult<Option<T>> {
        within(self.timeout, "mysql select", async {
            let mut conn = self.pool.get_conn().await?;
            conn.exec_first(query, params).await
        })
        .await
    }

    /// Every row of `query`, bounded by the storage timeout.
    pub async fn rows<T: FromRow + Send + 'static>(
        &self,
        query: &'static str,
        params: impl Into<Params> + Send,
    ) -> StoreResult<Vec<T>> {
        within(self.timeout, "mysql select", async {
            let mut conn = self.pool.get_conn().await?;
            conn.exec(query, params).await
        })
        .await
    }

    /// Runs a write; returns the affected rows and the last insert id.
    /// A unique-key violation is `Conflict` on the field its key names.
    pub async fn write(
        &self,
        query: &'static str,
        params: impl Into<Params> + Send,
    ) -> StoreResult<(u64, Option<u64>)> {
        let result = tokio::time::timeout(self.timeout, async {
            let mut conn = self.pool.get_conn().await?;
            conn.exec_drop(query, params).await?;
            Ok::<_, mysql_async::Error>((conn.affected_rows(), conn.last_insert_id()))
        })
        .await;
        match result {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(mysql_async::Error::Server(e))) if e.code == 1062 => {
                if e.message.contains("users_email") {
                    Err(StoreError::Conflict(UniqueField::Email))
                } else {
                    Err(StoreError::Conflict(UniqueField::Mobile))
                }
            }
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("mysql write: {e}"))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "mysql write: no answer within {:?}",
                self.timeout
            ))),
        }
    }

    pub async fn ping(&self) -> StoreResult<()> {
        within(self.timeout, "mysql ping", async {
            let mut conn = self.pool.get_conn().await?;
            conn.ping().await
        })
        .await
    }
}

async fn apply_pending(conn: &mut mysql_async::Conn) -> mysql_async::Result<Vec<String>> {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS otpgate_migrations (
            version    INT UNSIGNED NOT NULL PRIMARY KEY,
            name       VARCHAR(255) NOT NULL,
            applied_at BIGINT       NOT NULL
        ) ENGINE=InnoDB",
    )
    .await?;
    let done: Vec<u32> = conn.query("SELECT version FROM otpgate_migrations").await?;
    let mut applied = Vec::new();
    for m in MYSQL.iter().filter(|m| !done.contains(&m.version)) {
        conn.query_drop(m.sql).await?;
        conn.exec_drop(
            "INSERT INTO otpgate_migrations (version, name, applied_at) VALUES (?, ?, UNIX_TIMESTAMP())",
            (m.version, m.name),
        )
        .await?;
        applied.push(format!("{:04}_{}", m.version, m.name));
    }
    Ok(applied)
}
