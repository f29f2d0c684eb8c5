//! `edge-inference serve`: bind, load the model in the background (probes
//! answer meanwhile), warm up, report to the agent, and on SIGTERM/SIGINT
//! stop intake and drain what was accepted.

use axum::serve::ListenerExt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use candle_core::DType;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{ModelArgs, ServeArgs};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::model::pipeline::Params;
use crate::model::{self, LoadOptions, Model};
use crate::queue::Queue;

/// Load options from the model flags.
pub fn load_options(args: &ModelArgs) -> anyhow::Result<LoadOptions> {
    let device = model::device(&args.device)?;
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
    let template = args.report_template(!options.device.is_cpu()).map_err(anyhow::Error::msg)?;
    // Bounds are checked against the VAE factor once the model is read; until
    // then the flags are checked against SD's 8 so a bad flag fails at once.
    args.limits.limits(8).map_err(anyhow::Error::msg)?;

    let queue = Queue::new(args.queue_capacity, args.concurrency);
    let metrics = Arc::new(Metrics::new());
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("--listen {}", args.listen))?;
    tracing::info!(listen = %args.listen, "listening");

    // Serve the probes while the model loads.
    let state = Arc::new(AppState::new(queue.clone(), metrics.clone()));
    let router = http::router(state.clone());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        // TCP_NODELAY (axum leaves Nagle on): a response written in more
        // than one piece must not wait for the client's delayed ACK.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            })
            .await
    });

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

    let reporter = args.agent.clone().map(|agent| {
        tracing::info!(agent = %agent, worker_id = %template.worker_id, "reporting to the node agent");
        tokio::spawn(crate::report::run(agent, template, queue.subscribe(), args.report_interval))
    });

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    let counts = queue.counts();
    tracing::info!(queued = counts.queued, in_flight = counts.in_flight, "stopping: no new work, draining");
    queue.close();
    state.ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);

    let drained = tokio::time::timeout(args.drain_timeout, server).await;
    if let Some(r) = reporter {
        r.abort();
    }
    match drained {
        Ok(Ok(Ok(()))) => {
            tracing::info!("drained; exiting");
            Ok(())
        }
        Ok(Ok(Err(e))) => Err(e).context("HTTP server"),
        Ok(Err(e)) => Err(e).context("HTTP server task"),
        Err(_) => {
            let c = queue.counts();
            anyhow::bail!(
                "drain timeout of {:?} passed with {} queued and {} running requests left",
                args.drain_timeout,
                c.queued,
                c.in_flight
            )
        }
    }
}
