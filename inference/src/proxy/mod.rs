//! `edge-inference proxy`: a reverse proxy in front of an unmodified Stable
//! Diffusion server (A1111, ComfyUI, sd-server, a torch-neuronx server),
//! owning the worker's bounded queue and reporting it to the node agent like
//! the worker does, so any server scales on its queue.
//!
//! - [`routes`]: which paths are generations (the rest passes through).
//! - [`forward`]: admission, forwarding and streaming.
//! - [`health`]: the upstream's health URL, which brings it back after a failure.

pub mod forward;
pub mod health;
pub mod routes;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
pub use upstream::Upstream;

use crate::config::{QueueArgs, ReportArgs};
use crate::daemon::Daemon;
use crate::metrics::Metrics;
use crate::queue::Queue;
use clap::Args;

/// The pooled HTTP/1 client to the upstream.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, axum::body::Body>;

/// What every handler shares.
pub struct Proxy {
    /// The bounded queue in front of the upstream.
    pub queue: Queue,
    /// The proxy's metrics (the worker's families without model-only ones).
    pub metrics: Arc<Metrics>,
    upstream: Upstream,
    routes: Vec<routes::Route>,
    client: Client,
    /// How long the upstream may take to start its answer.
    timeout: Duration,
}

impl Proxy {
    /// A proxy to `upstream`, down until its health URL answers; `timeout`
    /// bounds how long the upstream may take to start an answer.
    pub fn new(upstream: Upstream, routes: Vec<routes::Route>, queue: Queue, timeout: Duration) -> Self {
        queue.set_available(false);
        Self { queue, metrics: Arc::new(Metrics::for_proxy()), upstream, routes, client: client(), timeout }
    }

    fn is_ready(&self) -> bool {
        let c = self.queue.counts();
        !c.unavailable && !c.draining
    }
}

/// A client with TCP_NODELAY and a connection pool (the upstream is on loopback).
pub fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// The proxy's own routes (probes, `/metrics`); everything else is forwarded.
pub fn router(proxy: Arc<Proxy>) -> Router {
    Router::new()
        .route("/healthz", get(crate::http::routes::healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(forward::handle)
        .with_state(proxy)
}

/// `GET /readyz`: 200 while the upstream is up and the proxy takes work.
async fn readyz(State(proxy): State<Arc<Proxy>>) -> (StatusCode, &'static str) {
    if proxy.is_ready() { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") }
}

/// `GET /metrics`: the worker's `edge_inference_*` families, text format 0.0.4
/// or OpenMetrics when the scrape asks for it.
async fn metrics(State(proxy): State<Arc<Proxy>>, headers: HeaderMap) -> impl IntoResponse {
    let text = proxy.metrics.render(proxy.queue.counts(), proxy.queue.concurrency(), proxy.is_ready());
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = edge_telemetry::exposition::negotiate(accept, text);
    ([(header::CONTENT_TYPE, content_type)], body)
}

/// Runs the proxy until SIGTERM/SIGINT and the drain.
pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let template = args.report.template(None, args.queue.queue_capacity).map_err(anyhow::Error::msg)?;
    let health = args.upstream.health_uri(&args.upstream_health).map_err(anyhow::Error::msg)?;
    if args.health_interval.is_zero() {
        anyhow::bail!("--health-interval: must be more than 0 (e.g. 1s)");
    }
    let queue = Queue::new(args.queue.queue_capacity, args.queue.concurrency);
    if args.upstream_timeout.is_zero() {
        anyhow::bail!("--upstream-timeout: must be more than 0 (e.g. 10m)");
    }
    let proxy = Arc::new(Proxy::new(args.upstream.clone(), args.routes.clone(), queue.clone(), args.upstream_timeout));
    let mut daemon = Daemon::start(&args.queue, router(proxy.clone()), queue.clone()).await?;
    tracing::info!(upstream = %args.upstream, health = %health, routes = args.routes.len(), "proxying");
    let watcher = tokio::spawn(health::watch(proxy.client.clone(), health, args.health_interval, queue));
    daemon.report(&args.report, template);
    let drained = daemon.drain_on_signal(|| {}).await;
    watcher.abort();
    drained
}

/// `proxy` flags.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The server behind the proxy, http://HOST:PORT[/BASE] (in a pod: on loopback).
    #[arg(long, env = "EDGE_INFERENCE_UPSTREAM", value_parser = Upstream::parse)]
    pub upstream: Upstream,
    /// The upstream's health URL: a path on --upstream, or a whole http:// URL. A 2xx answer
    /// means up; until then, and after a failed request until it answers again, generations
    /// get 502 and the endpoint is withdrawn from the inventory.
    #[arg(long, env = "EDGE_INFERENCE_UPSTREAM_HEALTH", default_value = "/")]
    pub upstream_health: String,
    /// How long the upstream may take to start answering a request (a generation's whole
    /// compute time, for servers that answer only at the end); past it: 502, marked down.
    #[arg(long, env = "EDGE_INFERENCE_UPSTREAM_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub upstream_timeout: Duration,
    /// How often the health URL is asked.
    #[arg(long, env = "EDGE_INFERENCE_HEALTH_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,
    /// Paths that are generations (queued, counted, reported), comma-separated: an exact
    /// path, or a prefix ending in /*. Every other path passes straight through.
    #[arg(
        long = "route",
        env = "EDGE_INFERENCE_ROUTES",
        value_delimiter = ',',
        default_value = routes::DEFAULT,
        value_parser = routes::Route::parse
    )]
    pub routes: Vec<routes::Route>,
    /// Listener, queue and drain (--concurrency: requests the upstream may run at once).
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Who reports to the node agent, and where.
    #[command(flatten)]
    pub report: ReportArgs,
}
