//! The embedded backend's users, in its SQLite database.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Registration, User, UserStore, select_user};
use crate::store::StoreResult;
use crate::store::backend::sqlite::SqliteDb;

pub struct SqliteUserStore {
    db: SqliteDb,
}

impl SqliteUserStore {
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get::<_, i64>(0)?.unsigned_abs(),
        mobile: row.get(1)?,
        first_name: row.get(2)?,
        last_name: row.get(3)?,
        email: row.get(4)?,
        verified: row.get(5)?,
        created_at: row.get(6)?,
    })
}

fn find_one(
    conn: &Connection,
    query: &str,
    value: rusqlite::types::Value,
) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(query)?
        .query_row([value], user_from_row)
        .optional()
}

#[async_trait]
impl UserStore for SqliteUserStore {
    async fn find_by_mobile(&self, mobile: &str) -> StoreResult<Option<User>> {
        let mobile = mobile.to_owned();
        self.db
            .run(move |c| find_one(c, select_user!("mobile = ?1"), mobile.into()))
            .await
    }

    async fn find_by_id(&self, id: u64) -> StoreResult<Option<User>> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        self.db
            .run(move |c| find_one(c, select_user!("id = ?1"), id.into()))
            .await
    }

    async fn find_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let email = email.to_owned();
        self.db
            .run(move |c| find_one(c, select_user!("email = ?1"), email.into()))
            .await
    }

    async fn find_registration(
        &self,
        mobile: &str,
        email: &str,
    ) -> StoreResult<(Option<User>, Option<User>)> {
        let (mobile, email) = (mobile.to_owned(), email.to_owned());
        self.db
            .run(move |c| {
                let rows = c
                    .prepare_cached(select_user!("mobile = ?1 OR email = ?2"))?
                    .query_map(params![mobile, email], user_from_row)?
                    .collect::<rusqlite::Result<Vec<User>>>()?;
                Ok(super::split_registration(rows, &mobile))
            })
            .await
    }

    async fn insert(&self, registration: &Registration, now: i64) -> StoreResult<User> {
        let r = registration.clone();
        self.db.run(move |c| {
            c.prepare_cached(
                "INSERT INTO users (mobile, first_name, last_name, email, verified, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
            )?
            .execute(params![r.mobile, r.first_name, r.last_name, r.email, now])?;
            Ok(User {
                id: c.last_insert_rowid().unsigned_abs(),
                mobile: r.mobile,
                first_name: r.first_name,
                last_name: r.last_name,
                email: r.email,
                verified: false,
                created_at: now,
            })
        })
        .await
    }

    async fn update_unverified(
        &self,
        id: u64,
        registration: &Registration,
        now: i64,
    ) -> StoreResult<bool> {
        let r = registration.clone();
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        self.db
            .run(move |c| {
                let changed = c
                .prepare_cached(
                    "UPDATE users SET first_name = ?1, last_name = ?2, email = ?3, updated_at = ?4
                     WHERE id = ?5 AND verified = 0",
                )?
                .execute(params![r.first_name, r.last_name, r.email, now, id])?;
                Ok(changed == 1)
            })
            .await
    }

    async fn mark_verified(&self, mobile: &str, now: i64) -> StoreResult<bool> {
        let mobile = mobile.to_owned();
        self.db.run(move |c| {
            let changed = c
                .prepare_cached(
                    "UPDATE users SET verified = 1, updated_at = ?1 WHERE mobile = ?2 AND verified = 0",
                )?
                .execute(params![now, mobile])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn delete_unverified(&self, id: u64) -> StoreResult<bool> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        self.db
            .run(move |c| {
                c.prepare_cached("DELETE FROM users WHERE id = ?1 AND verified = 0")?
                    .execute(params![id])
                    .map(|rows| rows == 1)
            })
            .await
    }

    async fn delete(&self, id: u64) -> StoreResult<bool> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        self.db
            .run(move |c| {
                c.prepare_cached("DELETE FROM users WHERE id = ?1")?
                    .execute(params![id])
                    .map(|rows| rows == 1)
            })
            .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db
            .run(|c| c.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }
}
