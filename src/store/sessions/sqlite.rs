//! Sessions in the embedded backend's SQLite database. Each call runs on
//! the one connection inside one transaction, so rotations serialise.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::{Refreshed, Revoke, RevokedSession, Session, SessionStore, TokenHash};
use crate::store::StoreResult;
use crate::store::backend::sqlite::SqliteDb;

pub struct SqliteSessionStore {
    db: SqliteDb,
}

impl SqliteSessionStore {
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }
}

fn session(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: row.get(0)?,
        user_id: row.get::<_, i64>(1)?.unsigned_abs(),
        created_at: row.get(2)?,
        last_used_at: row.get(3)?,
        expires_at: row.get(4)?,
        refresh_expires_at: row.get(5)?,
    })
}

fn user_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

#[async_trait]
impl SessionStore for SqliteSessionStore {
    async fn create(&self, s: &Session, refresh: &TokenHash) -> StoreResult<()> {
        let (s, refresh) = (s.clone(), *refresh);
        self.db
            .run(move |c| {
                let tx = c.unchecked_transaction()?;
                tx.prepare_cached(
                    "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, refresh_expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    s.id,
                    user_id(s.user_id),
                    s.created_at,
                    s.last_used_at,
                    s.expires_at,
                    s.refresh_expires_at
                ])?;
                tx.prepare_cached(
                    "INSERT INTO refresh_tokens (hash, session_id, expires_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![&refresh.0[..], s.id, s.refresh_expires_at])?;
                tx.commit()
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
        let (presented, next) = (*presented, *next);
        self.db
            .run(move |c| {
                let tx = c.unchecked_transaction()?;
                type Found = (Option<i64>, i64, Session, Option<i64>);
                let found: Option<Found> = tx
                    .prepare_cached(
                        "SELECT s.id, s.user_id, s.created_at, s.last_used_at, s.expires_at,
                                s.refresh_expires_at, t.spent_at, t.expires_at, s.revoked_at
                         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
                         WHERE t.hash = ?1",
                    )?
                    .query_row(params![&presented.0[..]], |row| {
                        Ok((row.get(6)?, row.get(7)?, session(row)?, row.get(8)?))
                    })
                    .optional()?;
                let Some((spent_at, token_expires, mut s, revoked)) = found else {
                    return Ok(Refreshed::Invalid);
                };
                if let Some(spent_at) = spent_at {
                    return Ok(Refreshed::Reused {
                        session_id: s.id,
                        user_id: s.user_id,
                        spent_at,
                    });
                }
                if revoked.is_some() || token_expires <= now || s.expires_at <= now {
                    return Ok(Refreshed::Invalid);
                }
                s.refresh_expires_at = now.saturating_add(refresh_ttl).min(s.expires_at);
                s.last_used_at = now;
                tx.prepare_cached("UPDATE refresh_tokens SET spent_at = ?1 WHERE hash = ?2")?
                    .execute(params![now, &presented.0[..]])?;
                tx.prepare_cached(
                    "INSERT INTO refresh_tokens (hash, session_id, expires_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![&next.0[..], s.id, s.refresh_expires_at])?;
                tx.prepare_cached(
                    "UPDATE sessions SET last_used_at = ?1, refresh_expires_at = ?2 WHERE id = ?3",
                )?
                .execute(params![now, s.refresh_expires_at, s.id])?;
                tx.commit()?;
                Ok(Refreshed::Rotated(s))
            })
            .await
    }

    async fn live_for_user(&self, user_id_: u64, now: i64) -> StoreResult<Vec<Session>> {
        let id = user_id(user_id_);
        self.db
            .run(move |c| {
                c.prepare_cached(
                    "SELECT id, user_id, created_at, last_used_at, expires_at, refresh_expires_at
                     FROM sessions
                     WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2 AND refresh_expires_at > ?2
                     ORDER BY created_at, id",
                )?
                .query_map(params![id, now], session)?
                .collect()
            })
            .await
    }

    async fn revoke(&self, which: Revoke<'_>, now: i64, until: i64) -> StoreResult<Vec<String>> {
        let (user, only, except) = match which {
            Revoke::One {
                user_id,
                session_id,
            } => (user_id, Some(session_id.to_owned()), None),
            Revoke::AllOf { user_id, except } => (user_id, None, except.map(str::to_owned)),
        };
        let user = user_id(user);
        self.db
            .run(move |c| {
                let tx = c.unchecked_transaction()?;
                let ids: Vec<String> = tx
                    .prepare_cached(
                        "SELECT id FROM sessions
                         WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2 AND refresh_expires_at > ?2
                           AND (?3 IS NULL OR id = ?3) AND (?4 IS NULL OR id <> ?4)",
                    )?
                    .query_map(params![user, now, only, except], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                for id in &ids {
                    tx.prepare_cached("UPDATE sessions SET revoked_at = ?1 WHERE id = ?2")?
                        .execute(params![now, id])?;
                    tx.prepare_cached(
                        "INSERT INTO revoked_sessions (session_id, revoked_at, until_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (session_id) DO UPDATE SET until_at = max(until_at, excluded.until_at)",
                    )?
                    .execute(params![id, now, until])?;
                }
                tx.commit()?;
                Ok(ids)
            })
            .await
    }

    async fn revoked_since(&self, since: i64, now: i64) -> StoreResult<Vec<RevokedSession>> {
        self.db
            .run(move |c| {
                c.prepare_cached(
                    "SELECT session_id, until_at FROM revoked_sessions WHERE revoked_at >= ?1 AND until_at > ?2",
                )?
                .query_map(params![since, now], |row| {
                    Ok(RevokedSession {
                        session_id: row.get(0)?,
                        until: row.get(1)?,
                    })
                })?
                .collect()
            })
            .await
    }
}
