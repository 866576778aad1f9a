//! Registration, verification and login: plain async functions over the
//! storage traits and an SMS sender. No HTTP server, no Pingora.

use std::sync::Arc;

use serde::Serialize;

use super::mobile::masked;
use super::otp::OtpCodec;
use super::token::{Claims, Tokens};
use super::unix_now;
use crate::api::ApiError;
use crate::config::OtpConfig;
use crate::sms::{SmsMessage, SmsSender};
use crate::store::{
    IssueOutcome, OtpDigest, OtpLimits, Purpose, Registration, Storage, StoreError, User,
    VerifyOutcome,
};

/// Whether a registration made a new account or refreshed an unverified one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Created,
    Updated,
}

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

pub struct AuthService {
    storage: Storage,
    sms: Arc<dyn SmsSender>,
    codec: OtpCodec,
    limits: OtpLimits,
    tokens: Arc<Tokens>,
    default_country_code: Option<String>,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(crate::store::UniqueField::Email) => ApiError::EmailTaken,
            StoreError::Conflict(crate::store::UniqueField::Mobile) => ApiError::AlreadyRegistered,
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "storage unavailable");
                ApiError::StorageUnavailable
            }
        }
    }
}

impl AuthService {
    pub fn new(
        storage: Storage,
        sms: Arc<dyn SmsSender>,
        otp: &OtpConfig,
        codec: OtpCodec,
        tokens: Arc<Tokens>,
    ) -> Self {
        Self {
            storage,
            sms,
            codec,
            limits: OtpLimits {
                ttl: otp.ttl,
                cooldown: otp.cooldown,
                max_attempts: otp.max_attempts,
            },
            tokens,
            default_country_code: otp.default_country_code.clone(),
        }
    }

    pub fn default_country_code(&self) -> Option<&str> {
        self.default_country_code.as_deref()
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Sends a registration OTP and records the details. The account row is
    /// written only once the SMS went out, so a failed send leaves nothing.
    pub async fn register(&self, registration: Registration) -> Result<Registered, ApiError> {
        let users = &self.storage.users;
        let (existing, email_owner) = users
            .find_registration(&registration.mobile, &registration.email)
            .await?;
        if existing.as_ref().is_some_and(|u| u.verified) {
            return Err(ApiError::AlreadyRegistered);
        }
        if let Some(owner) = email_owner {
            self.claim_email(&owner).await?;
        }
        let existing_id = existing.as_ref().map(|u| u.id);
        let digest = self
            .send_otp(Purpose::Register, &registration.mobile)
            .await?;
        let now = unix_now();
        let saved = match existing_id {
            None => users
                .insert(&registration, now)
                .await
                .map(|_| Registered::Created),
            Some(id) => match users.update_unverified(id, &registration, now).await {
                Ok(true) => Ok(Registered::Updated),
                Ok(false) => Err(StoreError::Conflict(crate::store::UniqueField::Mobile)),
                Err(e) => Err(e),
            },
        };
        match saved {
            Ok(outcome) => {
                tracing::info!(mobile = %masked(&registration.mobile), ?outcome, "registration OTP sent");
                Ok(outcome)
            }
            Err(e) => {
                self.revoke(Purpose::Register, &registration.mobile, &digest)
                    .await;
                Err(e.into())
            }
        }
    }

    /// An email belongs to a verified account, or to an unverified one while
    /// its registration OTP is live. Past that the stale registration is
    /// removed and the email is free: nobody can squat an address they
    /// cannot verify.
    async fn claim_email(&self, owner: &User) -> Result<(), ApiError> {
        if owner.verified
            || self
                .storage
                .otps
                .is_live(Purpose::Register, &owner.mobile)
                .await?
        {
            return Err(ApiError::EmailTaken);
        }
        if self.storage.users.delete_unverified(owner.id).await? {
            tracing::info!(mobile = %masked(&owner.mobile), "stale unverified registration gave up its email");
        }
        Ok(())
    }

    /// Consumes the registration OTP and activates the account.
    ///
    /// The happy path is two round trips (consume, then mark verified); the
    /// account is looked up only to explain a failure, since a live
    /// registration OTP exists only for an unverified account.
    pub async fn verify_registration(&self, mobile: &str, otp: &str) -> Result<(), ApiError> {
        let consumed = self.consume(Purpose::Register, mobile, otp).await;
        if let Err(ApiError::OtpExpired) = consumed {
            // No live OTP: say why, as an account that is missing or verified.
            let user = self.user_by_mobile(mobile).await?;
            return Err(if user.verified {
                ApiError::AlreadyVerified
            } else {
                ApiError::OtpExpired
            });
        }
        consumed?;
        if !self.storage.users.mark_verified(mobile, unix_now()).await? {
            let user = self.user_by_mobile(mobile).await?;
            debug_assert!(user.verified);
            return Err(ApiError::AlreadyVerified);
        }
        tracing::info!(mobile = %masked(mobile), "account verified");
        Ok(())
    }

    /// Step 1 (no OTP): send a login OTP. Step 2: trade it for a token.
    pub async fn login(&self, mobile: &str, otp: Option<&str>) -> Result<LoginOutcome, ApiError> {
        let user = self.user_by_mobile(mobile).await?;
        if !user.verified {
            return Err(ApiError::AccountNotVerified);
        }
        let Some(otp) = otp else {
            self.send_otp(Purpose::Login, mobile).await?;
            tracing::info!(mobile = %masked(mobile), "login OTP sent");
            return Ok(LoginOutcome::OtpSent);
        };
        self.consume(Purpose::Login, mobile, otp).await?;
        let login_at = unix_now();
        let issued = self.tokens.issue(&user, login_at);
        tracing::info!(user_id = user.id, "login succeeded");
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

    /// Sends a new OTP for `purpose`, under the same cooldown as the first.
    pub async fn resend(&self, mobile: &str, purpose: Purpose) -> Result<(), ApiError> {
        let user = self.user_by_mobile(mobile).await?;
        match (purpose, user.verified) {
            (Purpose::Register, true) => return Err(ApiError::AlreadyVerified),
            (Purpose::Login, false) => return Err(ApiError::AccountNotVerified),
            _ => {}
        }
        self.send_otp(purpose, mobile).await?;
        tracing::info!(mobile = %masked(mobile), purpose = purpose.as_str(), "OTP re-sent");
        Ok(())
    }

    /// The account a verified token names.
    pub async fn current_user(&self, claims: &Claims) -> Result<User, ApiError> {
        let id: u64 = claims.sub.parse().map_err(|_| ApiError::InvalidToken)?;
        self.storage
            .users
            .find_by_id(id)
            .await?
            .ok_or(ApiError::UserNotFound)
    }

    async fn user_by_mobile(&self, mobile: &str) -> Result<User, ApiError> {
        self.storage
            .users
            .find_by_mobile(mobile)
            .await?
            .ok_or(ApiError::UserNotFound)
    }

    /// Issues (cooldown permitting) and delivers an OTP. On a failed delivery
    /// the OTP and its cooldown are revoked: nothing usable is left behind.
    async fn send_otp(&self, purpose: Purpose, mobile: &str) -> Result<OtpDigest, ApiError> {
        let otp = self.codec.generate();
        let digest = self.codec.digest(purpose, mobile, otp.digits());
        if let IssueOutcome::Cooldown { retry_after } = self
            .storage
            .otps
            .issue(purpose, mobile, &digest, &self.limits)
            .await?
        {
            return Err(ApiError::Cooldown { retry_after });
        }
        let message = SmsMessage::new(mobile, otp.digits(), purpose, self.limits.ttl, unix_now());
        if let Err(e) = self.sms.send(&message).await {
            tracing::warn!(mobile = %masked(mobile), purpose = purpose.as_str(), error = %e, "SMS delivery failed");
            self.revoke(purpose, mobile, &digest).await;
            return Err(ApiError::SmsFailed);
        }
        Ok(digest)
    }

    async fn revoke(&self, purpose: Purpose, mobile: &str, digest: &OtpDigest) {
        if let Err(e) = self.storage.otps.revoke(purpose, mobile, digest).await {
            tracing::warn!(mobile = %masked(mobile), error = %e, "could not revoke an undelivered OTP");
        }
    }

    async fn consume(&self, purpose: Purpose, mobile: &str, otp: &str) -> Result<(), ApiError> {
        let candidate = self.codec.digest(purpose, mobile, otp);
        match self
            .storage
            .otps
            .verify(purpose, mobile, &candidate, &self.limits)
            .await?
        {
            VerifyOutcome::Valid => Ok(()),
            VerifyOutcome::Invalid => Err(ApiError::InvalidOtp),
            VerifyOutcome::Missing => Err(ApiError::OtpExpired),
        }
    }
}
