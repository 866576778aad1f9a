//! The one Redis connection type every Redis store uses: today a single
//! server through a reconnecting connection manager; Cluster and Sentinel
//! connections take its place behind the same calls. Every call is bounded
//! by the storage timeout.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, Pipeline, ScriptInvocation};

use crate::store::{StoreError, StoreResult, within};

#[derive(Clone)]
pub struct RedisConn {
    client: redis::Client,
    conn: ConnectionManager,
    timeout: Duration,
}

impl RedisConn {
    /// Connects (bounded by `timeout`) and checks the server answers.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = within(
            timeout,
            "redis connect",
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|e| e.to_string())?;
        let conn = Self {
            client,
            conn,
            timeout,
        };
        conn.ping().await.map_err(|e| e.to_string())?;
        Ok(conn)
    }

    /// Runs a prepared Lua script (EVALSHA, loading it when the server lacks it).
    pub async fn invoke<T: FromRedisValue>(
        &self,
        what: &str,
        call: &ScriptInvocation<'_>,
    ) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        within(self.timeout, what, call.invoke_async(&mut conn)).await
    }

    /// Runs one command.
    pub async fn query<T: FromRedisValue>(&self, what: &str, cmd: &Cmd) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        within(self.timeout, what, cmd.query_async(&mut conn)).await
    }

    /// Runs a pipeline: its commands in one round trip, not atomically.
    pub async fn pipeline<T: FromRedisValue>(&self, what: &str, pipe: &Pipeline) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        within(self.timeout, what, pipe.query_async(&mut conn)).await
    }

    /// A connection of its own, subscribed to `channel`: its messages'
    /// payloads, until the connection is lost.
    pub async fn subscribe(
        &self,
        channel: &str,
    ) -> StoreResult<futures_util::stream::BoxStream<'static, String>> {
        use futures_util::StreamExt;
        let mut pubsub = within(
            self.timeout,
            "redis subscribe",
            self.client.get_async_pubsub(),
        )
        .await?;
        within(self.timeout, "redis subscribe", pubsub.subscribe(channel)).await?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|message| async move { message.get_payload::<String>().ok() })
            .boxed())
    }

    pub async fn ping(&self) -> StoreResult<()> {
        let pong: String = self.query("redis ping", &redis::cmd("PING")).await?;
        if pong != "PONG" {
            return Err(StoreError::Unavailable(format!(
                "redis ping answered {pong:?}"
            )));
        }
        Ok(())
    }
}
