//! The scaler's own `/metrics` and `/healthz`, and the endpoint inventory
//! (`/v1/endpoints`, see [`crate::inventory`]), on their own port.
//!
//! Counters are updated where things happen; the agent gauges are read from
//! the registry at scrape time, so they are never out of date.

use axum::serve::ListenerExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use edge_telemetry::catalogue::scaler as cat;
use edge_telemetry::inventory::{INVENTORY_PATH, Inventory, InventoryError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as PromRegistry;
use tokio::sync::watch;

use crate::inventory;
use crate::state::{Registry, Stats};

type Labels = Vec<(&'static str, &'static str)>;

/// Content type of the classic Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn duration_histogram() -> Histogram {
    Histogram::new(cat::GRPC_REQUEST_DURATION_SECONDS.buckets.iter().copied())
}

/// The KEDA calls, as labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `IsActive`.
    IsActive,
    /// `StreamIsActive`.
    StreamIsActive,
    /// `GetMetricSpec`.
    GetMetricSpec,
    /// `GetMetrics`.
    GetMetrics,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Self::IsActive => "IsActive",
            Self::StreamIsActive => "StreamIsActive",
            Self::GetMetricSpec => "GetMetricSpec",
            Self::GetMetrics => "GetMetrics",
        }
    }
}

/// Every series the scaler exposes.
pub struct ScalerMetrics {
    registry: PromRegistry,
    agents: Gauge,
    connected: Gauge,
    stale: Gauge,
    groups: Gauge,
    /// Snapshot messages received.
    pub snapshots: Counter,
    /// Agent streams that failed or ended.
    pub disconnects: Counter,
    /// `true`s pushed on StreamIsActive.
    pub activations: Counter,
    /// StreamIsActive streams open now.
    pub active_streams: Gauge,
    requests: Family<Labels, Counter>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for ScalerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalerMetrics {
    /// Registers every series from the catalogue.
    pub fn new() -> Self {
        let mut registry = PromRegistry::default();
        let gauge = |registry: &mut PromRegistry, m: edge_telemetry::catalogue::Metric| {
            let g = Gauge::default();
            registry.register(m.name, m.help, g.clone());
            g
        };
        let counter = |registry: &mut PromRegistry, m: edge_telemetry::catalogue::Metric| {
            let c = Counter::default();
            registry.register(m.name, m.help, c.clone());
            c
        };
        let agents = gauge(&mut registry, cat::AGENTS);
        let connected = gauge(&mut registry, cat::AGENTS_CONNECTED);
        let stale = gauge(&mut registry, cat::AGENTS_STALE);
        let groups = gauge(&mut registry, cat::WORKER_GROUPS);
        let active_streams = gauge(&mut registry, cat::ACTIVE_STREAMS);
        let snapshots = counter(&mut registry, cat::SNAPSHOTS);
        let disconnects = counter(&mut registry, cat::AGENT_DISCONNECTS);
        let activations = counter(&mut registry, cat::ACTIVATIONS);
        let requests = Family::<Labels, Counter>::default();
        registry.register(cat::GRPC_REQUESTS.name, cat::GRPC_REQUESTS.help, requests.clone());
        let durations = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        let h = cat::GRPC_REQUEST_DURATION_SECONDS;
        registry.register(h.name, h.help, durations.clone());
        Self {
            registry,
            agents,
            connected,
            stale,
            groups,
            snapshots,
            disconnects,
            activations,
            active_streams,
            requests,
            durations,
        }
    }

    /// Counts one answered call and its duration.
    pub fn observe(&self, method: Method, started: Instant, code: tonic::Code) {
        let code = code_name(code);
        self.requests.get_or_create(&vec![(cat::LABEL_METHOD, method.as_str()), (cat::LABEL_CODE, code)]).inc();
        self.durations
            .get_or_create(&vec![(cat::LABEL_METHOD, method.as_str())])
            .observe(started.elapsed().as_secs_f64());
    }

    /// The text exposition, with the agent gauges from `stats`.
    pub fn render(&self, stats: Stats) -> String {
        self.agents.set(stats.agents as i64);
        self.connected.set(stats.connected as i64);
        self.stale.set(stats.stale as i64);
        self.groups.set(stats.groups as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "Ok",
        Cancelled => "Cancelled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    metrics: Arc<ScalerMetrics>,
}

/// Serves `/metrics`, `/healthz` and the endpoint inventory on `listener`
/// until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    metrics: Arc<ScalerMetrics>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(INVENTORY_PATH, get(endpoints))
        .with_state(HttpState { registry, metrics });
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "metrics listening");
    // axum leaves Nagle on; scrapes should not wait on delayed ACKs.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

async fn endpoints(
    State(state): State<HttpState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let query = params
        .map_err(|e| InventoryError { error: e.body_text(), param: "query".to_owned() })
        .and_then(|Query(params)| inventory::Query::parse(&params));
    match query {
        Ok(q) => Json(Inventory { endpoints: state.registry.endpoints(&q) }).into_response(),
        Err(e) => {
            tracing::debug!(param = %e.param, error = %e.error, "inventory request refused");
            (StatusCode::BAD_REQUEST, Json(e)).into_response()
        }
    }
}

async fn render(State(state): State<HttpState>) -> impl IntoResponse {
    let body = state.metrics.render(state.registry.stats());
    ([(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_catalogue_series() {
        let m = ScalerMetrics::new();
        m.observe(Method::GetMetrics, Instant::now(), tonic::Code::Ok);
        m.observe(Method::GetMetrics, Instant::now(), tonic::Code::InvalidArgument);
        let text = m.render(Stats { agents: 3, connected: 2, stale: 1, groups: 4 });
        for metric in cat::ALL {
            assert!(text.contains(&format!("# TYPE {} ", metric.name)), "{} missing:\n{text}", metric.name);
        }
        assert!(text.contains("edge_scaler_agents_stale 1\n"), "{text}");
        assert!(
            text.contains(r#"edge_scaler_grpc_requests_total{method="GetMetrics",code="InvalidArgument"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"edge_scaler_grpc_request_duration_seconds_count{method="GetMetrics"} 2"#), "{text}");
    }
}
