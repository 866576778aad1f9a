//! The admin listener: `/healthz` (the process answers), `/readyz` (storage
//! answers and the revocation feed is connected) and `/metrics` (Prometheus text). Never on the proxy listener.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::Metrics;
use crate::revocation::Revocations;
use crate::store::Storage;

pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub storage: Storage,
    pub revocations: Arc<Revocations>,
    pub auth_runtime: tokio::runtime::Handle,
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .expect("static response parts are valid")
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let json = "application/json";
        match session.req_header().uri.path() {
            "/healthz" => reply(200, json, br#"{"status":"ok"}"#.to_vec()),
            "/readyz" => {
                let storage = self.storage.clone();
                let ready = self
                    .auth_runtime
                    .spawn(async move { storage.ping().await })
                    .await;
                let mut failing = Vec::new();
                if !matches!(ready, Ok(Ok(()))) {
                    failing.push("storage");
                }
                // Without the feed this instance may accept revoked tokens
                // (or, with on_feed_loss: closed, refuse every token).
                if !self.revocations.feed_up() {
                    failing.push("revocation");
                }
                if failing.is_empty() {
                    reply(200, json, br#"{"status":"ready"}"#.to_vec())
                } else {
                    let body = serde_json::json!({"status": "not_ready", "failing": failing});
                    reply(503, json, body.to_string().into_bytes())
                }
            }
            "/metrics" => reply(200, "text/plain; version=0.0.4", self.metrics.render()),
            _ => reply(
                404,
                json,
                br#"{"error":"Not found","code":"not_found"}"#.to_vec(),
            ),
        }
    }
}
