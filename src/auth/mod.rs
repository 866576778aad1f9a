//! The OTP sign-up and login service, with no Pingora types: endpoints,
//! input rules, OTPs, tokens and mobile numbers.

pub mod endpoints;
mod input;
pub mod mobile;
pub mod otp;
pub mod service;
pub mod token;

pub use service::AuthService;
