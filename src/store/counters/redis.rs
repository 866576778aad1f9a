//! The production counters on Redis: each bucket is a sorted set of event
//! ids scored by the Redis server's clock (so instances with skewed clocks
//! agree), checked and counted by one script. A take sends one script per
//! bucket in a single pipeline: one round trip, and every bucket may live in
//! its own cluster slot.

use async_trait::async_trait;

use super::{Bucket, CounterStore, Taken, Ticket};
use crate::store::backend::redis::RedisConn;
use crate::store::keys::Keys;
use crate::store::{StoreError, StoreResult};

/// Lua shared by every script that keeps a sliding window: the Redis
/// server's clock in milliseconds, and `room(key, now, rates)`, which forgets
/// events older than the longest window and says how long until one more
/// event fits every (count, window ms) pair of `rates` (0: now), and that
/// longest window. The event that must leave first is the COUNT-th newest:
/// while it is in its window, one more would make COUNT + 1 within it.
pub(crate) const WINDOW_LUA: &str = r"
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function room(key, now, rates)
  local longest = 0
  for i = 1, #rates, 2 do
    if rates[i + 1] > longest then longest = rates[i + 1] end
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - longest)
  local len = redis.call('ZCARD', key)
  local wait = 0
  for i = 1, #rates, 2 do
    local count, w = rates[i], rates[i + 1]
    if len >= count then
      local at = redis.call('ZRANGE', key, len - count, len - count, 'WITHSCORES')
      local left = tonumber(at[2]) + w - now
      if left > wait then wait = left end
    end
  end
  return wait, longest
end
local function numbers(from)
  local list = {}
  for i = from, #ARGV do list[#list + 1] = tonumber(ARGV[i]) end
  return list
end
";

/// KEYS: the bucket. ARGV: ticket, then (count, window ms) per rate.
/// Returns 0 when the event is counted, else the milliseconds until room.
const TAKE: &str = r"
local now = clock()
local wait, longest = room(KEYS[1], now, numbers(2))
if wait > 0 then return wait end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], longest)
return 0
";

/// Appends each rate as (count, window ms) arguments.
fn rate_args(cmd: &mut redis::Cmd, rates: &[super::Rate]) {
    for rate in rates {
        let window = u64::try_from(rate.window.as_millis()).unwrap_or(u64::MAX);
        cmd.arg(rate.count).arg(window.max(1));
    }
}

pub struct RedisCounterStore {
    conn: RedisConn,
    keys: Keys,
    take: String,
}

impl RedisCounterStore {
    pub fn new(conn: RedisConn, prefix: &str) -> Self {
        Self {
            conn,
            keys: Keys::new(prefix),
            take: format!("{WINDOW_LUA}{TAKE}"),
        }
    }

    /// The script sent whole (EVAL, which Redis caches compiled): a pipeline
    /// cannot load a missing script and retry only the commands that failed.
    fn take_cmd(&self, bucket: &Bucket<'_>, ticket: &Ticket) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(&self.take)
            .arg(1)
            .arg(self.keys.counter(bucket.kind, bucket.subject))
            .arg(&ticket.0);
        rate_args(&mut cmd, bucket.rates);
        cmd
    }

    async fn remove(&self, buckets: &[&Bucket<'_>], ticket: &Ticket) -> StoreResult<()> {
        if buckets.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for bucket in buckets {
            pipe.cmd("ZREM")
                .arg(self.keys.counter(bucket.kind, bucket.subject))
                .arg(&ticket.0)
                .ignore();
        }
        self.conn.pipeline::<()>("redis give back", &pipe).await
    }
}

#[async_trait]
impl CounterStore for RedisCounterStore {
    async fn take(&self, buckets: &[Bucket<'_>]) -> StoreResult<Taken> {
        let ticket = Ticket::new();
        let counted: Vec<&Bucket<'_>> = buckets.iter().filter(|b| !b.rates.is_empty()).collect();
        if counted.is_empty() {
            return Ok(Taken::Granted(ticket));
        }
        let mut pipe = redis::pipe();
        for bucket in &counted {
            pipe.add_command(self.take_cmd(bucket, &ticket));
        }
        let waits: Vec<i64> = self.conn.pipeline("redis take", &pipe).await?;
        if waits.len() != counted.len() {
            return Err(StoreError::Unavailable(format!(
                "redis take: {} answers to {} buckets",
                waits.len(),
                counted.len()
            )));
        }
        let Some((full, wait)) = waits
            .iter()
            .zip(&counted)
            .find(|(wait, _)| **wait > 0)
            .map(|(wait, bucket)| (*bucket, *wait))
        else {
            return Ok(Taken::Granted(ticket));
        };
        let granted: Vec<&Bucket<'_>> = waits
            .iter()
            .zip(&counted)
            .filter(|(wait, _)| **wait == 0)
            .map(|(_, bucket)| *bucket)
            .collect();
        self.remove(&granted, &ticket).await?;
        let bucket = buckets
            .iter()
            .position(|b| std::ptr::eq(b, full))
            .expect("the full bucket is one of them");
        Ok(Taken::Full {
            bucket,
            retry_after: std::time::Duration::from_millis(wait.unsigned_abs()),
        })
    }

    async fn give_back(&self, buckets: &[Bucket<'_>], ticket: &Ticket) -> StoreResult<()> {
        let counted: Vec<&Bucket<'_>> = buckets.iter().filter(|b| !b.rates.is_empty()).collect();
        self.remove(&counted, ticket).await
    }
}
