//! Sessions in MySQL / MariaDB. Rotation locks the presented token's row
//! (`SELECT ... FOR UPDATE`) inside a transaction, so concurrent refreshes
//! with one token serialise and exactly one finds it unspent.

use async_trait::async_trait;
use mysql_async::TxOpts;
use mysql_async::prelude::*;

use super::{Refreshed, Revoke, RevokedSession, Session, SessionStore, TokenHash};
use crate::store::backend::mysql::MysqlDb;
use crate::store::{StoreResult, within};

type SessionRow = (String, u64, i64, i64, i64, i64);

fn session(row: SessionRow) -> Session {
    let (id, user_id, created_at, last_used_at, expires_at, refresh_expires_at) = row;
    Session {
        id,
        user_id,
        created_at,
        last_used_at,
        expires_at,
        refresh_expires_at,
    }
}

pub struct MysqlSessionStore {
    db: MysqlDb,
}

impl MysqlSessionStore {
    pub fn new(db: MysqlDb) -> Self {
        Self { db }
    }
}

#[async_trait]
impl SessionStore for MysqlSessionStore {
    async fn create(&self, s: &Session, refresh: &TokenHash) -> StoreResult<()> {
        let pool = self.db.pool();
        within(self.db.timeout(), "mysql session create", async {
            let mut tx = pool.start_transaction(TxOpts::default()).await?;
            tx.exec_drop(
                "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, refresh_expires_at)
                 VALUES (?, ?, ?, ?, ?, ?)",
                (&s.id, s.user_id, s.created_at, s.last_used_at, s.expires_at, s.refresh_expires_at),
            )
            .await?;
            tx.exec_drop(
                "INSERT INTO refresh_tokens (hash, session_id, expires_at) VALUES (?, ?, ?)",
                (&refresh.0[..], &s.id, s.refresh_expires_at),
            )
            .await?;
            tx.commit().await
        })
        .await
    }

    async fn rotate(
        &self,
        presented: &TokenHash,
        next: &TokenHash,
        now: i64,
        refresh_ttl: i64,
    ) -> StoreResult<Refreshed> {
        let pool = self.db.pool();
        within(self.db.timeout(), "mysql refresh", async {
            let mut tx = pool.start_transaction(TxOpts::default()).await?;
            type Row = (Option<i64>, i64, String, u64, i64, i64, i64, Option<i64>);
            let row: Option<Row> = tx
                .exec_first(
                    "SELECT t.spent_at, t.expires_at, s.id, s.user_id, s.created_at, s.last_used_at,
                            s.expires_at, s.revoked_at
                     FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
                     WHERE t.hash = ? FOR UPDATE",
                    (&presented.0[..],),
                )
                .await?;
            let Some((spent_at, token_expires, id, user_id, created_at, _, expires_at, revoked)) =
                row
            else {
                return Ok::<_, mysql_async::Error>(Refreshed::Invalid);
            };
            if let Some(spent_at) = spent_at {
                return Ok(Refreshed::Reused {
                    session_id: id,
                    user_id,
                    spent_at,
                });
            }
            if revoked.is_some() || token_expires <= now || expires_at <= now {
                return Ok(Refreshed::Invalid);
            }
            let refresh_expires_at = now.saturating_add(refresh_ttl).min(expires_at);
            tx.exec_drop(
                "UPDATE refresh_tokens SET spent_at = ? WHERE hash = ?",
                (now, &presented.0[..]),
            )
            .await?;
            tx.exec_drop(
                "INSERT INTO refresh_tokens (hash, session_id, expires_at) VALUES (?, ?, ?)",
                (&next.0[..], &id, refresh_expires_at),
            )
            .await?;
            tx.exec_drop(
                "UPDATE sessions SET last_used_at = ?, refresh_expires_at = ? WHERE id = ?",
                (now, refresh_expires_at, &id),
            )
            .await?;
            tx.commit().await?;
            Ok(Refreshed::Rotated(Session {
                id,
                user_id,
                created_at,
                last_used_at: now,
                expires_at,
                refresh_expires_at,
            }))
        })
        .await
    }

    async fn live_for_user(&self, user_id: u64, now: i64) -> StoreResult<Vec<Session>> {
        let rows: Vec<SessionRow> = self
            .db
            .rows(
                "SELECT id, user_id, created_at, last_used_at, expires_at, refresh_expires_at
                 FROM sessions
                 WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? AND refresh_expires_at > ?
                 ORDER BY created_at, id",
                (user_id, now, now),
            )
            .await?;
        Ok(rows.into_iter().map(session).collect())
    }

    async fn revoke(&self, which: Revoke<'_>, now: i64, until: i64) -> StoreResult<Vec<String>> {
        let (user_id, only, except) = match which {
            Revoke::One {
                user_id,
                session_id,
            } => (user_id, Some(session_id), None),
            Revoke::AllOf { user_id, except } => (user_id, None, except),
        };
        let pool = self.db.pool();
        within(self.db.timeout(), "mysql revoke", async {
            let mut tx = pool.start_transaction(TxOpts::default()).await?;
            let ids: Vec<String> = tx
                .exec(
                    "SELECT id FROM sessions
                     WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? AND refresh_expires_at > ?
                       AND (? IS NULL OR id = ?) AND (? IS NULL OR id <> ?)
                     FOR UPDATE",
                    (user_id, now, now, only, only, except, except),
                )
                .await?;
            for id in &ids {
                tx.exec_drop("UPDATE sessions SET revoked_at = ? WHERE id = ?", (now, id))
                    .await?;
                tx.exec_drop(
                    "INSERT INTO revoked_sessions (session_id, revoked_at, until_at) VALUES (?, ?, ?)
                     ON DUPLICATE KEY UPDATE until_at = GREATEST(until_at, VALUES(until_at))",
                    (id, now, until),
                )
                .await?;
            }
            tx.commit().await?;
            Ok::<_, mysql_async::Error>(ids)
        })
        .await
    }

    async fn revoked_since(&self, since: i64, now: i64) -> StoreResult<Vec<RevokedSession>> {
        let rows: Vec<(String, i64)> = self
            .db
            .rows(
                "SELECT session_id, until_at FROM revoked_sessions WHERE revoked_at >= ? AND until_at > ?",
                (since, now),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(session_id, until)| RevokedSession { session_id, until })
            .collect())
    }
}
