//! The HTTP API: generation endpoints, probes and `/metrics`.

pub mod error;
pub mod multipart;
pub mod routes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::routing::{get, post};

use crate::batch::Batcher;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::model::rng::NoiseRng;
use crate::queue::Queue;
use crate::validation::Limits;

/// Largest request body accepted; prompts are bounded far below this.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Largest body of the routes that carry images (`/v1/images/edits`, and
/// `/generate` with a base64 `init_image`): two images at the default
/// 4 MiB limit, base64-inflated, plus the fields.
pub const MAX_EDIT_BODY_BYTES: usize = 12 << 20;

/// What every handler shares.
pub struct AppState {
    /// The bounded queue.
    pub queue: Queue,
    /// Forms batches from what waits in the queue.
    pub batcher: Batcher,
    /// The worker's metrics.
    pub metrics: Arc<Metrics>,
    /// The model and the request bounds that fit it; set once it is loaded
    /// (the probes answer before that).
    pub loaded: OnceLock<(Arc<Model>, Limits)>,
    /// True after load and warm-up, false again when draining.
    pub ready: AtomicBool,
    /// Seeds for requests that name none.
    seeds: Mutex<NoiseRng>,
}

impl AppState {
    /// State for a worker whose model is not loaded yet; batches of at most
    /// `max_batch` images.
    pub fn new(queue: Queue, metrics: Arc<Metrics>, max_batch: usize) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self {
            queue,
            batcher: Batcher::new(max_batch),
            metrics,
            loaded: OnceLock::new(),
            ready: AtomicBool::new(false),
            seeds: Mutex::new(NoiseRng::new(nanos as u64 ^ u64::from(std::process::id()))),
        }
    }

    /// Whether the worker takes work.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.queue.is_closed()
    }

    fn next_seed(&self) -> u64 {
        self.seeds.lock().unwrap_or_else(|e| e.into_inner()).next_u64()
    }
}

/// The worker's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/images/generations", post(routes::openai))
        .route("/generate", post(routes::png).layer(axum::extract::DefaultBodyLimit::max(MAX_EDIT_BODY_BYTES)))
        .route("/v1/images/edits", post(routes::edits).layer(axum::extract::DefaultBodyLimit::max(MAX_EDIT_BODY_BYTES)))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
