//! The production user store on MySQL / MariaDB, with the schema migrations
//! of `migrations/` applied under a server-side lock so that several
//! instances starting together apply each one exactly once.

use std::time::Duration;

use async_trait::async_trait;
use mysql_async::prelude::*;
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};

use super::migrations::MIGRATIONS;
use super::{
    Registration, StoreError, StoreResult, UniqueField, User, UserStore, select_user, within,
};

type UserRow = (u64, String, String, String, String, bool, i64);

fn user(row: UserRow) -> User {
    let (id, mobile, first_name, last_name, email, verified, created_at) = row;
    User {
        id,
        mobile,
        first_name,
        last_name,
        email,
        verified,
        created_at,
    }
}

pub struct MysqlUserStore {
    pool: Pool,
    timeout: Duration,
}

impl MysqlUserStore {
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
        let store = Self {
            pool: Pool::new(opts),
            timeout,
        };
        store.ping().await.map_err(|e| e.to_string())?;
        Ok(store)
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

    async fn find(
        &self,
        query: &'static str,
        value: mysql_async::Value,
    ) -> StoreResult<Option<User>> {
        let pool = &self.pool;
        let row: Option<UserRow> = within(self.timeout, "mysql select", async {
            let mut conn = pool.get_conn().await?;
            conn.exec_first(query, (value,)).await
        })
        .await?;
        Ok(row.map(user))
    }

    /// Runs a write and returns the affected rows, mapping unique-key
    /// violations to `Conflict`.
    async fn write(
        &self,
        query: &str,
        params: mysql_async::Params,
    ) -> StoreResult<(u64, Option<u64>)> {
        let pool = &self.pool;
        let result = tokio::time::timeout(self.timeout, async {
            let mut conn = pool.get_conn().await?;
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
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
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

#[async_trait]
impl UserStore for MysqlUserStore {
    async fn find_by_mobile(&self, mobile: &str) -> StoreResult<Option<User>> {
        self.find(select_user!("mobile = ?"), mobile.into()).await
    }

    async fn find_by_id(&self, id: u64) -> StoreResult<Option<User>> {
        self.find(select_user!("id = ?"), id.into()).await
    }

    async fn find_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.find(select_user!("email = ?"), email.into()).await
    }

    async fn find_registration(
        &self,
        mobile: &str,
        email: &str,
    ) -> StoreResult<(Option<User>, Option<User>)> {
        let query = select_user!("mobile = ? OR email = ?");
        let pool = &self.pool;
        let rows: Vec<UserRow> = within(self.timeout, "mysql select", async {
            let mut conn = pool.get_conn().await?;
            conn.exec(query, (mobile, email)).await
        })
        .await?;
        Ok(super::split_registration(
            rows.into_iter().map(user).collect(),
            mobile,
        ))
    }

    async fn insert(&self, r: &Registration, now: i64) -> StoreResult<User> {
        let (_, id) = self
            .write(
                "INSERT INTO users (mobile, first_name, last_name, email, verified, created_at, updated_at)
                 VALUES (?, ?, ?, ?, FALSE, ?, ?)",
                (&r.mobile, &r.first_name, &r.last_name, &r.email, now, now).into(),
            )
            .await?;
        let id = id.ok_or_else(|| StoreError::Unavailable("mysql insert: no id".into()))?;
        Ok(User {
            id,
            mobile: r.mobile.clone(),
            first_name: r.first_name.clone(),
            last_name: r.last_name.clone(),
            email: r.email.clone(),
            verified: false,
            created_at: now,
        })
    }

    async fn update_unverified(&self, id: u64, r: &Registration, now: i64) -> StoreResult<bool> {
        let (rows, _) = self
            .write(
                "UPDATE users SET first_name = ?, last_name = ?, email = ?, updated_at = ?
                 WHERE id = ? AND verified = FALSE",
                (&r.first_name, &r.last_name, &r.email, now, id).into(),
            )
            .await?;
        Ok(rows == 1)
    }

    async fn mark_verified(&self, mobile: &str, now: i64) -> StoreResult<bool> {
        let (rows, _) = self
            .write(
                "UPDATE users SET verified = TRUE, updated_at = ? WHERE mobile = ? AND verified = FALSE",
                (now, mobile).into(),
            )
            .await?;
        Ok(rows == 1)
    }

    async fn delete_unverified(&self, id: u64) -> StoreResult<bool> {
        let (rows, _) = self
            .write(
                "DELETE FROM users WHERE id = ? AND verified = FALSE",
                (id,).into(),
            )
            .await?;
        Ok(rows == 1)
    }

    async fn ping(&self) -> StoreResult<()> {
        let pool = &self.pool;
        within(self.timeout, "mysql ping", async {
            let mut conn = pool.get_conn().await?;
            conn.ping().await
        })
        .await
    }
}
