//! Workers summed per a caller-chosen key: the exporters key by
//! (accelerator, namespace, Deployment), the scaler by its worker class.

use std::collections::BTreeMap;

use crate::proto::{NodeSnapshot, Worker};

/// The workers of one key on one node, summed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WorkerTotals {
    /// Number of workers.
    pub workers: u32,
    /// Requests waiting, summed.
    pub queue_depth: u64,
    /// Requests generating, summed.
    pub in_flight: u64,
    /// Requests the workers accept at once, summed.
    pub capacity: u64,
    /// The slowest worker's median latency: a sum or a mean of quantiles means nothing.
    pub latency_p50_seconds: Option<f64>,
    /// The slowest worker's p99 latency.
    pub latency_p99_seconds: Option<f64>,
}

impl WorkerTotals {
    /// Adds one worker.
    pub fn add(&mut self, w: &Worker) {
        self.workers += 1;
        self.queue_depth += u64::from(w.queue_depth);
        self.in_flight += u64::from(w.in_flight);
        self.capacity += u64::from(w.capacity);
        self.latency_p50_seconds = max_opt(self.latency_p50_seconds, w.latency_p50_seconds);
        self.latency_p99_seconds = max_opt(self.latency_p99_seconds, w.latency_p99_seconds);
    }
}

/// Sums the snapshot's workers per `key`; a worker whose key is `None` is left
/// out (e.g. an accelerator the caller does not know).
pub fn worker_totals<'a, K: Ord>(
    snapshot: &'a NodeSnapshot,
    mut key: impl FnMut(&'a Worker) -> Option<K>,
) -> BTreeMap<K, WorkerTotals> {
    let mut totals: BTreeMap<K, WorkerTotals> = BTreeMap::new();
    for w in &snapshot.workers {
        if let Some(k) = key(w) {
            totals.entry(k).or_default().add(w);
        }
    }
    totals
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(deployment: &str, queue: u32, p99: Option<f64>) -> Worker {
        Worker { deployment: deployment.into(), queue_depth: queue, latency_p99_seconds: p99, ..Default::default() }
    }

    #[test]
    fn sums_per_key_and_takes_the_slowest_latency() {
        let snapshot = NodeSnapshot {
            workers: vec![worker("a", 2, Some(0.5)), worker("a", 3, None), worker("b", 1, Some(0.1))],
            ..Default::default()
        };
        let t = worker_totals(&snapshot, |w| Some(w.deployment.as_str()));
        assert_eq!(t.len(), 2);
        assert_eq!((t["a"].workers, t["a"].queue_depth, t["a"].latency_p99_seconds), (2, 5, Some(0.5)));
        assert_eq!((t["b"].workers, t["b"].queue_depth), (1, 1));
    }

    #[test]
    fn a_worker_without_a_key_is_left_out() {
        let snapshot = NodeSnapshot { workers: vec![worker("a", 1, None), worker("", 1, None)], ..Default::default() };
        let t = worker_totals(&snapshot, |w| (!w.deployment.is_empty()).then_some(w.deployment.as_str()));
        assert_eq!(t.len(), 1);
    }
}
