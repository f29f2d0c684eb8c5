//! edge-agent: one process per node that turns NVML, neuron-monitor, /proc,
//! the kubelet's pod-to-device mapping and the workers' queue reports into one [`NodeSnapshot`] and serves it.
//!
//! [`NodeSnapshot`]: edge_telemetry::proto::NodeSnapshot

pub mod binding;
pub mod collector;
pub mod config;
pub mod exporter;
pub mod privileges;
pub mod server;
pub mod snapshot;

use axum::serve::ListenerExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::binding::{Binder, BindingMode, NodePods};
use crate::collector::Ticker;
use crate::collector::neuron::{NeuronCollector, NeuronSettings};
use crate::collector::nvml::NvmlCollector;
use crate::collector::pod_resources::PodResourcesCollector;
use crate::collector::procfs::ProcCollector;
use crate::collector::workers::{IntakeError, SocketOwner, WorkerIntake};
use crate::config::Settings;
use crate::exporter::prometheus::MetricsCache;
use crate::exporter::stream::FeedService;
use crate::server::HttpState;
use crate::snapshot::SnapshotStore;

/// Why the agent could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The public port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address from --listen.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A worker-report endpoint could not be opened.
    #[error(transparent)]
    Intake(#[from] IntakeError),
    /// --report-binding is on and no Kubernetes client could be configured.
    #[error("--report-binding needs the Kubernetes API (KUBECONFIG or a service account)")]
    Kubernetes(#[source] kube::Error),
    /// --user could not be taken.
    #[error(transparent)]
    Privileges(#[from] privileges::PrivilegeError),
    /// The server failed while running.
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Runs the agent until `shutdown` resolves (SIGTERM / Ctrl-C in `main`).
pub async fn run(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let store = SnapshotStore::new(settings.node.clone());

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| RunError::Listen { addr: settings.listen, source })?;
    let local = listener.local_addr().map_err(RunError::Serve)?;

    let mut workers = WorkerIntake::new(store.clone(), settings.worker_expiry, settings.max_workers);
    let mut pods_task = None;
    if settings.report_binding != BindingMode::Off {
        // kube's HTTPS client asks rustls for the process default provider, and with
        // ring (kube) and aws-lc-rs (the AWS SDK) both compiled in rustls cannot pick one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = kube::Client::try_default().await.map_err(RunError::Kubernetes)?;
        let pods = NodePods::default();
        let (follower, node, stop) = (pods.clone(), settings.node.name.clone(), stop_rx.clone());
        pods_task = Some(tokio::spawn(async move { follower.follow(client, &node, stop).await }));
        workers = workers.with_binder(Binder::new(settings.report_binding, settings.procfs.clone(), pods));
    }
    let owner = SocketOwner { uid: settings.run_as.map(|r| r.uid), gid: settings.report_socket_group };
    let intake_tasks =
        workers.serve(settings.report_socket.as_deref(), settings.report_listen, owner, stop_rx.clone()).await?;
    // The socket is made: nothing after this needs root.
    if let Some(run_as) = settings.run_as {
        privileges::become_user(run_as)?;
    }

    let neuron = NeuronCollector::spawn(NeuronSettings {
        command: settings.neuron_monitor.clone(),
        config_path: settings.neuron_monitor_config.clone(),
        period: settings.interval,
    });
    let pod_resources = PodResourcesCollector::spawn(settings.pod_resources.clone(), stop_rx.clone());
    let ticker = Ticker {
        nvml: Arc::new(Mutex::new(NvmlCollector::new(settings.nvml_library.clone()))),
        procfs: Arc::new(Mutex::new(ProcCollector::new(settings.procfs.clone()))),
        neuron,
        pod_resources,
        workers,
        store: store.clone(),
    };
    #[cfg(feature = "cloudwatch")]
    let cloudwatch = settings
        .cloudwatch
        .clone()
        .map(|cw| exporter::cloudwatch::spawn(cw, settings.interval, store.clone(), stop_rx.clone()));
    #[cfg(not(feature = "cloudwatch"))]
    let cloudwatch: Option<(Arc<exporter::cloudwatch::stats::Stats>, tokio::task::JoinHandle<()>)> = None;
    let (cloudwatch_stats, cloudwatch_task) = cloudwatch.unzip();
    let ready = Arc::new(AtomicBool::new(false));
    let ready_flag = Arc::clone(&ready);
    let tick_stop = stop_rx.clone();
    let interval = settings.interval;
    // gRPC health (grpc.health.v1) says what /readyz says: SERVING once the
    // first collection is done, for the server and for the snapshot feed.
    let (health, health_server) = tonic_health::server::health_reporter();
    for service in ["", server::FEED_SERVICE] {
        health.set_service_status(service, tonic_health::ServingStatus::NotServing).await;
    }
    let ticks = tokio::spawn(async move {
        ticker.tick().await;
        ready_flag.store(true, Ordering::Release);
        for service in ["", server::FEED_SERVICE] {
            health.set_service_status(service, tonic_health::ServingStatus::Serving).await;
        }
        ticker.run(interval, tick_stop).await;
    });

    let app = server::router(
        HttpState {
            store: store.clone(),
            metrics: Arc::new(MetricsCache::new(settings.hostname_label)),
            ready,
            cloudwatch: cloudwatch_stats,
        },
        FeedService::new(store, settings.stream_heartbeat, stop_rx.clone()),
        health_server,
    );
    tracing::info!(addr = %local, node = %settings.node.name, "agent listening");

    let mut serve_stop = stop_rx.clone();
    // TCP_NODELAY: axum does not set it, and with Nagle on, a small write that
    // follows one not yet acknowledged waits for the peer's delayed ACK
    // (~40 ms on Linux) — a snapshot change stuck behind that is a wake-up
    // delayed 100-fold.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = serve_stop.wait_for(|s| *s).await;
    });
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let result = server.await.map_err(RunError::Serve);
    let _ = ticks.await;
    if let Some(t) = cloudwatch_task {
        let _ = t.await;
    }
    for t in intake_tasks.into_iter().chain(pods_task) {
        let _ = t.await;
    }
    result
}
