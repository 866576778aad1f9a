//! otpgate: phone-number OTP sign-up and login, and a Pingora reverse proxy
//! that enforces the JWTs it issues in front of existing HTTP backends.

pub mod api;
pub mod audit;
pub mod auth;
pub mod config;
pub mod context;
pub mod gateway;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod mobile;
pub mod path;
pub mod revocation;
pub mod sms;
pub mod store;
pub mod tls;
