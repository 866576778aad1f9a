//! The JWT otpgate issues and enforces: HS256 with the secret, or RS256 /
//! ES256 / EdDSA with the configured keys (by `kid`), with iss, aud, exp,
//! nbf checked locally (no storage call) on every protected request.

use std::time::Duration;

use std::collections::HashMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{JwtConfig, Signing};
use crate::keys::KeyAlgorithm;
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
    /// The session the token belongs to: revoking it revokes the token.
    pub sid: String,
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
fn is_blank(b: &u8) -> bool {
    matches!(b, b' ' | b'\t')
}

fn trim_blanks(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes
        && is_blank(first)
    {
        bytes = rest;
    }
    while let [rest @ .., last] = bytes
        && is_blank(last)
    {
        bytes = rest;
    }
    bytes
}

impl<'a> Bearer<'a> {
    /// Reads every `Authorization` header value: exactly one `Bearer <token>`
    /// (scheme in any letter case, then spaces or tabs) is a token. Works on
    /// bytes, in few passes: it runs on every protected request.
    pub fn from_headers(mut values: impl Iterator<Item = &'a [u8]>) -> Self {
        let Some(value) = values.next() else {
            return Self::Missing;
        };
        if values.next().is_some() {
            return Self::Ambiguous;
        }
        // RFC 9110 allows a comma-separated list of credentials in one header.
        if value.contains(&b',') {
            return Self::Ambiguous;
        }
        let value = trim_blanks(value);
        let (scheme, token) = match value.iter().position(is_blank) {
            Some(at) => (&value[..at], trim_blanks(&value[at..])),
            None => (value, &value[value.len()..]),
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return Self::Missing;
        }
        if token.iter().any(is_blank) {
            return Self::Ambiguous;
        }
        // Not text: no token can match it, so verification refuses it.
        Self::Token(std::str::from_utf8(token).unwrap_or(""))
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IssuedToken(***, expires_in: {})", self.expires_in)
    }
}

/// What verifies a token: the HS256 secret, or the configured keys by `kid`.
enum Verifier {
    Secret(DecodingKey),
    Keys(HashMap<String, DecodingKey>),
}

pub struct Tokens {
    leeway: i64,
    encoding: EncodingKey,
    verifier: Verifier,
    validation: Validation,
    header: Header,
    /// The JWKS document: every configured key's public half.
    jwks: serde_json::Value,
    issuer: String,
    audience: String,
    ttl: Duration,
}

fn algorithm(signing: &Signing) -> Algorithm {
    match signing {
        Signing::Hmac => Algorithm::HS256,
        Signing::Keys { algorithm, .. } => match algorithm {
            KeyAlgorithm::Rs256 => Algorithm::RS256,
            KeyAlgorithm::Es256 => Algorithm::ES256,
            KeyAlgorithm::EdDsa => Algorithm::EdDSA,
        },
    }
}

impl Tokens {
    /// The signer and verifier `config` describes (its keys already checked).
    pub fn new(config: &JwtConfig) -> Result<Self, String> {
        let alg = algorithm(&config.signing);
        // One algorithm only: an HS256 token "signed" with a public key's
        // bytes, or `none`, never matches it.
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let mut header = Header::new(alg);
        let (encoding, verifier, jwks) = match &config.signing {
            Signing::Hmac => {
                let secret = config.secret.expose().as_bytes();
                (
                    EncodingKey::from_secret(secret),
                    Verifier::Secret(DecodingKey::from_secret(secret)),
                    serde_json::json!({ "keys": [] }),
                )
            }
            Signing::Keys { algorithm, keys } => {
                let signer = &keys[0];
                let pem = signer
                    .material
                    .private_pem
                    .as_deref()
                    .ok_or_else(|| "jwt.keys[0]: the first key must be private".to_owned())?;
                let encoding = match algorithm {
                    KeyAlgorithm::Rs256 => EncodingKey::from_rsa_pem(pem),
                    KeyAlgorithm::Es256 => EncodingKey::from_ec_pem(pem),
                    KeyAlgorithm::EdDsa => EncodingKey::from_ed_pem(pem),
                }
                .map_err(|e| format!("jwt.keys[0]: {e}"))?;
                header.kid = Some(signer.kid.clone());
                let mut published = Vec::with_capacity(keys.len());
                let mut decoding = HashMap::with_capacity(keys.len());
                for (i, key) in keys.iter().enumerate() {
                    let mut jwk = key.material.jwk.clone();
                    jwk.insert("kid".into(), key.kid.clone().into());
                    let value = serde_json::Value::Object(jwk);
                    let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(value.clone())
                        .map_err(|e| format!("jwt.keys[{i}]: {e}"))?;
                    let key_for = DecodingKey::from_jwk(&parsed)
                        .map_err(|e| format!("jwt.keys[{i}]: {e}"))?;
                    decoding.insert(key.kid.clone(), key_for);
                    published.push(value);
                }
                (
                    encoding,
                    Verifier::Keys(decoding),
                    serde_json::json!({ "keys": published }),
                )
            }
        };
        Ok(Self {
            leeway: config.leeway.as_secs() as i64,
            encoding,
            verifier,
            validation,
            header,
            jwks,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl: config.ttl,
        })
    }

    /// `{"keys": [...]}`: an RFC 7517 JWK per configured key (public
    /// parameters only); none with HS256.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// Signs a token for `user` in session `sid`, valid from `now` (unix
    /// seconds) for the configured ttl.
    pub fn issue(&self, user: &User, sid: &str, now: i64) -> IssuedToken {
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
            sid: sid.to_owned(),
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.encoding)
            .expect("signing plain claims with a checked key cannot fail");
        IssuedToken {
            token,
            expires_in: ttl,
        }
    }

    /// Verifies the signature (the configured algorithm only; with keys, the
    /// key its `kid` names), exp, nbf, iss and aud. A token that brings its
    /// own key material (`jwk`, `jku`, `x5u`, `x5c`) is refused: nothing in a
    /// token is ever fetched or trusted.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let invalid = || jsonwebtoken::errors::Error::from(ErrorKind::InvalidToken);
        let key = match &self.verifier {
            Verifier::Secret(key) => key,
            Verifier::Keys(keys) => {
                let header = jsonwebtoken::decode_header(token)?;
                if header.jwk.is_some()
                    || header.jku.is_some()
                    || header.x5u.is_some()
                    || header.x5c.is_some()
                {
                    return Err(invalid());
                }
                let kid = header.kid.ok_or_else(invalid)?;
                keys.get(&kid).ok_or_else(invalid)?
            }
        };
        jsonwebtoken::decode::<Claims>(token, key, &self.validation).map(|data| data.claims)
    }

    /// Seconds an access token lives.
    pub fn ttl_secs(&self) -> i64 {
        i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX)
    }

    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub fn leeway_secs(&self) -> i64 {
        self.leeway
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::fixtures::{jwt_config, user};
    use crate::auth::unix_now;

    #[test]
    fn issued_tokens_verify_with_all_claims() {
        let tokens = Tokens::new(&jwt_config("s")).unwrap();
        let issued = tokens.issue(&user(), "s1", unix_now());
        assert_eq!(issued.expires_in, 3600);
        let claims = tokens.verify(&issued.token).unwrap();
        assert_eq!(claims.sub, "7");
        assert_eq!(claims.sid, "s1");
        assert_eq!(claims.mobile, "+15550001111");
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!(claims.nbf, claims.iat);
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str()),
            ("otpgate", "otpgate")
        );
        let again = tokens.issue(&user(), "s1", unix_now());
        assert_ne!(claims.jti, tokens.verify(&again.token).unwrap().jti);
    }

    #[test]
    fn expiry_respects_the_leeway() {
        let tokens = Tokens::new(&jwt_config("s")).unwrap();
        let t = unix_now();
        let just_expired = tokens.issue(&user(), "s1", t - 3600 - 10);
        assert!(
            tokens.verify(&just_expired.token).is_ok(),
            "within 30s leeway"
        );
        let expired = tokens.issue(&user(), "s1", t - 3600 - 60);
        assert!(tokens.verify(&expired.token).is_err());
        let future = tokens.issue(&user(), "s1", t + 120);
        assert!(tokens.verify(&future.token).is_err(), "nbf in the future");
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
