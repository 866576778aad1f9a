//! Accounts: the `UserStore` trait and its SQLite and MySQL implementations.

mod mysql;
mod sqlite;

use async_trait::async_trait;
use serde::Serialize;

use super::StoreResult;

pub use mysql::MysqlUserStore;
pub use sqlite::SqliteUserStore;

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
pub(crate) use select_user;

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
    /// Deletes the account (and, with it, its sessions); `Ok(false)` when gone.
    async fn delete(&self, id: u64) -> StoreResult<bool>;
    async fn ping(&self) -> StoreResult<()>;
}
