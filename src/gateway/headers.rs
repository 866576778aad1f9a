//! The headers the gateway owns on the way to an upstream: identity (only
//! from verified claims) and `X-Forwarded-For`.

use std::net::IpAddr;

use http::HeaderValue;
use pingora::Result;
use pingora::http::RequestHeader;

use crate::auth::access::Principal;
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
/// token's `principal`.
pub fn set_identity(
    request: &mut RequestHeader,
    names: &IdentityHeaderNames,
    principal: Option<&Principal>,
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
    if let Some(principal) = principal {
        request.insert_header(&names.user_id, principal.user_id_header.clone())?;
        request.insert_header(&names.mobile, principal.mobile_header.clone())?;
    }
    Ok(())
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
        let principal = Principal {
            user_id: 7,
            session_id: "s1".into(),
            user_id_header: HeaderValue::from_static("7"),
            mobile_header: HeaderValue::from_static("+15550001111"),
        };
        set_identity(&mut request, &names, Some(&principal)).unwrap();
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
