//! `edge-inference serve`: bind, load the model in the background (probes
//! answer meanwhile), warm up, report to the agent, and on SIGTERM/SIGINT
//! stop intake and drain what was accepted ([`crate::daemon`]).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use candle_core::DType;

use crate::config::{ModelArgs, ServeSettings};
use crate::daemon::Daemon;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::model::pipeline::Params;
use crate::model::{self, LoadOptions, Model};
use crate::queue::Queue;

/// Load options from the model flags.
pub fn load_options(args: &ModelArgs) -> anyhow::Result<LoadOptions> {
    let device = model::device::open(args.device)?;
    tracing::info!(device = %model::device::name(&device), asked = %args.device, "compute device");
    let dtype = args.dtype.unwrap_or(if device.is_cpu() { DType::F32 } else { DType::F16 });
    // flash-attn's kernels exist only in a `flash-attn` build, on CUDA, for half types.
    let flash_attn = cfg!(feature = "flash-attn") && device.is_cuda() && dtype != DType::F32;
    Ok(LoadOptions { device, dtype, sampler: args.scheduler, flash_attn })
}

/// Runs the worker until it is told to stop and has drained. Returns an
/// error when loading fails or the drain does not finish in time.
pub async fn run(args: ServeSettings) -> anyhow::Result<()> {
    let options = load_options(&args.model)?;
    let template = args.report_template(&options.device)?;

    let max_batch = args.max_batch(&options.device);
    tracing::info!(
        max_batch,
        concurrency = args.queue.concurrency,
        "batches of same-shape requests that wait together"
    );
    let queue = Queue::new(args.queue.queue_capacity, args.queue.concurrency);
    let metrics = Arc::new(Metrics::new());
    // Serve the probes while the model loads.
    let state = Arc::new(AppState::new(queue.clone(), metrics.clone(), max_batch));
    let mut daemon = Daemon::start(&args.queue, http::router(state.clone()), queue).await?;

    let dir = args.model.model_dir.clone();
    let started = Instant::now();
    let loaded = tokio::task::spawn_blocking(move || Model::load(&dir, &options))
        .await
        .context("model loading panicked")?
        .with_context(|| format!("loading the model from {}", args.model.model_dir.display()))?;
    for note in &loaded.notes {
        tracing::warn!(note = %note, "model");
    }
    let recommended = loaded.recommended();
    let limits = args.limits.for_model(loaded.size_multiple(), &recommended)?;
    tracing::info!(
        steps = limits.default_steps,
        guidance = limits.default_guidance,
        size = %format!("{}x{}", limits.default_size.0, limits.default_size.1),
        model = recommended.why,
        "request defaults (flags override)"
    );
    tracing::info!(dir = %args.model.model_dir.display(), seconds = started.elapsed().as_secs_f64(), "model loaded");
    let model = Arc::new(loaded);
    let _ = state.loaded.set((model.clone(), limits.clone()));

    // One warm-up step, so /readyz turns true only when a request would run at full speed.
    let warm = Params {
        prompt: "warm-up".into(),
        negative_prompt: String::new(),
        width: limits.min_side,
        height: limits.min_side,
        steps: 1,
        guidance_scale: limits.default_guidance,
        seed: 0,
    };
    let warm_model = model.clone();
    let started = Instant::now();
    tokio::task::spawn_blocking(move || warm_model.generate(&warm, |_| ControlFlow::Continue(())))
        .await
        .context("warm-up panicked")?
        .context("warm-up generation")?;
    state.ready.store(true, Ordering::SeqCst);
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "warmed up; ready");

    if let Some(template) = template {
        daemon.report(&args.report, template);
    }
    daemon.drain_on_signal(|| state.ready.store(false, Ordering::SeqCst)).await
}
