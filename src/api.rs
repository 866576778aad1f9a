//! The JSON face of the gateway: every error it answers itself, with its
//! HTTP status and machine code decided here and nowhere else, and the
//! parsing of JSON request bodies into named, validated fields.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::{Map, Value};

/// Every error the gateway answers itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("Request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("Method not allowed")]
    MethodNotAllowed { allow: String },
    #[error("User not found")]
    UserNotFound,
    #[error("Account is not verified")]
    AccountNotVerified,
    #[error("Mobile number is already registered")]
    AlreadyRegistered,
    #[error("Email is already used by another account")]
    EmailTaken,
    #[error("Account is already verified")]
    AlreadyVerified,
    #[error("Invalid OTP")]
    InvalidOtp,
    #[error("OTP expired or not found; request a new one")]
    OtpExpired,
    #[error("An OTP was sent recently; retry in {} seconds", retry_after_secs(*.retry_after))]
    Cooldown { retry_after: Duration },
    #[error("{}", limited(*.limit, *.retry_after))]
    Limited {
        limit: crate::limits::Limit,
        retry_after: Duration,
    },
    #[error("Numbers of this country are not accepted")]
    CountryNotAllowed,
    #[error("The SMS could not be sent; try again")]
    SmsFailed,
    #[error("Storage is unavailable; try again shortly")]
    StorageUnavailable,
    #[error("Missing bearer token")]
    Unauthorized,
    #[error("Invalid token")]
    InvalidToken,
    #[error("Token revoked")]
    TokenRevoked,
    #[error("Revocations cannot be checked right now; try again shortly")]
    RevocationUnavailable,
    #[error("Invalid refresh token")]
    InvalidRefreshToken,
    #[error("Refresh token already used")]
    RefreshTokenReused,
    #[error("Session not found")]
    SessionNotFound,
    #[error("No route for this request")]
    NoRoute,
    #[error("Invalid request path: {0}")]
    InvalidPath(crate::path::InvalidPath),
    #[error("The request did not arrive in time")]
    RequestTimeout,
    #[error("No upstream could be reached")]
    UpstreamUnavailable,
    #[error("The upstream did not answer in time")]
    UpstreamTimeout,
    #[error("Internal error")]
    Internal,
}

/// `Retry-After` is whole seconds, rounded up so a client never retries early.
fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn limited(limit: crate::limits::Limit, retry_after: Duration) -> String {
    use crate::limits::Limit;
    let what = match limit {
        Limit::SmsPerMobile => "Too many OTPs were sent to this number",
        Limit::SmsPerIp | Limit::VerifyPerIp => "Too many requests from this address",
        Limit::SmsPerCountry => "Too many OTPs were sent to this country",
        Limit::SmsGlobal => "The service sends no more OTPs for now",
        Limit::Lockout => "Too many wrong OTPs: this number is locked",
    };
    format!("{what}; retry in {} seconds", retry_after_secs(retry_after))
}

impl ApiError {
    pub fn invalid(field: &str, problem: &str) -> Self {
        Self::InvalidRequest(format!("{field}: {problem}"))
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidRequest(_) | Self::InvalidPath(_) | Self::CountryNotAllowed => 400,
            Self::Unauthorized
            | Self::InvalidToken
            | Self::TokenRevoked
            | Self::InvalidRefreshToken
            | Self::RefreshTokenReused
            | Self::InvalidOtp
            | Self::OtpExpired => 401,
            Self::AccountNotVerified => 403,
            Self::UserNotFound | Self::NoRoute | Self::SessionNotFound => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::RequestTimeout => 408,
            Self::AlreadyRegistered | Self::EmailTaken | Self::AlreadyVerified => 409,
            Self::PayloadTooLarge { .. } => 413,
            Self::UnsupportedMediaType => 415,
            Self::Cooldown { .. } | Self::Limited { .. } => 429,
            Self::Internal => 500,
            Self::SmsFailed | Self::UpstreamUnavailable => 502,
            Self::StorageUnavailable | Self::RevocationUnavailable => 503,
            Self::UpstreamTimeout => 504,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::UserNotFound => "user_not_found",
            Self::AccountNotVerified => "account_not_verified",
            Self::AlreadyRegistered => "already_registered",
            Self::EmailTaken => "email_taken",
            Self::AlreadyVerified => "already_verified",
            Self::InvalidOtp => "invalid_otp",
            Self::OtpExpired => "otp_expired",
            Self::Cooldown { .. } => "cooldown",
            Self::Limited { limit, .. } => {
                use crate::limits::Limit;
                match limit {
                    Limit::SmsPerMobile => "mobile_limit",
                    Limit::SmsPerIp | Limit::VerifyPerIp => "ip_limit",
                    Limit::SmsPerCountry => "country_limit",
                    Limit::SmsGlobal => "sms_budget_exhausted",
                    Limit::Lockout => "locked_out",
                }
            }
            Self::CountryNotAllowed => "country_not_allowed",
            Self::SmsFailed => "sms_failed",
            Self::StorageUnavailable => "storage_unavailable",
            Self::Unauthorized => "unauthorized",
            Self::InvalidToken => "invalid_token",
            Self::TokenRevoked => "token_revoked",
            Self::RevocationUnavailable => "revocation_unavailable",
            Self::InvalidRefreshToken => "invalid_refresh_token",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::SessionNotFound => "session_not_found",
            Self::NoRoute => "no_route",
            Self::InvalidPath(_) => "invalid_path",
            Self::RequestTimeout => "request_timeout",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::Internal => "internal_error",
        }
    }

    /// Headers the status obliges us to send with it.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let header = |name: &'static str, value: String| {
            let value = HeaderValue::try_from(value).expect("header values built here are valid");
            (HeaderName::from_static(name), value)
        };
        match self {
            Self::Cooldown { retry_after } | Self::Limited { retry_after, .. } => {
                vec![header(
                    "retry-after",
                    retry_after_secs(*retry_after).to_string(),
                )]
            }
            Self::MethodNotAllowed { allow } => vec![header("allow", allow.clone())],
            Self::Unauthorized => vec![header(
                "www-authenticate",
                r#"Bearer realm="otpgate""#.into(),
            )],
            Self::InvalidToken | Self::TokenRevoked => vec![header(
                "www-authenticate",
                r#"Bearer realm="otpgate", error="invalid_token""#.into(),
            )],
            _ => Vec::new(),
        }
    }

    /// `{"error": "...", "code": "..."}`
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: String,
            code: &'a str,
        }
        serde_json::to_vec(&Body {
            error: self.to_string(),
            code: self.code(),
        })
        .expect("serializing a string pair cannot fail")
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::{StoreError, UniqueField};
        match e {
            StoreError::Conflict(UniqueField::Email) => Self::EmailTaken,
            StoreError::Conflict(UniqueField::Mobile) => Self::AlreadyRegistered,
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "storage unavailable");
                Self::StorageUnavailable
            }
        }
    }
}

impl From<crate::auth::access::Rejection> for ApiError {
    fn from(rejection: crate::auth::access::Rejection) -> Self {
        use crate::auth::access::Rejection;
        match rejection {
            Rejection::Missing => Self::Unauthorized,
            Rejection::Ambiguous | Rejection::Invalid | Rejection::Expired => Self::InvalidToken,
            Rejection::Revoked => Self::TokenRevoked,
            Rejection::RevocationUnavailable => Self::RevocationUnavailable,
        }
    }
}

/// A JSON object body whose fields are read by name, so that every error
/// names the field it is about.
pub struct JsonFields(Map<String, Value>);

impl JsonFields {
    /// A JSON object whose keys each appear once: with a repeated key, a
    /// parser that keeps the first and one that keeps the last would read two
    /// different requests.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        match serde_json::from_slice::<UniqueKeys>(body) {
            Ok(UniqueKeys::Object(map)) => Ok(Self(map)),
            Ok(UniqueKeys::Repeated(key)) => Err(ApiError::invalid(&key, "appears more than once")),
            Ok(UniqueKeys::NotAnObject) => Err(ApiError::InvalidRequest(
                "body: expected a JSON object".into(),
            )),
            Err(e) => Err(ApiError::InvalidRequest(format!(
                "body: malformed JSON ({e})"
            ))),
        }
    }

    /// A string field that must be present (it may still be empty).
    pub fn required(&self, field: &str) -> Result<&str, ApiError> {
        self.optional(field)?
            .ok_or_else(|| ApiError::invalid(field, "is required"))
    }

    /// A string field that may be absent or null.
    pub fn optional(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid(field, "must be a string")),
        }
    }
}

/// A request body read in one pass: an object with unique keys, the first
/// repeated key, or another JSON value.
enum UniqueKeys {
    Object(Map<String, Value>),
    Repeated(String),
    NotAnObject,
}

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = UniqueKeys;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut entries: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut map = Map::new();
                let mut repeated = None;
                // Read to the end even after a repeat, so malformed JSON still says so.
                while let Some(key) = entries.next_key::<String>()? {
                    let value: Value = entries.next_value()?;
                    if map.contains_key(&key) {
                        repeated.get_or_insert(key);
                    } else {
                        map.insert(key, value);
                    }
                }
                Ok(repeated.map_or(UniqueKeys::Object(map), UniqueKeys::Repeated))
            }
        }
        // Anything but an object is parsed as a plain value and then refused.
        struct Any;
        impl<'de> serde::de::Visitor<'de> for Any {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                entries: A,
            ) -> Result<UniqueKeys, A::Error> {
                Visit.visit_map(entries)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut items: A,
            ) -> Result<UniqueKeys, A::Error> {
                while items.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(UniqueKeys::NotAnObject)
            }
            fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys::NotAnObject)
            }
            fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys::NotAnObject)
            }
            fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys::NotAnObject)
            }
            fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys::NotAnObject)
            }
            fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys::NotAnObject)
            }
            fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys::NotAnObject)
            }
        }
        deserializer.deserialize_any(Any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_refused_by_name() {
        let err = JsonFields::parse(br#"{"mobile": "+1555", "otp": "1", "mobile": "+1666"}"#)
            .err()
            .unwrap();
        assert_eq!(err, ApiError::invalid("mobile", "appears more than once"));
        assert_eq!(err.code(), "invalid_request");
        // A repeat does not hide malformed JSON after it.
        assert!(matches!(
            JsonFields::parse(br#"{"a": 1, "a": 2, "#),
            Err(ApiError::InvalidRequest(m)) if m.contains("malformed")
        ));
        // Nested objects with the same keys as the outer one are fine.
        assert!(JsonFields::parse(br#"{"a": {"a": 1}, "b": [1, {"b": 2}]}"#).is_ok());
        for other in [&b"[1]"[..], b"\"x\"", b"1", b"null", b"true"] {
            assert!(matches!(
                JsonFields::parse(other),
                Err(ApiError::InvalidRequest(m)) if m == "body: expected a JSON object"
            ));
        }
    }

    #[test]
    fn errors_have_json_bodies_with_code() {
        let body: Value = serde_json::from_slice(&ApiError::NoRoute.body()).unwrap();
        assert_eq!(body["code"], "no_route");
        assert_eq!(body["error"], "No route for this request");
    }

    #[test]
    fn retry_after_rounds_up() {
        let e = ApiError::Cooldown {
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!(
            e.headers(),
            vec![(
                HeaderName::from_static("retry-after"),
                HeaderValue::from_static("2")
            )]
        );
        assert_eq!(e.status(), 429);
    }

    #[test]
    fn fields_are_named_in_errors() {
        let f = JsonFields::parse(br#"{"mobile": 5, "otp": null}"#).unwrap();
        assert_eq!(
            f.required("mobile").unwrap_err(),
            ApiError::invalid("mobile", "must be a string")
        );
        assert_eq!(f.optional("otp").unwrap(), None);
        assert!(
            matches!(f.required("email"), Err(ApiError::InvalidRequest(m)) if m.starts_with("email"))
        );
        assert!(JsonFields::parse(b"[1]").is_err());
        assert!(JsonFields::parse(b"{").is_err());
    }
}
