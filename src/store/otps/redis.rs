//! The production OTP state store on Redis. Each operation is one Lua script,
//! so issue (cooldown + store) and verify (compare + consume or count) are
//! single atomic steps shared correctly by every gateway instance.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::{IssueOutcome, OtpDigest, OtpLimits, OtpStore, Purpose, VerifyOutcome};
use crate::store::backend::redis::RedisConn;
use crate::store::keys::Keys;
use crate::store::{StoreError, StoreResult};

/// KEYS: cooldown, otp. ARGV: cooldown ms, ttl ms, digest.
/// Returns -1 when issued, else the cooldown's remaining milliseconds.
const ISSUE: &str = r"
if tonumber(ARGV[1]) > 0 then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
    local left = redis.call('PTTL', KEYS[1])
    if left < 1 then left = 1 end
    return left
  end
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'd', ARGV[3], 'f', 0)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return -1
";

/// KEYS: otp, cooldown. ARGV: digest. Removes both if the OTP is still ours.
const REVOKE: &str = r"
if redis.call('HGET', KEYS[1], 'd') == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
end
return 0
";

/// KEYS: otp. ARGV: candidate digest, max attempts.
/// Returns 0 missing, 1 valid (consumed), 2 invalid (counted, burned at max).
/// The comparison reads every byte whatever the first difference (constant time).
const VERIFY: &str = r"
local stored = redis.call('HGET', KEYS[1], 'd')
if not stored then return 0 end
local candidate = ARGV[1]
local diff = 0
if #stored ~= #candidate then diff = 1 end
for i = 1, #stored do
  diff = bit.bor(diff, bit.bxor(string.byte(stored, i), string.byte(candidate, i) or 0))
end
if diff == 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
if redis.call('HINCRBY', KEYS[1], 'f', 1) >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
end
return 2
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
            issue: Script::new(ISSUE),
            revoke: Script::new(REVOKE),
            verify: Script::new(VERIFY),
        }
    }
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
    ) -> StoreResult<IssueOutcome> {
        let mut call = self.issue.prepare_invoke();
        call.key(self.keys.cooldown(purpose, mobile))
            .key(self.keys.otp(purpose, mobile))
            .arg(millis(limits.cooldown))
            .arg(millis(limits.ttl).max(1))
            .arg(&digest.0[..]);
        let left: i64 = self.conn.invoke("redis issue", &call).await?;
        Ok(if left < 0 {
            IssueOutcome::Issued
        } else {
            IssueOutcome::Cooldown {
                retry_after: Duration::from_millis(left.unsigned_abs()),
            }
        })
    }

    async fn revoke(&self, purpose: Purpose, mobile: &str, digest: &OtpDigest) -> StoreResult<()> {
        let mut call = self.revoke.prepare_invoke();
        call.key(self.keys.otp(purpose, mobile))
            .key(self.keys.cooldown(purpose, mobile))
            .arg(&digest.0[..]);
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
        let mut call = self.verify.prepare_invoke();
        call.key(self.keys.otp(purpose, mobile))
            .arg(&candidate.0[..])
            .arg(limits.max_attempts);
        let outcome: i64 = self.conn.invoke("redis verify", &call).await?;
        match outcome {
            0 => Ok(VerifyOutcome::Missing),
            1 => Ok(VerifyOutcome::Valid),
            2 => Ok(VerifyOutcome::Invalid),
            other => Err(StoreError::Unavailable(format!(
                "redis verify: unexpected answer {other}"
            ))),
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
