//! Which counters a request touches. An SMS (register, login step 1,
//! resend) counts against its client IP, its calling code and the whole
//! deployment here, all at once and before anything is sent, and against its
//! mobile when the OTP is issued (`mobile_rates`: in the OTP store's atomic
//! step, after the cooldown, so a refused repeat never uses the mobile's
//! allowance). An OTP check counts against its client IP. A send that fails
//! gives its counts back.

use std::net::IpAddr;
use std::sync::Arc;

use super::Limit;
use crate::api::ApiError;
use crate::config::LimitsConfig;
use crate::context::RequestContext;
use crate::store::{Bucket, CounterStore, Rate, Taken, Ticket};

pub struct Limiter {
    counters: Arc<dyn CounterStore>,
    limits: LimitsConfig,
}

/// Whose counters an SMS touched.
struct Subjects {
    ip: Option<String>,
    country: String,
}

/// An SMS counted: give it back if the send fails.
pub struct SmsGrant {
    subjects: Subjects,
    ticket: Ticket,
}

impl SmsGrant {
    /// The SMS's identity in every counter, the mobile's included.
    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }
}

impl Limiter {
    pub fn new(counters: Arc<dyn CounterStore>, limits: LimitsConfig) -> Self {
        Self { counters, limits }
    }

    /// `limits.sms_per_mobile`, which the OTP store applies when it issues.
    pub fn mobile_rates(&self) -> &[Rate] {
        &self.limits.sms_per_mobile
    }

    fn sms_buckets<'a>(&'a self, s: &'a Subjects) -> Vec<(Limit, Bucket<'a>)> {
        let l = &self.limits;
        // (limit, counter kind in store keys, subject, rates)
        let mut buckets = vec![
            (
                Limit::SmsPerCountry,
                "sms_country",
                &s.country[..],
                &l.sms_per_country[..],
            ),
            (Limit::SmsGlobal, "sms_global", "", &l.sms_global),
        ];
        if let Some(ip) = &s.ip {
            buckets.insert(0, (Limit::SmsPerIp, "sms_ip", ip, &l.sms_per_ip));
        }
        buckets
            .into_iter()
            .filter(|(_, _, _, rates)| !rates.is_empty())
            .map(|(limit, kind, subject, rates)| {
                let bucket = Bucket {
                    kind,
                    subject,
                    rates,
                };
                (limit, bucket)
            })
            .collect()
    }

    /// Counts one SMS to `mobile` against the client's IP, its country and
    /// the deployment, or refuses with the first full limit.
    pub async fn take_sms(&self, ctx: &RequestContext, mobile: &str) -> Result<SmsGrant, ApiError> {
        let subjects = Subjects {
            ip: ctx.client_ip.map(ip_subject),
            country: crate::mobile::calling_code(mobile)
                .map_or_else(|| "unknown".to_owned(), |code| format!("+{code}")),
        };
        let ticket = self.take(self.sms_buckets(&subjects)).await?;
        Ok(SmsGrant { subjects, ticket })
    }

    /// Takes back an SMS that was not sent. A failure here only leaves the
    /// count until its window ends (on the safe side), so it is logged, not raised.
    pub async fn give_back(&self, ctx: &RequestContext, grant: SmsGrant) {
        let buckets: Vec<Bucket<'_>> = self
            .sms_buckets(&grant.subjects)
            .into_iter()
            .map(|(_, bucket)| bucket)
            .collect();
        if let Err(e) = self.counters.give_back(&buckets, &grant.ticket).await {
            tracing::warn!(request_id = ctx.request_id(), error = %e, "could not give back an unsent SMS's count");
        }
    }

    /// Counts one OTP check from the client's IP, or refuses.
    pub async fn take_verify(&self, ctx: &RequestContext) -> Result<(), ApiError> {
        let (Some(ip), false) = (ctx.client_ip, self.limits.verify_per_ip.is_empty()) else {
            return Ok(());
        };
        let subject = ip_subject(ip);
        let bucket = Bucket {
            kind: "verify_ip",
            subject: &subject,
            rates: &self.limits.verify_per_ip,
        };
        self.take(vec![(Limit::VerifyPerIp, bucket)]).await?;
        Ok(())
    }

    async fn take(&self, buckets: Vec<(Limit, Bucket<'_>)>) -> Result<Ticket, ApiError> {
        let (limits, buckets): (Vec<Limit>, Vec<Bucket<'_>>) = buckets.into_iter().unzip();
        if buckets.is_empty() {
            return Ok(Ticket::new());
        }
        match self.counters.take(&buckets).await? {
            Taken::Granted(ticket) => Ok(ticket),
            Taken::Full {
                bucket,
                retry_after,
            } => Err(ApiError::Limited {
                limit: limits[bucket],
                retry_after,
            }),
        }
    }
}

/// The counter subject of a client address. An IPv6 client usually holds a
/// whole /64, so that is what is counted.
fn ip_subject(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => ipnet::Ipv6Net::new(v6, 64)
            .map(|net| net.trunc().to_string())
            .unwrap_or_else(|_| v6.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(ip_subject("192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(
            ip_subject("2001:db8:1:2:aaaa::1".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(ip_subject("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
    }
}
