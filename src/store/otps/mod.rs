//! OTP state: the `OtpStore` trait (digests, attempt counters, cooldowns,
//! with real expiry) and its in-process and Redis implementations.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use super::StoreResult;

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// It matched and is now consumed.
    Valid,
    /// It did not match; the attempt was counted (and the OTP burned at the limit).
    Invalid,
    /// No live OTP: never sent, expired, used or burned.
    Missing,
}

/// The rules an OTP lives by, handed to the store with each call.
#[derive(Debug, Clone, Copy)]
pub struct OtpLimits {
    pub ttl: Duration,
    pub cooldown: Duration,
    pub max_attempts: u32,
}

#[async_trait]
pub trait OtpStore: Send + Sync {
    /// In one atomic step: refuse if a cooldown runs for (purpose, mobile),
    /// else start the cooldown and store `digest` as the live OTP (replacing
    /// any older one, with a fresh attempt counter).
    async fn issue(
        &self,
        purpose: Purpose,
        mobile: &str,
        digest: &OtpDigest,
        limits: &OtpLimits,
    ) -> StoreResult<IssueOutcome>;
    /// Undoes `issue` after a failed delivery: removes the OTP (if it is still
    /// `digest`) and the cooldown, so the user can ask again at once.
    async fn revoke(&self, purpose: Purpose, mobile: &str, digest: &OtpDigest) -> StoreResult<()>;
    /// In one atomic step: compare `candidate` in constant time; consume on a
    /// match, else count the attempt and burn the OTP at `max_attempts`.
    async fn verify(
        &self,
        purpose: Purpose,
        mobile: &str,
        candidate: &OtpDigest,
        limits: &OtpLimits,
    ) -> StoreResult<VerifyOutcome>;
    /// Removes every OTP and cooldown of `mobile` (an account being deleted).
    async fn forget(&self, mobile: &str) -> StoreResult<()>;
    /// Whether a live (unexpired, unused, unburned) OTP exists for (purpose, mobile).
    async fn is_live(&self, purpose: Purpose, mobile: &str) -> StoreResult<bool>;
    async fn ping(&self) -> StoreResult<()>;
}
