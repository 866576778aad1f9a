//! The production OTP state store on Redis. Each operation is one Lua script,
//! so issue (lockout + cooldown + store) and verify (lockout + compare +
//! consume or count, burn and lock out) are single atomic steps shared
//! correctly by every gateway instance.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::{
    IssueOutcome, Lockout, OtpDigest, OtpLimits, OtpStore, Purpose, SmsCount, VerifyOutcome,
};
use crate::store::Ticket;
use crate::store::backend::redis::RedisConn;
use crate::store::counters::redis::WINDOW_LUA;
use crate::store::keys::Keys;
use crate::store::{StoreError, StoreResult};

/// KEYS: cooldown, otp, lockout, SMS sent. ARGV: cooldown ms, ttl ms,
/// digest, ticket, then the mobile's SMS rates as (count, window ms) pairs.
/// Returns {0} when issued, {1, ms} in a cooldown, {2, ms} locked out,
/// {3, ms} over the mobile's SMS rates.
const ISSUE: &str = r"
local locked = redis.call('PTTL', KEYS[3])
if locked > 0 then return {2, locked} end
local cooldown = tonumber(ARGV[1])
if cooldown > 0 then
  local left = redis.call('PTTL', KEYS[1])
  if left ~= -2 then
    if left < 1 then left = 1 end
    return {1, left}
  end
end
local rates = numbers(5)
if #rates > 0 then
  local now = clock()
  local wait, longest = room(KEYS[4], now, rates)
  if wait > 0 then return {3, wait} end
  redis.call('ZADD', KEYS[4], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[4], longest)
end
if cooldown > 0 then redis.call('SET', KEYS[1], '1', 'PX', cooldown) end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'd', ARGV[3], 'f', 0)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {0}
";

/// KEYS: otp, cooldown, SMS sent. ARGV: digest, ticket. Removes the OTP and
/// the cooldown if the OTP is still ours, and the ticket's SMS count.
const REVOKE: &str = r"
if redis.call('HGET', KEYS[1], 'd') == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
end
redis.call('ZREM', KEYS[3], ARGV[2])
return 0
";

/// KEYS: otp, lockout, burns. ARGV: candidate digest, max attempts, then the
/// lockout: burns (0: off), window ms, duration ms, and an id for this burn.
/// Returns {0} missing, {1} valid (consumed), {2} invalid (counted),
/// {3} burned, {4} burned and now locked out, {5, ms} locked out.
/// The comparison reads every byte whatever the first difference (constant time).
const VERIFY: &str = r"
local locked = redis.call('PTTL', KEYS[2])
if locked > 0 then return {5, locked} end
local stored = redis.call('HGET', KEYS[1], 'd')
if not stored then return {0} end
local candidate = ARGV[1]
local diff = 0
if #stored ~= #candidate then diff = 1 end
for i = 1, #stored do
  diff = bit.bor(diff, bit.bxor(string.byte(stored, i), string.byte(candidate, i) or 0))
end
if diff == 0 then
  redis.call('DEL', KEYS[1])
  return {1}
end
if redis.call('HINCRBY', KEYS[1], 'f', 1) < tonumber(ARGV[2]) then return {2} end
redis.call('DEL', KEYS[1])
local burns = tonumber(ARGV[3])
if burns == 0 then return {3} end
local now = clock()
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[4]))
redis.call('ZADD', KEYS[3], now, ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
if redis.call('ZCARD', KEYS[3]) < burns then return {3} end
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[5])
return {4}
";

pub struct RedisOtpStore {
    conn: RedisConn,
    keys: Keys,
    issue: Script,
    revoke: Script,
    verify: Script,
}

impl RedisOtpStore {
    pub fn new(conn: RedisConn, prefix: &str) -> Self {
        Self {
            conn,
            keys: Keys::new(prefix),
            issue: Script::new(&format!("{WINDOW_LUA}{ISSUE}")),
            revoke: Script::new(REVOKE),
            verify: Script::new(&format!("{WINDOW_LUA}{VERIFY}")),
        }
    }
}

fn unexpected(what: &str, answer: &[i64]) -> StoreError {
    StoreError::Unavailable(format!("{what}: unexpected answer {answer:?}"))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl OtpStore for RedisOtpStore {
    async fn issue(
        &self,
        purpose: Purpose,
        mobile: &str,
        digest: &OtpDigest,
        limits: &OtpLimits,
        sms: SmsCount<'_>,
    ) -> StoreResult<IssueOutcome> {
        let mut call = self.issue.prepare_invoke();
        call.key(self.keys.cooldown(purpose, mobile))
            .key(self.keys.otp(purpose, mobile))
            .key(self.keys.lockout(mobile))
            .key(self.keys.sms_sent(mobile))
            .arg(millis(limits.cooldown))
            .arg(millis(limits.ttl).max(1))
            .arg(&digest.0[..])
            .arg(&sms.ticket.0);
        for rate in sms.rates {
            call.arg(rate.count).arg(millis(rate.window).max(1));
        }
        let answer: Vec<i64> = self.conn.invoke("redis issue", &call).await?;
        match answer[..] {
            [0] => Ok(IssueOutcome::Issued),
            [1, left] => Ok(IssueOutcome::Cooldown {
                retry_after: Duration::from_millis(left.unsigned_abs()),
            }),
            [2, left] => Ok(IssueOutcome::LockedOut {
                retry_after: Duration::from_millis(left.unsigned_abs()),
            }),
            [3, left] => Ok(IssueOutcome::MobileLimit {
                retry_after: Duration::from_millis(left.unsigned_abs()),
            }),
            _ => Err(unexpected("redis issue", &answer)),
        }
    }

    async fn revoke(
        &self,
        purpose: Purpose,
        mobile: &str,
        digest: &OtpDigest,
        ticket: &Ticket,
    ) -> StoreResult<()> {
        let mut call = self.revoke.prepare_invoke();
        call.key(self.keys.otp(purpose, mobile))
            .key(self.keys.cooldown(purpose, mobile))
            .key(self.keys.sms_sent(mobile))
            .arg(&digest.0[..])
            .arg(&ticket.0);
        self.conn.invoke::<i64>("redis revoke", &call).await?;
        Ok(())
    }

    async fn verify(
        &self,
        purpose: Purpose,
        mobile: &str,
        candidate: &OtpDigest,
        limits: &OtpLimits,
    ) -> StoreResult<VerifyOutcome> {
        let lockout = limits.lockout.unwrap_or(Lockout {
            burned: 0,
            window: Duration::ZERO,
            duration: Duration::ZERO,
        });
        let mut call = self.verify.prepare_invoke();
        call.key(self.keys.otp(purpose, mobile))
            .key(self.keys.lockout(mobile))
            .key(self.keys.burns(mobile))
            .arg(&candidate.0[..])
            .arg(limits.max_attempts)
            .arg(lockout.burned)
            .arg(millis(lockout.window).max(1))
            .arg(millis(lockout.duration).max(1))
            .arg(uuid::Uuid::new_v4().simple().to_string());
        let answer: Vec<i64> = self.conn.invoke("redis verify", &call).await?;
        match answer[..] {
            [0] => Ok(VerifyOutcome::Missing),
            [1] => Ok(VerifyOutcome::Valid),
            [2] => Ok(VerifyOutcome::Invalid),
            [3] => Ok(VerifyOutcome::Burned { locked: false }),
            [4] => Ok(VerifyOutcome::Burned { locked: true }),
            [5, left] => Ok(VerifyOutcome::LockedOut {
                retry_after: Duration::from_millis(left.unsigned_abs()),
            }),
            _ => Err(unexpected("redis verify", &answer)),
        }
    }

    async fn forget(&self, mobile: &str) -> StoreResult<()> {
        // One command: a mobile's keys share one cluster slot (its hash tag).
        let mut cmd = redis::cmd("DEL");
        for purpose in Purpose::ALL {
            cmd.arg(self.keys.otp(purpose, mobile))
                .arg(self.keys.cooldown(purpose, mobile));
        }
        self.conn.query::<i64>("redis forget", &cmd).await?;
        Ok(())
    }

    async fn is_live(&self, purpose: Purpose, mobile: &str) -> StoreResult<bool> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(self.keys.otp(purpose, mobile));
        self.conn.query("redis exists", &cmd).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.conn.ping().await
    }
}
