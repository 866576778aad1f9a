//! The embedded backend's OTP state: a map in process memory with real
//! expiry. One mutex makes every operation atomic; no call awaits while
//! holding it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use subtle::ConstantTimeEq;

use super::{
    IssueOutcome, Lockout, OtpDigest, OtpLimits, OtpStore, Purpose, SmsCount, VerifyOutcome,
};
use crate::store::StoreResult;
use crate::store::Ticket;
use crate::store::backend::memory::Guarded;
use crate::store::counters::memory::Log;
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
    /// Until when a mobile is locked out, by lockout key.
    lockouts: HashMap<String, Instant>,
    /// When each of a mobile's recent burns leaves the lockout window, oldest first.
    burns: HashMap<String, VecDeque<Instant>>,
    /// The SMS sent to each mobile, for its own rates.
    sent: HashMap<String, Log>,
    next_sweep: Option<Instant>,
}

impl State {
    /// How long `mobile`'s lockout still runs, if one does.
    fn locked_out(&self, key: &str, now: Instant) -> Option<Duration> {
        self.lockouts
            .get(key)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    /// Records a burn; true when it starts a lockout.
    fn burned(&mut self, mobile_keys: (String, String), lockout: &Lockout, now: Instant) -> bool {
        let (burns_key, lockout_key) = mobile_keys;
        // Each entry is the instant its burn leaves the window.
        let burns = self.burns.entry(burns_key.clone()).or_default();
        burns.retain(|leaves| *leaves > now);
        burns.push_back(now + lockout.window);
        if burns.len() < lockout.burned as usize {
            return false;
        }
        self.burns.remove(&burns_key);
        self.lockouts.insert(lockout_key, now + lockout.duration);
        true
    }

    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.otps.retain(|_, otp| otp.expires_at > now);
        self.cooldowns.retain(|_, until| *until > now);
        self.lockouts.retain(|_, until| *until > now);
        self.burns
            .retain(|_, burns| burns.back().is_some_and(|last| *last > now));
        self.sent.retain(|_, log| {
            log.trim(now);
            !log.is_empty()
        });
        self.next_sweep = Some(now + SWEEP_EVERY);
    }
}

pub struct MemoryOtpStore {
    keys: Keys,
    state: Guarded<State>,
}

impl MemoryOtpStore {
    pub fn new() -> Self {
        Self {
            keys: Keys::new(""),
            state: Guarded::default(),
        }
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
        sms: SmsCount<'_>,
    ) -> StoreResult<IssueOutcome> {
        let now = Instant::now();
        let cooldown_key = self.keys.cooldown(purpose, mobile);
        let mut state = self.state.lock();
        state.sweep(now);
        if let Some(retry_after) = state.locked_out(&self.keys.lockout(mobile), now) {
            return Ok(IssueOutcome::LockedOut { retry_after });
        }
        if let Some(until) = state.cooldowns.get(&cooldown_key).filter(|u| **u > now) {
            return Ok(IssueOutcome::Cooldown {
                retry_after: *until - now,
            });
        }
        if !sms.rates.is_empty() {
            let log = state
                .sent
                .entry(self.keys.sms_sent(mobile))
                .or_insert_with(|| Log::new(Duration::ZERO));
            let retry_after = log.room(sms.rates, now);
            if !retry_after.is_zero() {
                return Ok(IssueOutcome::MobileLimit { retry_after });
            }
            log.push(now, sms.ticket);
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

    async fn revoke(
        &self,
        purpose: Purpose,
        mobile: &str,
        digest: &OtpDigest,
        ticket: &Ticket,
    ) -> StoreResult<()> {
        let key = self.keys.otp(purpose, mobile);
        let mut state = self.state.lock();
        if state
            .otps
            .get(&key)
            .is_some_and(|otp| otp.digest == *digest)
        {
            state.otps.remove(&key);
            state.cooldowns.remove(&self.keys.cooldown(purpose, mobile));
        }
        if let Some(log) = state.sent.get_mut(&self.keys.sms_sent(mobile)) {
            log.remove(ticket);
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
        let mut state = self.state.lock();
        if let Some(retry_after) = state.locked_out(&self.keys.lockout(mobile), now) {
            return Ok(VerifyOutcome::LockedOut { retry_after });
        }
        let Some(otp) = state.otps.get_mut(&key).filter(|otp| otp.expires_at > now) else {
            state.otps.remove(&key);
            return Ok(VerifyOutcome::Missing);
        };
        if bool::from(otp.digest.0.ct_eq(&candidate.0)) {
            state.otps.remove(&key);
            return Ok(VerifyOutcome::Valid);
        }
        otp.failed_attempts += 1;
        if otp.failed_attempts < limits.max_attempts {
            return Ok(VerifyOutcome::Invalid);
        }
        state.otps.remove(&key);
        let locked = limits.lockout.is_some_and(|lockout| {
            let keys = (self.keys.burns(mobile), self.keys.lockout(mobile));
            state.burned(keys, &lockout, now)
        });
        Ok(VerifyOutcome::Burned { locked })
    }

    async fn forget(&self, mobile: &str) -> StoreResult<()> {
        let mut state = self.state.lock();
        for purpose in Purpose::ALL {
            state.otps.remove(&self.keys.otp(purpose, mobile));
            state.cooldowns.remove(&self.keys.cooldown(purpose, mobile));
        }
        Ok(())
    }

    async fn is_live(&self, purpose: Purpose, mobile: &str) -> StoreResult<bool> {
        let now = Instant::now();
        let state = self.state.lock();
        Ok(state
            .otps
            .get(&self.keys.otp(purpose, mobile))
            .is_some_and(|otp| otp.expires_at > now))
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
