//! The agent's one public port: HTTP (`/metrics`, `/healthz`, `/readyz`) and
//! the gRPC snapshot feed and its `grpc.health.v1`, told apart by path on
//! the same listener.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::exporter::cloudwatch::append_metrics;
use crate::exporter::cloudwatch::stats::Stats;
use edge_telemetry::exposition::{self, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};

use crate::exporter::prometheus::MetricsCache;
use crate::exporter::stream::FeedService;
use crate::snapshot::SnapshotStore;

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// The node snapshot.
    pub store: SnapshotStore,
    /// Rendered expositions.
    pub metrics: Arc<MetricsCache>,
    /// True once the first collection finished.
    pub ready: Arc<AtomicBool>,
    /// The CloudWatch exporter's counters, when it runs.
    pub cloudwatch: Option<Arc<Stats>>,
}

/// The snapshot feed's gRPC service name, as health checks ask for it.
pub const FEED_SERVICE: &str =
    <edge_telemetry::proto::snapshot_feed_server::SnapshotFeedServer<FeedService> as tonic::server::NamedService>::NAME;

/// HTTP routes, the gRPC feed and its gRPC health in one router.
pub fn router<H>(state: HttpState, feed: FeedService, health: H) -> Router
where
    H: tonic::codegen::Service<
            axum::http::Request<tonic::body::Body>,
            Response = axum::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    H::Future: Send + 'static,
{
    let http = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let grpc = tonic::service::Routes::new(feed.into_server()).add_service(health).prepare().into_axum_router();
    http.merge(grpc)
}

async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> impl IntoResponse {
    let openmetrics = exposition::wants_openmetrics(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = state.metrics.get(&state.store.latest(), openmetrics);
    let content_type = if openmetrics { OPENMETRICS_CONTENT_TYPE } else { TEXT_CONTENT_TYPE };
    let body = match &state.cloudwatch {
        Some(stats) => append_metrics(&body, openmetrics, stats),
        None => body.to_string(),
    };
    ([(header::CONTENT_TYPE, content_type)], body)
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "collecting\n")
    }
}
