//! A small HTTP/1.1 upstream that shows what the gateway forwarded. Used by
//! the demo and by the integration tests (they include this file).
//!
//! - `.../echo`: streams the request body back unchanged.
//! - `.../stream?bytes=N`: streams N bytes of a fixed pattern.
//! - `.../slow?ms=N`: answers after N milliseconds.
//! - `.../status?code=N`: answers status N with an `X-Custom` header.
//! - anything else: JSON with the method, path, query, headers, and the
//!   body's length and SHA-256.
//!
//! Every answer carries `X-Upstream: <name>`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, hyper::Error>;

/// The byte at `offset` of the `stream` pattern.
pub fn pattern_byte(offset: usize) -> u8 {
    (offset % 251) as u8
}

/// Serves connections from `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, name: String) {
    serve_counted(listener, name, Arc::default()).await;
}

/// As `serve`, counting the requests that reach it in `seen`.
pub async fn serve_counted(listener: TcpListener, name: String, seen: Arc<AtomicUsize>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                seen.fetch_add(1, Ordering::SeqCst);
                handle(req, name.clone())
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn query_number(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

async fn handle(req: Request<Incoming>, name: String) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let response = Response::builder().header("x-upstream", name.as_str());
    let response = if path.ends_with("/echo") {
        let content_type = req.headers().get("content-type").cloned();
        let response = match content_type {
            Some(ct) => response.header("content-type", ct),
            None => response,
        };
        response.body(req.into_body().boxed())
    } else if path.ends_with("/stream") {
        let total = query_number(&req, "bytes").unwrap_or(0) as usize;
        let chunks = (0..total).step_by(64 * 1024).map(move |start| {
            let end = (start + 64 * 1024).min(total);
            let chunk: Vec<u8> = (start..end).map(pattern_byte).collect();
            Ok::<_, hyper::Error>(Frame::data(Bytes::from(chunk)))
        });
        response
            .header("content-type", "application/octet-stream")
            .body(StreamBody::new(futures_util::stream::iter(chunks)).boxed())
    } else if path.ends_with("/status") {
        let code = query_number(&req, "code").unwrap_or(200) as u16;
        response
            .status(code)
            .header("x-custom", "kept")
            .body(full(format!("status {code}\n")))
    } else if path.ends_with("/slow") {
        let ms = query_number(&req, "ms").unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        response.body(full("slow answer\n"))
    } else {
        let method = req.method().to_string();
        let query = req.uri().query().map(str::to_owned);
        let mut headers = serde_json::Map::new();
        for (key, value) in req.headers() {
            let entry = headers
                .entry(key.as_str().to_owned())
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(values) = entry {
                values.push(String::from_utf8_lossy(value.as_bytes()).into());
            }
        }
        let body = match req.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let report = serde_json::json!({
            "upstream": name,
            "method": method,
            "path": path,
            "query": query,
            "headers": headers,
            "body_bytes": body.len(),
            "body_sha256": format!("{:x}", Sha256::digest(&body)),
        });
        response
            .header("content-type", "application/json")
            .body(full(serde_json::to_vec_pretty(&report).unwrap_or_default()))
    };
    Ok(response.unwrap_or_else(|_| Response::new(full("bad response\n"))))
}
