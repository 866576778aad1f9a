//! The abuse limits' policy: which rate counters a request touches, what a
//! full counter means for the client, and who the client is (the socket peer,
//! or the address a trusted proxy forwarded). No storage code: the counters
//! are a `CounterStore`.

mod client_ip;
mod policy;

pub use client_ip::TrustedProxies;
pub use policy::{Limiter, SmsGrant};

/// A limit a request can run into, named as in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    SmsPerMobile,
    SmsPerIp,
    SmsPerCountry,
    SmsGlobal,
    VerifyPerIp,
    /// Too many burned OTPs: `limits.lockout`.
    Lockout,
}

impl Limit {
    /// The config key, as audit events name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SmsPerMobile => "sms_per_mobile",
            Self::SmsPerIp => "sms_per_ip",
            Self::SmsPerCountry => "sms_per_country",
            Self::SmsGlobal => "sms_global",
            Self::VerifyPerIp => "verify_per_ip",
            Self::Lockout => "lockout",
        }
    }
}
