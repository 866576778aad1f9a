//! The one place OTP state keys are named, for every backend.

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
    }
}
