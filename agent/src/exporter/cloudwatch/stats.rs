//! The exporter's own counters, served on `/metrics` as `edge_cloudwatch_*`.

use std::sync::atomic::{AtomicU64, Ordering};

use edge_telemetry::catalogue::cloudwatch as cw;

use crate::exporter::samples::{Labels, Samples};

/// Why samples were given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The buffer was full (an outage longer than it holds).
    BufferFull,
    /// CloudWatch refused the call as invalid; retrying would not help.
    Rejected,
    /// Older than CloudWatch accepts.
    Expired,
    /// A value or series CloudWatch cannot store.
    Invalid,
}

impl DropReason {
    const ALL: [DropReason; 4] = [Self::BufferFull, Self::Rejected, Self::Expired, Self::Invalid];

    fn as_str(self) -> &'static str {
        match self {
            Self::BufferFull => "buffer_full",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Invalid => "invalid",
        }
    }
}

/// How a PutMetricData call ended, after the SDK's own retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted.
    Ok,
    /// Throttled.
    Throttled,
    /// A 5xx answer.
    ServerError,
    /// Refused as invalid (4xx other than throttling and auth).
    Rejected,
    /// Credentials missing or not allowed.
    Unauthorized,
    /// No answer: connection refused, reset or timed out.
    Network,
}

impl Outcome {
    const ALL: [Outcome; 6] =
        [Self::Ok, Self::Throttled, Self::ServerError, Self::Rejected, Self::Unauthorized, Self::Network];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Throttled => "throttled",
            Self::ServerError => "server_error",
            Self::Rejected => "rejected",
            Self::Unauthorized => "unauthorized",
            Self::Network => "network",
        }
    }
}

/// Counters shared by the sampling and publishing tasks and `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    samples: AtomicU64,
    published: AtomicU64,
    dropped: [AtomicU64; 4],
    buffered: AtomicU64,
    capacity: AtomicU64,
    requests: [AtomicU64; 6],
    datums: AtomicU64,
    last_success_ms: AtomicU64,
}

impl Stats {
    /// Counters at zero for a buffer of `capacity` samples.
    pub fn new(capacity: u64) -> Self {
        let s = Self::default();
        s.capacity.store(capacity, Ordering::Relaxed);
        s
    }

    /// `n` samples taken.
    pub fn sampled(&self, n: u64) {
        self.samples.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` samples given up on.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.dropped[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// The buffer now holds `n` samples.
    pub fn set_buffered(&self, n: u64) {
        self.buffered.store(n, Ordering::Relaxed);
    }

    /// A call ended with `outcome`; if accepted, it carried `datums` and `samples`.
    pub fn request(&self, outcome: Outcome, datums: u64, samples: u64, now_ms: u64) {
        self.requests[outcome as usize].fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::Ok {
            self.datums.fetch_add(datums, Ordering::Relaxed);
            self.published.fetch_add(samples, Ordering::Relaxed);
            self.last_success_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// (samples taken, published, dropped in total, buffered).
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        let dropped = self.dropped.iter().map(|d| d.load(Ordering::Relaxed)).sum();
        (
            self.samples.load(Ordering::Relaxed),
            self.published.load(Ordering::Relaxed),
            dropped,
            self.buffered.load(Ordering::Relaxed),
        )
    }

    /// Adds the `edge_cloudwatch_*` series.
    pub fn add_to(&self, samples: &mut Samples) {
        let none = Labels::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        samples.add(cw::EXPORTER_SAMPLES, none.clone(), load(&self.samples));
        samples.add(cw::EXPORTER_SAMPLES_PUBLISHED, none.clone(), load(&self.published));
        for r in DropReason::ALL {
            let labels = vec![(cw::LABEL_REASON, r.as_str().to_owned())];
            samples.add(cw::EXPORTER_SAMPLES_DROPPED, labels, load(&self.dropped[r as usize]));
        }
        samples.add(cw::EXPORTER_BUFFERED_SAMPLES, none.clone(), load(&self.buffered));
        samples.add(cw::EXPORTER_BUFFER_CAPACITY_SAMPLES, none.clone(), load(&self.capacity));
        for o in Outcome::ALL {
            let labels = vec![(cw::LABEL_OUTCOME, o.as_str().to_owned())];
            samples.add(cw::EXPORTER_REQUESTS, labels, load(&self.requests[o as usize]));
        }
        samples.add(cw::EXPORTER_DATUMS_PUBLISHED, none.clone(), load(&self.datums));
        let last = self.last_success_ms.load(Ordering::Relaxed);
        if last > 0 {
            samples.add(cw::EXPORTER_LAST_SUCCESS_SECONDS, none, last as f64 / 1000.0);
        }
    }
}
