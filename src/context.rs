//! What every service call knows about the request it serves, built once in
//! the gateway's first phase: nothing below the gateway reaches back into
//! Pingora for it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderValue};

#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The socket peer.
    pub peer: Option<IpAddr>,
    /// The client: the peer, or the address a trusted proxy forwarded
    /// (`limits.trusted_proxies`).
    pub client_ip: Option<IpAddr>,
    /// The client's `X-Request-Id` when usable, else a generated one.
    pub request_id: HeaderValue,
}

impl RequestContext {
    /// `request_id` as text, for log lines (always visible ASCII).
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }
}

/// Request ids unique across instances: a random per-process part and a counter.
pub struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self {
            prefix: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            next: AtomicU64::new(1),
        }
    }
}

impl RequestIds {
    fn generate(&self) -> HeaderValue {
        let id = format!(
            "{}-{:x}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        HeaderValue::from_str(&id).expect("hex and '-' are valid header bytes")
    }

    /// The client's `X-Request-Id` when it is one header of 1-128 visible
    /// ASCII characters (anything else could forge or bloat log lines),
    /// else a new one.
    pub fn for_request(&self, headers: &HeaderMap) -> HeaderValue {
        let mut values = headers.get_all("x-request-id").iter();
        match (values.next(), values.next()) {
            (Some(id), None)
                if (1..=128).contains(&id.len())
                    && id.as_bytes().iter().all(u8::is_ascii_graphic) =>
            {
                id.clone()
            }
            _ => self.generate(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique() {
        let ids = RequestIds::default();
        let none = HeaderMap::new();
        let (first, second) = (ids.for_request(&none), ids.for_request(&none));
        assert_ne!(first, second);
        assert!(first.to_str().unwrap().starts_with(&ids.prefix));
    }

    #[test]
    fn only_sane_client_ids_are_kept() {
        let ids = RequestIds::default();
        let longest = "a".repeat(128);
        let long = "a".repeat(129);
        for (sent, kept) in [
            (&["abc-123"][..], true),
            (&[longest.as_str()], true),
            (&[""], false),
            (&[long.as_str()], false),
            (&["has space"], false),
            (&["caf\u{e9}"], false),
            (&["one", "two"], false),
        ] {
            let mut headers = HeaderMap::new();
            for value in sent {
                headers.append(
                    "x-request-id",
                    HeaderValue::from_bytes(value.as_bytes()).unwrap(),
                );
            }
            let id = ids.for_request(&headers);
            assert_eq!(id == sent[0], kept, "{sent:?}");
        }
    }
}
