//! Prometheus metrics, in one registry every layer records into (gateway,
//! auth, store, SMS). Per-route counters are resolved once at start, so the
//! request path only bumps an atomic.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
}

/// One route's (or the auth endpoints') counters by status class.
#[derive(Clone)]
pub struct StatusCounters {
    /// 1xx..5xx, then "other" (no response written).
    by_class: [IntCounter; 6],
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

impl StatusCounters {
    pub fn record(&self, status: u16) {
        let class = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => 5,
        };
        self.by_class[class].inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "otpgate_requests_total",
                "Requests answered, by route (or auth endpoint) and status class",
            ),
            &["route", "status"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        Self { registry, requests }
    }

    pub fn counters(&self, route: &str) -> StatusCounters {
        StatusCounters {
            by_class: CLASSES.map(|class| self.requests.with_label_values(&[route, class])),
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        use prometheus::Encoder;
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_count_by_class() {
        let metrics = Metrics::new();
        let api = metrics.counters("api");
        api.record(200);
        api.record(204);
        api.record(502);
        api.record(0);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains(r#"otpgate_requests_total{route="api",status="2xx"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"otpgate_requests_total{route="api",status="5xx"} 1"#));
        assert!(text.contains(r#"otpgate_requests_total{route="api",status="none"} 1"#));
    }
}
