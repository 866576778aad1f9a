//! Refresh tokens and session ids: opaque, from a CSPRNG, and stored only
//! as an HMAC under a key of their own (derived from the server secret), so
//! a leaked database yields no usable token.

use hmac::{Hmac, Mac};
use rand::CryptoRng;
use sha2::Sha256;

use crate::config::Secret;
use crate::store::TokenHash;

type HmacSha256 = Hmac<Sha256>;

/// 256 bits, hex: 64 characters.
const TOKEN_BYTES: usize = 32;
/// 128 bits, hex: 32 characters.
const SESSION_ID_BYTES: usize = 16;

pub struct RefreshCodec {
    key: [u8; 32],
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn random_hex(rng: &mut impl CryptoRng, len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    hex(&bytes)
}

impl RefreshCodec {
    pub fn new(secret: &Secret) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(b"otpgate/refresh-token/v1");
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    /// A new refresh token; only the client ever holds it.
    pub fn generate(&self) -> String {
        random_hex(&mut rand::rng(), TOKEN_BYTES)
    }

    /// A new session id.
    pub fn session_id(&self) -> String {
        random_hex(&mut rand::rng(), SESSION_ID_BYTES)
    }

    /// What is stored and looked up for `token`.
    pub fn hash(&self, token: &str) -> TokenHash {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("32-byte key");
        mac.update(token.as_bytes());
        TokenHash(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed_under_the_secret() {
        let codec = RefreshCodec::new(&Secret::new("k".repeat(32)));
        let (a, b) = (codec.generate(), codec.generate());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(codec.session_id().len(), 32);
        assert_eq!(codec.hash(&a), codec.hash(&a));
        assert_ne!(codec.hash(&a), codec.hash(&b));
        let other = RefreshCodec::new(&Secret::new("j".repeat(32)));
        assert_ne!(codec.hash(&a), other.hash(&a));
    }
}
