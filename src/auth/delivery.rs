//! OTPs end to end: issue (cooldown permitting) and deliver by SMS, take back
//! an undelivered one, and consume one a user submits. Signup and login both
//! use it; neither knows how an OTP is stored or sent.

use std::sync::Arc;

use super::mobile::masked;
use super::otp::OtpCodec;
use super::unix_now;
use crate::api::ApiError;
use crate::context::RequestContext;
use crate::sms::{SmsMessage, SmsSender};
use crate::store::{IssueOutcome, OtpDigest, OtpLimits, OtpStore, Purpose, VerifyOutcome};

pub struct OtpDelivery {
    otps: Arc<dyn OtpStore>,
    sms: Arc<dyn SmsSender>,
    codec: OtpCodec,
    limits: OtpLimits,
}

impl OtpDelivery {
    pub fn new(
        otps: Arc<dyn OtpStore>,
        sms: Arc<dyn SmsSender>,
        codec: OtpCodec,
        limits: OtpLimits,
    ) -> Self {
        Self {
            otps,
            sms,
            codec,
            limits,
        }
    }

    /// Issues (cooldown permitting) and delivers an OTP. On a failed delivery
    /// the OTP and its cooldown are revoked: nothing usable is left behind.
    pub async fn send(
        &self,
        ctx: &RequestContext,
        purpose: Purpose,
        mobile: &str,
    ) -> Result<OtpDigest, ApiError> {
        let otp = self.codec.generate();
        let digest = self.codec.digest(purpose, mobile, otp.digits());
        if let IssueOutcome::Cooldown { retry_after } = self
            .otps
            .issue(purpose, mobile, &digest, &self.limits)
            .await?
        {
            return Err(ApiError::Cooldown { retry_after });
        }
        let message = SmsMessage::new(mobile, otp.digits(), purpose, self.limits.ttl, unix_now());
        if let Err(e) = self.sms.send(&message).await {
            tracing::warn!(request_id = ctx.request_id(), mobile = %masked(mobile), purpose = purpose.as_str(), error = %e, "SMS delivery failed");
            self.revoke(ctx, purpose, mobile, &digest).await;
            return Err(ApiError::SmsFailed);
        }
        Ok(digest)
    }

    /// Takes back an OTP whose purpose failed after delivery.
    pub async fn revoke(
        &self,
        ctx: &RequestContext,
        purpose: Purpose,
        mobile: &str,
        digest: &OtpDigest,
    ) {
        if let Err(e) = self.otps.revoke(purpose, mobile, digest).await {
            tracing::warn!(request_id = ctx.request_id(), mobile = %masked(mobile), error = %e, "could not revoke an undelivered OTP");
        }
    }

    /// Consumes the live OTP for (purpose, mobile) if `otp` is it.
    pub async fn consume(&self, purpose: Purpose, mobile: &str, otp: &str) -> Result<(), ApiError> {
        let candidate = self.codec.digest(purpose, mobile, otp);
        match self
            .otps
            .verify(purpose, mobile, &candidate, &self.limits)
            .await?
        {
            VerifyOutcome::Valid => Ok(()),
            VerifyOutcome::Invalid => Err(ApiError::InvalidOtp),
            VerifyOutcome::Missing => Err(ApiError::OtpExpired),
        }
    }

    /// Removes every OTP and cooldown of `mobile`.
    pub async fn forget(&self, mobile: &str) -> Result<(), ApiError> {
        Ok(self.otps.forget(mobile).await?)
    }

    /// Whether a live OTP exists for (purpose, mobile).
    pub async fn is_live(&self, purpose: Purpose, mobile: &str) -> Result<bool, ApiError> {
        Ok(self.otps.is_live(purpose, mobile).await?)
    }
}
