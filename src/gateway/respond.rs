//! Writing the gateway's own answers (auth replies and JSON errors).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use crate::api::ApiError;

/// A request body up to this size is read and dropped before an early answer,
/// so the connection stays reusable; a larger one closes it instead.
const DRAIN_LIMIT: u64 = 64 * 1024;

/// Reads and drops a small unread request body so that an early answer (401,
/// 404...) keeps the connection alive.
pub async fn discard_small_body(session: &mut Session) {
    if session.is_body_done() {
        return;
    }
    let small = content_length(session).is_some_and(|n| n <= DRAIN_LIMIT);
    if small {
        let _ = tokio::time::timeout(Duration::from_secs(2), session.drain_request_body()).await;
    }
}

pub fn content_length(session: &Session) -> Option<u64> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

pub async fn send_json(
    session: &mut Session,
    status: u16,
    headers: &[(HeaderName, HeaderValue)],
    body: Vec<u8>,
) -> Result<()> {
    let mut response = ResponseHeader::build(status, Some(3 + headers.len()))?;
    response.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    response.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    // A reply may say otherwise (a cacheable document).
    response.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    for (name, value) in headers {
        response.insert_header(name.clone(), value.clone())?;
    }
    session
        .write_response_header(Box::new(response), false)
        .await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await
}

/// Answers `error` as `{error, code}` with its status and headers.
pub async fn send_error(session: &mut Session, error: &ApiError) -> Result<()> {
    discard_small_body(session).await;
    send_json(session, error.status(), &error.headers(), error.body()).await
}
