//! Series the inference worker (`edge-inference`) exposes on its own
//! `/metrics`: its queue, its latencies, its output. `edge_inference_` prefix,
//! base units, bounded labels (a reason or a status code, never a prompt).

/// Re-exported: the inference worker names its histograms `inference::Histogram`.
pub use super::Histogram;
use super::Metric;

/// Label: why a request was turned away (`full`, `draining`, `not_ready`, `too_large`, `upstream_down`).
pub const LABEL_REASON: &str = "reason";
/// Label: the HTTP status code answered.
pub const LABEL_STATUS: &str = "status";

/// Requests accepted and waiting for a generation slot.
pub const QUEUE_DEPTH: Metric = Metric::gauge("edge_inference_queue_depth", "Requests accepted and waiting to start");
/// Requests generating now.
pub const IN_FLIGHT: Metric = Metric::gauge("edge_inference_in_flight", "Requests generating images now");
/// Queue capacity (waiting + running).
pub const CAPACITY: Metric =
    Metric::gauge("edge_inference_capacity", "Requests the worker accepts at once (waiting and running)");
/// Generation slots (requests that run at the same time).
pub const CONCURRENCY: Metric =
    Metric::gauge("edge_inference_concurrency", "Requests the worker generates at the same time");
/// 1 when the model is loaded, warmed up and the worker accepts work.
pub const READY: Metric =
    Metric::gauge("edge_inference_ready", "Whether the worker is ready (model loaded and warmed up, not draining)");
/// Requests turned away, by reason.
pub const REJECTED: Metric = Metric::counter("edge_inference_rejected", "Requests turned away without being queued");
/// Requests answered, by HTTP status.
pub const REQUESTS: Metric =
    Metric::counter("edge_inference_requests", "Generation requests answered, by HTTP status code");
/// Images produced, by kind (`generate`: from text, `edit`: img2img or inpainting).
pub const IMAGES_GENERATED: Metric =
    Metric::counter("edge_inference_images_generated", "Images generated, by kind (generate or edit)");
/// Label of [`IMAGES_GENERATED`]: `generate` or `edit`.
pub const LABEL_KIND: &str = "kind";

/// Whole-request latency: admission to response body.
pub const REQUEST_DURATION_SECONDS: Histogram = Histogram {
    name: "edge_inference_request_duration_seconds",
    help: "Time from admission to the finished response, queue wait included",
    buckets: &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0],
};
/// Time spent waiting in the queue.
pub const QUEUE_WAIT_SECONDS: Histogram = Histogram {
    name: "edge_inference_queue_wait_seconds",
    help: "Time a request waited for a generation slot",
    buckets: &[0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
};
/// One denoising step (UNet + sampler).
pub const STEP_DURATION_SECONDS: Histogram = Histogram {
    name: "edge_inference_step_duration_seconds",
    help: "Time of one denoising step (UNet forward and sampler update)",
    buckets: &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
};
/// Images per UNet batch: text-to-image requests of one shape that waited
/// together run as one batch (`--max-batch`); 1 when each runs alone.
pub const BATCH_IMAGES: Histogram = Histogram {
    name: "edge_inference_batch_images",
    help: "Images generated together in one batch (one UNet call per step for all of them)",
    buckets: &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
};

/// Every gauge and counter of the worker.
pub const ALL: &[Metric] =
    &[QUEUE_DEPTH, IN_FLIGHT, CAPACITY, CONCURRENCY, READY, REJECTED, REQUESTS, IMAGES_GENERATED];

/// Every histogram of the worker.
pub const HISTOGRAMS: &[Histogram] =
    &[REQUEST_DURATION_SECONDS, QUEUE_WAIT_SECONDS, STEP_DURATION_SECONDS, BATCH_IMAGES];
