//! Sessions: one per login, with its refresh tokens (stored as HMACs only)
//! and the revocation log. `SessionStore` and its SQLite and MySQL
//! implementations; every multi-row change is one transaction.

mod mysql;
mod sqlite;

use async_trait::async_trait;

use super::StoreResult;

pub use mysql::MysqlSessionStore;
pub use sqlite::SqliteSessionStore;

/// The HMAC of a refresh token; the token itself is never stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A session as stored. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub user_id: u64,
    pub created_at: i64,
    pub last_used_at: i64,
    /// Login + `session.max_lifetime`: no refresh goes past it.
    pub expires_at: i64,
    /// When the current refresh token lapses.
    pub refresh_expires_at: i64,
}

/// What a refresh found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// The token was the session's live one: now spent, `next` is live.
    Rotated(Session),
    /// The token was spent before, at `spent_at`.
    Reused {
        session_id: String,
        user_id: u64,
        spent_at: i64,
    },
    /// Unknown, expired, or of an ended or revoked session.
    Invalid,
}

/// Which sessions a revocation ends.
#[derive(Debug, Clone, Copy)]
pub enum Revoke<'a> {
    /// One of the user's live sessions.
    One { user_id: u64, session_id: &'a str },
    /// Every live session of the user, but `except`.
    AllOf {
        user_id: u64,
        except: Option<&'a str>,
    },
}

/// A revoked session: its access tokens are refused until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSession {
    pub session_id: String,
    pub until: i64,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session and its first refresh token.
    async fn create(&self, session: &Session, refresh: &TokenHash) -> StoreResult<()>;
    /// In one atomic step: when `presented` is a live session's live token,
    /// spend it, make `next` the session's token (lapsing `refresh_ttl`
    /// seconds from `now`, never past the session's end) and return the
    /// session. Of concurrent rotations of one token exactly one wins.
    async fn rotate(
        &self,
        presented: &TokenHash,
        next: &TokenHash,
        now: i64,
        refresh_ttl: i64,
    ) -> StoreResult<Refreshed>;
    /// The user's sessions that are neither revoked nor ended, oldest first.
    async fn live_for_user(&self, user_id: u64, now: i64) -> StoreResult<Vec<Session>>;
    /// Revokes the live sessions `which` names, logging each until `until`;
    /// returns their ids.
    async fn revoke(&self, which: Revoke<'_>, now: i64, until: i64) -> StoreResult<Vec<String>>;
    /// The revocation log's entries revoked at or after `since` and still
    /// in force at `now`.
    async fn revoked_since(&self, since: i64, now: i64) -> StoreResult<Vec<RevokedSession>>;
}
