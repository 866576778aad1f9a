//! The JSON face of the gateway: every error it answers itself, with its
//! HTTP status and machine code decided here and nowhere else, and the
//! parsing of JSON request bodies into named, validated fields.

use std::time::Duration;

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
    MethodNotAllowed { allow: &'static str },
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
    #[error("The SMS could not be sent; try again")]
    SmsFailed,
    #[error("Storage is unavailable; try again shortly")]
    StorageUnavailable,
    #[error("Missing bearer token")]
    Unauthorized,
    #[error("Invalid token")]
    InvalidToken,
    #[error("No route for this request")]
    NoRoute,
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

impl ApiError {
    pub fn invalid(field: &str, problem: &str) -> Self {
        Self::InvalidRequest(format!("{field}: {problem}"))
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidRequest(_) => 400,
            Self::Unauthorized | Self::InvalidToken | Self::InvalidOtp | Self::OtpExpired => 401,
            Self::AccountNotVerified => 403,
            Self::UserNotFound | Self::NoRoute => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::AlreadyRegistered | Self::EmailTaken | Self::AlreadyVerified => 409,
            Self::PayloadTooLarge { .. } => 413,
            Self::UnsupportedMediaType => 415,
            Self::Cooldown { .. } => 429,
            Self::Internal => 500,
            Self::SmsFailed | Self::UpstreamUnavailable => 502,
            Self::StorageUnavailable => 503,
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
            Self::SmsFailed => "sms_failed",
            Self::StorageUnavailable => "storage_unavailable",
            Self::Unauthorized => "unauthorized",
            Self::InvalidToken => "invalid_token",
            Self::NoRoute => "no_route",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::Internal => "internal_error",
        }
    }

    /// Headers the status obliges us to send with it.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Cooldown { retry_after } => {
                vec![("Retry-After", retry_after_secs(*retry_after).to_string())]
            }
            Self::MethodNotAllowed { allow } => vec![("Allow", (*allow).to_owned())],
            Self::Unauthorized => vec![("WWW-Authenticate", r#"Bearer realm="otpgate""#.into())],
            Self::InvalidToken => vec![(
                "WWW-Authenticate",
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

/// A JSON object body whose fields are read by name, so that every error
/// names the field it is about.
pub struct JsonFields(Map<String, Value>);

impl JsonFields {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(ApiError::InvalidRequest(
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(e.headers(), vec![("Retry-After", "2".to_owned())]);
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
