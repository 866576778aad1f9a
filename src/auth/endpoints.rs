//! The auth endpoints as HTTP sees them: paths, methods, content rules and
//! the JSON each one answers. Independent of the server that carries them.

use bytes::Bytes;
use serde_json::json;

use super::input::{self, Inputs};
use super::service::{AuthService, LoginOutcome, Registered};
use super::token::Bearer;
use crate::api::{ApiError, JsonFields};

const REGISTERED: &str = "User registered successfully. OTP sent!";

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Register,
    VerifyOtp,
    Login,
    ResendOtp,
    User,
}

impl Endpoint {
    const ALL: [(Endpoint, &'static str); 5] = [
        (Endpoint::Register, "/register"),
        (Endpoint::VerifyOtp, "/verify-otp"),
        (Endpoint::Login, "/login"),
        (Endpoint::ResendOtp, "/resend-otp"),
        (Endpoint::User, "/user"),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(e, _)| *e == self)
            .map_or("", |(_, path)| path)
    }

    fn allow(self) -> &'static str {
        match self {
            Self::User => "GET",
            _ => "POST",
        }
    }

    /// Whether this endpoint reads a JSON body.
    pub fn takes_body(self) -> bool {
        self != Self::User
    }

    pub fn check_method(self, method: &str) -> Result<(), ApiError> {
        let allowed = match self {
            Self::User => method == "GET",
            _ => method == "POST",
        };
        if allowed {
            Ok(())
        } else {
            Err(ApiError::MethodNotAllowed {
                allow: self.allow(),
            })
        }
    }
}

/// `application/json`, with or without parameters such as charset.
pub fn check_content_type(value: Option<&[u8]>) -> Result<(), ApiError> {
    let is_json = value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// The auth paths under `auth.path_prefix`.
#[derive(Debug, Clone)]
pub struct EndpointPaths {
    paths: Vec<(String, Endpoint)>,
}

impl EndpointPaths {
    pub fn new(prefix: &str) -> Self {
        Self {
            paths: Endpoint::ALL
                .iter()
                .map(|(endpoint, path)| (format!("{prefix}{path}"), *endpoint))
                .collect(),
        }
    }

    /// Exact path match (the query string is not part of `path`).
    pub fn find(&self, path: &str) -> Option<Endpoint> {
        self.paths
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, endpoint)| *endpoint)
    }
}

/// A request already checked for method, content type and size.
pub struct AuthRequest {
    pub endpoint: Endpoint,
    /// Every `Authorization` header value, in order.
    pub authorization: Vec<Vec<u8>>,
    pub body: Bytes,
}

pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, value: serde_json::Value) -> Self {
        Self {
            status,
            body: serde_json::to_vec(&value).expect("JSON values serialize"),
        }
    }

    fn message(status: u16, message: &str) -> Self {
        Self::json(status, json!({ "message": message }))
    }
}

pub async fn handle(service: &AuthService, request: AuthRequest) -> Result<Reply, ApiError> {
    let inputs = Inputs {
        default_country_code: service.default_country_code(),
    };
    if request.endpoint == Endpoint::User {
        let values = request.authorization.iter().map(Vec::as_slice);
        let claims = match Bearer::from_headers(values) {
            Bearer::Missing => return Err(ApiError::Unauthorized),
            Bearer::Ambiguous => return Err(ApiError::InvalidToken),
            Bearer::Token(token) => service
                .tokens()
                .verify(token)
                .map_err(|_| ApiError::InvalidToken)?,
        };
        let user = service.current_user(&claims).await?;
        return Ok(Reply::json(200, json!({ "user": user })));
    }
    let fields = JsonFields::parse(&request.body)?;
    match request.endpoint {
        Endpoint::Register => {
            let registration = inputs.registration(&fields)?;
            Ok(match service.register(registration).await? {
                Registered::Created => Reply::message(201, REGISTERED),
                Registered::Updated => Reply::message(200, REGISTERED),
            })
        }
        Endpoint::VerifyOtp => {
            let mobile = inputs.mobile(&fields)?;
            let otp = input::otp(&fields)?;
            service.verify_registration(&mobile, &otp).await?;
            Ok(Reply::message(
                200,
                "OTP verified successfully! Account activated.",
            ))
        }
        Endpoint::Login => {
            let mobile = inputs.mobile(&fields)?;
            let otp = input::login_otp(&fields)?;
            Ok(match service.login(&mobile, otp.as_deref()).await? {
                LoginOutcome::OtpSent => Reply::message(200, "OTP sent for login"),
                LoginOutcome::Token(token) => {
                    Reply::json(200, serde_json::to_value(*token).expect("token serializes"))
                }
            })
        }
        Endpoint::ResendOtp => {
            let mobile = inputs.mobile(&fields)?;
            let purpose = input::purpose(&fields)?;
            service.resend(&mobile, purpose).await?;
            Ok(Reply::message(200, "OTP sent"))
        }
        Endpoint::User => unreachable!("answered above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_prefix_exactly() {
        let paths = EndpointPaths::new("/auth");
        assert_eq!(paths.find("/auth/login"), Some(Endpoint::Login));
        assert_eq!(paths.find("/auth/verify-otp"), Some(Endpoint::VerifyOtp));
        assert_eq!(paths.find("/login"), None);
        assert_eq!(paths.find("/auth/login/"), None);
        assert_eq!(EndpointPaths::new("").find("/user"), Some(Endpoint::User));
    }

    #[test]
    fn methods_and_content_types() {
        assert!(Endpoint::Login.check_method("POST").is_ok());
        assert_eq!(
            Endpoint::Login.check_method("GET").unwrap_err().headers(),
            vec![("Allow", "POST".to_owned())]
        );
        assert!(Endpoint::User.check_method("GET").is_ok());
        assert!(Endpoint::User.check_method("POST").is_err());
        assert!(check_content_type(Some(b"application/json; charset=utf-8")).is_ok());
        assert!(check_content_type(Some(b"Application/JSON")).is_ok());
        assert!(check_content_type(Some(b"text/plain")).is_err());
        assert!(check_content_type(None).is_err());
    }
}
