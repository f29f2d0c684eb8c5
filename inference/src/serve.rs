//! `edge-inference serve`: bind, load the model in the background (probes
//! answer meanwhile), warm up, report to the agent, and on SIGTERM/SIGINT
//! stop intake and drain what was accepted ([`crate::daemon`]).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use candle_core::DType;

use crate::config::{ModelArgs, ServeArgs};
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
    let dtype = match args.dtype.as_deref() {
        Some("f16") => DType::F16,
        Some("bf16") => DType::BF16,
        Some(_) => DType::F32,
        None if device.is_cpu() => DType::F32,
        None => DType::F16,
    };
    Ok(LoadOptions { device, dtype, sampler: args.scheduler })
}

/// Runs the worker until it is told to stop and has drained. Returns an
/// error when loading fails or the drain does not finish in time.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let options = load_options(&args.model)?;
    let template = args.report_template(&options.device).map_err(anyhow::Error::msg)?;
    // Bounds are checked against the VAE factor once the model is read; until
    // then the flags are checked against SD's 8 so a bad flag fails at once.
    args.limits.limits(8).map_err(anyhow::Error::msg)?;

    let queue = Queue::new(args.queue.queue_capacity, args.queue.concurrency);
    let metrics = Arc::new(Metrics::new());
    // Serve the probes while the model loads.
    let state = Arc::new(AppState::new(queue.clone(), metrics.clone()));
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
    let limits = args.limits.limits(loaded.size_multiple()).map_err(anyhow::Error::msg)?;
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
