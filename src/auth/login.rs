//! Login: an OTP by SMS (step 1), traded for a token (step 2).

use std::sync::Arc;

use serde::Serialize;

use super::delivery::OtpDelivery;
use super::mobile::masked;
use super::token::Tokens;
use super::unix_now;
use crate::api::ApiError;
use crate::context::RequestContext;
use crate::store::{Purpose, User, UserStore};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoginToken {
    pub token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub login_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    OtpSent,
    Token(Box<LoginToken>),
}

pub struct Login {
    users: Arc<dyn UserStore>,
    delivery: Arc<OtpDelivery>,
    tokens: Arc<Tokens>,
}

impl Login {
    pub fn new(users: Arc<dyn UserStore>, delivery: Arc<OtpDelivery>, tokens: Arc<Tokens>) -> Self {
        Self {
            users,
            delivery,
            tokens,
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
        self.delivery.consume(Purpose::Login, mobile, otp).await?;
        let login_at = unix_now();
        let issued = self.tokens.issue(&user, login_at);
        tracing::info!(
            request_id = ctx.request_id(),
            user_id = user.id,
            "login succeeded"
        );
        Ok(LoginOutcome::Token(Box::new(LoginToken {
            token: issued.token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
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
