//! Batching: text-to-image requests of one shape (size, steps, guidance)
//! that wait in the queue together run together. The request that gets a
//! runner takes the requests of its shape still waiting, up to `--max-batch`
//! images in all, into one batch: one UNet call per step for every image,
//! each keeping its own prompt and seed. Nobody waits for batch-mates — a
//! batch is what is already queued — so a lone request starts as soon as a
//! runner is free, as it would unbatched.
//!
//! Every request goes through here: at `--max-batch 1`, an edit, or on an
//! inpainting model, it leads a batch of itself, one image at a time.

mod lobby;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::engine::{self, Member, Output};
use crate::metrics::Metrics;
use crate::model::Model;
use crate::model::pipeline::GenerateError;
use crate::queue::Ticket;
use crate::validation::Job;
use lobby::{Lobby, Shape};

/// A request in the lobby: its place in the queue, its job, and where its
/// answer goes.
struct Waiting {
    ticket: Ticket,
    job: Job,
    cancel: Arc<AtomicBool>,
    answer: oneshot::Sender<Result<Output, GenerateError>>,
}

/// Forms batches from the requests waiting in the queue.
pub struct Batcher {
    max_images: usize,
    lobby: Mutex<Lobby<Waiting>>,
}

impl Batcher {
    /// Batches of at most `max_images` images (1: every request alone).
    pub fn new(max_images: usize) -> Self {
        Self { max_images: max_images.max(1), lobby: Mutex::new(Lobby::default()) }
    }

    fn lobby(&self) -> MutexGuard<'_, Lobby<Waiting>> {
        // The lobby is a list; a panic while holding it leaves a valid one.
        self.lobby.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `job` once a runner is free — alone, in a batch it leads, or in
    /// the batch of a request ahead of it that took it along. Dropping the
    /// future while the request still waits frees its slot; once running,
    /// `cancel` stops the generation at its next step (a batch stops when
    /// all of its requests are cancelled).
    pub async fn run(
        &self,
        model: Arc<Model>,
        metrics: Arc<Metrics>,
        ticket: Ticket,
        job: Job,
        cancel: Arc<AtomicBool>,
    ) -> Result<Output, GenerateError> {
        let alone = self.max_images == 1 || job.edit.is_some() || model.is_inpainting();
        let per_batch = if alone { 1 } else { self.max_images };
        let queue = ticket.queue().clone();
        let (shape, images) = ((!alone).then(|| Shape::of(&job.params)), job.n);
        let (answer, mut answered) = oneshot::channel();
        let id = self.lobby().wait(shape, images, Waiting { ticket, job, cancel, answer });
        let _leave = Leave { batcher: self, id };
        tokio::select! {
            biased;
            answer = &mut answered => return outcome(answer),
            runner = queue.runner() => {
                // Taken out under the lock, started outside it (starting updates the queue).
                let taken = self.lobby().lead(id, per_batch);
                // None: a batch ahead took this request along, and this runner goes to the next in line.
                if let Some(taken) = taken {
                    let mut runner = Some(runner);
                    let members = taken
                        .into_iter()
                        .map(|w| Member {
                            running: w.ticket.start_on(runner.take()),
                            job: w.job,
                            cancel: w.cancel,
                            answer: w.answer,
                        })
                        .collect();
                    engine::spawn_batch(model, metrics, members, per_batch);
                }
            }
        }
        outcome(answered.await)
    }
}

fn outcome(answer: Result<Result<Output, GenerateError>, oneshot::error::RecvError>) -> Result<Output, GenerateError> {
    answer.unwrap_or_else(|_| {
        Err(GenerateError::Model(candle_core::Error::Msg(
            "generation failed: its batch stopped without an answer".into(),
        )))
    })
}

/// Takes a request that still waits out of the lobby when its handler goes
/// away (the client hung up): dropping its ticket frees its slot.
struct Leave<'a> {
    batcher: &'a Batcher,
    id: u64,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let left = self.batcher.lobby().leave(self.id);
        // Dropped outside the lock: the ticket updates the queue.
        drop(left);
    }
}
