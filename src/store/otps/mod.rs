//! OTP state: the `OtpStore` trait (digests, attempt counters, cooldowns,
//! with real expiry) and its in-process and Redis implementations.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use super::StoreResult;
use super::counters::{Rate, Ticket};

pub use memory::MemoryOtpStore;
pub use redis::RedisOtpStore;

/// Why an OTP exists: a registration and a login never share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    Register,
    Login,
}

impl Purpose {
    pub const ALL: [Purpose; 2] = [Purpose::Register, Purpose::Login];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Login => "login",
        }
    }
}

/// The HMAC of an OTP; the OTP itself is never stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OtpDigest(pub [u8; 32]);

impl std::fmt::Debug for OtpDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtpDigest(..)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueOutcome {
    Issued,
    /// Another OTP for this mobile and purpose was issued too recently.
    Cooldown {
        retry_after: Duration,
    },
    /// The mobile is locked out (too many burned OTPs) for `retry_after`.
    LockedOut {
        retry_after: Duration,
    },
    /// The mobile's own SMS rates are full for `retry_after`.
    MobileLimit {
        retry_after: Duration,
    },
}

/// The SMS an issue is for, counted against the mobile's own rates in the
/// same atomic step (after the lockout and the cooldown, so a refused
/// repeat never uses up the mobile's allowance).
#[derive(Debug, Clone, Copy)]
pub struct SmsCount<'a> {
    /// Empty: not counted (a test number, or no `limits.sms_per_mobile`).
    pub rates: &'a [Rate],
    pub ticket: &'a Ticket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// It matched and is now consumed.
    Valid,
    /// It did not match; the attempt was counted.
    Invalid,
    /// It did not match and was the last attempt: the OTP is burned, and
    /// `locked` when that burn started a lockout of the mobile.
    Burned { locked: bool },
    /// No live OTP: never sent, expired, used or burned.
    Missing,
    /// The mobile is locked out for `retry_after`; nothing was compared or counted.
    LockedOut { retry_after: Duration },
}

/// The rules an OTP lives by, handed to the store with each call.
#[derive(Debug, Clone, Copy)]
pub struct OtpLimits {
    pub ttl: Duration,
    pub cooldown: Duration,
    pub max_attempts: u32,
    /// `None`: burned OTPs never lock a mobile out.
    pub lockout: Option<Lockout>,
}

/// A mobile that had `burned` OTPs burned within `window` is locked out of
/// OTP requests and verifications for `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    pub burned: u32,
    pub window: Duration,
    pub duration: Duration,
}

#[async_trait]
pub trait OtpStore: Send + Sync {
    /// In one atomic step: refuse while the mobile is locked out, a
    /// cooldown runs for (purpose, mobile) or the mobile's SMS rates are
    /// full; else count the SMS, start the cooldown and store `digest` as the
    /// live OTP (replacing any older one, with a fresh attempt counter).
    async fn issue(
        &self,
        purpose: Purpose,
        mobile: &str,
        digest: &OtpDigest,
        limits: &OtpLimits,
        sms: SmsCount<'_>,
    ) -> StoreResult<IssueOutcome>;
    /// Undoes `issue` after a failed delivery: removes the OTP (if it is still
    /// `digest`), the cooldown and the SMS `ticket` counted, so the user can
    /// ask again at once.
    async fn revoke(
        &self,
        purpose: Purpose,
        mobile: &str,
        digest: &OtpDigest,
        ticket: &Ticket,
    ) -> StoreResult<()>;
    /// In one atomic step: refuse while the mobile is locked out; else
    /// compare `candidate` in constant time and consume on a match, or count
    /// the attempt and burn the OTP at `max_attempts` (recording the burn,
    /// which at `lockout.burned` within its window locks the mobile out).
    async fn verify(
        &self,
        purpose: Purpose,
        mobile: &str,
        candidate: &OtpDigest,
        limits: &OtpLimits,
    ) -> StoreResult<VerifyOutcome>;
    /// Removes every OTP and cooldown of `mobile` (an account being deleted);
    /// a lockout stays until it ends.
    async fn forget(&self, mobile: &str) -> StoreResult<()>;
    /// Whether a live (unexpired, unused, unburned) OTP exists for (purpose, mobile).
    async fn is_live(&self, purpose: Purpose, mobile: &str) -> StoreResult<bool>;
    async fn ping(&self) -> StoreResult<()>;
}
