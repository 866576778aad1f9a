//! OTPs end to end: issue (limits, lockout and cooldown permitting) and
//! deliver by SMS, take back an undelivered one, and consume one a user
//! submits. Signup and login both use it; neither knows how an OTP is
//! stored, counted or sent.

use std::collections::HashMap;
use std::sync::Arc;

use super::otp::{Otp, OtpCodec};
use super::unix_now;
use crate::api::ApiError;
use crate::audit::Audit;
use crate::config::Secret;
use crate::context::RequestContext;
use crate::limits::{Limit, Limiter, SmsGrant};
use crate::mobile::masked;
use crate::sms::{SmsMessage, SmsSender};
use crate::store::{
    IssueOutcome, OtpDigest, OtpLimits, OtpStore, Purpose, SmsCount, Ticket, VerifyOutcome,
};

pub struct OtpDelivery {
    otps: Arc<dyn OtpStore>,
    sms: Arc<dyn SmsSender>,
    codec: OtpCodec,
    limits: OtpLimits,
    limiter: Limiter,
    /// `otp.test_numbers`: fixed OTPs, never sent, never counted.
    test_numbers: HashMap<String, Secret>,
    audit: Arc<Audit>,
}

/// What an OTP delivery is made of besides its stores.
pub struct DeliveryRules {
    pub codec: OtpCodec,
    pub limits: OtpLimits,
    pub limiter: Limiter,
    pub test_numbers: HashMap<String, Secret>,
}

impl OtpDelivery {
    pub fn new(
        otps: Arc<dyn OtpStore>,
        sms: Arc<dyn SmsSender>,
        rules: DeliveryRules,
        audit: Arc<Audit>,
    ) -> Self {
        Self {
            otps,
            sms,
            codec: rules.codec,
            limits: rules.limits,
            limiter: rules.limiter,
            test_numbers: rules.test_numbers,
            audit,
        }
    }

    /// Issues and delivers an OTP. The SMS limits count it first, so a
    /// refusal sends nothing; any failure after that gives the count back,
    /// and a failed delivery also revokes the OTP and its cooldown.
    pub async fn send(
        &self,
        ctx: &RequestContext,
        purpose: Purpose,
        mobile: &str,
    ) -> Result<OtpDigest, ApiError> {
        let fixed = self.test_numbers.get(mobile);
        let otp = fixed.map_or_else(|| self.codec.generate(), |code| Otp::fixed(code.expose()));
        let digest = self.codec.digest(purpose, mobile, otp.digits());
        let grant = match fixed {
            Some(_) => None,
            None => Some(self.checked(ctx, mobile, self.limiter.take_sms(ctx, mobile).await)?),
        };
        let ticket = grant
            .as_ref()
            .map_or_else(Ticket::new, |g| g.ticket().clone());
        let sms = SmsCount {
            rates: if fixed.is_some() {
                &[]
            } else {
                self.limiter.mobile_rates()
            },
            ticket: &ticket,
        };
        let limited = |limit, retry_after| {
            self.checked(ctx, mobile, Err(ApiError::Limited { limit, retry_after }))
        };
        let issued = match self
            .otps
            .issue(purpose, mobile, &digest, &self.limits, sms)
            .await
        {
            Ok(IssueOutcome::Issued) => Ok(()),
            Ok(IssueOutcome::Cooldown { retry_after }) => Err(ApiError::Cooldown { retry_after }),
            Ok(IssueOutcome::LockedOut { retry_after }) => limited(Limit::Lockout, retry_after),
            Ok(IssueOutcome::MobileLimit { retry_after }) => {
                limited(Limit::SmsPerMobile, retry_after)
            }
            Err(e) => Err(e.into()),
        };
        if let Err(e) = issued {
            self.give_back(ctx, grant).await;
            return Err(e);
        }
        let event = |name| {
            self.audit
                .event(name, ctx)
                .mobile(mobile)
                .detail("purpose", purpose.as_str())
        };
        if fixed.is_some() {
            event("otp_sent").detail("to", "test_number").emit();
            return Ok(digest);
        }
        let message = SmsMessage::new(mobile, otp.digits(), purpose, self.limits.ttl, unix_now());
        if let Err(e) = self.sms.send(&message).await {
            tracing::warn!(request_id = ctx.request_id(), mobile = %masked(mobile), purpose = purpose.as_str(), error = %e, "SMS delivery failed");
            event("otp_send_failed").emit();
            self.take_back(ctx, purpose, mobile, &digest, &ticket).await;
            self.give_back(ctx, grant).await;
            return Err(ApiError::SmsFailed);
        }
        event("otp_sent").emit();
        Ok(digest)
    }

    async fn give_back(&self, ctx: &RequestContext, grant: Option<SmsGrant>) {
        if let Some(grant) = grant {
            self.limiter.give_back(ctx, grant).await;
        }
    }

    /// Records a limit refusal in the audit log on its way out.
    fn checked<T>(
        &self,
        ctx: &RequestContext,
        mobile: &str,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        if let Err(ApiError::Limited { limit, .. }) = &result {
            tracing::info!(request_id = ctx.request_id(), mobile = %masked(mobile), limit = limit.as_str(), "limit hit");
            self.audit
                .event("limit_hit", ctx)
                .mobile(mobile)
                .limit(*limit)
                .emit();
        }
        result
    }

    /// Takes back a delivered OTP whose purpose failed afterwards; its SMS
    /// went out, so it stays counted.
    pub async fn revoke(
        &self,
        ctx: &RequestContext,
        purpose: Purpose,
        mobile: &str,
        digest: &OtpDigest,
    ) {
        self.take_back(ctx, purpose, mobile, digest, &Ticket::new())
            .await;
    }

    /// Takes back an OTP and the SMS count `ticket` of the mobile.
    async fn take_back(
        &self,
        ctx: &RequestContext,
        purpose: Purpose,
        mobile: &str,
        digest: &OtpDigest,
        ticket: &Ticket,
    ) {
        if let Err(e) = self.otps.revoke(purpose, mobile, digest, ticket).await {
            tracing::warn!(request_id = ctx.request_id(), mobile = %masked(mobile), error = %e, "could not revoke an undelivered OTP");
        }
    }

    /// Consumes the live OTP for (purpose, mobile) if `otp` is it. The check
    /// counts against the client's IP first; refused there, the OTP's own
    /// attempts are untouched.
    pub async fn consume(
        &self,
        ctx: &RequestContext,
        purpose: Purpose,
        mobile: &str,
        otp: &str,
    ) -> Result<(), ApiError> {
        self.checked(ctx, mobile, self.limiter.take_verify(ctx).await)?;
        let candidate = self.codec.digest(purpose, mobile, otp);
        let event = |name| {
            self.audit
                .event(name, ctx)
                .mobile(mobile)
                .detail("purpose", purpose.as_str())
        };
        match self
            .otps
            .verify(purpose, mobile, &candidate, &self.limits)
            .await?
        {
            VerifyOutcome::Valid => Ok(()),
            VerifyOutcome::Invalid => {
                event("otp_verify_failed").emit();
                Err(ApiError::InvalidOtp)
            }
            VerifyOutcome::Burned { locked } => {
                event("otp_verify_failed").emit();
                event("otp_burned").emit();
                if locked {
                    tracing::warn!(request_id = ctx.request_id(), mobile = %masked(mobile), "mobile locked out after burned OTPs");
                    event("locked_out").emit();
                }
                Err(ApiError::InvalidOtp)
            }
            VerifyOutcome::Missing => {
                event("otp_verify_failed")
                    .detail("reason", "no_live_otp")
                    .emit();
                Err(ApiError::OtpExpired)
            }
            VerifyOutcome::LockedOut { retry_after } => self.checked(
                ctx,
                mobile,
                Err(ApiError::Limited {
                    limit: Limit::Lockout,
                    retry_after,
                }),
            ),
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
