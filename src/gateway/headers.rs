//! The headers the gateway owns on the way to an upstream: identity (only
//! from verified claims), `X-Request-Id` and `X-Forwarded-For`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;
use pingora::Result;
use pingora::http::RequestHeader;

use crate::auth::token::Identity;
use crate::config::IdentityHeaderNames;

/// Whether an upstream may read header `name` as `identity`: equal ignoring
/// letter case, with `_` read as `-` (CGI and WSGI turn both into `HTTP_X_USER_ID`).
fn reads_as(name: &[u8], identity: &[u8]) -> bool {
    let fold = |b: u8| {
        if b == b'_' {
            b'-'
        } else {
            b.to_ascii_lowercase()
        }
    };
    name.len() == identity.len() && name.iter().zip(identity).all(|(&a, &b)| fold(a) == fold(b))
}

/// Removes every client-sent header an upstream could read as an identity
/// header (any letter case, `_` for `-`) and sets them from a verified
/// token's `identity`.
pub fn set_identity(
    request: &mut RequestHeader,
    names: &IdentityHeaderNames,
    identity: Option<&Identity>,
) -> Result<()> {
    let spoofed: Vec<http::HeaderName> = request
        .headers
        .keys()
        .filter(|name| {
            names
                .all()
                .iter()
                .any(|identity| reads_as(name.as_str().as_bytes(), identity.as_str().as_bytes()))
        })
        .cloned()
        .collect();
    for name in &spoofed {
        request.remove_header(name);
    }
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

/// A client's request id is kept when it is one header of 1-128 visible
/// ASCII characters: anything else could forge log lines or bloat them.
fn usable_request_id(request: &RequestHeader) -> Option<&HeaderValue> {
    let mut values = request.headers.get_all("x-request-id").iter();
    let id = values.next()?;
    let visible =
        (1..=128).contains(&id.len()) && id.as_bytes().iter().all(|b| b.is_ascii_graphic());
    (visible && values.next().is_none()).then_some(id)
}

/// Keeps the client's `X-Request-Id` if usable, else sets a new one; returns it.
pub fn ensure_request_id(request: &mut RequestHeader, ids: &RequestIds) -> Result<HeaderValue> {
    if let Some(id) = usable_request_id(request) {
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
    fn unusable_request_ids_are_replaced() {
        let ids = RequestIds::default();
        let long = "a".repeat(129);
        let longest = "a".repeat(128);
        for (sent, kept) in [
            (&["abc-123"][..], true),
            (&[longest.as_str()], true),
            (&[""], false),
            (&[long.as_str()], false),
            (&["has space"], false),
            (&["caf\u{e9}"], false),
            (&["one", "two"], false),
        ] {
            let mut request = RequestHeader::build("GET", b"/", None).unwrap();
            for value in sent {
                request
                    .append_header(
                        "x-request-id",
                        HeaderValue::from_bytes(value.as_bytes()).unwrap(),
                    )
                    .unwrap();
            }
            let id = ensure_request_id(&mut request, &ids).unwrap();
            assert_eq!(id == sent[0], kept, "{sent:?}");
            assert_eq!(request.headers.get_all("x-request-id").iter().count(), 1);
            assert_eq!(request.headers["x-request-id"], id);
        }
    }

    #[test]
    fn identity_headers_are_removed_in_every_spelling() {
        let names = IdentityHeaderNames {
            user_id: http::HeaderName::from_static("x-user-id"),
            mobile: http::HeaderName::from_static("x-user-mobile"),
        };
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        for name in [
            "X-User-Id",
            "x_user_id",
            "X_USER_ID",
            "x-User_mobile",
            "x-user-idx",
            "x-user",
        ] {
            request.append_header(name.to_owned(), "999").unwrap();
        }
        let identity = Identity {
            user_id: HeaderValue::from_static("7"),
            mobile: HeaderValue::from_static("+15550001111"),
        };
        set_identity(&mut request, &names, Some(&identity)).unwrap();
        let mut left: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ("x-user".to_owned(), "999".to_owned()),
                ("x-user-id".to_owned(), "7".to_owned()),
                ("x-user-idx".to_owned(), "999".to_owned()),
                ("x-user-mobile".to_owned(), "+15550001111".to_owned()),
            ]
        );
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        append_forwarded_for(&mut request, "10.0.0.1".parse().unwrap()).unwrap();
        append_forwarded_for(&mut request, "127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(request.headers["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    }
}
