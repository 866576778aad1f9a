//! How revocations reach every instance: `RevocationFeed`. On `mysql_redis`
//! a Redis pub/sub channel (under the key prefix); on `embedded` there is
//! one instance, which records its own revocations directly.

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use super::StoreResult;
use super::backend::redis::RedisConn;
use super::sessions::RevokedSession;

/// Revoked sessions as they are published, until the feed's connection is lost.
pub type Subscription = BoxStream<'static, Vec<RevokedSession>>;

#[async_trait]
pub trait RevocationFeed: Send + Sync {
    /// Tells every other instance sharing the storage.
    async fn publish(&self, revoked: &[RevokedSession]) -> StoreResult<()>;
    /// A live subscription; `None` when there is nobody to hear from.
    async fn subscribe(&self) -> StoreResult<Option<Subscription>>;
}

/// The embedded backend: a single instance, nothing to send or hear.
pub struct LocalFeed;

#[async_trait]
impl RevocationFeed for LocalFeed {
    async fn publish(&self, _revoked: &[RevokedSession]) -> StoreResult<()> {
        Ok(())
    }

    async fn subscribe(&self) -> StoreResult<Option<Subscription>> {
        Ok(None)
    }
}

/// Redis pub/sub. A message is `id:until` pairs separated by spaces.
pub struct RedisFeed {
    conn: RedisConn,
    channel: String,
}

impl RedisFeed {
    pub fn new(conn: RedisConn, channel: String) -> Self {
        Self { conn, channel }
    }
}

fn encode(revoked: &[RevokedSession]) -> String {
    revoked
        .iter()
        .map(|r| format!("{}:{}", r.session_id, r.until))
        .collect::<Vec<_>>()
        .join(" ")
}

fn decode(message: &str) -> Vec<RevokedSession> {
    message
        .split(' ')
        .filter_map(|pair| {
            let (id, until) = pair.split_once(':')?;
            Some(RevokedSession {
                session_id: id.to_owned(),
                until: until.parse().ok()?,
            })
        })
        .collect()
}

#[async_trait]
impl RevocationFeed for RedisFeed {
    async fn publish(&self, revoked: &[RevokedSession]) -> StoreResult<()> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(encode(revoked));
        self.conn.query::<i64>("redis publish", &cmd).await?;
        Ok(())
    }

    async fn subscribe(&self) -> StoreResult<Option<Subscription>> {
        use futures_util::StreamExt;
        let messages = self.conn.subscribe(&self.channel).await?;
        Ok(Some(messages.map(|m| decode(&m)).boxed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let revoked = vec![
            RevokedSession {
                session_id: "a1".into(),
                until: 10,
            },
            RevokedSession {
                session_id: "b2".into(),
                until: 20,
            },
        ];
        assert_eq!(decode(&encode(&revoked)), revoked);
        assert_eq!(decode("garbage x:y"), vec![]);
    }
}
