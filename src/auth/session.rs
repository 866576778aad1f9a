//! Sessions: one per login, refreshed by rotating refresh tokens, ended by
//! logout, session deletion, reuse of a spent token or account deletion.
//! Every revocation is recorded, applied to this instance's set at once and
//! published to the others.

use std::sync::Arc;

use serde::Serialize;

use super::access::Principal;
use super::refresh::RefreshCodec;
use super::token::{IssuedToken, Tokens};
use super::unix_now;
use crate::api::ApiError;
use crate::audit::Audit;
use crate::config::SessionConfig;
use crate::context::RequestContext;
use crate::revocation::Revocations;
use crate::store::{
    Refreshed, RevocationFeed, Revoke, RevokedSession, Session, SessionStore, User, UserStore,
};

/// What a login or a refresh hands the client.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    pub access: IssuedToken,
    pub refresh_token: String,
    pub session_id: String,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Grant(session {}, tokens ***)", self.session_id)
    }
}

/// Which sessions a logout ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutScope {
    /// The caller's session.
    Local,
    /// Every session of the caller.
    Global,
    /// Every session of the caller but this one.
    Others,
}

impl LogoutScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Global => "global",
            Self::Others => "others",
        }
    }
}

/// One entry of `GET /sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionView {
    pub id: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub current: bool,
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

pub struct Sessions {
    store: Arc<dyn SessionStore>,
    users: Arc<dyn UserStore>,
    tokens: Arc<Tokens>,
    codec: RefreshCodec,
    revocations: Arc<Revocations>,
    feed: Arc<dyn RevocationFeed>,
    config: SessionConfig,
    audit: Arc<Audit>,
}

/// Where a revocation goes: this instance's view and the feed to the others.
pub struct RevocationChannel {
    pub view: Arc<Revocations>,
    pub feed: Arc<dyn RevocationFeed>,
}

impl Sessions {
    pub fn new(
        store: Arc<dyn SessionStore>,
        users: Arc<dyn UserStore>,
        tokens: Arc<Tokens>,
        codec: RefreshCodec,
        channel: RevocationChannel,
        config: SessionConfig,
        audit: Arc<Audit>,
    ) -> Self {
        Self {
            store,
            users,
            tokens,
            codec,
            revocations: channel.view,
            feed: channel.feed,
            config,
            audit,
        }
    }

    /// A new session for `user`, who just logged in.
    pub async fn start(&self, user: &User, now: i64) -> Result<Grant, ApiError> {
        let expires_at = now.saturating_add(secs(self.config.max_lifetime));
        let session = Session {
            id: self.codec.session_id(),
            user_id: user.id,
            created_at: now,
            last_used_at: now,
            expires_at,
            refresh_expires_at: now
                .saturating_add(secs(self.config.refresh_ttl))
                .min(expires_at),
        };
        let refresh_token = self.codec.generate();
        self.store
            .create(&session, &self.codec.hash(&refresh_token))
            .await?;
        Ok(Grant {
            access: self.tokens.issue(user, &session.id, now),
            refresh_token,
            session_id: session.id,
        })
    }

    /// Spends `refresh_token` for a new access token and refresh token.
    pub async fn refresh(
        &self,
        ctx: &RequestContext,
        refresh_token: &str,
    ) -> Result<Grant, ApiError> {
        let now = unix_now();
        let next = self.codec.generate();
        let outcome = self
            .store
            .rotate(
                &self.codec.hash(refresh_token),
                &self.codec.hash(&next),
                now,
                secs(self.config.refresh_ttl),
            )
            .await?;
        match outcome {
            Refreshed::Rotated(session) => {
                let user = self
                    .users
                    .find_by_id(session.user_id)
                    .await?
                    .ok_or(ApiError::InvalidRefreshToken)?;
                tracing::info!(request_id = ctx.request_id(), user_id = user.id, session_id = %session.id, "refresh");
                self.audit
                    .event("refresh", ctx)
                    .user(user.id)
                    .session(&session.id)
                    .emit();
                Ok(Grant {
                    access: self.tokens.issue(&user, &session.id, now),
                    refresh_token: next,
                    session_id: session.id,
                })
            }
            Refreshed::Reused {
                session_id,
                user_id,
                spent_at,
            } => {
                // Within the grace a client's retry is refused but forgiven;
                // past it, a replayed token means a stolen one.
                let grace = secs(self.config.reuse_grace);
                let stale = grace == 0 || now.saturating_sub(spent_at) > grace;
                tracing::warn!(request_id = ctx.request_id(), user_id, %session_id, revoked = stale, "refresh token reused");
                self.audit
                    .event("refresh_reused", ctx)
                    .user(user_id)
                    .session(&session_id)
                    .detail("session", if stale { "revoked" } else { "kept" })
                    .emit();
                if stale {
                    self.revoke(
                        ctx,
                        Revoke::One {
                            user_id,
                            session_id: &session_id,
                        },
                    )
                    .await?;
                }
                Err(ApiError::RefreshTokenReused)
            }
            Refreshed::Invalid => Err(ApiError::InvalidRefreshToken),
        }
    }

    pub async fn logout(
        &self,
        ctx: &RequestContext,
        principal: &Principal,
        scope: LogoutScope,
    ) -> Result<(), ApiError> {
        let (user_id, session_id) = (principal.user_id, &*principal.session_id);
        let which = match scope {
            LogoutScope::Local => Revoke::One {
                user_id,
                session_id,
            },
            LogoutScope::Global => Revoke::AllOf {
                user_id,
                except: None,
            },
            LogoutScope::Others => Revoke::AllOf {
                user_id,
                except: Some(session_id),
            },
        };
        self.revoke(ctx, which).await?;
        tracing::info!(request_id = ctx.request_id(), user_id, ?scope, "logout");
        self.audit
            .event("logout", ctx)
            .user(user_id)
            .session(session_id)
            .detail("scope", scope.as_str())
            .emit();
        Ok(())
    }

    /// The caller's live sessions, the current one marked.
    pub async fn list(&self, principal: &Principal) -> Result<Vec<SessionView>, ApiError> {
        let sessions = self
            .store
            .live_for_user(principal.user_id, unix_now())
            .await?;
        Ok(sessions
            .into_iter()
            .map(|s| SessionView {
                current: *s.id == *principal.session_id,
                id: s.id,
                created_at: s.created_at,
                last_used_at: s.last_used_at,
            })
            .collect())
    }

    /// Revokes one of the caller's live sessions.
    pub async fn delete(
        &self,
        ctx: &RequestContext,
        principal: &Principal,
        session_id: &str,
    ) -> Result<(), ApiError> {
        let which = Revoke::One {
            user_id: principal.user_id,
            session_id,
        };
        if self.revoke(ctx, which).await?.is_empty() {
            return Err(ApiError::SessionNotFound);
        }
        tracing::info!(request_id = ctx.request_id(), user_id = principal.user_id, %session_id, "session revoked");
        self.audit
            .event("session_revoked", ctx)
            .user(principal.user_id)
            .session(session_id)
            .emit();
        Ok(())
    }

    /// Ends every session of a user whose account is going away.
    pub async fn end_all(&self, ctx: &RequestContext, user_id: u64) -> Result<(), ApiError> {
        self.revoke(
            ctx,
            Revoke::AllOf {
                user_id,
                except: None,
            },
        )
        .await
        .map(|_| ())
    }

    /// Records, applies and publishes a revocation; returns the sessions it ended.
    async fn revoke(
        &self,
        ctx: &RequestContext,
        which: Revoke<'_>,
    ) -> Result<Vec<String>, ApiError> {
        let now = unix_now();
        // The last moment an access token of these sessions could be valid.
        let until = now
            .saturating_add(self.tokens.ttl_secs())
            .saturating_add(self.tokens.leeway_secs());
        let ids = self.store.revoke(which, now, until).await?;
        let revoked: Vec<RevokedSession> = ids
            .iter()
            .map(|id| RevokedSession {
                session_id: id.clone(),
                until,
            })
            .collect();
        self.revocations.insert(&revoked);
        if !revoked.is_empty()
            && let Err(e) = self.feed.publish(&revoked).await
        {
            // Recorded in the log: other instances pick it up at their next resync.
            tracing::warn!(request_id = ctx.request_id(), error = %e, "revocation not published");
        }
        Ok(ids)
    }
}
