//! The headers the gateway owns on the way to an upstream: identity (only
//! from verified claims), `X-Request-Id` and `X-Forwarded-For`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;
use pingora::Result;
use pingora::http::RequestHeader;

use crate::auth::token::Identity;
use crate::config::IdentityHeaderNames;

/// Removes every client-sent copy of the identity headers (any letter case)
/// and sets them from a verified token's `identity`.
pub fn set_identity(
    request: &mut RequestHeader,
    names: &IdentityHeaderNames,
    identity: Option<&Identity>,
) -> Result<()> {
    request.remove_header(&names.user_id);
    request.remove_header(&names.mobile);
    if let Some(identity) = identity {
        request.insert_header(&names.user_id, identity.user_id.clone())?;
        request.insert_header(&names.mobile, identity.mobile.clone())?;
    }
    Ok(())
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
    fn next(&self) -> HeaderValue {
        let id = format!(
            "{}-{:x}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        HeaderValue::from_str(&id).expect("hex and '-' are valid header bytes")
    }
}

/// Keeps the client's `X-Request-Id` or sets a new one; returns it.
pub fn ensure_request_id(request: &mut RequestHeader, ids: &RequestIds) -> Result<HeaderValue> {
    if let Some(id) = request.headers.get("x-request-id") {
        return Ok(id.clone());
    }
    let id = ids.next();
    request.insert_header("x-request-id", id.clone())?;
    Ok(id)
}

/// Sets `X-Forwarded-For` to the client address, after any sent before.
pub fn append_forwarded_for(request: &mut RequestHeader, client: IpAddr) -> Result<()> {
    use std::io::Write;
    // "prior, " + the address, formatted without a heap string.
    let mut address = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut address[..]);
    write!(cursor, "{client}").expect("an IP address fits in 48 bytes");
    let length = cursor.position() as usize;
    let address = &address[..length];
    let value = match request.headers.get("x-forwarded-for") {
        Some(prior) => {
            let mut value = Vec::with_capacity(prior.len() + 2 + address.len());
            value.extend_from_slice(prior.as_bytes());
            value.extend_from_slice(b", ");
            value.extend_from_slice(address);
            // An unusable prior value is replaced, not kept.
            HeaderValue::from_bytes(&value).or_else(|_| HeaderValue::from_bytes(address))
        }
        None => HeaderValue::from_bytes(address),
    };
    let value = value.expect("an IP address is a valid header value");
    request.insert_header("x-forwarded-for", value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_client_ids_kept() {
        let ids = RequestIds::default();
        let mut a = RequestHeader::build("GET", b"/", None).unwrap();
        let mut b = RequestHeader::build("GET", b"/", None).unwrap();
        let first = ensure_request_id(&mut a, &ids).unwrap();
        let second = ensure_request_id(&mut b, &ids).unwrap();
        assert_ne!(first, second);
        assert!(first.to_str().unwrap().starts_with(&ids.prefix));
        assert_eq!(ensure_request_id(&mut a, &ids).unwrap(), first);
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        append_forwarded_for(&mut request, "10.0.0.1".parse().unwrap()).unwrap();
        append_forwarded_for(&mut request, "127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(request.headers["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    }
}
