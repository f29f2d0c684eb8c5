//! Request handlers. A generation request is validated, admitted (or turned
//! away), waits for a runner, runs, and is answered; dropping the handler at
//! any point (client gone) releases what it holds.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::AppState;
use super::error::ApiError;
use super::multipart;
use crate::engine::{CancelOnDrop, Output};
use crate::metrics::Metrics;
use crate::validation::{self, Endpoint, Job, Limits, ValidationError};

/// `POST /v1/images/generations`: OpenAI's images API, `b64_json` only.
pub async fn openai(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return answer(&state, Err(r.into())),
    };
    let job = |l: &_, seed: &dyn Fn() -> u64| validation::parse(&body, Endpoint::OpenAi, l, seed);
    answer(&state, generate(&state, job).await.map(images_json))
}

/// `POST /v1/images/edits`: OpenAI's edits API (a multipart form with
/// `image`, optional `mask`, and the generation fields plus `strength`).
pub async fn edits(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return answer(&state, Err(ApiError::body(r, super::MAX_EDIT_BODY_BYTES))),
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let job = |l: &_, seed: &dyn Fn() -> u64| {
        let parts = multipart::parse(&body, &multipart::boundary(content_type)?)?;
        validation::edit::from_form(parts, l, seed)
    };
    answer(&state, generate(&state, job).await.map(images_json))
}

/// The OpenAI images answer: `{created, data: [{b64_json, seed}]}`.
fn images_json((out, timing): (Output, Timing)) -> Response {
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let data: Vec<serde_json::Value> = out
        .images
        .iter()
        .map(|img| {
            serde_json::json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(&img.bytes), "seed": img.seed})
        })
        .collect();
    with_timing(Json(serde_json::json!({"created": created, "data": data})).into_response(), &timing)
}

/// `POST /generate`: one image, answered as `image/png` (or the
/// `output_format` asked for); with an `init_image`, an edit.
pub async fn png(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return answer(&state, Err(ApiError::body(r, super::MAX_EDIT_BODY_BYTES))),
    };
    let job = |l: &_, seed: &dyn Fn() -> u64| validation::parse(&body, Endpoint::Png, l, seed);
    answer(
        &state,
        generate(&state, job).await.map(|(mut out, timing)| {
            let image = out.images.remove(0);
            let mut response = ([(header::CONTENT_TYPE, out.format.content_type())], image.bytes).into_response();
            response.headers_mut().insert("x-seed", HeaderValue::from(image.seed));
            with_timing(response, &timing)
        }),
    )
}

/// Where the time of a request went, sent as `Server-Timing` so clients
/// (and the benchmark) can tell queue and HTTP overhead from model time:
/// `total` runs from the parsed request to the built response, so
/// `total - queue - model` is the worker's own overhead and the client's
/// latency minus `total` is the network's.
struct Timing {
    received: Instant,
    queue_ms: f64,
    model_ms: f64,
}

fn with_timing(mut response: Response, t: &Timing) -> Response {
    let total_ms = t.received.elapsed().as_secs_f64() * 1e3;
    let value = format!("queue;dur={:.3}, model;dur={:.3}, total;dur={total_ms:.3}", t.queue_ms, t.model_ms);
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert("server-timing", v);
    }
    response
}

fn answer(state: &AppState, result: Result<Response, ApiError>) -> Response {
    answered(&state.metrics, result)
}

/// A generation's answer, counted: rejections by reason, every answer by
/// status (the worker's and the proxy's).
pub fn answered(metrics: &Metrics, result: Result<Response, ApiError>) -> Response {
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(reason) = e.rejection() {
                metrics.rejected(reason);
            }
            if matches!(e, ApiError::Generate(_)) {
                tracing::error!(error = %e, "generation failed");
            }
            e.into_response()
        }
    };
    metrics.answered(response.status().as_u16());
    response
}

async fn generate(
    state: &AppState,
    parse: impl FnOnce(&Limits, &dyn Fn() -> u64) -> Result<Job, ValidationError>,
) -> Result<(Output, Timing), ApiError> {
    let received = Instant::now();
    if state.queue.is_closed() {
        return Err(ApiError::Draining);
    }
    let (model, limits) = match (state.is_ready(), state.loaded.get()) {
        (true, Some((m, l))) => (m.clone(), l),
        _ => return Err(ApiError::NotReady),
    };
    let job = parse(limits, &|| state.next_seed())?;
    // The text encoder reads 77 tokens: a longer prompt is refused (diffusers would cut it
    // off with a warning, drawing part of it), before it takes a place in the queue.
    for (field, text) in [("prompt", &job.params.prompt), ("negative_prompt", &job.params.negative_prompt)] {
        model.check_prompt(text).map_err(|message| ValidationError { field: field.into(), message })?;
    }
    let ticket = state.queue.admit()?;
    let admitted = Instant::now();
    // Dropped with this future if the client goes away: stops the generation.
    let cancel = CancelOnDrop::new();
    let out = state.batcher.run(model, state.metrics.clone(), ticket, job, cancel.flag()).await?;
    state.metrics.request_seconds.observe(admitted.elapsed().as_secs_f64());
    let timing =
        Timing { received, queue_ms: out.waited.as_secs_f64() * 1e3, model_ms: out.model_time.as_secs_f64() * 1e3 };
    Ok((out, timing))
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 once the model is loaded and warmed up, 503 before and
/// while draining.
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, &'static str) {
    if state.is_ready() { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") }
}

/// `GET /metrics`: text format 0.0.4, or OpenMetrics when the scrape asks for it.
pub async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> impl IntoResponse {
    let text = state.metrics.render(state.queue.counts(), state.queue.concurrency(), state.is_ready());
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = edge_telemetry::exposition::negotiate(accept, text);
    ([(header::CONTENT_TYPE, content_type)], body)
}
