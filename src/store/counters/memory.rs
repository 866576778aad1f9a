//! The embedded backend's counters: one event log per bucket in process
//! memory. One mutex makes a take over several buckets a single atomic step;
//! no call awaits while holding it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Bucket, CounterStore, Rate, Taken, Ticket};
use crate::store::StoreResult;
use crate::store::backend::memory::Guarded;
use crate::store::keys::Keys;

/// How often logs with no event left in their longest window are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// One counter's recent events: the sliding window of every in-process count.
pub(crate) struct Log {
    /// Oldest first.
    events: VecDeque<(Instant, String)>,
    longest: Duration,
}

impl Log {
    pub(crate) fn new(longest: Duration) -> Self {
        Self {
            events: VecDeque::new(),
            longest,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// How long until one more event fits every rate (zero: now), after
    /// forgetting what left the longest window.
    pub(crate) fn room(&mut self, rates: &[Rate], now: Instant) -> Duration {
        let longest = rates.iter().map(|r| r.window).max().unwrap_or_default();
        self.longest = self.longest.max(longest);
        self.trim(now);
        self.wait(rates, now)
    }

    pub(crate) fn push(&mut self, now: Instant, ticket: &Ticket) {
        self.events.push_back((now, ticket.0.clone()));
    }

    pub(crate) fn remove(&mut self, ticket: &Ticket) {
        self.events.retain(|(_, id)| *id != ticket.0);
    }

    /// Forgets events older than the longest window.
    pub(crate) fn trim(&mut self, now: Instant) {
        while let Some((at, _)) = self.events.front() {
            if *at + self.longest > now {
                break;
            }
            self.events.pop_front();
        }
    }

    /// How long until every rate has room for one more event (zero: now).
    fn wait(&self, rates: &[Rate], now: Instant) -> Duration {
        let len = self.events.len();
        rates
            .iter()
            .filter_map(|rate| {
                let count = rate.count as usize;
                // The event that must leave the window first for one more to fit.
                let (at, _) = self.events.get(len.checked_sub(count)?)?;
                (*at + rate.window).checked_duration_since(now)
            })
            .max()
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct State {
    logs: HashMap<String, Log>,
    next_sweep: Option<Instant>,
}

pub struct MemoryCounterStore {
    keys: Keys,
    state: Guarded<State>,
}

impl MemoryCounterStore {
    pub fn new() -> Self {
        Self {
            keys: Keys::new(""),
            state: Guarded::default(),
        }
    }
}

impl Default for MemoryCounterStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl CounterStore for MemoryCounterStore {
    async fn take(&self, buckets: &[Bucket<'_>]) -> StoreResult<Taken> {
        let now = Instant::now();
        let keys: Vec<String> = buckets
            .iter()
            .map(|b| self.keys.counter(b.kind, b.subject))
            .collect();
        let mut state = self.state.lock();
        if state.next_sweep.is_none_or(|at| now >= at) {
            state.logs.retain(|_, log| {
                log.trim(now);
                !log.is_empty()
            });
            state.next_sweep = Some(now + SWEEP_EVERY);
        }
        for (i, (bucket, key)) in buckets.iter().zip(&keys).enumerate() {
            let Some(log) = state.logs.get_mut(key) else {
                continue;
            };
            let wait = log.room(bucket.rates, now);
            if !wait.is_zero() {
                return Ok(Taken::Full {
                    bucket: i,
                    retry_after: wait,
                });
            }
        }
        let ticket = Ticket::new();
        for (bucket, key) in buckets.iter().zip(keys) {
            if bucket.rates.is_empty() {
                continue;
            }
            let log = state
                .logs
                .entry(key)
                .or_insert_with(|| Log::new(bucket.longest()));
            log.push(now, &ticket);
        }
        Ok(Taken::Granted(ticket))
    }

    async fn give_back(&self, buckets: &[Bucket<'_>], ticket: &Ticket) -> StoreResult<()> {
        let mut state = self.state.lock();
        for bucket in buckets {
            let key = self.keys.counter(bucket.kind, bucket.subject);
            if let Some(log) = state.logs.get_mut(&key) {
                log.remove(ticket);
            }
        }
        Ok(())
    }
}
