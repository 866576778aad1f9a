//! The embedded backend's database: one SQLite file, created on first start
//! (readable by its owner only) and migrated from `migrations/sqlite/`.
//! rusqlite is synchronous, so each call runs on the blocking pool, one at a
//! time on the one connection.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::store::migrations::{Migration, SQLITE};
use crate::store::{StoreError, StoreResult, UniqueField};

#[derive(Clone)]
pub struct SqliteDb {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteDb {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, String> {
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, String> {
            let fail = |e: &dyn std::fmt::Display| format!("sqlite {}: {e}", path.display());
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
            }
            // Accounts are personal data: a new database file (and so its WAL
            // and shared-memory files, which SQLite gives the same mode) is
            // readable by its owner only.
            {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| fail(&e))?;
            }
            let mut conn = Connection::open(&path).map_err(|e| fail(&e))?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(|e| fail(&e))?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(|e| fail(&e))?;
            conn.busy_timeout(std::time::Duration::from_secs(2))
                .map_err(|e| fail(&e))?;
            // Deleting an account deletes its sessions and refresh tokens.
            conn.pragma_update(None, "foreign_keys", "ON")
                .map_err(|e| fail(&e))?;
            migrate(&mut conn, SQLITE).map_err(|e| fail(&e))?;
            Ok(conn)
        })
        .await
        .map_err(|e| format!("sqlite open task: {e}"))??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `op` on the connection, off the async threads.
    pub async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            op(&conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("sqlite task: {e}")))?
        .map_err(to_store_error)
    }
}

/// Applies the migrations not yet recorded, each in its own transaction.
fn migrate(conn: &mut Connection, migrations: &[Migration]) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS otpgate_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT    NOT NULL,
            applied_at INTEGER NOT NULL
        )",
    )?;
    for m in migrations {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let done: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM otpgate_migrations WHERE version = ?1)",
            [m.version],
            |row| row.get(0),
        )?;
        if !done {
            tx.execute_batch(m.sql)?;
            tx.execute(
                "INSERT INTO otpgate_migrations (version, name, applied_at) VALUES (?1, ?2, unixepoch())",
                rusqlite::params![m.version, m.name],
            )?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// A unique-constraint failure names its `table.column`; anything else is
/// the database being unusable.
fn to_store_error(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, Some(message)) = &e
        && failure.code == rusqlite::ErrorCode::ConstraintViolation
    {
        if message.contains("users.email") {
            return StoreError::Conflict(UniqueField::Email);
        }
        if message.contains("users.mobile") {
            return StoreError::Conflict(UniqueField::Mobile);
        }
    }
    StoreError::Unavailable(format!("sqlite: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrations_apply_once_and_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        for _ in 0..2 {
            let db = SqliteDb::open(&path).await.unwrap();
            let recorded: Vec<(u32, String)> = db
                .run(|c| {
                    c.prepare("SELECT version, name FROM otpgate_migrations ORDER BY version")?
                        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                        .collect()
                })
                .await
                .unwrap();
            let expected: Vec<(u32, String)> = SQLITE
                .iter()
                .map(|m| (m.version, m.name.to_owned()))
                .collect();
            assert_eq!(recorded, expected);
        }
    }
}
