//! The auth endpoints as HTTP sees them, declared once in `ENDPOINTS`: path
//! pattern, method, whether a JSON body is read, whether a Bearer token is
//! required. The table drives routing of auth paths, 405 with `Allow`, and
//! dispatch; it is independent of the server that carries it.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::json;

use super::AuthServices;
use super::access::Principal;
use super::input::{self, Inputs};
use super::login::LoginOutcome;
use super::session::LogoutScope;
use super::signup::Registered;
use crate::api::{ApiError, JsonFields};
use crate::context::RequestContext;
use crate::store::Purpose;

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
    DeleteUser,
    Refresh,
    Logout,
    Sessions,
    DeleteSession,
    Jwks,
}

/// What an endpoint reads from the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Nothing: any body is ignored.
    None,
    /// A JSON object (`Content-Type: application/json`, at most 16 KiB).
    Json,
    /// A JSON object, or an empty body (then no `Content-Type` is needed).
    OptionalJson,
}

/// One auth endpoint: where it lives and what it reads.
#[derive(Debug)]
pub struct EndpointSpec {
    pub endpoint: Endpoint,
    pub method: &'static str,
    /// Under `auth.path_prefix`; a `{name}` segment matches any one segment.
    pub path: &'static str,
    pub body: Body,
    /// Needs `Authorization: Bearer` (the access check runs first).
    pub bearer: bool,
    /// A short name for logs and metrics.
    pub name: &'static str,
}

pub const ENDPOINTS: &[EndpointSpec] = &[
    EndpointSpec {
        endpoint: Endpoint::Register,
        method: "POST",
        path: "/register",
        body: Body::Json,
        bearer: false,
        name: "register",
    },
    EndpointSpec {
        endpoint: Endpoint::VerifyOtp,
        method: "POST",
        path: "/verify-otp",
        body: Body::Json,
        bearer: false,
        name: "verify-otp",
    },
    EndpointSpec {
        endpoint: Endpoint::Login,
        method: "POST",
        path: "/login",
        body: Body::Json,
        bearer: false,
        name: "login",
    },
    EndpointSpec {
        endpoint: Endpoint::ResendOtp,
        method: "POST",
        path: "/resend-otp",
        body: Body::Json,
        bearer: false,
        name: "resend-otp",
    },
    EndpointSpec {
        endpoint: Endpoint::User,
        method: "GET",
        path: "/user",
        body: Body::None,
        bearer: true,
        name: "user",
    },
    EndpointSpec {
        endpoint: Endpoint::DeleteUser,
        method: "DELETE",
        path: "/user",
        body: Body::None,
        bearer: true,
        name: "delete-user",
    },
    EndpointSpec {
        endpoint: Endpoint::Refresh,
        method: "POST",
        path: "/token/refresh",
        body: Body::Json,
        bearer: false,
        name: "token-refresh",
    },
    EndpointSpec {
        endpoint: Endpoint::Logout,
        method: "POST",
        path: "/logout",
        body: Body::OptionalJson,
        bearer: true,
        name: "logout",
    },
    EndpointSpec {
        endpoint: Endpoint::Sessions,
        method: "GET",
        path: "/sessions",
        body: Body::None,
        bearer: true,
        name: "sessions",
    },
    EndpointSpec {
        endpoint: Endpoint::Jwks,
        method: "GET",
        path: "/.well-known/jwks.json",
        body: Body::None,
        bearer: false,
        name: "jwks",
    },
    EndpointSpec {
        endpoint: Endpoint::DeleteSession,
        method: "DELETE",
        path: "/sessions/{id}",
        body: Body::None,
        bearer: true,
        name: "delete-session",
    },
];

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

/// What a path and method ask of the endpoint table.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// Not an auth path: the router's business.
    NotAuth,
    /// An auth endpoint, with the values of its `{name}` segments.
    Found(&'static EndpointSpec, Vec<&'a str>),
    /// An auth path, not with this method (405, `Allow`).
    WrongMethod(ApiError),
}

/// The endpoint table under `auth.path_prefix`.
#[derive(Debug, Clone)]
pub struct EndpointTable {
    /// Empty, or `/x` without a trailing slash.
    prefix: String,
    /// The first segment of every endpoint path (a literal in each).
    first_segments: Vec<&'static str>,
}

impl EndpointTable {
    pub fn new(prefix: &str) -> Self {
        let mut first_segments: Vec<&'static str> = ENDPOINTS
            .iter()
            .map(|spec| first_segment(spec.path))
            .collect();
        first_segments.sort_unstable();
        first_segments.dedup();
        Self {
            prefix: prefix.to_owned(),
            first_segments,
        }
    }

    /// The endpoint a (normalised) path and method name, if any.
    pub fn find<'a>(&self, path: &'a str, method: &str) -> Lookup<'a> {
        let Some(rest) = path.strip_prefix(self.prefix.as_str()) else {
            return Lookup::NotAuth;
        };
        // Every auth path starts with a known first segment: most proxied
        // requests are told apart here without walking the table.
        if !self.first_segments.contains(&first_segment(rest)) {
            return Lookup::NotAuth;
        }
        let mut allow: Vec<&str> = Vec::new();
        for spec in ENDPOINTS {
            if let Some(params) = match_pattern(spec.path, rest) {
                if spec.method == method {
                    return Lookup::Found(spec, params);
                }
                allow.push(spec.method);
            }
        }
        if allow.is_empty() {
            Lookup::NotAuth
        } else {
            Lookup::WrongMethod(ApiError::MethodNotAllowed {
                allow: allow.join(", "),
            })
        }
    }

    /// Every endpoint path, with the prefix, for display.
    pub fn paths(&self) -> impl Iterator<Item = String> + '_ {
        ENDPOINTS
            .iter()
            .map(|spec| format!("{} {}{}", spec.method, self.prefix, spec.path))
    }
}

/// `/first` of `/first/rest...`: up to the second slash.
fn first_segment(path: &str) -> &str {
    let end = path
        .get(1..)
        .and_then(|rest| rest.find('/'))
        .map_or(path.len(), |at| at + 1);
    &path[..end]
}

/// The values of `pattern`'s `{name}` segments when `path` matches it.
fn match_pattern<'a>(pattern: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let mut params = Vec::new();
    let mut segments = path.split('/');
    for expected in pattern.split('/') {
        let segment = segments.next()?;
        if expected.starts_with('{') && expected.ends_with('}') {
            if segment.is_empty() {
                return None;
            }
            params.push(segment);
        } else if expected != segment {
            return None;
        }
    }
    segments.next().is_none().then_some(params)
}

/// A request already checked for method, content type, size and (for Bearer
/// endpoints) access.
pub struct AuthRequest {
    pub endpoint: Endpoint,
    /// The values of the path's `{name}` segments, in order.
    pub params: Vec<String>,
    pub context: RequestContext,
    pub principal: Option<std::sync::Arc<Principal>>,
    pub body: Bytes,
}

/// An auth endpoint's answer: status, extra headers, JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, value: serde_json::Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: serde_json::to_vec(&value).expect("JSON values serialize"),
        }
    }

    fn message(status: u16, message: &str) -> Self {
        Self::json(status, json!({ "message": message }))
    }
}

pub async fn handle(services: &AuthServices, request: AuthRequest) -> Result<Reply, ApiError> {
    let ctx = &request.context;
    if let Some(principal) = request.principal.as_deref() {
        return bearer(services, &request, principal).await;
    }
    if request.endpoint == Endpoint::Jwks {
        // Public keys change only with the config: caches may keep them a while.
        return Ok(Reply {
            status: 200,
            headers: vec![(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            )],
            body: services.jwks.clone(),
        });
    }
    let inputs = Inputs {
        mobiles: &services.mobiles,
    };
    let fields = JsonFields::parse(&request.body)?;
    match request.endpoint {
        Endpoint::Register => {
            let registration = inputs.registration(&fields)?;
            Ok(match services.signup.register(ctx, registration).await? {
                Registered::Created => Reply::message(201, REGISTERED),
                Registered::Updated => Reply::message(200, REGISTERED),
            })
        }
        Endpoint::VerifyOtp => {
            let mobile = inputs.mobile(&fields)?;
            let otp = input::otp(&fields)?;
            services.signup.verify(ctx, &mobile, &otp).await?;
            Ok(Reply::message(
                200,
                "OTP verified successfully! Account activated.",
            ))
        }
        Endpoint::Login => {
            let mobile = inputs.mobile(&fields)?;
            let otp = input::login_otp(&fields)?;
            Ok(
                match services.login.login(ctx, &mobile, otp.as_deref()).await? {
                    LoginOutcome::OtpSent => Reply::message(200, "OTP sent for login"),
                    LoginOutcome::Token(token) => {
                        Reply::json(200, serde_json::to_value(*token).expect("token serializes"))
                    }
                },
            )
        }
        Endpoint::ResendOtp => {
            let mobile = inputs.mobile(&fields)?;
            match input::purpose(&fields)? {
                Purpose::Register => services.signup.resend(ctx, &mobile).await?,
                Purpose::Login => services.login.resend(ctx, &mobile).await?,
            }
            Ok(Reply::message(200, "OTP sent"))
        }
        Endpoint::Refresh => {
            let refresh_token = input::refresh_token(&fields)?;
            let grant = services.sessions.refresh(ctx, &refresh_token).await?;
            Ok(Reply::json(
                200,
                json!({
                    "token": grant.access.token,
                    "token_type": "Bearer",
                    "expires_in": grant.access.expires_in,
                    "refresh_token": grant.refresh_token,
                }),
            ))
        }
        Endpoint::User
        | Endpoint::DeleteUser
        | Endpoint::Logout
        | Endpoint::Sessions
        | Endpoint::DeleteSession => Err(ApiError::Unauthorized),
        Endpoint::Jwks => Err(ApiError::Internal),
    }
}

/// The endpoints of a signed-in caller.
async fn bearer(
    services: &AuthServices,
    request: &AuthRequest,
    principal: &Principal,
) -> Result<Reply, ApiError> {
    let ctx = &request.context;
    match request.endpoint {
        Endpoint::User => {
            let user = services.accounts.current(principal).await?;
            Ok(Reply::json(200, json!({ "user": user })))
        }
        Endpoint::DeleteUser => {
            services.accounts.delete(ctx, principal).await?;
            Ok(Reply::message(200, "Account deleted"))
        }
        Endpoint::Logout => {
            let scope = if request.body.is_empty() {
                LogoutScope::Local
            } else {
                input::logout_scope(&JsonFields::parse(&request.body)?)?
            };
            services.sessions.logout(ctx, principal, scope).await?;
            Ok(Reply::message(200, "Logged out"))
        }
        Endpoint::Sessions => {
            let sessions = services.sessions.list(principal).await?;
            Ok(Reply::json(200, json!({ "sessions": sessions })))
        }
        Endpoint::DeleteSession => {
            let id = request.params.first().ok_or(ApiError::SessionNotFound)?;
            services.sessions.delete(ctx, principal, id).await?;
            Ok(Reply::message(200, "Session revoked"))
        }
        Endpoint::Register
        | Endpoint::VerifyOtp
        | Endpoint::Login
        | Endpoint::ResendOtp
        | Endpoint::Refresh
        | Endpoint::Jwks => Err(ApiError::Internal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(table: &EndpointTable, path: &str, method: &str) -> Option<Endpoint> {
        match table.find(path, method) {
            Lookup::Found(spec, _) => Some(spec.endpoint),
            _ => None,
        }
    }

    #[test]
    fn paths_follow_the_prefix_exactly() {
        let table = EndpointTable::new("/auth");
        assert_eq!(found(&table, "/auth/login", "POST"), Some(Endpoint::Login));
        assert_eq!(
            found(&table, "/auth/verify-otp", "POST"),
            Some(Endpoint::VerifyOtp)
        );
        assert!(matches!(table.find("/login", "POST"), Lookup::NotAuth));
        assert!(matches!(
            table.find("/auth/login/", "POST"),
            Lookup::NotAuth
        ));
        assert!(matches!(
            table.find("/authx/login", "POST"),
            Lookup::NotAuth
        ));
        assert_eq!(
            found(&EndpointTable::new(""), "/user", "GET"),
            Some(Endpoint::User)
        );
    }

    #[test]
    fn a_wrong_method_is_405_with_allow() {
        let table = EndpointTable::new("");
        let Lookup::WrongMethod(error) = table.find("/login", "GET") else {
            panic!("GET /login is an auth path");
        };
        assert_eq!(error.status(), 405);
        assert_eq!(
            error.headers(),
            vec![(
                HeaderName::from_static("allow"),
                HeaderValue::from_static("POST")
            )]
        );
        assert!(matches!(
            table.find("/user", "POST"),
            Lookup::WrongMethod(_)
        ));
    }

    #[test]
    fn first_segments_are_compared_whole() {
        let same = |pattern, path| first_segment(pattern) == first_segment(path);
        assert!(same("/sessions/{id}", "/sessions"));
        assert!(same("/sessions/{id}", "/sessions/x"));
        assert!(!same("/sessions/{id}", "/sessionsx"));
        assert!(!same("/user", "/use"));
        assert!(!same("/user", "/api/user"));
        assert!(same("/token/refresh", "/token/x"));
    }

    #[test]
    fn patterns_capture_segments() {
        assert_eq!(
            match_pattern("/sessions/{id}", "/sessions/abc"),
            Some(vec!["abc"])
        );
        assert_eq!(match_pattern("/sessions/{id}", "/sessions/"), None);
        assert_eq!(match_pattern("/sessions/{id}", "/sessions/a/b"), None);
        assert_eq!(match_pattern("/sessions", "/sessions"), Some(vec![]));
        assert_eq!(match_pattern("/sessions", "/session"), None);
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(Some(b"application/json; charset=utf-8")).is_ok());
        assert!(check_content_type(Some(b"Application/JSON")).is_ok());
        assert!(check_content_type(Some(b"text/plain")).is_err());
        assert!(check_content_type(None).is_err());
    }

    #[test]
    fn every_endpoint_is_declared_once() {
        let mut seen = std::collections::HashSet::new();
        for spec in ENDPOINTS {
            assert!(seen.insert((spec.method, spec.path)), "{spec:?}");
            assert!(spec.path.starts_with('/'));
        }
    }
}
