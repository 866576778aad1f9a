//! The OTP sign-up and login services, with no Pingora types: one small
//! service per concern over the store traits, the one access check, the
//! endpoint table, input rules, OTPs and tokens.

pub mod access;
pub mod account;
pub mod delivery;
pub mod endpoints;
pub mod input;
pub mod login;
pub mod otp;
pub mod refresh;
pub mod session;
pub mod signup;
pub mod token;

use std::sync::Arc;

use crate::audit::Audit;
use crate::config::Config;
use crate::limits::Limiter;
use crate::revocation::Revocations;
use crate::sms::SmsSender;
use crate::store::{OtpLimits, Storage};

/// Seconds since the Unix epoch: the unit of every JWT and OTP timestamp.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Every auth service, each with only the collaborators it uses.
pub struct AuthServices {
    pub signup: signup::Signup,
    pub login: login::Login,
    pub accounts: account::Accounts,
    pub sessions: Arc<session::Sessions>,
    pub access: access::AccessCheck,
    /// The JWKS document, served as is.
    pub jwks: Vec<u8>,
    /// How submitted mobiles are read.
    pub mobiles: input::MobileRules,
    /// The security events' log.
    pub audit: Arc<Audit>,
}

impl AuthServices {
    pub fn new(
        storage: &Storage,
        sms: Arc<dyn SmsSender>,
        config: &Config,
        revocations: Arc<Revocations>,
    ) -> Result<Self, String> {
        let (otp, jwt) = (&config.otp, &config.jwt);
        let audit = Arc::new(Audit::open(&config.server.audit_log)?);
        let tokens = Arc::new(token::Tokens::new(jwt)?);
        let delivery = Arc::new(delivery::OtpDelivery::new(
            Arc::clone(&storage.otps),
            sms,
            delivery::DeliveryRules {
                codec: otp::OtpCodec::new(&jwt.secret, otp.length),
                limits: OtpLimits {
                    ttl: otp.ttl,
                    cooldown: otp.cooldown,
                    max_attempts: otp.max_attempts,
                    lockout: config.limits.lockout,
                },
                limiter: Limiter::new(Arc::clone(&storage.counters), config.limits.clone()),
                test_numbers: otp.test_numbers.clone(),
            },
            Arc::clone(&audit),
        ));
        let users = &storage.users;
        let sessions = Arc::new(session::Sessions::new(
            Arc::clone(&storage.sessions),
            Arc::clone(users),
            Arc::clone(&tokens),
            refresh::RefreshCodec::new(&jwt.secret),
            session::RevocationChannel {
                view: Arc::clone(&revocations),
                feed: Arc::clone(&storage.revocations),
            },
            config.session.clone(),
            Arc::clone(&audit),
        ));
        let jwks = serde_json::to_vec(tokens.jwks()).expect("JSON values serialize");
        Ok(Self {
            jwks,
            signup: signup::Signup::new(
                Arc::clone(users),
                Arc::clone(&delivery),
                Arc::clone(&audit),
            ),
            login: login::Login::new(
                Arc::clone(users),
                Arc::clone(&delivery),
                Arc::clone(&sessions),
                Arc::clone(&audit),
            ),
            accounts: account::Accounts::new(
                Arc::clone(users),
                Arc::clone(&sessions),
                delivery,
                Arc::clone(&audit),
            ),
            sessions,
            access: access::AccessCheck::new(tokens, revocations),
            mobiles: input::MobileRules {
                default_country_code: otp.default_country_code.clone(),
                allowed_country_codes: otp.allowed_country_codes.clone(),
            },
            audit,
        })
    }
}

/// What the auth unit tests share: a JWT config and a user.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::time::Duration;

    use crate::config::{JwtConfig, Secret, Signing};
    use crate::store::User;

    /// HS256 with `secret` repeated to 32 bytes; 1h tokens, 30s leeway.
    pub fn jwt_config(secret: &str) -> JwtConfig {
        JwtConfig {
            secret: Secret::new(secret.repeat(32)),
            signing: Signing::Hmac,
            issuer: "otpgate".into(),
            audience: "otpgate".into(),
            ttl: Duration::from_secs(3600),
            leeway: Duration::from_secs(30),
        }
    }

    /// User 7, +15550001111, verified.
    pub fn user() -> User {
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
}
