//! Pingora glue, kept thin: builds the proxy service, one load balancer with
//! a background health check per route, and the optional admin listener.

mod admin;
pub mod headers;
mod metrics;
mod proxy;
mod respond;
pub mod router;
mod slow_clients;

use std::sync::Arc;

use pingora::lb::LoadBalancer;
use pingora::lb::health_check::TcpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::listeners::TcpSocketOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::auth::AuthService;
use crate::auth::endpoints::EndpointPaths;
use crate::auth::otp::OtpCodec;
use crate::auth::token::Tokens;
use crate::config::Config;
use crate::store::Storage;

use self::admin::Admin;
use self::headers::RequestIds;
use self::metrics::Metrics;
use self::proxy::{Gateway, Route};
use self::router::Router;
use self::slow_clients::WithHeaderDeadline;

fn socket_options(config: &Config) -> TcpSocketOptions {
    let mut options = TcpSocketOptions::default();
    options.so_reuseport = Some(config.server.reuse_port);
    options
}

/// Connects storage, builds every service and runs until a shutdown signal.
pub fn serve(config: Config) -> Result<(), String> {
    // Storage clients and SMS calls live on their own runtime, created once:
    // Pingora's service runtimes are its own business.
    let auth_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.threads.clamp(1, 4))
        .thread_name("otpgate-auth")
        .enable_all()
        .build()
        .map_err(|e| format!("auth runtime: {e}"))?;
    let storage = auth_runtime.block_on(Storage::connect(&config.storage))?;
    let sms = crate::sms::from_config(&config.sms)?;
    let tokens = Arc::new(Tokens::new(&config.jwt));
    let auth = Arc::new(AuthService::new(
        storage.clone(),
        sms,
        &config.otp,
        OtpCodec::new(&config.jwt.secret, config.otp.length),
        Arc::clone(&tokens),
    ));
    let metrics = Arc::new(Metrics::new());

    let server_conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.shutdown_timeout.as_secs()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, server_conf);
    server.bootstrap();

    let mut routes = Vec::with_capacity(config.routes.len());
    for route in &config.routes {
        let mut upstreams =
            LoadBalancer::<RoundRobin>::try_from_iter(route.upstreams.iter().copied())
                .map_err(|e| format!("route {}: {e}", route.name))?;
        let mut check = TcpHealthCheck::new();
        check.peer_template.options.connection_timeout = Some(route.connect_timeout);
        upstreams.set_health_check(check);
        upstreams.health_check_frequency = Some(route.health_check_interval);
        let health_check = background_service(&format!("health check {}", route.name), upstreams);
        let upstreams = health_check.task();
        server.add_service(health_check);
        routes.push((
            route.host.clone(),
            route.prefix.clone(),
            Arc::new(Route {
                name: route.name.clone(),
                prefix: route.prefix.clone(),
                auth: route.auth,
                strip_prefix: route.strip_prefix,
                connect_timeout: route.connect_timeout,
                read_timeout: route.read_timeout,
                upstreams,
                upstream_count: route.upstreams.len(),
                counters: metrics.counters(&route.name),
            }),
        ));
    }

    let gateway = Gateway {
        router: Router::new(routes),
        endpoints: EndpointPaths::new(&config.auth.path_prefix),
        auth,
        auth_runtime: auth_runtime.handle().clone(),
        tokens,
        identity: config.auth.identity_headers.clone(),
        request_ids: RequestIds::default(),
        access_log: config.server.access_log,
        body_timeout: config.server.body_timeout,
        auth_counters: metrics.counters("auth"),
        unrouted_counters: metrics.counters("no_route"),
    };
    let proxy = pingora::proxy::http_proxy(&server.configuration, gateway);
    let mut proxy = Service::new(
        "otpgate proxy".to_owned(),
        WithHeaderDeadline::new(proxy, config.server.header_timeout),
    );
    proxy.add_tcp_with_settings(&config.server.listen.to_string(), socket_options(&config));
    server.add_service(proxy);

    if let Some(admin_listen) = config.server.admin_listen {
        let mut admin = Service::new(
            "otpgate admin".to_owned(),
            Admin {
                metrics,
                storage,
                auth_runtime: auth_runtime.handle().clone(),
            },
        );
        admin.add_tcp_with_settings(&admin_listen.to_string(), socket_options(&config));
        server.add_service(admin);
    }

    tracing::info!(
        listen = %config.server.listen,
        admin = ?config.server.admin_listen,
        storage = config.storage.backend.name(),
        sms = config.sms.provider.name(),
        routes = config.routes.len(),
        "otpgate started"
    );
    server.run(RunArgs::default());
    auth_runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}
