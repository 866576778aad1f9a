//! One background service that health checks the upstreams of whatever
//! snapshot is current, each route at its own interval, so routes brought
//! by a new snapshot are checked too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::snapshot::Live;

/// How often the schedule is looked at; route intervals are rounded up to it.
const TICK: Duration = Duration::from_millis(100);

pub struct HealthChecks {
    pub live: Live,
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut checks = tokio::task::JoinSet::new();
        loop {
            let snapshot = self.live.load_full();
            let now = Instant::now();
            for route in snapshot.router.values() {
                if route.health.take_due(now) {
                    let route = Arc::clone(route);
                    // A slow upstream (connect timeout) never delays other routes.
                    checks.spawn(
                        async move { route.upstreams.backends().run_health_check(true).await },
                    );
                }
            }
            while checks.try_join_next().is_some() {}
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
