//! Worker reports: the node-local intake of the workers' queue depth.
//!
//! `POST /v1/reports` with a [`WorkerReport`] JSON body, on a Unix socket
//! (Kubernetes: a hostPath shared with the worker pods) and/or a loopback TCP
//! port (local runs). A report changes the snapshot at once; a worker silent
//! for longer than the expiry is dropped at the next tick. A malformed or
//! oversized report gets a 4xx naming the field and changes nothing but the
//! collector's error count. At most `--max-workers` distinct workers report at
//! once (429 for one more), so the snapshot stays well under the scaler's
//! message limit (see [`MAX_WORKERS_LIMIT`]). With `--report-binding` a
//! report on the socket must match the pod that sent it ([`crate::binding`]).

use axum::serve::ListenerExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use edge_telemetry::proto::{CollectorState, NodeSnapshot, Worker};
use edge_telemetry::report::{MAX_REPORT_BYTES, REPORT_PATH};
use edge_telemetry::{ReportError, WorkerReport};
use tokio::sync::watch;

use crate::binding::Binder;
use crate::snapshot::{SnapshotStore, collector_health};

const NAME: &str = edge_telemetry::view::CollectorName::Workers.as_str();

/// The most `--max-workers` may be: that many reports at their size limit
/// encode to 2 MiB, half of tonic's default 4 MiB decode limit at the scaler
/// (the rest of the snapshot is small), so a full node never turns stale
/// there for a message too large.
pub const MAX_WORKERS_LIMIT: usize = 128;

/// Why a report was not taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Malformed or invalid (400).
    Invalid(ReportError),
    /// A new worker on a node that has `--max-workers` reporting already (429).
    Full(ReportError),
    /// Not the sending pod's (403, `--report-binding strict`).
    Forged(ReportError),
}

impl Refusal {
    /// What is wrong, naming the field.
    pub fn error(&self) -> &ReportError {
        match self {
            Self::Invalid(e) | Self::Full(e) | Self::Forged(e) => e,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Full(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Forged(_) => StatusCode::FORBIDDEN,
        }
    }
}

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
    /// The socket could not be given to its user and group.
    #[error(
        "cannot give report socket {path} to uid {uid:?} gid {gid:?} (--user, --report-socket-group: the agent must be in the group, or have CAP_CHOWN): {source}"
    )]
    Owner {
        /// The socket path.
        path: PathBuf,
        /// The owner asked for.
        uid: Option<u32>,
        /// The group asked for.
        gid: Option<u32>,
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

/// Who owns the report socket, if not the agent's own user and group.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketOwner {
    /// The user the agent runs as after start (`--user`).
    pub uid: Option<u32>,
    /// The group the workers are in (`--report-socket-group`).
    pub gid: Option<u32>,
}

/// Accepts reports and keeps the workers part of the snapshot.
#[derive(Clone)]
pub struct WorkerIntake {
    store: SnapshotStore,
    last_seen: Arc<Mutex<HashMap<String, Instant>>>,
    expiry: Duration,
    max_workers: usize,
    binder: Option<Binder>,
}

/// The process at the other end of a report socket connection, as the kernel
/// recorded it at connect time (SO_PEERCRED).
#[derive(Clone, Copy, Debug)]
struct Peer {
    pid: Option<i32>,
}

impl Connected<axum::serve::IncomingStream<'_, tokio::net::UnixListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        Self { pid: stream.io().peer_cred().ok().and_then(|c| c.pid()) }
    }
}

impl WorkerIntake {
    /// An intake writing to `store`, forgetting workers silent for `expiry`,
    /// taking reports from at most `max_workers` workers at once.
    pub fn new(store: SnapshotStore, expiry: Duration, max_workers: usize) -> Self {
        let intake = Self { store, last_seen: Arc::default(), expiry, max_workers, binder: None };
        intake.store.update(|s| set_state(s, CollectorState::Ok, ""));
        intake
    }

    /// Reports on the socket are bound to their sender's pod by `binder`.
    pub fn with_binder(mut self, binder: Binder) -> Self {
        self.binder = Some(binder);
        self
    }

    /// Applies one raw report body. On success the snapshot holds the
    /// worker's new state before this returns.
    pub fn accept(&self, body: &[u8]) -> Result<(), Refusal> {
        self.accept_from(body, None)
    }

    /// Applies one raw report body sent by process `pid` over the socket
    /// (`None`: from loopback TCP, or the kernel gave no pid).
    fn accept_from(&self, body: &[u8], pid: Option<i32>) -> Result<(), Refusal> {
        let count_error = || self.store.update(|s| collector_health(s, NAME).errors += 1);
        let mut report = WorkerReport::from_json(body).map_err(|e| {
            count_error();
            Refusal::Invalid(e)
        })?;
        if let Some(binder) = &self.binder {
            binder.bind(&mut report, pid).map_err(|e| {
                count_error();
                tracing::warn!(worker_id = %report.worker_id, ?pid, field = %e.field, reason = %e.reason, "report refused: not the sending pod's");
                Refusal::Forged(e)
            })?;
        }
        // Hold the lock across the store update so a concurrent expiry cannot
        // remove a worker between its touch and its upsert.
        let mut seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= self.max_workers && !seen.contains_key(&report.worker_id) {
            drop(seen);
            count_error();
            tracing::warn!(worker_id = %report.worker_id, max = self.max_workers, "report refused: too many workers on this node");
            return Err(Refusal::Full(ReportError {
                field: "worker_id".to_owned(),
                reason: format!(
                    "this node has {} workers reporting already (--max-workers); one is forgotten {:?} after its last report",
                    self.max_workers, self.expiry
                ),
            }));
        }
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

    /// The HTTP routes of the intake (loopback TCP: reports taken unbound).
    pub fn router(&self) -> Router {
        self.routes(post(receive))
    }

    fn routes(&self, handler: axum::routing::MethodRouter<WorkerIntake>) -> Router {
        Router::new()
            .route(REPORT_PATH, handler)
            // Bodies over the limit are cut off before they are read in full.
            .layer(axum::extract::DefaultBodyLimit::max(MAX_REPORT_BYTES))
            .with_state(self.clone())
    }

    /// Serves the intake on a Unix socket and/or a loopback port until shutdown.
    pub async fn serve(
        &self,
        socket: Option<&Path>,
        tcp: Option<SocketAddr>,
        owner: SocketOwner,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, IntakeError> {
        let mut tasks = Vec::new();
        if let Some(path) = socket {
            // A socket file left by a previous agent on this node blocks bind.
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path)
                .map_err(|source| IntakeError::Socket { path: path.to_owned(), source })?;
            // Read and write for the owner and the group only: the workers are in the
            // agent's group, or in --report-socket-group.
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o660))
                .map_err(|source| IntakeError::Socket { path: path.to_owned(), source })?;
            if owner.uid.is_some() || owner.gid.is_some() {
                std::os::unix::fs::chown(path, owner.uid, owner.gid).map_err(|source| IntakeError::Owner {
                    path: path.to_owned(),
                    uid: owner.uid,
                    gid: owner.gid,
                    source,
                })?;
            }
            tracing::info!(path = %path.display(), "accepting worker reports on unix socket");
            let app = self.routes(post(receive_on_socket)).into_make_service_with_connect_info::<Peer>();
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
    respond(&intake, body, None)
}

async fn receive_on_socket(
    State(intake): State<WorkerIntake>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(&intake, body, peer.pid)
}

fn respond(intake: &WorkerIntake, body: Result<Bytes, BytesRejection>, pid: Option<i32>) -> Response {
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
    match intake.accept_from(&body, pid) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refusal) => refuse(refusal.status(), refusal.error()),
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
mod tests;
