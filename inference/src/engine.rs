//! Runs validated jobs on the model, off the async runtime, holding the
//! requests' runner until the computation has really stopped: a batch of
//! them ([`spawn_batch`], formed by [`crate::batch`]; often a batch of one).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::imageio::OutputFormat;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::model::pipeline::{GenerateError, Params, StepInfo};
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
    /// Time inside the model (text encoding, steps, decode, encoding; a
    /// batch's, for a request that ran in one).
    pub model_time: Duration,
    /// Time it waited for a runner.
    pub waited: Duration,
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

/// A request taken into a batch: running on the batch's runner, its answer
/// sent when the batch is done.
pub struct Member {
    /// Its place in the queue, now running.
    pub running: Running,
    /// What it asked for.
    pub job: Job,
    /// Set when its client went away.
    pub cancel: Arc<AtomicBool>,
    /// Where its answer goes.
    pub answer: tokio::sync::oneshot::Sender<Result<Output, GenerateError>>,
}

/// Generates every image of `members` on a blocking thread, at most
/// `per_batch` in one UNet batch (members share a shape, and an edit is
/// alone: [`crate::batch`]), and sends each member its own images. The
/// thread owns the members, and with them the runner, until the model is
/// done: the batch finishes for the others when one member's client goes
/// away, and stops only when all of them have.
pub fn spawn_batch(model: Arc<Model>, metrics: Arc<Metrics>, members: Vec<Member>, per_batch: usize) {
    tokio::task::spawn_blocking(move || run_batch(&model, &metrics, members, per_batch));
}

fn run_batch(model: &Model, metrics: &Metrics, members: Vec<Member>, per_batch: usize) {
    for m in &members {
        metrics.queue_wait_seconds.observe(m.running.waited().as_secs_f64());
    }
    let started = Instant::now();
    // Only a request alone can be an edit.
    let edit = members.first().and_then(|m| m.job.edit.clone());
    let params: Vec<Params> = members.iter().flat_map(|m| (0..m.job.n).map(|i| m.job.image(i))).collect();
    let everyone_left = || members.iter().all(|m| m.cancel.load(Ordering::Relaxed));
    let mut images = Vec::with_capacity(params.len());
    let mut failed = None;
    for chunk in params.chunks(per_batch.max(1)) {
        metrics.batch_images.observe(chunk.len() as f64);
        let on_step = |step: StepInfo| {
            metrics.step_seconds.observe(step.elapsed.as_secs_f64());
            if everyone_left() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        };
        let done = match &edit {
            Some(edit) => chunk.iter().map(|p| model.edit(p, edit, &on_step)).collect(),
            None => model.generate_batch(chunk, &on_step),
        };
        match done {
            Ok(done) => images.extend(done),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let model_time = started.elapsed();
    let mut made = params.iter().zip(images);
    for m in members {
        let answer = match &failed {
            Some(e) => Err(again(e)),
            None => {
                let images: Vec<Generated> = made
                    .by_ref()
                    .take(m.job.n)
                    .map(|(p, image)| {
                        metrics.image(edit.is_some());
                        Generated { seed: p.seed, bytes: m.job.format.encode(&image) }
                    })
                    .collect();
                Ok(Output { images, model_time, format: m.job.format, waited: m.running.waited() })
            }
        };
        let Member { running, answer: to, .. } = m;
        // Finished before it is answered, so the queue's counts are true when the client reads them.
        drop(running);
        // Err: the client went away; nothing to tell.
        let _ = to.send(answer);
    }
}

/// A batch's failure, told to each of its requests.
fn again(e: &GenerateError) -> GenerateError {
    match e {
        GenerateError::Cancelled => GenerateError::Cancelled,
        GenerateError::Model(e) => GenerateError::Model(candle_core::Error::Msg(e.to_string())),
    }
}
