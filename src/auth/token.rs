//! The JWT otpgate issues and enforces: HS256 only, with iss, aud, exp, nbf
//! checked locally (no storage call) on every protected request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thread_local::ThreadLocal;

use super::unix_now;
use crate::config::JwtConfig;
use crate::store::User;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a string.
    pub sub: String,
    pub mobile: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: String,
}

/// What the request's `Authorization` headers hold, as far as a bearer token goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearer<'a> {
    /// No header, or one of another scheme: there is no token.
    Missing,
    /// `Bearer` with a value (maybe empty or garbage: verification decides).
    Token(&'a str),
    /// Several headers, or several credentials in one: never checked in one
    /// form and forwarded in another, so always refused.
    Ambiguous,
}

/// Spaces and tabs: what may separate the scheme from its token.
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

impl<'a> Bearer<'a> {
    /// Reads every `Authorization` header value: exactly one `Bearer <token>`
    /// (scheme in any letter case, then spaces or tabs) is a token.
    pub fn from_headers(mut values: impl Iterator<Item = &'a [u8]>) -> Self {
        let Some(value) = values.next() else {
            return Self::Missing;
        };
        if values.next().is_some() {
            return Self::Ambiguous;
        }
        let Ok(value) = std::str::from_utf8(value) else {
            return Self::Token("");
        };
        // RFC 9110 allows a comma-separated list of credentials in one header.
        if value.contains(',') {
            return Self::Ambiguous;
        }
        let value = value.trim_matches(is_blank);
        let (scheme, token) = value
            .split_once(is_blank)
            .map_or((value, ""), |(scheme, token)| {
                (scheme, token.trim_start_matches(is_blank))
            });
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Self::Missing;
        }
        if token.contains(is_blank) {
            return Self::Ambiguous;
        }
        Self::Token(token)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

/// What a verified token says about its bearer, ready to forward.
#[derive(Debug)]
pub struct Identity {
    /// `sub`, the user id.
    pub user_id: HeaderValue,
    pub mobile: HeaderValue,
}

/// A verified token, kept until its `exp` (plus leeway) passes.
struct Verified {
    identity: Arc<Identity>,
    valid_until: i64,
}

/// Verified tokens per worker thread: no lock on the request path. Bounded;
/// when full it starts over rather than tracking recency.
const CACHE_ENTRIES: usize = 4096;

pub struct Tokens {
    cache: ThreadLocal<RefCell<HashMap<Box<str>, Verified>>>,
    leeway: i64,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    header: Header,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl Tokens {
    pub fn new(config: &JwtConfig) -> Self {
        let secret = config.secret.expose().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Self {
            cache: ThreadLocal::new(),
            leeway: config.leeway.as_secs() as i64,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            header: Header::new(Algorithm::HS256),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl: config.ttl,
        }
    }

    /// Signs a token for `user`, valid from `now` (unix seconds) for the configured ttl.
    pub fn issue(&self, user: &User, now: i64) -> IssuedToken {
        let ttl = self.ttl.as_secs();
        let claims = Claims {
            sub: user.id.to_string(),
            mobile: user.mobile.clone(),
            iat: now,
            nbf: now,
            exp: now.saturating_add_unsigned(ttl),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail");
        IssuedToken {
            token,
            expires_in: ttl,
        }
    }

    /// Verifies signature (HS256 only), exp, nbf, iss and aud.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
    }

    /// `verify` for the proxy path: a token verified before on this thread
    /// is answered from a cache, which never serves it past `exp` + leeway.
    /// Only successes are cached, so a bad token is checked every time.
    pub fn identity(&self, token: &str) -> Result<Arc<Identity>, jsonwebtoken::errors::Error> {
        let now = unix_now();
        let cache = self.cache.get_or_default();
        if let Some(hit) = cache.borrow().get(token)
            && now <= hit.valid_until
        {
            return Ok(Arc::clone(&hit.identity));
        }
        let claims = self.verify(token)?;
        let invalid =
            |_| jsonwebtoken::errors::Error::from(jsonwebtoken::errors::ErrorKind::InvalidToken);
        let identity = Arc::new(Identity {
            user_id: HeaderValue::from_str(&claims.sub).map_err(invalid)?,
            mobile: HeaderValue::from_str(&claims.mobile).map_err(invalid)?,
        });
        let mut cache = cache.borrow_mut();
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, entry| now <= entry.valid_until);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(
            token.into(),
            Verified {
                identity: Arc::clone(&identity),
                valid_until: claims.exp.saturating_add(self.leeway),
            },
        );
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn config() -> JwtConfig {
        JwtConfig {
            secret: Secret::new("s".repeat(32)),
            issuer: "otpgate".into(),
            audience: "otpgate".into(),
            ttl: Duration::from_secs(3600),
            leeway: Duration::from_secs(30),
        }
    }

    fn user() -> User {
        User {
            id: 7,
            mobile: "+15550001111".into(),
            first_name: "A".into(),
            last_name: "B".into(),
            email: "a@b.co".into(),
            verified: true,
            created_at: 0,
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn issued_tokens_verify_with_all_claims() {
        let tokens = Tokens::new(&config());
        let issued = tokens.issue(&user(), now());
        assert_eq!(issued.expires_in, 3600);
        let claims = tokens.verify(&issued.token).unwrap();
        assert_eq!(claims.sub, "7");
        assert_eq!(claims.mobile, "+15550001111");
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!(claims.nbf, claims.iat);
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str()),
            ("otpgate", "otpgate")
        );
        let again = tokens.issue(&user(), now());
        assert_ne!(claims.jti, tokens.verify(&again.token).unwrap().jti);
    }

    #[test]
    fn expiry_respects_the_leeway() {
        let tokens = Tokens::new(&config());
        let t = now();
        let just_expired = tokens.issue(&user(), t - 3600 - 10);
        assert!(
            tokens.verify(&just_expired.token).is_ok(),
            "within 30s leeway"
        );
        let expired = tokens.issue(&user(), t - 3600 - 60);
        assert!(tokens.verify(&expired.token).is_err());
        let future = tokens.issue(&user(), t + 120);
        assert!(tokens.verify(&future.token).is_err(), "nbf in the future");
    }

    #[test]
    fn cached_identities_match_and_expire_with_the_token() {
        let tokens = Tokens::new(&config());
        let issued = tokens.issue(&user(), now());
        let first = tokens.identity(&issued.token).unwrap();
        let second = tokens.identity(&issued.token).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "second lookup is a cache hit");
        assert_eq!(first.user_id, "7");
        assert_eq!(first.mobile, "+15550001111");
        // The entry lives exactly as long as the token: exp + leeway.
        let claims = tokens.verify(&issued.token).unwrap();
        let valid_until = tokens.cache.get_or_default().borrow()[issued.token.as_str()].valid_until;
        assert_eq!(valid_until, claims.exp + 30);
        // Past that, a cached token is verified again, and refused when expired.
        let expired = tokens.issue(&user(), now() - 3600 - 60);
        tokens.cache.get_or_default().borrow_mut().insert(
            expired.token.as_str().into(),
            Verified {
                identity: Arc::clone(&first),
                valid_until: now() - 1,
            },
        );
        assert!(tokens.identity(&expired.token).is_err());
        // Bad tokens are never cached.
        let other = Tokens::new(&JwtConfig {
            secret: Secret::new("o".repeat(32)),
            ..config()
        });
        let forged = other.issue(&user(), now());
        assert!(tokens.identity(&forged.token).is_err());
        assert!(tokens.identity(&forged.token).is_err());
    }

    #[test]
    fn bearer_header_parsing() {
        fn parse(values: &[&'static [u8]]) -> Bearer<'static> {
            Bearer::from_headers(values.iter().copied())
        }
        assert_eq!(parse(&[]), Bearer::Missing);
        assert_eq!(parse(&[b"Basic abc"]), Bearer::Missing);
        assert_eq!(parse(&[b"bEaReR abc"]), Bearer::Token("abc"));
        assert_eq!(parse(&[b"Bearer\tabc"]), Bearer::Token("abc"));
        assert_eq!(parse(&[b"Bearer \t  abc \t"]), Bearer::Token("abc"));
        assert_eq!(parse(&[b"Bearer "]), Bearer::Token(""));
        assert_eq!(parse(&[b"Bearer"]), Bearer::Token(""));
        assert_eq!(parse(&[b"Bearer \xff"]), Bearer::Token(""));
        assert_eq!(parse(&[b"Bearer a", b"Bearer a"]), Bearer::Ambiguous);
        assert_eq!(parse(&[b"Basic abc", b"Bearer a"]), Bearer::Ambiguous);
        assert_eq!(parse(&[b"Bearer a, Bearer b"]), Bearer::Ambiguous);
        assert_eq!(parse(&[b"Basic abc, Bearer b"]), Bearer::Ambiguous);
        assert_eq!(parse(&[b"Bearer a b"]), Bearer::Ambiguous);
    }
}
