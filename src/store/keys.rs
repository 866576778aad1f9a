//! The one place state keys are named (OTPs, cooldowns, lockouts, rate
//! counters, the revocation channel), for every backend.

use super::otps::Purpose;

/// Key names under a prefix (`otpgate:` on Redis, empty in process).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The live OTP digest and its attempt counter. The mobile is a hash tag
    /// (`{...}`) so a mobile's keys share one Redis Cluster slot and a script
    /// may touch them together.
    pub fn otp(&self, purpose: Purpose, mobile: &str) -> String {
        format!("{}otp:{}:{{{mobile}}}", self.prefix, purpose.as_str())
    }

    /// The pub/sub channel that carries session revocations to every instance.
    pub fn revocations(&self) -> String {
        format!("{}revoked-sessions", self.prefix)
    }

    /// A rate counter of the abuse limits: `kind` says what it counts,
    /// `subject` whose (empty for a deployment-wide one).
    pub fn counter(&self, kind: &str, subject: &str) -> String {
        if subject.is_empty() {
            format!("{}limit:{kind}", self.prefix)
        } else {
            format!("{}limit:{kind}:{subject}", self.prefix)
        }
    }

    /// The SMS sent to a mobile, for `limits.sms_per_mobile`. Tagged like
    /// `otp`, so issuing an OTP checks and counts it in the same script.
    pub fn sms_sent(&self, mobile: &str) -> String {
        format!("{}limit:sms_mobile:{{{mobile}}}", self.prefix)
    }

    /// The times a mobile's OTPs were burned, for the lockout. Tagged like
    /// `otp`, so the OTP scripts may touch it.
    pub fn burns(&self, mobile: &str) -> String {
        format!("{}burns:{{{mobile}}}", self.prefix)
    }

    /// Present while a mobile is locked out.
    pub fn lockout(&self, mobile: &str) -> String {
        format!("{}lockout:{{{mobile}}}", self.prefix)
    }

    /// Present while a new OTP for (purpose, mobile) must not be sent.
    pub fn cooldown(&self, purpose: Purpose, mobile: &str) -> String {
        format!("{}cooldown:{}:{{{mobile}}}", self.prefix, purpose.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_prefix_purpose_and_mobile() {
        let keys = Keys::new("p:");
        assert_eq!(
            keys.otp(Purpose::Login, "+15550001"),
            "p:otp:login:{+15550001}"
        );
        assert_eq!(
            keys.cooldown(Purpose::Register, "+15550001"),
            "p:cooldown:register:{+15550001}"
        );
        assert_eq!(
            keys.counter("sms_ip", "192.0.2.1"),
            "p:limit:sms_ip:192.0.2.1"
        );
        assert_eq!(keys.counter("sms_global", ""), "p:limit:sms_global");
        assert_eq!(keys.burns("+15550001"), "p:burns:{+15550001}");
        assert_eq!(keys.sms_sent("+15550001"), "p:limit:sms_mobile:{+15550001}");
        assert_eq!(keys.lockout("+15550001"), "p:lockout:{+15550001}");
    }
}
