//! What the request path reads, as one immutable value behind an atomic
//! pointer: the routes with their load balancers, the auth endpoint table
//! and the identity header names. A request loads it once, so a new snapshot
//! (a reload) never changes a request half way; the health checks follow
//! whatever snapshot is current.

use crate::limits::TrustedProxies;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use pingora::lb::LoadBalancer;
use pingora::lb::health_check::TcpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::utils::tls::{WrappedX509, parse_x509};

use super::router::Router;
use crate::auth::endpoints::EndpointTable;
use crate::config::{AuthMode, Config, IdentityHeaderNames, RouteConfig};
use crate::metrics::{Metrics, StatusCounters};

/// A route as the proxy uses it, with its load balancer and counters.
pub struct Route {
    pub name: String,
    pub prefix: String,
    pub auth: AuthMode,
    pub strip_prefix: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub upstreams: LoadBalancer<RoundRobin>,
    pub upstream_count: usize,
    pub counters: StatusCounters,
    pub health: HealthSchedule,
    pub tls: Option<UpstreamTlsPeer>,
}

/// A route's upstream TLS, ready for each peer: the name and the roots.
pub struct UpstreamTlsPeer {
    pub sni: String,
    pub roots: Option<Arc<pingora::protocols::tls::CaType>>,
    /// Pingora's connection pool does not tell peers apart by their roots:
    /// this key does, so a connection verified under one route's roots is
    /// never reused for a route that trusts others.
    pub pool_key: u64,
}

/// When a route's upstreams are due for their next health check.
pub struct HealthSchedule {
    pub interval: Duration,
    epoch: Instant,
    /// Milliseconds after `epoch`.
    next_ms: AtomicU64,
}

impl HealthSchedule {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            epoch: Instant::now(),
            next_ms: AtomicU64::new(0),
        }
    }

    /// Whether a check is due at `now`; if so, the next one is scheduled.
    pub fn take_due(&self, now: Instant) -> bool {
        let now_ms = u64::try_from(now.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms.saturating_add(interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

impl Route {
    fn build(config: &RouteConfig, metrics: &Metrics) -> Result<Self, String> {
        let mut upstreams =
            LoadBalancer::<RoundRobin>::try_from_iter(config.upstreams.iter().copied())
                .map_err(|e| format!("route {}: {e}", config.name))?;
        let mut check = TcpHealthCheck::new();
        check.peer_template.options.connection_timeout = Some(config.connect_timeout);
        upstreams.set_health_check(check);
        Ok(Self {
            name: config.name.clone(),
            prefix: config.prefix.clone(),
            auth: config.auth,
            strip_prefix: config.strip_prefix,
            connect_timeout: config.connect_timeout,
            read_timeout: config.read_timeout,
            upstreams,
            upstream_count: config.upstreams.len(),
            counters: metrics.counters(&config.name),
            health: HealthSchedule::new(config.health_check_interval),
            tls: config.upstream_tls.as_ref().map(|tls| UpstreamTlsPeer {
                pool_key: {
                    use std::hash::{Hash, Hasher};
                    let mut hasher = std::collections::hash_map::DefaultHasher::new();
                    tls.roots.hash(&mut hasher);
                    hasher.finish()
                },
                sni: tls.sni.clone(),
                roots: tls.roots.as_ref().map(|roots| {
                    let certs: Vec<WrappedX509> = roots
                        .iter()
                        .map(|der| WrappedX509::new(der.clone(), parse_x509))
                        .collect();
                    Arc::<[WrappedX509]>::from(certs)
                }),
            }),
        })
    }
}

pub struct Snapshot {
    pub router: Router<Arc<Route>>,
    pub endpoints: EndpointTable,
    pub identity: IdentityHeaderNames,
    /// Whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
}

impl Snapshot {
    pub fn build(config: &Config, metrics: &Metrics) -> Result<Self, String> {
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            routes.push((
                route.host.clone(),
                route.prefix.clone(),
                Arc::new(Route::build(route, metrics)?),
            ));
        }
        Ok(Self {
            router: Router::new(routes),
            endpoints: EndpointTable::new(&config.auth.path_prefix),
            identity: config.auth.identity_headers.clone(),
            trusted_proxies: TrustedProxies::new(config.limits.trusted_proxies.clone()),
        })
    }
}

/// The current snapshot, shared by the proxy and the health checks.
pub type Live = Arc<ArcSwap<Snapshot>>;

pub fn live(snapshot: Snapshot) -> Live {
    Arc::new(ArcSwap::from_pointee(snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_checks_fall_due_once_per_interval() {
        let schedule = HealthSchedule::new(Duration::from_millis(200));
        let start = schedule.epoch;
        assert!(schedule.take_due(start), "the first check is due at once");
        assert!(!schedule.take_due(start), "taken");
        assert!(!schedule.take_due(start + Duration::from_millis(199)));
        assert!(schedule.take_due(start + Duration::from_millis(200)));
        assert!(!schedule.take_due(start + Duration::from_millis(300)));
    }
}
