//! The embedded backend's OTP state: a map in process memory with real
//! expiry. One mutex makes every operation atomic; no call awaits while
//! holding it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use subtle::ConstantTimeEq;

use super::{IssueOutcome, OtpDigest, OtpLimits, OtpStore, Purpose, VerifyOutcome};
use crate::store::StoreResult;
use crate::store::keys::Keys;

/// How often expired entries are swept out (they are ignored before that).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

struct LiveOtp {
    digest: OtpDigest,
    failed_attempts: u32,
    expires_at: Instant,
}

#[derive(Default)]
struct State {
    otps: HashMap<String, LiveOtp>,
    cooldowns: HashMap<String, Instant>,
    next_sweep: Option<Instant>,
}

impl State {
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.otps.retain(|_, otp| otp.expires_at > now);
        self.cooldowns.retain(|_, until| *until > now);
        self.next_sweep = Some(now + SWEEP_EVERY);
    }
}

pub struct MemoryOtpStore {
    keys: Keys,
    state: Mutex<State>,
}

impl MemoryOtpStore {
    pub fn new() -> Self {
        Self {
            keys: Keys::new(""),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the maps half-updated: recover them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for MemoryOtpStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl OtpStore for MemoryOtpStore {
    async fn issue(
        &self,
        purpose: Purpose,
        mobile: &str,
        digest: &OtpDigest,
        limits: &OtpLimits,
    ) -> StoreResult<IssueOutcome> {
        let now = Instant::now();
        let cooldown_key = self.keys.cooldown(purpose, mobile);
        let mut state = self.state();
        state.sweep(now);
        if let Some(until) = state.cooldowns.get(&cooldown_key).filter(|u| **u > now) {
            return Ok(IssueOutcome::Cooldown {
                retry_after: *until - now,
            });
        }
        if !limits.cooldown.is_zero() {
            state.cooldowns.insert(cooldown_key, now + limits.cooldown);
        }
        state.otps.insert(
            self.keys.otp(purpose, mobile),
            LiveOtp {
                digest: *digest,
                failed_attempts: 0,
                expires_at: now + limits.ttl,
            },
        );
        Ok(IssueOutcome::Issued)
    }

    async fn revoke(&self, purpose: Purpose, mobile: &str, digest: &OtpDigest) -> StoreResult<()> {
        let key = self.keys.otp(purpose, mobile);
        let mut state = self.state();
        if state
            .otps
            .get(&key)
            .is_some_and(|otp| otp.digest == *digest)
        {
            state.otps.remove(&key);
            state.cooldowns.remove(&self.keys.cooldown(purpose, mobile));
        }
        Ok(())
    }

    async fn verify(
        &self,
        purpose: Purpose,
        mobile: &str,
        candidate: &OtpDigest,
        limits: &OtpLimits,
    ) -> StoreResult<VerifyOutcome> {
        let now = Instant::now();
        let key = self.keys.otp(purpose, mobile);
        let mut state = self.state();
        let Some(otp) = state.otps.get_mut(&key).filter(|otp| otp.expires_at > now) else {
            state.otps.remove(&key);
            return Ok(VerifyOutcome::Missing);
        };
        if bool::from(otp.digest.0.ct_eq(&candidate.0)) {
            state.otps.remove(&key);
            return Ok(VerifyOutcome::Valid);
        }
        otp.failed_attempts += 1;
        if otp.failed_attempts >= limits.max_attempts {
            state.otps.remove(&key);
        }
        Ok(VerifyOutcome::Invalid)
    }

    async fn forget(&self, mobile: &str) -> StoreResult<()> {
        let mut state = self.state();
        for purpose in Purpose::ALL {
            state.otps.remove(&self.keys.otp(purpose, mobile));
            state.cooldowns.remove(&self.keys.cooldown(purpose, mobile));
        }
        Ok(())
    }

    async fn is_live(&self, purpose: Purpose, mobile: &str) -> StoreResult<bool> {
        let now = Instant::now();
        let state = self.state();
        Ok(state
            .otps
            .get(&self.keys.otp(purpose, mobile))
            .is_some_and(|otp| otp.expires_at > now))
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
