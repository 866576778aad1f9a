//! The OTP sign-up and login service, with no Pingora types: endpoints,
//! input rules, OTPs, tokens and mobile numbers.

pub mod endpoints;
mod input;
pub mod mobile;
pub mod otp;
pub mod service;
pub mod token;

pub use service::AuthService;

/// Seconds since the Unix epoch: the unit of every JWT and OTP timestamp.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
