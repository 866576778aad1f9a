//! Rate counters for the abuse limits: the `CounterStore` trait (sliding
//! windows that never let more than COUNT events into any WINDOW, exact under
//! concurrency) and its in-process and Redis implementations. Which counters
//! a request touches is the limit policy's business (`crate::limits`); here a
//! counter is a kind, a subject and its rates.

pub(crate) mod memory;
pub(crate) mod redis;

use std::time::Duration;

use async_trait::async_trait;

use super::StoreResult;

pub use memory::MemoryCounterStore;
pub use redis::RedisCounterStore;

/// At most `count` events in any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub window: Duration,
}

/// One counter and the rates it is held to.
#[derive(Debug, Clone)]
pub struct Bucket<'a> {
    /// What is counted (`sms_mobile`, `verify_ip`, ...): part of the key.
    pub kind: &'static str,
    /// Whose events they are (a mobile, an IP, a calling code; empty for one
    /// global counter).
    pub subject: &'a str,
    pub rates: &'a [Rate],
}

impl Bucket<'_> {
    /// The longest window: how long an event must be remembered.
    pub fn longest(&self) -> Duration {
        self.rates
            .iter()
            .map(|r| r.window)
            .max()
            .unwrap_or_default()
    }
}

/// The identity of one counted event, to give it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket(pub(crate) String);

impl Ticket {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }
}

impl Default for Ticket {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Every bucket had room and now counts the event.
    Granted(Ticket),
    /// `buckets[bucket]` is full until `retry_after`; no bucket counts the event.
    Full {
        bucket: usize,
        retry_after: Duration,
    },
}

#[async_trait]
pub trait CounterStore: Send + Sync {
    /// Counts one event in every bucket, or in none: each bucket is checked
    /// and counted in one atomic step, and when any is full the others are
    /// given back before this returns. A bucket with no rates always has room.
    async fn take(&self, buckets: &[Bucket<'_>]) -> StoreResult<Taken>;
    /// Removes the event `ticket` from `buckets` (a send that failed).
    async fn give_back(&self, buckets: &[Bucket<'_>], ticket: &Ticket) -> StoreResult<()>;
}
