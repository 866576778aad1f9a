//! One-time passwords: drawn from a CSPRNG, stored only as an HMAC bound to
//! purpose and mobile, so a leaked store reveals no OTP and an OTP for one
//! purpose or number never matches another.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngExt};
use sha2::Sha256;

use crate::config::Secret;
use crate::store::{OtpDigest, Purpose};

type HmacSha256 = Hmac<Sha256>;

/// A freshly drawn OTP. Only the SMS and the digest ever see its digits.
pub struct Otp(String);

impl Otp {
    /// A configured OTP (a test number's).
    pub fn fixed(digits: &str) -> Self {
        Self(digits.to_owned())
    }

    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Otp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Otp(***)")
    }
}

pub struct OtpCodec {
    key: [u8; 32],
    length: usize,
}

impl OtpCodec {
    /// Derives the HMAC key from the server secret under its own label, so the
    /// JWT key and the OTP key are never the same bytes.
    pub fn new(secret: &Secret, length: usize) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(b"otpgate/otp-digest/v1");
        Self {
            key: mac.finalize().into_bytes().into(),
            length,
        }
    }

    pub fn generate(&self) -> Otp {
        self.generate_with(&mut rand::rng())
    }

    /// Uniform digits; the bound makes a non-cryptographic RNG a compile error.
    fn generate_with(&self, rng: &mut impl CryptoRng) -> Otp {
        Otp((0..self.length)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect())
    }

    pub fn digest(&self, purpose: Purpose, mobile: &str, otp: &str) -> OtpDigest {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("32-byte key");
        // Length-prefixed fields: no two (purpose, mobile, otp) share an input.
        for field in [purpose.as_str(), mobile, otp] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        OtpDigest(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> OtpCodec {
        OtpCodec::new(&Secret::new("k".repeat(32)), 6)
    }

    #[test]
    fn otps_have_the_configured_digits() {
        let codec = codec();
        for _ in 0..200 {
            let otp = codec.generate();
            assert_eq!(otp.digits().len(), 6);
            assert!(otp.digits().bytes().all(|b| b.is_ascii_digit()));
        }
        assert_eq!(format!("{:?}", codec.generate()), "Otp(***)");
    }

    #[test]
    fn digits_are_spread_over_all_ten_values() {
        let codec = OtpCodec::new(&Secret::new("k".repeat(32)), 10);
        let mut counts = [0u32; 10];
        for _ in 0..1000 {
            for b in codec.generate().digits().bytes() {
                counts[usize::from(b - b'0')] += 1;
            }
        }
        // 10,000 digits: each value expected 1,000 times; 800 is > 6 sigma away.
        assert!(counts.iter().all(|&n| n > 800), "{counts:?}");
    }

    #[test]
    fn digests_bind_purpose_mobile_and_secret() {
        let codec = codec();
        let base = codec.digest(Purpose::Register, "+15550001", "123456");
        assert_eq!(base, codec.digest(Purpose::Register, "+15550001", "123456"));
        assert_ne!(base, codec.digest(Purpose::Login, "+15550001", "123456"));
        assert_ne!(base, codec.digest(Purpose::Register, "+15550002", "123456"));
        assert_ne!(base, codec.digest(Purpose::Register, "+15550001", "123457"));
        assert_ne!(base, codec.digest(Purpose::Register, "+15550001", ""));
        let other = OtpCodec::new(&Secret::new("j".repeat(32)), 6);
        assert_ne!(base, other.digest(Purpose::Register, "+15550001", "123456"));
    }
}
