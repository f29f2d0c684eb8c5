//! The two loops: sample the snapshot every tick into the buffer; every flush
//! interval, send what is buffered. They share only the buffer (behind a
//! mutex held for microseconds), so a slow or failing CloudWatch never delays
//! sampling, scraping, the change stream or worker reports.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::CloudWatchSettings;
use super::buffer::Buffer;
use super::encode::encode;
use super::publish::{PublishError, Publisher};
use super::series::{self, NodeDimensions};
use super::stats::{DropReason, Outcome, Stats};
use crate::snapshot::{SnapshotStore, unix_ms};

/// While publishing fails, at most one warning per this period.
const LOG_EVERY: Duration = Duration::from_secs(300);
/// How long the last flush may take when the agent stops.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts sampling every `interval` and publishing every flush interval
/// until `stop` turns true; the handle finishes after a last flush.
pub fn spawn(
    settings: CloudWatchSettings,
    interval: Duration,
    store: SnapshotStore,
    stop: watch::Receiver<bool>,
) -> (Arc<Stats>, JoinHandle<()>) {
    let stats = Arc::new(Stats::new(settings.buffer_samples));
    let buffer = Arc::new(Mutex::new(Buffer::new(settings.buffer_samples)));
    let dims = NodeDimensions { cluster: settings.cluster_name.clone(), pods: settings.pod_dimensions };
    let sampler =
        tokio::spawn(sample_loop(store, dims, interval, Arc::clone(&buffer), Arc::clone(&stats), stop.clone()));
    let flusher = Flusher { settings, buffer, stats: Arc::clone(&stats), failing_since: None, last_warning: None };
    let handle = tokio::spawn(async move {
        if !flusher.run(stop).await {
            // Nothing will ever send what the sampler collects.
            sampler.abort();
        }
        let _ = sampler.await;
    });
    (stats, handle)
}

async fn sample_loop(
    store: SnapshotStore,
    dims: NodeDimensions,
    interval: Duration,
    buffer: Arc<Mutex<Buffer>>,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let snapshot = store.latest();
        let now = unix_ms().div_euclid(1000);
        let values = series::sample(&snapshot, &dims);
        let n = values.len() as u64;
        let mut b = buffer.lock().unwrap_or_else(|p| p.into_inner());
        let dropped: u64 = values.into_iter().map(|(key, v)| b.push(now, key, v)).sum();
        stats.sampled(n);
        stats.dropped(DropReason::BufferFull, dropped);
        stats.set_buffered(b.len());
    }
}

struct Flusher {
    settings: CloudWatchSettings,
    buffer: Arc<Mutex<Buffer>>,
    stats: Arc<Stats>,
    failing_since: Option<Instant>,
    last_warning: Option<Instant>,
}

impl Flusher {
    /// Returns false when the publisher could not be set up.
    async fn run(mut self, mut stop: watch::Receiver<bool>) -> bool {
        // The SDK's config may look up the region on instance metadata: it
        // runs here, while the sampler already buffers.
        let publisher = tokio::select! {
            p = Publisher::from_env() => p,
            _ = stop.wait_for(|s| *s) => return true,
        };
        let publisher = match publisher {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "CloudWatch publishing is off");
                return false;
            }
        };
        tracing::info!(
            namespace = %self.settings.namespace,
            flush_interval = ?self.settings.flush_interval,
            "publishing to CloudWatch"
        );
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + self.settings.flush_interval,
            self.settings.flush_interval,
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // The flush runs outside `select!`: the stop branch's output
            // borrows the watch channel and must not live across an await.
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            if stopping {
                break;
            }
            self.flush(&publisher).await;
        }
        if tokio::time::timeout(FINAL_FLUSH_TIMEOUT, self.flush(&publisher)).await.is_err() {
            tracing::warn!("last CloudWatch flush did not finish in time");
        }
        let (sampled, published, dropped, buffered) = self.stats.totals();
        tracing::info!(sampled, published, dropped, buffered, "CloudWatch exporter stopped");
        true
    }

    fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends everything buffered; a call that fails puts itself and the
    /// calls after it back (oldest dropped first if that overflows).
    async fn flush(&mut self, publisher: &Publisher) {
        let pending = self.buffer().take();
        if pending.is_empty() {
            return;
        }
        let encoded = encode(pending, &self.settings.namespace, unix_ms().div_euclid(1000));
        self.stats.dropped(DropReason::Expired, encoded.expired);
        self.stats.dropped(DropReason::Invalid, encoded.invalid);
        self.buffer().done(encoded.expired + encoded.invalid);
        let mut requests = encoded.requests.into_iter();
        while let Some(request) = requests.next() {
            let (datums, samples) = (request.datums.len() as u64, request.samples());
            let result = publisher.put(&self.settings.namespace, &request.datums).await;
            let now_ms = unix_ms().max(0) as u64;
            match result {
                Ok(()) => {
                    self.buffer().done(samples);
                    self.stats.request(Outcome::Ok, datums, samples, now_ms);
                    if let Some(since) = self.failing_since.take() {
                        tracing::info!(failed_for = ?since.elapsed(), "CloudWatch publishing recovered");
                        self.last_warning = None;
                    }
                }
                Err(e) if e.outcome == Outcome::Rejected => {
                    // Retrying a refused call would refuse it forever.
                    self.buffer().done(samples);
                    self.stats.request(e.outcome, 0, 0, now_ms);
                    self.stats.dropped(DropReason::Rejected, samples);
                    self.warn(&e, "CloudWatch refused a call; its samples are dropped");
                }
                Err(e) => {
                    self.stats.request(e.outcome, 0, 0, now_ms);
                    let mut back = request.into_pending();
                    back.extend(requests.by_ref().flat_map(|r| r.into_pending()));
                    let dropped = self.buffer().restore(back);
                    self.stats.dropped(DropReason::BufferFull, dropped);
                    self.failing_since.get_or_insert_with(Instant::now);
                    self.warn(&e, "CloudWatch publishing failed; samples stay buffered");
                    break;
                }
            }
        }
        let len = self.buffer().len();
        self.stats.set_buffered(len);
    }

    /// One warning, then silence for [`LOG_EVERY`].
    fn warn(&mut self, e: &PublishError, what: &'static str) {
        if self.last_warning.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return;
        }
        self.last_warning = Some(Instant::now());
        let (_, _, dropped, buffered) = self.stats.totals();
        tracing::warn!(
            outcome = e.outcome.as_str(),
            code = e.code.as_deref().unwrap_or(""),
            status = e.status.unwrap_or(0),
            buffered,
            dropped,
            error = %e.message,
            "{what}"
        );
    }
}
