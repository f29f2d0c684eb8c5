//! The scaler's own `/metrics`, `/healthz` (alive) and `/readyz` (see
//! [`crate::readiness`]), the endpoint inventory
//! (`/v1/endpoints`, see [`crate::inventory`]; a pull for a class with no
//! ready endpoint is recorded as [`crate::demand`]), and the sync of the
//! scaler's replicas ([`crate::peers`]), on their own port.
//!
//! Counters are updated where things happen; the agent gauges are read from
//! the registry at scrape time, so they are never out of date.

use axum::serve::ListenerExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use std::collections::HashMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use edge_telemetry::catalogue::scaler as cat;
use edge_telemetry::exposition;
use edge_telemetry::inventory::{
    self as inventory_types, INVENTORY_PATH, Inventory, InventoryError, MAX_QUERY_LEN, PARAM_ZONE, Waking,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as PromRegistry;
use tokio::sync::watch;

use crate::addresses::Addresses;
use crate::cold_start::Sample;
use crate::demand::DemandClass;
use crate::inventory;
use crate::peers::{self, DemandRecord, Peers, Refusal, SyncRequest};
use crate::rate_limit::RateLimit;
use crate::readiness::Readiness;
use crate::state::{Registry, Stats};

type Labels = Vec<(&'static str, &'static str)>;
type OwnedLabels = Vec<(&'static str, String)>;

/// `Retry-After` of a pull that wakes a class no wake of which was measured yet.
pub const DEFAULT_RETRY_AFTER_SECONDS: u64 = 30;

fn cold_start_histogram() -> Histogram {
    Histogram::new(cat::COLD_START_SECONDS.buckets.iter().copied())
}

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
    /// `StreamMetricSpec`.
    StreamMetricSpec,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Self::IsActive => "IsActive",
            Self::StreamIsActive => "StreamIsActive",
            Self::GetMetricSpec => "GetMetricSpec",
            Self::GetMetrics => "GetMetrics",
            Self::StreamMetricSpec => "StreamMetricSpec",
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
    demand_requesters: Gauge,
    agent_ages: Family<OwnedLabels, Gauge<f64, AtomicU64>>,
    /// Inventory pulls that woke a class.
    pub demand_wakes: Counter,
    inventory_refused: Family<Labels, Counter>,
    peers: Gauge,
    peer_syncs: Family<Labels, Counter>,
    /// Demand records a full peer buffer could not take.
    pub peer_demand_dropped: Counter,
    requests: Family<Labels, Counter>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
    cold_starts: Family<OwnedLabels, Histogram, fn() -> Histogram>,
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
        let demand_requesters = gauge(&mut registry, cat::DEMAND_REQUESTERS);
        let demand_wakes = counter(&mut registry, cat::DEMAND_WAKES);
        let agent_ages = Family::<OwnedLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(cat::AGENT_AGE_SECONDS.name, cat::AGENT_AGE_SECONDS.help, agent_ages.clone());
        let inventory_refused = Family::<Labels, Counter>::default();
        registry.register(cat::INVENTORY_REFUSED.name, cat::INVENTORY_REFUSED.help, inventory_refused.clone());
        let peers = gauge(&mut registry, cat::PEERS);
        let peer_syncs = Family::<Labels, Counter>::default();
        registry.register(cat::PEER_SYNCS.name, cat::PEER_SYNCS.help, peer_syncs.clone());
        let peer_demand_dropped = counter(&mut registry, cat::PEER_DEMAND_DROPPED);
        let requests = Family::<Labels, Counter>::default();
        registry.register(cat::GRPC_REQUESTS.name, cat::GRPC_REQUESTS.help, requests.clone());
        let durations = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        let h = cat::GRPC_REQUEST_DURATION_SECONDS;
        registry.register(h.name, h.help, durations.clone());
        let cold_starts =
            Family::<OwnedLabels, Histogram, fn() -> Histogram>::new_with_constructor(cold_start_histogram);
        let h = cat::COLD_START_SECONDS;
        registry.register(h.name, h.help, cold_starts.clone());
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
            demand_requesters,
            demand_wakes,
            agent_ages,
            inventory_refused,
            peers,
            peer_syncs,
            peer_demand_dropped,
            requests,
            durations,
            cold_starts,
        }
    }

    /// Records finished cold-start phases.
    pub fn observe_cold_starts(&self, samples: &[Sample]) {
        for s in samples {
            tracing::info!(accelerator = %s.accelerator, zone = %s.zone, phase = s.phase.as_str(), seconds = s.seconds, "cold start");
            self.cold_starts
                .get_or_create(&vec![
                    (cat::LABEL_ACCELERATOR, s.accelerator.as_str().to_owned()),
                    (cat::LABEL_ZONE, s.zone.clone()),
                    (cat::LABEL_PHASE, s.phase.as_str().to_owned()),
                ])
                .observe(s.seconds);
        }
    }

    /// Counts one refused inventory pull (`bad_request` or `rate_limited`).
    pub fn inventory_refused(&self, reason: &'static str) {
        self.inventory_refused.get_or_create(&vec![(cat::LABEL_REASON, reason)]).inc();
    }

    /// Counts one sync sent to a peer.
    pub fn peer_sync(&self, ok: bool) {
        self.peer_syncs.get_or_create(&vec![(cat::LABEL_OUTCOME, if ok { "ok" } else { "failed" })]).inc();
    }

    /// Counts one answered call and its duration.
    pub fn observe(&self, method: Method, started: Instant, code: tonic::Code) {
        let code = code_name(code);
        self.requests.get_or_create(&vec![(cat::LABEL_METHOD, method.as_str()), (cat::LABEL_CODE, code)]).inc();
        self.durations
            .get_or_create(&vec![(cat::LABEL_METHOD, method.as_str())])
            .observe(started.elapsed().as_secs_f64());
    }

    /// The OpenMetrics exposition, with the agent gauges from `stats` and each
    /// followed agent's age (address, seconds).
    pub fn render(&self, stats: Stats, ages: &[(String, f64)]) -> String {
        // Agents come and go: only the followed ones have a series.
        self.agent_ages.clear();
        for (agent, age) in ages {
            self.agent_ages.get_or_create(&vec![(cat::LABEL_AGENT, agent.clone())]).set(*age);
        }
        self.agents.set(stats.agents as i64);
        self.connected.set(stats.connected as i64);
        self.stale.set(stats.stale as i64);
        self.groups.set(stats.groups as i64);
        self.demand_requesters.set(stats.demand_requesters as i64);
        self.peers.set(stats.peers as i64);
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

/// What the HTTP port serves from.
#[derive(Clone)]
pub struct Http {
    /// The cluster as the scaler sees it.
    pub registry: Arc<Registry>,
    /// The scaler's own series.
    pub metrics: Arc<ScalerMetrics>,
    /// The other replicas' side of the demand sync.
    pub peers: Arc<Peers>,
    /// What `/readyz` answers.
    pub readiness: Arc<Readiness>,
    /// The inventory's per-client limit.
    pub rate_limit: Arc<RateLimit>,
    /// The addresses devices can reach the endpoints at.
    pub addresses: Arc<Addresses>,
}

/// Serves `/metrics`, `/healthz`, `/readyz`, the endpoint inventory and the
/// peers' sync on `listener` until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    http: Http,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route(INVENTORY_PATH, get(endpoints))
        .route(peers::SYNC_PATH, post(sync).layer(DefaultBodyLimit::max(SYNC_BODY_LIMIT)))
        .with_state(http);
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "metrics listening");
    // axum leaves Nagle on; scrapes should not wait on delayed ACKs.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

fn refused(metrics: &ScalerMetrics, e: InventoryError) -> Response {
    tracing::debug!(param = %e.param, error = %e.error, "inventory request refused");
    metrics.inventory_refused("bad_request");
    (StatusCode::BAD_REQUEST, Json(e)).into_response()
}

async fn endpoints(
    State(state): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    if let Err(wait) = state.rate_limit.admit(peer.ip()) {
        state.metrics.inventory_refused("rate_limited");
        let error = InventoryError {
            error: format!("too many pulls from {}; wait and pull again", peer.ip()),
            param: String::new(),
        };
        let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(error)).into_response();
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    let query_len = uri.query().map_or(0, str::len);
    if query_len > MAX_QUERY_LEN {
        return refused(
            &state.metrics,
            InventoryError { error: format!("{query_len} bytes; at most {MAX_QUERY_LEN}"), param: "query".to_owned() },
        );
    }
    let query = params
        .map_err(|e| InventoryError { error: e.body_text(), param: "query".to_owned() })
        .and_then(|Query(params)| inventory::Query::parse(&params));
    let q = match query {
        Ok(q) => q,
        Err(e) => return refused(&state.metrics, e),
    };
    let registry = &state.registry;
    // Unknown zones are refused: they would be classes nothing can serve,
    // and a flood of made-up ones must not grow the demand table.
    if let Some(zone) = &q.zone
        && !registry.knows_zone(zone)
    {
        let known = registry.zones();
        let known = if known.is_empty() { "none yet".to_owned() } else { known.join(", ") };
        return refused(
            &state.metrics,
            InventoryError { error: format!("unknown zone {zone:?}; known: {known}"), param: PARAM_ZONE.to_owned() },
        );
    }
    let endpoints = registry.endpoints(&q);
    let Some(accelerator) = q.accelerator.filter(|_| endpoints.is_empty()) else {
        return inventory_answer(&state, endpoints, Vec::new());
    };
    // Demand: the class asked for has no ready endpoint.
    let class = DemandClass { accelerator, zone: q.zone.clone() };
    let requester = q.device.clone().unwrap_or_else(|| peer.ip().to_string());
    let demand = registry.demand();
    if demand.enabled() {
        state.peers.forward(DemandRecord { accelerator, zone: q.zone.clone(), requester: requester.clone() });
    }
    if demand.record(class.clone(), &requester) {
        state.metrics.demand_wakes.inc();
        tracing::info!(%accelerator, zone = q.zone.as_deref().unwrap_or(""), "device demand wakes a class with no ready endpoint");
    }
    let waking = if demand.enabled() { demand.waking(&class) } else { Vec::new() };
    let wakes = !waking.is_empty();
    let mut response = inventory_answer(&state, registry.fallback_endpoints(&q), waking);
    if wakes {
        let seconds = registry
            .cold_starts()
            .last_report(accelerator)
            .map_or(DEFAULT_RETRY_AFTER_SECONDS, |d| d.as_secs_f64().ceil() as u64)
            .clamp(1, 600);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The inventory's answer, each endpoint at the address a device can reach.
fn inventory_answer(state: &Http, mut endpoints: Vec<inventory_types::Endpoint>, waking: Vec<Waking>) -> Response {
    endpoints.iter_mut().for_each(|e| state.addresses.apply(e));
    Json(Inventory { endpoints, waking }).into_response()
}

/// Largest peer sync body taken: [`peers::MAX_RECORDS`] records and a
/// replica's listeners, with room to spare.
const SYNC_BODY_LIMIT: usize = 4 << 20;

async fn sync(State(state): State<Http>, request: Result<Json<SyncRequest>, JsonRejection>) -> Response {
    let request = match request {
        Ok(Json(r)) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    };
    match state.peers.receive(&state.registry, request) {
        Ok(answer) => Json(answer).into_response(),
        Err(Refusal::Myself) => (StatusCode::CONFLICT, "this is the sender itself\n").into_response(),
        Err(Refusal::Invalid(why)) => (StatusCode::BAD_REQUEST, why).into_response(),
    }
}

async fn ready(State(state): State<Http>) -> Response {
    let status = state.readiness.check(&state.registry);
    let code = if status.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, format!("{}\n", status.reason)).into_response()
}

async fn render(State(state): State<Http>, headers: HeaderMap) -> impl IntoResponse {
    let openmetrics = state.metrics.render(state.registry.stats(), &state.registry.agent_ages());
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = exposition::negotiate(accept, openmetrics);
    ([(header::CONTENT_TYPE, content_type)], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_catalogue_series() {
        let m = ScalerMetrics::new();
        m.observe(Method::GetMetrics, Instant::now(), tonic::Code::Ok);
        m.observe(Method::GetMetrics, Instant::now(), tonic::Code::InvalidArgument);
        m.peer_sync(false);
        m.inventory_refused("rate_limited");
        m.observe_cold_starts(&[Sample {
            accelerator: edge_telemetry::AcceleratorType::Nvidia,
            zone: "lax".into(),
            phase: crate::cold_start::Phase::Report,
            seconds: 42.0,
        }]);
        let stats = Stats { agents: 3, connected: 2, stale: 1, groups: 4, demand_requesters: 5, peers: 1 };
        let text = m.render(stats, &[("10.0.0.5:9400".to_owned(), 1.5)]);
        for h in cat::HISTOGRAMS {
            assert!(text.contains(&format!("# TYPE {} histogram", h.name)), "{} missing:\n{text}", h.name);
        }
        assert!(text.contains("edge_scaler_demand_requesters 5\n"), "{text}");
        assert!(
            text.contains(r#"edge_scaler_cold_start_seconds_count{accelerator="nvidia",zone="lax",phase="report"} 1"#),
            "{text}"
        );
        for metric in cat::ALL {
            assert!(text.contains(&format!("# TYPE {} ", metric.name)), "{} missing:\n{text}", metric.name);
        }
        assert!(text.contains("edge_scaler_agents_stale 1\n"), "{text}");
        assert!(text.contains("edge_scaler_peers 1\n"), "{text}");
        assert!(text.contains(r#"edge_scaler_agent_age_seconds{agent="10.0.0.5:9400"} 1.5"#), "{text}");
        assert!(text.contains(r#"edge_scaler_peer_syncs_total{outcome="failed"} 1"#), "{text}");
        assert!(
            text.contains(r#"edge_scaler_grpc_requests_total{method="GetMetrics",code="InvalidArgument"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"edge_scaler_grpc_request_duration_seconds_count{method="GetMetrics"} 2"#), "{text}");
    }
}
