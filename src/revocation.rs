//! Each instance's view of revoked sessions: an in-memory set the proxy path
//! reads with no lock and no storage call, loaded at start, filled by the
//! revocation feed, and resynced from the revocation log whenever the feed
//! (re)connects and every few seconds as a backstop. An entry is dropped once
//! no access token of its session can still be valid.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;

use crate::auth::unix_now;
use crate::config::FeedLoss;
use crate::store::{RevocationFeed, RevokedSession, SessionStore};

/// How the set answers for one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Valid,
    Revoked,
    /// The feed is lost and `on_feed_loss: closed`: nothing can be trusted.
    Unknown,
}

/// Session id -> end; foldhash, as the ids are random and looked up per request.
type RevokedSet = HashMap<Box<str>, i64, foldhash::fast::RandomState>;

pub struct Revocations {
    /// Session id -> the last unix second one of its tokens could be valid.
    revoked: ArcSwap<RevokedSet>,
    feed_up: AtomicBool,
    on_loss: FeedLoss,
}

impl Revocations {
    pub fn new(on_loss: FeedLoss) -> Self {
        Self {
            revoked: ArcSwap::from_pointee(RevokedSet::default()),
            feed_up: AtomicBool::new(false),
            on_loss,
        }
    }

    /// The proxy path's question, answered from memory.
    pub fn standing(&self, session_id: &str, now: i64) -> Standing {
        if self.on_loss == FeedLoss::Closed && !self.feed_up() {
            return Standing::Unknown;
        }
        let revoked = self.revoked.load();
        if revoked.is_empty() {
            return Standing::Valid;
        }
        match revoked.get(session_id) {
            Some(until) if *until >= now => Standing::Revoked,
            _ => Standing::Valid,
        }
    }

    pub fn feed_up(&self) -> bool {
        self.feed_up.load(Ordering::Acquire)
    }

    fn set_feed_up(&self, up: bool) {
        if self.feed_up.swap(up, Ordering::AcqRel) != up {
            if up {
                tracing::info!("revocation feed connected");
            } else {
                tracing::warn!(
                    "revocation feed lost: revocations from other instances are not arriving"
                );
            }
        }
    }

    /// Adds revocations (copy on write: they are rare, lookups are not),
    /// dropping entries whose tokens have all expired.
    pub fn insert(&self, entries: &[RevokedSession]) {
        if entries.is_empty() {
            return;
        }
        let now = unix_now();
        self.revoked.rcu(|current| {
            let mut next: RevokedSet = current
                .iter()
                .filter(|(_, until)| **until >= now)
                .map(|(id, until)| (id.clone(), *until))
                .collect();
            for entry in entries {
                let until = next
                    .entry(entry.session_id.as_str().into())
                    .or_insert(entry.until);
                *until = (*until).max(entry.until);
            }
            next
        });
    }
}

/// How far back an incremental resync looks beyond the last one, for
/// revocations committed while it ran.
const RESYNC_MARGIN: i64 = 5;
/// The backstop resync, in case a published revocation was lost.
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// Wait between reconnection attempts.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Loads every revocation still in force. At start, before serving.
pub async fn load(revocations: &Revocations, sessions: &dyn SessionStore) -> Result<(), String> {
    let now = unix_now();
    let entries = sessions
        .revoked_since(0, now)
        .await
        .map_err(|e| format!("loading revocations: {e}"))?;
    revocations.insert(&entries);
    Ok(())
}

/// Follows the feed for as long as the process runs: subscribe, resync from
/// the log (so nothing published before the subscription is missed), then
/// apply what arrives; on a lost connection, mark the feed down and start over.
pub async fn follow(
    revocations: Arc<Revocations>,
    sessions: Arc<dyn SessionStore>,
    feed: Arc<dyn RevocationFeed>,
) {
    let mut synced_at = unix_now();
    loop {
        match feed.subscribe().await {
            Ok(None) => {
                // No other instance: what this one revokes it records itself.
                revocations.set_feed_up(true);
                return;
            }
            Ok(Some(mut messages)) => {
                if resync(&revocations, sessions.as_ref(), &mut synced_at).await {
                    revocations.set_feed_up(true);
                    let mut backstop = tokio::time::interval(RESYNC_EVERY);
                    backstop.tick().await;
                    loop {
                        tokio::select! {
                            message = messages.next() => match message {
                                Some(entries) => revocations.insert(&entries),
                                None => break,
                            },
                            _ = backstop.tick() => {
                                if !resync(&revocations, sessions.as_ref(), &mut synced_at).await {
                                    break;
                                }
                            }
                        }
                    }
                }
                revocations.set_feed_up(false);
            }
            Err(e) => {
                revocations.set_feed_up(false);
                tracing::debug!(error = %e, "revocation feed: cannot subscribe yet");
            }
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

async fn resync(
    revocations: &Revocations,
    sessions: &dyn SessionStore,
    synced_at: &mut i64,
) -> bool {
    let now = unix_now();
    match sessions
        .revoked_since(*synced_at - RESYNC_MARGIN, now)
        .await
    {
        Ok(entries) => {
            revocations.insert(&entries);
            *synced_at = now;
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "revocation resync failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, until: i64) -> RevokedSession {
        RevokedSession {
            session_id: id.into(),
            until,
        }
    }

    #[test]
    fn revoked_sessions_are_refused_until_their_tokens_expire() {
        let revocations = Revocations::new(FeedLoss::Open);
        let now = unix_now();
        revocations.insert(&[entry("a", now + 60), entry("old", now - 1)]);
        assert_eq!(revocations.standing("a", now), Standing::Revoked);
        assert_eq!(revocations.standing("a", now + 61), Standing::Valid);
        assert_eq!(revocations.standing("b", now), Standing::Valid);
        // Entries past their end are dropped at the next change.
        revocations.insert(&[entry("c", now + 60)]);
        assert_eq!(revocations.revoked.load().len(), 2);
        // A later end wins over an earlier one.
        revocations.insert(&[entry("a", now + 10), entry("a", now + 120)]);
        assert_eq!(revocations.standing("a", now + 100), Standing::Revoked);
    }

    #[test]
    fn a_lost_feed_closes_only_when_configured() {
        let open = Revocations::new(FeedLoss::Open);
        let closed = Revocations::new(FeedLoss::Closed);
        let now = unix_now();
        assert_eq!(open.standing("a", now), Standing::Valid);
        assert_eq!(closed.standing("a", now), Standing::Unknown);
        closed.set_feed_up(true);
        assert_eq!(closed.standing("a", now), Standing::Valid);
    }
}
