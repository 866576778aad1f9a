//! Pingora glue, kept thin: builds the live snapshot (routes, load
//! balancers, endpoint table), the proxy service with its header deadline,
//! one health-check service over the current snapshot, and the optional
//! admin listener.

mod admin;
pub mod headers;
mod health;
mod proxy;
mod respond;
pub mod router;
mod slow_clients;
mod snapshot;
mod upgrade;

use std::sync::Arc;

use pingora::listeners::TcpSocketOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::auth::AuthServices;
use crate::config::Config;
use crate::context::RequestIds;
use crate::metrics::Metrics;
use crate::revocation::{self, Revocations};
use crate::store::Storage;
use crate::tls::ReloadableCert;

use self::admin::Admin;
use self::health::HealthChecks;
use self::proxy::Gateway;
use self::slow_clients::WithHeaderDeadline;
use self::snapshot::Snapshot;

/// SIGHUP reloads the listener's certificate for new handshakes (open
/// connections keep theirs); an unusable file is logged, naming
/// `server.tls`, and the old certificate keeps serving. Registered before the
/// server runs, so a SIGHUP never takes the default action (exit).
async fn reload_on_sighup(
    runtime: &tokio::runtime::Handle,
    certificate: Option<Arc<ReloadableCert>>,
) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).map_err(|e| format!("SIGHUP: {e}"))?;
    runtime.spawn(async move {
        while hangups.recv().await.is_some() {
            match &certificate {
                None => tracing::info!("SIGHUP: no certificate to reload"),
                Some(certificate) => match certificate.reload() {
                    Ok(()) => tracing::info!("SIGHUP: server.tls certificate reloaded"),
                    Err(e) => tracing::error!(
                        "SIGHUP: server.tls: {e}; the previous certificate keeps serving"
                    ),
                },
            }
        }
    });
    Ok(())
}

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
    let revocations = Arc::new(Revocations::new(config.session.on_feed_loss));
    auth_runtime.block_on(revocation::load(&revocations, storage.sessions.as_ref()))?;
    auth_runtime.spawn(revocation::follow(
        Arc::clone(&revocations),
        Arc::clone(&storage.sessions),
        Arc::clone(&storage.revocations),
    ));
    let auth = Arc::new(AuthServices::new(
        &storage,
        sms,
        &config,
        Arc::clone(&revocations),
    )?);
    let metrics = Arc::new(Metrics::new());
    let live = snapshot::live(Snapshot::build(&config, &metrics)?);

    let server_conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.shutdown_timeout.as_secs()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, server_conf);
    server.bootstrap();
    server.add_service(background_service(
        "health checks",
        HealthChecks {
            live: Arc::clone(&live),
        },
    ));

    let gateway = Gateway {
        live,
        auth,
        auth_runtime: auth_runtime.handle().clone(),
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
    let listen = config.server.listen.to_string();
    let certificate = match &config.server.tls {
        None => {
            proxy.add_tcp_with_settings(&listen, socket_options(&config));
            None
        }
        Some(tls) => {
            let certificate = Arc::new(
                ReloadableCert::open(&tls.cert_file, &tls.key_file)
                    .map_err(|e| format!("server.tls: {e}"))?,
            );
            let mut settings =
                TlsSettings::intermediate("", "").map_err(|e| format!("server.tls: {e}"))?;
            settings.set_cert_resolver(Arc::clone(&certificate) as _);
            settings.enable_h2();
            proxy.add_tls_with_settings(&listen, Some(socket_options(&config)), settings);
            Some(certificate)
        }
    };
    server.add_service(proxy);
    auth_runtime.block_on(reload_on_sighup(auth_runtime.handle(), certificate))?;

    if let Some(admin_listen) = config.server.admin_listen {
        let mut admin = Service::new(
            "otpgate admin".to_owned(),
            Admin {
                metrics,
                storage,
                revocations,
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
