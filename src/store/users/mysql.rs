//! The production user store, in MySQL / MariaDB.

use async_trait::async_trait;

use super::{Registration, User, UserStore, select_user};
use crate::store::backend::mysql::MysqlDb;
use crate::store::{StoreError, StoreResult};

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
    db: MysqlDb,
}

impl MysqlUserStore {
    pub fn new(db: MysqlDb) -> Self {
        Self { db }
    }

    async fn find(
        &self,
        query: &'static str,
        value: mysql_async::Value,
    ) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = self.db.first(query, (value,)).await?;
        Ok(row.map(user))
    }
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
        let rows: Vec<UserRow> = self
            .db
            .rows(select_user!("mobile = ? OR email = ?"), (mobile, email))
            .await?;
        Ok(super::split_registration(
            rows.into_iter().map(user).collect(),
            mobile,
        ))
    }

    async fn insert(&self, r: &Registration, now: i64) -> StoreResult<User> {
        let (_, id) = self
            .db
            .write(
                "INSERT INTO users (mobile, first_name, last_name, email, verified, created_at, updated_at)
                 VALUES (?, ?, ?, ?, FALSE, ?, ?)",
                (&r.mobile, &r.first_name, &r.last_name, &r.email, now, now),
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
            .db
            .write(
                "UPDATE users SET first_name = ?, last_name = ?, email = ?, updated_at = ?
                 WHERE id = ? AND verified = FALSE",
                (&r.first_name, &r.last_name, &r.email, now, id),
            )
            .await?;
        Ok(rows == 1)
    }

    async fn mark_verified(&self, mobile: &str, now: i64) -> StoreResult<bool> {
        let (rows, _) = self
            .db
            .write(
                "UPDATE users SET verified = TRUE, updated_at = ? WHERE mobile = ? AND verified = FALSE",
                (now, mobile),
            )
            .await?;
        Ok(rows == 1)
    }

    async fn delete_unverified(&self, id: u64) -> StoreResult<bool> {
        let (rows, _) = self
            .db
            .write("DELETE FROM users WHERE id = ? AND verified = FALSE", (id,))
            .await?;
        Ok(rows == 1)
    }

    async fn delete(&self, id: u64) -> StoreResult<bool> {
        let (rows, _) = self
            .db
            .write("DELETE FROM users WHERE id = ?", (id,))
            .await?;
        Ok(rows == 1)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db.ping().await
    }
}
