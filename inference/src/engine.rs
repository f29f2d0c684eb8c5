//! Runs a validated job on the model, off the async runtime, holding the
//! request's runner permit until the computation has really stopped.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::imageio::OutputFormat;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::model::pipeline::{GenerateError, StepInfo};
use crate::queue::Running;
use crate::validation::Job;

/// One generated image.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The seed that reproduces it.
    pub seed: u64,
    /// The encoded image, in the job's output format.
    pub bytes: Vec<u8>,
}

/// What a job produced and how long the model worked on it.
#[derive(Debug, Clone)]
pub struct Output {
    /// The images, in request order.
    pub images: Vec<Generated>,
    /// Time inside the model (text encoding, steps, decode, encoding).
    pub model_time: Duration,
    /// How the images are encoded.
    pub format: OutputFormat,
}

/// Sets a flag when dropped: the handler future holding it went away (the
/// client disconnected), so the generation should stop at its next step.
pub struct CancelOnDrop(Arc<AtomicBool>);

impl CancelOnDrop {
    /// A guard with its flag down.
    pub fn new() -> Self {
        Self(Arc::new(AtomicBool::new(false)))
    }

    /// The flag the generation watches.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

impl Default for CancelOnDrop {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Generates every image of `job` on a blocking thread.
pub async fn run(
    model: Arc<Model>,
    metrics: Arc<Metrics>,
    running: Running,
    job: Job,
    cancel: Arc<AtomicBool>,
) -> Result<Output, GenerateError> {
    let task = tokio::task::spawn_blocking(move || {
        // Moved in so the runner stays taken until the model is done.
        let _running = running;
        let started = Instant::now();
        let mut images = Vec::with_capacity(job.n);
        for i in 0..job.n {
            let params = job.image(i);
            let on_step = |step: StepInfo| {
                metrics.step_seconds.observe(step.elapsed.as_secs_f64());
                if cancel.load(Ordering::Relaxed) { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            };
            let image = match &job.edit {
                Some(edit) => model.edit(&params, edit, on_step)?,
                None => model.generate(&params, on_step)?,
            };
            images.push(Generated { seed: params.seed, bytes: job.format.encode(&image) });
            metrics.image(job.edit.is_some());
        }
        Ok(Output { images, model_time: started.elapsed(), format: job.format })
    });
    task.await.unwrap_or_else(|e| Err(GenerateError::Model(candle_core::Error::Msg(format!("generation failed: {e}")))))
}
