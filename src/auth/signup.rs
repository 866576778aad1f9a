//! Registration and its verification.

use std::sync::Arc;

use super::delivery::OtpDelivery;
use super::unix_now;
use crate::api::ApiError;
use crate::audit::Audit;
use crate::context::RequestContext;
use crate::mobile::masked;
use crate::store::{Purpose, Registration, StoreError, UniqueField, User, UserStore};

/// Whether a registration made a new account or refreshed an unverified one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Created,
    Updated,
}

pub struct Signup {
    users: Arc<dyn UserStore>,
    delivery: Arc<OtpDelivery>,
    audit: Arc<Audit>,
}

impl Signup {
    pub fn new(users: Arc<dyn UserStore>, delivery: Arc<OtpDelivery>, audit: Arc<Audit>) -> Self {
        Self {
            users,
            delivery,
            audit,
        }
    }

    /// Sends a registration OTP and records the details. The account row is
    /// written only once the SMS went out, so a failed send leaves nothing.
    pub async fn register(
        &self,
        ctx: &RequestContext,
        registration: Registration,
    ) -> Result<Registered, ApiError> {
        let (existing, email_owner) = self
            .users
            .find_registration(&registration.mobile, &registration.email)
            .await?;
        if existing.as_ref().is_some_and(|u| u.verified) {
            return Err(ApiError::AlreadyRegistered);
        }
        if let Some(owner) = email_owner {
            self.claim_email(ctx, &owner).await?;
        }
        let existing_id = existing.as_ref().map(|u| u.id);
        let digest = self
            .delivery
            .send(ctx, Purpose::Register, &registration.mobile)
            .await?;
        let now = unix_now();
        let saved = match existing_id {
            None => self
                .users
                .insert(&registration, now)
                .await
                .map(|_| Registered::Created),
            Some(id) => match self.users.update_unverified(id, &registration, now).await {
                Ok(true) => Ok(Registered::Updated),
                Ok(false) => Err(StoreError::Conflict(UniqueField::Mobile)),
                Err(e) => Err(e),
            },
        };
        match saved {
            Ok(outcome) => {
                tracing::info!(request_id = ctx.request_id(), mobile = %masked(&registration.mobile), ?outcome, "registration OTP sent");
                self.audit
                    .event("registered", ctx)
                    .mobile(&registration.mobile)
                    .emit();
                Ok(outcome)
            }
            Err(e) => {
                self.delivery
                    .revoke(ctx, Purpose::Register, &registration.mobile, &digest)
                    .await;
                Err(e.into())
            }
        }
    }

    /// An email belongs to a verified account, or to an unverified one while
    /// its registration OTP is live. Past that the stale registration is
    /// removed and the email is free: nobody can squat an address they
    /// cannot verify.
    async fn claim_email(&self, ctx: &RequestContext, owner: &User) -> Result<(), ApiError> {
        if owner.verified
            || self
                .delivery
                .is_live(Purpose::Register, &owner.mobile)
                .await?
        {
            return Err(ApiError::EmailTaken);
        }
        if self.users.delete_unverified(owner.id).await? {
            tracing::info!(request_id = ctx.request_id(), mobile = %masked(&owner.mobile), "stale unverified registration gave up its email");
        }
        Ok(())
    }

    /// Consumes the registration OTP and activates the account.
    ///
    /// The happy path is two round trips (consume, then mark verified); the
    /// account is looked up only to explain a failure, since a live
    /// registration OTP exists only for an unverified account.
    pub async fn verify(
        &self,
        ctx: &RequestContext,
        mobile: &str,
        otp: &str,
    ) -> Result<(), ApiError> {
        let consumed = self
            .delivery
            .consume(ctx, Purpose::Register, mobile, otp)
            .await;
        if let Err(ApiError::OtpExpired) = consumed {
            // No live OTP: say why, as an account that is missing or verified.
            let user = self.user(mobile).await?;
            return Err(if user.verified {
                ApiError::AlreadyVerified
            } else {
                ApiError::OtpExpired
            });
        }
        consumed?;
        if !self.users.mark_verified(mobile, unix_now()).await? {
            let user = self.user(mobile).await?;
            debug_assert!(user.verified);
            return Err(ApiError::AlreadyVerified);
        }
        tracing::info!(request_id = ctx.request_id(), mobile = %masked(mobile), "account verified");
        self.audit.event("verified", ctx).mobile(mobile).emit();
        Ok(())
    }

    /// Sends a new registration OTP, under the same cooldown as the first.
    pub async fn resend(&self, ctx: &RequestContext, mobile: &str) -> Result<(), ApiError> {
        if self.user(mobile).await?.verified {
            return Err(ApiError::AlreadyVerified);
        }
        self.delivery.send(ctx, Purpose::Register, mobile).await?;
        tracing::info!(request_id = ctx.request_id(), mobile = %masked(mobile), "registration OTP re-sent");
        Ok(())
    }

    async fn user(&self, mobile: &str) -> Result<User, ApiError> {
        self.users
            .find_by_mobile(mobile)
            .await?
            .ok_or(ApiError::UserNotFound)
    }
}
