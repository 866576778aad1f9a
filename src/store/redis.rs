//! The production OTP state store on Redis. Each operation is one Lua script,
//! so issue (cooldown + store) and verify (compare + consume or count) are
//! single atomic steps shared correctly by every gateway instance.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::keys::Keys;
use super::{
    IssueOutcome, OtpDigest, OtpLimits, OtpStore, Purpose, StoreError, StoreResult, VerifyOutcome,
    within,
};

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
    conn: ConnectionManager,
    keys: Keys,
    timeout: Duration,
    issue: Script,
    revoke: Script,
    verify: Script,
}

impl RedisOtpStore {
    /// Connects (bounded by `timeout`) and checks the server answers.
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = within(
            timeout,
            "redis connect",
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|e| e.to_string())?;
        let store = Self {
            conn,
            keys: Keys::new(prefix),
            timeout,
            issue: Script::new(ISSUE),
            revoke: Script::new(REVOKE),
            verify: Script::new(VERIFY),
        };
        store.ping().await.map_err(|e| e.to_string())?;
        Ok(store)
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
        let mut conn = self.conn.clone();
        let mut call = self.issue.prepare_invoke();
        call.key(self.keys.cooldown(purpose, mobile))
            .key(self.keys.otp(purpose, mobile))
            .arg(millis(limits.cooldown))
            .arg(millis(limits.ttl).max(1))
            .arg(&digest.0[..]);
        let left: i64 = within(self.timeout, "redis issue", call.invoke_async(&mut conn)).await?;
        Ok(if left < 0 {
            IssueOutcome::Issued
        } else {
            IssueOutcome::Cooldown {
                retry_after: Duration::from_millis(left.unsigned_abs()),
            }
        })
    }

    async fn revoke(&self, purpose: Purpose, mobile: &str, digest: &OtpDigest) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let mut call = self.revoke.prepare_invoke();
        call.key(self.keys.otp(purpose, mobile))
            .key(self.keys.cooldown(purpose, mobile))
            .arg(&digest.0[..]);
        within(
            self.timeout,
            "redis revoke",
            call.invoke_async::<i64>(&mut conn),
        )
        .await?;
        Ok(())
    }

    async fn verify(
        &self,
        purpose: Purpose,
        mobile: &str,
        candidate: &OtpDigest,
        limits: &OtpLimits,
    ) -> StoreResult<VerifyOutcome> {
        let mut conn = self.conn.clone();
        let mut call = self.verify.prepare_invoke();
        call.key(self.keys.otp(purpose, mobile))
            .arg(&candidate.0[..])
            .arg(limits.max_attempts);
        let outcome: i64 =
            within(self.timeout, "redis verify", call.invoke_async(&mut conn)).await?;
        match outcome {
            0 => Ok(VerifyOutcome::Missing),
            1 => Ok(VerifyOutcome::Valid),
            2 => Ok(VerifyOutcome::Invalid),
            other => Err(StoreError::Unavailable(format!(
                "redis verify: unexpected answer {other}"
            ))),
        }
    }

    async fn is_live(&self, purpose: Purpose, mobile: &str) -> StoreResult<bool> {
        let mut conn = self.conn.clone();
        let live: bool = within(
            self.timeout,
            "redis exists",
            redis::cmd("EXISTS")
                .arg(self.keys.otp(purpose, mobile))
                .query_async(&mut conn),
        )
        .await?;
        Ok(live)
    }

    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let pong: String = within(
            self.timeout,
            "redis ping",
            redis::cmd("PING").query_async(&mut conn),
        )
        .await?;
        if pong != "PONG" {
            return Err(StoreError::Unavailable(format!(
                "redis ping answered {pong:?}"
            )));
        }
        Ok(())
    }
}
