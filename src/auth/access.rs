//! The one access check: request headers and a route's requirement in, a
//! verified `Principal` or a `Rejection` saying why out. Routes, Bearer
//! endpoints (and forward auth) all go through it, so they can never
//! disagree; metrics and logs read the reason from the `Rejection`.
//!
//! Verification is local (no storage call). Each worker thread keeps the
//! tokens it verified, so a repeated token costs a hash lookup; checks that
//! must hold on every request run after that lookup, hit or miss.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use thread_local::ThreadLocal;

use super::token::{Bearer, Claims, Tokens};
use super::unix_now;
use crate::revocation::{Revocations, Standing};

/// Whether a request must carry a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// No token: refused (401 `unauthorized`).
    Required,
    /// No token: anonymous. A bad token is still refused.
    Optional,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No bearer token where one is required.
    Missing,
    /// Several `Authorization` headers, or several credentials in one.
    Ambiguous,
    /// Bad signature, algorithm, issuer, audience, `nbf`, or not a token.
    Invalid,
    /// Past `exp` (and the leeway).
    Expired,
    /// Its session was revoked (or its account deleted).
    Revoked,
    /// Revocations cannot be received and `on_feed_loss` is `closed`.
    RevocationUnavailable,
}

impl Rejection {
    /// The reason as metrics and the audit log name it.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Ambiguous | Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::RevocationUnavailable => "revocation_unavailable",
        }
    }
}

/// Who a verified token speaks for, ready for identity headers.
#[derive(Debug)]
pub struct Principal {
    /// `sub`, the user id.
    pub user_id: u64,
    /// `sid`, the session.
    pub session_id: Box<str>,
    /// Header values for the identity headers.
    pub user_id_header: HeaderValue,
    pub mobile_header: HeaderValue,
}

impl Principal {
    fn from_claims(claims: &Claims) -> Result<Self, Rejection> {
        let user_id = claims.sub.parse().map_err(|_| Rejection::Invalid)?;
        let header = |v: &str| HeaderValue::from_str(v).map_err(|_| Rejection::Invalid);
        Ok(Self {
            user_id,
            session_id: claims.sid.as_str().into(),
            user_id_header: header(&claims.sub)?,
            mobile_header: header(&claims.mobile)?,
        })
    }
}

/// A verified token, kept until its `exp` (plus leeway) passes.
struct Verified {
    principal: Arc<Principal>,
    valid_until: i64,
}

/// Verified tokens per worker thread: no lock on the request path. Bounded;
/// when full it starts over rather than tracking recency.
const CACHE_ENTRIES: usize = 4096;

pub struct AccessCheck {
    tokens: Arc<Tokens>,
    revocations: Arc<Revocations>,
    /// foldhash: a token is long and hashed on every request; keys are only
    /// tokens that verified, so a fast seeded hash is enough.
    cache: ThreadLocal<RefCell<HashMap<Box<str>, Verified, foldhash::fast::RandomState>>>,
}

impl AccessCheck {
    pub fn new(tokens: Arc<Tokens>, revocations: Arc<Revocations>) -> Self {
        Self {
            tokens,
            revocations,
            cache: ThreadLocal::new(),
        }
    }

    /// `Ok(None)`: no token, and none was required.
    pub fn check(
        &self,
        headers: &HeaderMap,
        requirement: Requirement,
    ) -> Result<Option<Arc<Principal>>, Rejection> {
        let values = headers.get_all(AUTHORIZATION).iter();
        let token = match Bearer::from_headers(values.map(HeaderValue::as_bytes)) {
            Bearer::Missing if requirement == Requirement::Required => {
                return Err(Rejection::Missing);
            }
            Bearer::Missing => return Ok(None),
            Bearer::Ambiguous => return Err(Rejection::Ambiguous),
            Bearer::Token(token) => token,
        };
        let now = unix_now();
        let principal = self.verified(token, now)?;
        // Checks that hold on every request, cached or not.
        match self.revocations.standing(&principal.session_id, now) {
            Standing::Valid => Ok(Some(principal)),
            Standing::Revoked => Err(Rejection::Revoked),
            Standing::Unknown => Err(Rejection::RevocationUnavailable),
        }
    }

    /// The token's principal, from this thread's cache or verified now.
    /// Only successes are cached, so a bad token is checked every time.
    fn verified(&self, token: &str, now: i64) -> Result<Arc<Principal>, Rejection> {
        let cache = self.cache.get_or_default();
        if let Some(hit) = cache.borrow().get(token)
            && now <= hit.valid_until
        {
            return Ok(Arc::clone(&hit.principal));
        }
        let claims = self.tokens.verify(token).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => Rejection::Expired,
            _ => Rejection::Invalid,
        })?;
        let principal = Arc::new(Principal::from_claims(&claims)?);
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
                principal: Arc::clone(&principal),
                valid_until: claims.exp.saturating_add(self.tokens.leeway_secs()),
            },
        );
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::fixtures::{jwt_config, user};
    use crate::config::FeedLoss;
    use crate::store::RevokedSession;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        headers
    }

    #[test]
    fn principals_come_from_verified_tokens_and_are_cached() {
        let tokens = Arc::new(Tokens::new(&jwt_config("s")).unwrap());
        let access = AccessCheck::new(
            Arc::clone(&tokens),
            Arc::new(Revocations::new(FeedLoss::Open)),
        );
        let token = tokens.issue(&user(), "s1", unix_now()).token;
        let first = access
            .check(&bearer(&token), Requirement::Required)
            .unwrap()
            .unwrap();
        let second = access
            .check(&bearer(&token), Requirement::Optional)
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&first, &second), "second check is a cache hit");
        assert_eq!(first.user_id, 7);
        assert_eq!(first.user_id_header, "7");
        assert_eq!(first.mobile_header, "+15550001111");
        // The entry lives exactly as long as the token: exp + leeway.
        let claims = tokens.verify(&token).unwrap();
        let valid_until = access.cache.get_or_default().borrow()[token.as_str()].valid_until;
        assert_eq!(valid_until, claims.exp + 30);
    }

    #[test]
    fn rejections_say_why() {
        let tokens = Arc::new(Tokens::new(&jwt_config("s")).unwrap());
        let access = AccessCheck::new(
            Arc::clone(&tokens),
            Arc::new(Revocations::new(FeedLoss::Open)),
        );
        let none = HeaderMap::new();
        assert_eq!(
            access.check(&none, Requirement::Required).unwrap_err(),
            Rejection::Missing
        );
        assert!(
            access
                .check(&none, Requirement::Optional)
                .unwrap()
                .is_none()
        );
        let expired = tokens.issue(&user(), "s1", unix_now() - 3600 - 60).token;
        assert_eq!(
            access
                .check(&bearer(&expired), Requirement::Optional)
                .unwrap_err(),
            Rejection::Expired
        );
        let forged = Tokens::new(&jwt_config("o"))
            .unwrap()
            .issue(&user(), "s1", unix_now())
            .token;
        for _ in 0..2 {
            // Never cached: refused every time.
            assert_eq!(
                access
                    .check(&bearer(&forged), Requirement::Required)
                    .unwrap_err(),
                Rejection::Invalid
            );
        }
        let mut two = bearer(&tokens.issue(&user(), "s1", unix_now()).token);
        two.append(AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(
            access.check(&two, Requirement::Optional).unwrap_err(),
            Rejection::Ambiguous
        );
        assert_eq!(Rejection::Expired.reason(), "expired");
    }

    #[test]
    fn a_cached_token_is_not_used_past_its_expiry() {
        let tokens = Arc::new(Tokens::new(&jwt_config("s")).unwrap());
        let access = AccessCheck::new(
            Arc::clone(&tokens),
            Arc::new(Revocations::new(FeedLoss::Open)),
        );
        let live = tokens.issue(&user(), "s1", unix_now()).token;
        let principal = access
            .check(&bearer(&live), Requirement::Required)
            .unwrap()
            .unwrap();
        let expired = tokens.issue(&user(), "s1", unix_now() - 3600 - 60).token;
        access.cache.get_or_default().borrow_mut().insert(
            expired.as_str().into(),
            Verified {
                principal,
                valid_until: unix_now() - 1,
            },
        );
        assert_eq!(
            access
                .check(&bearer(&expired), Requirement::Required)
                .unwrap_err(),
            Rejection::Expired
        );
    }

    #[test]
    fn a_revoked_session_is_refused_even_from_the_cache() {
        let tokens = Arc::new(Tokens::new(&jwt_config("s")).unwrap());
        let revocations = Arc::new(Revocations::new(FeedLoss::Open));
        let access = AccessCheck::new(Arc::clone(&tokens), Arc::clone(&revocations));
        let token = tokens.issue(&user(), "s1", unix_now()).token;
        let other = tokens.issue(&user(), "s2", unix_now()).token;
        assert!(access.check(&bearer(&token), Requirement::Required).is_ok());
        revocations.insert(&[RevokedSession {
            session_id: "s1".into(),
            until: unix_now() + 3600,
        }]);
        assert_eq!(
            access
                .check(&bearer(&token), Requirement::Required)
                .unwrap_err(),
            Rejection::Revoked
        );
        assert!(access.check(&bearer(&other), Requirement::Optional).is_ok());
    }

    #[test]
    fn a_lost_feed_in_closed_mode_refuses_tokens_but_not_anonymous_requests() {
        let tokens = Arc::new(Tokens::new(&jwt_config("s")).unwrap());
        let access = AccessCheck::new(
            Arc::clone(&tokens),
            Arc::new(Revocations::new(FeedLoss::Closed)),
        );
        let token = tokens.issue(&user(), "s1", unix_now()).token;
        assert_eq!(
            access
                .check(&bearer(&token), Requirement::Optional)
                .unwrap_err(),
            Rejection::RevocationUnavailable
        );
        assert!(
            access
                .check(&HeaderMap::new(), Requirement::Optional)
                .unwrap()
                .is_none()
        );
    }
}
