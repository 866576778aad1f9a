//! The admin listener: `/healthz` (the process answers), `/readyz` (storage
//! answers) and `/metrics` (Prometheus text). Never on the proxy listener.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::Metrics;
use crate::store::Storage;

pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub storage: Storage,
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
                match ready {
                    Ok(Ok(())) => reply(200, json, br#"{"status":"ready"}"#.to_vec()),
                    _ => reply(503, json, br#"{"status":"storage_unavailable"}"#.to_vec()),
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
