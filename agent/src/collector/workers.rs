//! Worker reports: the node-local intake of the workers' queue depth.
//!
//! `POST /v1/reports` with a [`WorkerReport`] JSON body, on a Unix socket
//! (Kubernetes: a hostPath shared with the worker pods) and/or a loopback TCP
//! port (local runs). A report changes the snapshot at once; a worker silent
//! for longer than the expiry is dropped at the next tick. A malformed or
//! oversized report gets a 4xx naming the field and changes nothing but the
//! collector's error count.

use axum::serve::ListenerExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use edge_telemetry::proto::{CollectorState, NodeSnapshot, Worker};
use edge_telemetry::report::{MAX_REPORT_BYTES, REPORT_PATH};
use edge_telemetry::{ReportError, WorkerReport};
use tokio::sync::watch;

use crate::snapshot::{SnapshotStore, collector_health};

const NAME: &str = "workers";

/// Failure to open a report endpoint.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The Unix socket could not be created.
    #[error("cannot listen on report socket {path}: {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The loopback port could not be bound.
    #[error("cannot listen for reports on {addr}: {source}")]
    Tcp {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Accepts reports and keeps the workers part of the snapshot.
#[derive(Clone)]
pub struct WorkerIntake {
    store: SnapshotStore,
    last_seen: Arc<Mutex<HashMap<String, Instant>>>,
    expiry: Duration,
}

impl WorkerIntake {
    /// An intake writing to `store`, forgetting workers silent for `expiry`.
    pub fn new(store: SnapshotStore, expiry: Duration) -> Self {
        let intake = Self { store, last_seen: Arc::default(), expiry };
        intake.store.update(|s| set_state(s, CollectorState::Ok, ""));
        intake
    }

    /// Applies one raw report body. On success the snapshot holds the
    /// worker's new state before this returns.
    pub fn accept(&self, body: &[u8]) -> Result<(), ReportError> {
        let report = match WorkerReport::from_json(body) {
            Ok(r) => r,
            Err(e) => {
                self.store.update(|s| {
                    collector_health(s, NAME).errors += 1;
                });
                return Err(e);
            }
        };
        // Hold the lock across the store update so a concurrent expiry cannot
        // remove a worker between its touch and its upsert.
        let mut seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(report.worker_id.clone(), Instant::now());
        self.store.update(|s| upsert(s, worker_from(report)));
        Ok(())
    }

    /// Drops workers silent for longer than the expiry.
    pub fn expire(&self) {
        let mut seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let gone: Vec<String> =
            seen.iter().filter(|(_, t)| now.duration_since(**t) > self.expiry).map(|(id, _)| id.clone()).collect();
        if gone.is_empty() {
            return;
        }
        for id in &gone {
            seen.remove(id);
            tracing::info!(worker_id = %id, "worker stopped reporting; dropped");
        }
        self.store.update(|s| s.workers.retain(|w| !gone.contains(&w.worker_id)));
    }

    /// The HTTP routes of the intake.
    pub fn router(&self) -> Router {
        Router::new()
            .route(REPORT_PATH, post(receive))
            // Bodies over the limit are cut off before they are read in full.
            .layer(axum::extract::DefaultBodyLimit::max(MAX_REPORT_BYTES))
            .with_state(self.clone())
    }

    /// Serves the intake on a Unix socket and/or a loopback port until shutdown.
    pub async fn serve(
        &self,
        socket: Option<&Path>,
        tcp: Option<SocketAddr>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, IntakeError> {
        let mut tasks = Vec::new();
        if let Some(path) = socket {
            // A socket file left by a previous agent on this node blocks bind.
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path)
                .map_err(|source| IntakeError::Socket { path: path.to_owned(), source })?;
            // Owner and group: the workers share the agent's group (in Kubernetes
            // the chart's runAsUser), also when the agent runs as uid 0 to read
            // the kubelet's PodResources socket.
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o660))
                .map_err(|source| IntakeError::Socket { path: path.to_owned(), source })?;
            tracing::info!(path = %path.display(), "accepting worker reports on unix socket");
            let app = self.router();
            let mut rx = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
                    tracing::error!(error = %e, "report socket server failed");
                }
            }));
        }
        if let Some(addr) = tcp {
            let listener =
                tokio::net::TcpListener::bind(addr).await.map_err(|source| IntakeError::Tcp { addr, source })?;
            tracing::info!(%addr, "accepting worker reports on loopback");
            let app = self.router();
            let mut rx = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                // Reports are small writes answered with small writes: no Nagle.
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
                    tracing::error!(error = %e, "report port server failed");
                }
            }));
        }
        if tasks.is_empty() {
            self.store.update(|s| set_state(s, CollectorState::Absent, "no report socket or port configured"));
        }
        Ok(tasks)
    }
}

async fn receive(State(intake): State<WorkerIntake>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            // Over the body limit (or a broken stream): refuse as JSON like any bad report.
            intake.store.update(|s| collector_health(s, NAME).errors += 1);
            let e = ReportError {
                field: "body".to_owned(),
                reason: format!("{rejection}; the limit is {MAX_REPORT_BYTES} bytes"),
            };
            return refuse(rejection.status(), &e);
        }
    };
    match intake.accept(&body) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refuse(StatusCode::BAD_REQUEST, &e),
    }
}

fn refuse(status: StatusCode, e: &ReportError) -> Response {
    tracing::debug!(field = %e.field, reason = %e.reason, "worker report refused");
    (status, axum::Json(serde_json::json!({ "error": e.to_string(), "field": e.field }))).into_response()
}

fn worker_from(r: WorkerReport) -> Worker {
    Worker {
        worker_id: r.worker_id,
        pod: r.pod,
        namespace: r.namespace,
        deployment: r.deployment,
        accelerator: r.accelerator.as_str().to_owned(),
        queue_depth: r.queue_depth,
        in_flight: r.in_flight,
        capacity: r.capacity,
        latency_p50_seconds: r.latency_p50_seconds,
        latency_p99_seconds: r.latency_p99_seconds,
        labels: r.labels,
        endpoint: r.endpoint.unwrap_or_default(),
    }
}

/// Inserts or replaces a worker, keeping the list sorted by id so equal
/// states compare equal regardless of report order.
fn upsert(s: &mut NodeSnapshot, worker: Worker) {
    match s.workers.binary_search_by(|w| w.worker_id.cmp(&worker.worker_id)) {
        Ok(i) => s.workers[i] = worker,
        Err(i) => s.workers.insert(i, worker),
    }
}

fn set_state(s: &mut NodeSnapshot, state: CollectorState, message: &str) {
    let h = collector_health(s, NAME);
    h.state = state as i32;
    h.message = message.to_owned();
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_telemetry::proto::Node;

    fn intake(expiry: Duration) -> WorkerIntake {
        WorkerIntake::new(SnapshotStore::new(Node::default()), expiry)
    }

    fn report(id: &str, queue: u32) -> Vec<u8> {
        serde_json::json!({
            "worker_id": id, "deployment": "sd-cpu", "accelerator": "cpu",
            "queue_depth": queue, "in_flight": 0, "capacity": 4
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_report_reaches_the_snapshot_at_once() {
        let intake = intake(Duration::from_secs(5));
        intake.accept(&report("b", 2)).unwrap();
        intake.accept(&report("a", 1)).unwrap();
        let snap = intake.store.latest();
        let ids: Vec<_> = snap.workers.iter().map(|w| (w.worker_id.as_str(), w.queue_depth)).collect();
        assert_eq!(ids, [("a", 1), ("b", 2)]);
        assert_eq!(snap.workers[0].accelerator, "cpu");
    }

    #[test]
    fn a_bad_report_changes_nothing_but_the_error_count() {
        let intake = intake(Duration::from_secs(5));
        intake.accept(&report("a", 1)).unwrap();
        let err = intake
            .accept(
                br#"{"worker_id":"a","deployment":"d","accelerator":"gpu","queue_depth":9,"in_flight":0,"capacity":1}"#,
            )
            .unwrap_err();
        assert_eq!(err.field, "accelerator");
        let snap = intake.store.latest();
        assert_eq!(snap.workers[0].queue_depth, 1);
        let health = snap.collectors.iter().find(|c| c.collector == NAME).unwrap();
        assert_eq!(health.errors, 1);
    }

    #[test]
    fn silent_workers_expire() {
        let intake = intake(Duration::from_millis(20));
        intake.accept(&report("a", 1)).unwrap();
        intake.expire();
        assert_eq!(intake.store.latest().workers.len(), 1);
        std::thread::sleep(Duration::from_millis(40));
        intake.accept(&report("b", 1)).unwrap();
        intake.expire();
        let snap = intake.store.latest();
        assert_eq!(snap.workers.iter().map(|w| w.worker_id.as_str()).collect::<Vec<_>>(), ["b"]);
    }
}
