//! Login: an OTP by SMS (step 1), traded for a token (step 2).

use std::sync::Arc;

use serde::Serialize;

use super::delivery::OtpDelivery;
use super::session::Sessions;
use super::unix_now;
use crate::api::ApiError;
use crate::audit::Audit;
use crate::context::RequestContext;
use crate::mobile::masked;
use crate::store::{Purpose, User, UserStore};

#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct LoginToken {
    pub token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub session_id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub login_at: i64,
}

impl std::fmt::Debug for LoginToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoginToken(session {}, tokens ***)", self.session_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    OtpSent,
    Token(Box<LoginToken>),
}

pub struct Login {
    users: Arc<dyn UserStore>,
    delivery: Arc<OtpDelivery>,
    sessions: Arc<Sessions>,
    audit: Arc<Audit>,
}

impl Login {
    pub fn new(
        users: Arc<dyn UserStore>,
        delivery: Arc<OtpDelivery>,
        sessions: Arc<Sessions>,
        audit: Arc<Audit>,
    ) -> Self {
        Self {
            users,
            delivery,
            sessions,
            audit,
        }
    }

    /// Step 1 (no OTP): send a login OTP. Step 2: trade it for a token.
    pub async fn login(
        &self,
        ctx: &RequestContext,
        mobile: &str,
        otp: Option<&str>,
    ) -> Result<LoginOutcome, ApiError> {
        let user = self.verified_user(mobile).await?;
        let Some(otp) = otp else {
            self.delivery.send(ctx, Purpose::Login, mobile).await?;
            tracing::info!(request_id = ctx.request_id(), mobile = %masked(mobile), "login OTP sent");
            return Ok(LoginOutcome::OtpSent);
        };
        self.delivery
            .consume(ctx, Purpose::Login, mobile, otp)
            .await?;
        let login_at = unix_now();
        let grant = self.sessions.start(&user, login_at).await?;
        tracing::info!(request_id = ctx.request_id(), user_id = user.id, session_id = %grant.session_id, "login");
        self.audit
            .event("login", ctx)
            .user(user.id)
            .mobile(mobile)
            .session(&grant.session_id)
            .emit();
        Ok(LoginOutcome::Token(Box::new(LoginToken {
            token: grant.access.token,
            token_type: "Bearer",
            expires_in: grant.access.expires_in,
            refresh_token: grant.refresh_token,
            session_id: grant.session_id,
            first_name: user.first_name,
            last_name: user.last_name,
            email: user.email,
            login_at,
        })))
    }

    /// Sends a new login OTP, under the same cooldown as the first.
    pub async fn resend(&self, ctx: &RequestContext, mobile: &str) -> Result<(), ApiError> {
        self.verified_user(mobile).await?;
        self.delivery.send(ctx, Purpose::Login, mobile).await?;
        tracing::info!(request_id = ctx.request_id(), mobile = %masked(mobile), "login OTP re-sent");
        Ok(())
    }

    async fn verified_user(&self, mobile: &str) -> Result<User, ApiError> {
        let user = self
            .users
            .find_by_mobile(mobile)
            .await?
            .ok_or(ApiError::UserNotFound)?;
        if !user.verified {
            return Err(ApiError::AccountNotVerified);
        }
        Ok(user)
    }
}
