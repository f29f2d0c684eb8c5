//! The scaler's HTTP port: its own `/metrics` (the counters of
//! [`crate::metrics`]), `/healthz` (alive) and `/readyz` (see
//! [`crate::readiness`]), the endpoint inventory (`/v1/endpoints`, see
//! [`crate::inventory`]; a pull for a class with no ready endpoint is
//! recorded as [`crate::demand`]), and the sync of the scaler's replicas
//! ([`crate::peers`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use edge_telemetry::exposition;
use edge_telemetry::inventory::{
    self as inventory_types, INVENTORY_PATH, Inventory, InventoryError, MAX_QUERY_LEN, PARAM_ZONE, Waking,
};
use tokio::sync::watch;

use crate::addresses::Addresses;
use crate::agents::AgentTable;
use crate::demand::DemandClass;
use crate::inventory;
use crate::peers::{self, DemandRecord, Peers, Refusal, SyncRequest};
use crate::rate_limit::RateLimit;
use crate::readiness::Readiness;

use crate::metrics::ScalerMetrics;

/// `Retry-After` of a pull that wakes a class no wake of which was measured yet.
pub const DEFAULT_RETRY_AFTER_SECONDS: u64 = 30;

/// What the HTTP port serves from.
#[derive(Clone)]
pub struct Http {
    /// The cluster as the scaler sees it.
    pub table: Arc<AgentTable>,
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
    let table = &state.table;
    // Unknown zones are refused: they would be classes nothing can serve,
    // and a flood of made-up ones must not grow the demand table.
    if let Some(zone) = &q.zone
        && !table.knows_zone(zone)
    {
        let known = table.zones();
        let known = if known.is_empty() { "none yet".to_owned() } else { known.join(", ") };
        return refused(
            &state.metrics,
            InventoryError { error: format!("unknown zone {zone:?}; known: {known}"), param: PARAM_ZONE.to_owned() },
        );
    }
    let endpoints = table.endpoints(&q);
    let Some(accelerator) = q.accelerator.filter(|_| endpoints.is_empty()) else {
        return inventory_answer(&state, endpoints, Vec::new());
    };
    // Demand: the class asked for has no ready endpoint.
    let class = DemandClass { accelerator, zone: q.zone.clone() };
    let requester = q.device.clone().unwrap_or_else(|| peer.ip().to_string());
    let demand = table.demand();
    if demand.enabled() {
        state.peers.forward(DemandRecord { accelerator, zone: q.zone.clone(), requester: requester.clone() });
    }
    if demand.record(class.clone(), &requester) {
        state.metrics.demand_wakes.inc();
        tracing::info!(%accelerator, zone = q.zone.as_deref().unwrap_or(""), "device demand wakes a class with no ready endpoint");
    }
    let waking = if demand.enabled() { demand.waking(&class) } else { Vec::new() };
    let wakes = !waking.is_empty();
    let mut response = inventory_answer(&state, table.fallback_endpoints(&q), waking);
    if wakes {
        let seconds = table
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
    match state.peers.receive(&state.table, request) {
        Ok(answer) => Json(answer).into_response(),
        Err(Refusal::Myself) => (StatusCode::CONFLICT, "this is the sender itself\n").into_response(),
        Err(Refusal::Invalid(why)) => (StatusCode::BAD_REQUEST, why).into_response(),
    }
}

async fn ready(State(state): State<Http>) -> Response {
    let status = state.readiness.check(&state.table);
    let code = if status.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, format!("{}\n", status.reason)).into_response()
}

async fn render(State(state): State<Http>, headers: HeaderMap) -> impl IntoResponse {
    let openmetrics = state.metrics.render(state.table.stats(), &state.table.agent_ages());
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = exposition::negotiate(accept, openmetrics);
    ([(header::CONTENT_TYPE, content_type)], body)
}
