//! edge-scaler: a KEDA external scaler that sees every node.
//!
//! - [`discovery`] finds the agents (static list or Kubernetes EndpointSlices);
//! - [`sources`] keeps one change stream per agent and feeds [`agents`];
//! - [`aggregate`] turns the agents' contributions, summed per worker
//!   [`class`], and a [`trigger`] (its workers picked by Deployment or by a
//!   [`selector`]) into a value; [`values`] is the syntax flags and trigger
//!   metadata share;
//! - [`demand`] holds device pulls for classes with no ready endpoint, which
//!   wake triggers at zero like a queue does; [`cold_start`] times those wakes;
//! - [`service`] answers KEDA (`externalscaler.ExternalScaler`, module [`keda`]);
//! - [`http`] serves the scaler's own /metrics (the series of [`metrics`])
//!   next to the endpoint [`inventory`] devices read, at the [`addresses`]
//!   they can reach;
//! - [`peers`] shares device demand between the scaler's replicas;
//!   [`readiness`] says when a replica may take KEDA's calls, on `/readyz`
//!   and through gRPC [`health`].

pub mod addresses;
pub mod agents;
pub mod aggregate;
pub mod class;
pub mod cold_start;
pub mod config;
pub mod demand;
pub mod discovery;
pub mod health;
pub mod http;
pub mod inventory;
pub mod metrics;
pub mod peers;
pub mod rate_limit;
pub mod readiness;
pub mod selector;
pub mod service;
pub mod sources;
pub mod trigger;
pub mod values;

use std::sync::Arc;
use tonic::transport::server::TcpIncoming;

use tokio::sync::watch;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::addresses::Addresses;
use crate::agents::AgentTable;
use crate::config::{Discovery, Settings, TlsFiles};
use crate::demand::Demand;
use crate::metrics::ScalerMetrics;
use crate::peers::Peers;
use crate::rate_limit::RateLimit;
use crate::readiness::Readiness;
use crate::service::KedaService;
use crate::sources::Sources;

/// KEDA's external scaler contract (server and client), generated once in the
/// telemetry crate; re-exported so tests and tools reach it through the scaler.
pub use edge_telemetry::keda;

/// Why the scaler could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A port could not be bound.
    #[error("cannot listen on {addr} (--{flag}): {source}")]
    Listen {
        /// The flag naming the address.
        flag: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate, key or client CA was rejected.
    #[error("invalid TLS material (--tls-cert, --tls-key, --tls-client-ca): {0}")]
    Tls(#[source] tonic::transport::Error),
    /// Kubernetes discovery could not start.
    #[error(transparent)]
    Discovery(#[from] discovery::DiscoveryError),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Serve(#[source] tonic::transport::Error),
}

fn tls_config(files: &TlsFiles) -> ServerTlsConfig {
    let mut cfg = ServerTlsConfig::new().identity(Identity::from_pem(&files.cert, &files.key));
    if let Some(ca) = &files.client_ca {
        // With a client CA, tonic requires and verifies a client certificate.
        cfg = cfg.client_ca_root(Certificate::from_pem(ca));
    }
    cfg
}

async fn bind(flag: &'static str, addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, RunError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| RunError::Listen { flag, addr, source })
}

/// Runs the scaler until `shutdown` resolves (SIGTERM / Ctrl-C in `main`);
/// open StreamIsActive calls then end with OK.
pub async fn run(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let demand = Demand::new(settings.demand_ttl, settings.demand_max_requesters);
    let table = Arc::new(AgentTable::with_demand(settings.stale_after, demand));
    let metrics = Arc::new(ScalerMetrics::new());

    // `tcp_nodelay` on the builder only applies to listeners tonic binds
    // itself; ours is bound earlier (to report a taken port clearly), so the
    // incoming stream below sets it: a StreamIsActive push must not wait on
    // KEDA's delayed ACK.
    let mut server = Server::builder();
    if let Some(files) = &settings.tls {
        server = server.tls_config(tls_config(files)).map_err(RunError::Tls)?;
    }
    let grpc_listener = bind("listen", settings.listen).await?;
    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(bind("metrics-listen", addr).await?),
        None => None,
    };
    let sources = Sources::new(Arc::clone(&table), Arc::clone(&metrics), settings.reconnect_max, stop_rx.clone());
    let discovery_stop = stop_rx.clone();
    let addresses = Arc::new(Addresses::new(settings.advertise_host.clone()));
    let mut nodes_task = None;
    let mut services_task = None;
    let discovery_task = match settings.discovery.clone() {
        Discovery::Kubernetes(cfg) => {
            let client = discovery::client().await?;
            if settings.node_addresses {
                let watch = addresses::watch_nodes(client.clone(), Arc::clone(&addresses), stop_rx.clone());
                nodes_task = Some(tokio::spawn(watch));
                let watch = addresses::watch_services(client.clone(), Arc::clone(&addresses), stop_rx.clone());
                services_task = Some(tokio::spawn(watch));
            }
            tokio::spawn(discovery::run_kubernetes(client, cfg, sources, discovery_stop))
        }
        Discovery::Static(agents) => {
            tokio::spawn(async move { discovery::run_static(&agents, sources, discovery_stop).await })
        }
    };

    let purge_registry = Arc::clone(&table);
    let mut purge_stop = stop_rx.clone();
    let purge_every = (settings.stale_after / 2).max(std::time::Duration::from_millis(100));
    let purge_task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(purge_every) => { purge_registry.purge(); }
                _ = purge_stop.wait_for(|s| *s) => break,
            }
        }
    });

    let peers = Peers::new(Arc::clone(table.demand()), Arc::clone(&metrics));
    let peers_task = (!settings.peers.is_empty())
        .then(|| tokio::spawn(Arc::clone(&peers).run(settings.peers.clone(), stop_rx.clone())));
    let readiness = Arc::new(Readiness::new(settings.ready_timeout));
    // Not serving until Ready: the reporter starts the server's status at SERVING.
    let (health_reporter, health_server) = tonic_health::server::health_reporter();
    health_reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
    let health_task =
        tokio::spawn(health::run(health_reporter, Arc::clone(&table), Arc::clone(&readiness), stop_rx.clone()));
    let http = http::Http {
        table: Arc::clone(&table),
        metrics: Arc::clone(&metrics),
        peers,
        readiness: Arc::clone(&readiness),
        rate_limit: Arc::new(RateLimit::new(settings.inventory_rate)),
        addresses,
    };
    let metrics_task = metrics_listener.map(|listener| tokio::spawn(http::serve(listener, http, stop_rx.clone())));

    let local = grpc_listener.local_addr().ok();
    tracing::info!(addr = ?local, tls = settings.tls.is_some(), "KEDA external scaler listening");
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let service = KedaService::new(Arc::clone(&table), Arc::clone(&metrics), stop_rx.clone());
    let mut serve_stop = stop_rx.clone();
    let result = server
        .add_service(service.into_server())
        .add_service(health_server)
        .serve_with_incoming_shutdown(TcpIncoming::from(grpc_listener).with_nodelay(Some(true)), async move {
            let _ = serve_stop.wait_for(|s| *s).await;
        })
        .await
        .map_err(RunError::Serve);
    let _ = discovery_task.await;
    let _ = purge_task.await;
    let _ = health_task.await;
    for t in nodes_task.into_iter().chain(services_task) {
        let _ = t.await;
    }
    if let Some(t) = peers_task {
        let _ = t.await;
    }
    if let Some(t) = metrics_task
        && let Ok(Err(e)) = t.await
    {
        tracing::warn!(error = %e, "metrics server failed");
    }
    result
}
