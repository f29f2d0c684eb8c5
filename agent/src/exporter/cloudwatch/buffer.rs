//! The bounded buffer between sampling (every tick) and publishing (every
//! flush interval).
//!
//! Samples are kept per series and per aligned minute ("window") as distinct
//! values with counts, which is what a `MetricDatum` carries (`Values` /
//! `Counts`): a utilisation that stays at 97 % for a minute costs one entry.
//! The bound is on samples, counting those taken out for a call that has not
//! been answered yet, so memory stays bounded through any outage. When full,
//! the oldest window goes first; every sample given up on is counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::series::SeriesKey;

/// Seconds of samples one datum carries: the timestamps of a window's datums
/// are its start, so CloudWatch's per-minute statistics are exact.
pub const WINDOW_SECS: i64 = 60;

/// The samples of one series in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Start of the window, Unix seconds (a multiple of [`WINDOW_SECS`]).
    pub window_start: i64,
    /// The series.
    pub key: Arc<SeriesKey>,
    /// Distinct values with how often each was sampled.
    pub values: Vec<(f64, u32)>,
}

impl Pending {
    /// How many samples this holds.
    pub fn samples(&self) -> u64 {
        self.values.iter().map(|(_, c)| u64::from(*c)).sum()
    }
}

/// One window's series, each with its distinct values and counts.
type Window = HashMap<Arc<SeriesKey>, Vec<(f64, u32)>>;

/// Samples waiting to be published, at most `capacity` of them.
#[derive(Debug)]
pub struct Buffer {
    windows: BTreeMap<i64, Window>,
    buffered: u64,
    in_flight: u64,
    capacity: u64,
}

impl Buffer {
    /// An empty buffer that holds at most `capacity` samples.
    pub fn new(capacity: u64) -> Self {
        Self { windows: BTreeMap::new(), buffered: 0, in_flight: 0, capacity: capacity.max(1) }
    }

    /// Samples waiting, including those in an unanswered call.
    pub fn len(&self) -> u64 {
        self.buffered + self.in_flight
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Adds one sample taken at `unix_secs`; returns how many older samples
    /// were dropped to make room.
    pub fn push(&mut self, unix_secs: i64, key: SeriesKey, value: f64) -> u64 {
        let window = self.windows.entry(unix_secs.div_euclid(WINDOW_SECS) * WINDOW_SECS).or_default();
        // One Arc per series and window; a lookup by &SeriesKey needs none.
        let values = if window.contains_key(&key) {
            window.get_mut(&key).expect("checked above")
        } else {
            window.entry(Arc::new(key)).or_default()
        };
        match values.iter_mut().find(|(v, _)| v.to_bits() == value.to_bits()) {
            Some((_, count)) => *count += 1,
            None => values.push((value, 1)),
        }
        self.buffered += 1;
        self.evict()
    }

    /// Takes everything buffered for a call; the samples count against the
    /// bound until [`Buffer::done`] or [`Buffer::restore`].
    pub fn take(&mut self) -> Vec<Pending> {
        let mut out = Vec::new();
        for (window_start, series) in std::mem::take(&mut self.windows) {
            for (key, values) in series {
                out.push(Pending { window_start, key, values });
            }
        }
        // Oldest first, then by series, so calls and tests are deterministic.
        out.sort_by(|a, b| (a.window_start, &a.key).cmp(&(b.window_start, &b.key)));
        self.in_flight += self.buffered;
        self.buffered = 0;
        out
    }

    /// `samples` taken earlier were published or given up on.
    pub fn done(&mut self, samples: u64) {
        self.in_flight = self.in_flight.saturating_sub(samples);
    }

    /// Puts back samples taken earlier whose call failed, merging them with
    /// what arrived meanwhile; returns how many (oldest first) were dropped
    /// to stay within the bound.
    pub fn restore(&mut self, pending: Vec<Pending>) -> u64 {
        for p in pending {
            let n = p.samples();
            self.in_flight = self.in_flight.saturating_sub(n);
            self.buffered += n;
            let values = self.windows.entry(p.window_start).or_default().entry(p.key).or_default();
            for (value, count) in p.values {
                match values.iter_mut().find(|(v, _)| v.to_bits() == value.to_bits()) {
                    Some((_, c)) => *c += count,
                    None => values.push((value, count)),
                }
            }
        }
        self.evict()
    }

    /// Drops the oldest window's series until the bound holds.
    fn evict(&mut self) -> u64 {
        let mut dropped = 0;
        while self.len() > self.capacity {
            let Some(mut oldest) = self.windows.first_entry() else { break };
            let key = oldest.get().keys().next().cloned();
            if let Some(values) = key.and_then(|k| oldest.get_mut().remove(&k)) {
                let n: u64 = values.iter().map(|(_, c)| u64::from(*c)).sum();
                self.buffered -= n;
                dropped += n;
            }
            if oldest.get().is_empty() {
                oldest.remove();
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use edge_telemetry::catalogue::cloudwatch as cw;

    use super::*;

    fn key(name: &str) -> SeriesKey {
        SeriesKey { metric: cw::AGENT_UP, dimensions: vec![(cw::DIM_NODE_NAME, name.to_owned())] }
    }

    #[test]
    fn repeated_values_share_an_entry_within_a_window() {
        let mut b = Buffer::new(100);
        for (t, v) in [(120, 1.0), (130, 1.0), (179, 2.0), (180, 1.0)] {
            assert_eq!(b.push(t, key("a"), v), 0);
        }
        let taken = b.take();
        assert_eq!(taken.len(), 2);
        assert_eq!((taken[0].window_start, taken[0].values.clone()), (120, vec![(1.0, 2), (2.0, 1)]));
        assert_eq!((taken[1].window_start, taken[1].values.clone()), (180, vec![(1.0, 1)]));
        assert_eq!(b.len(), 4, "taken samples count until answered");
        b.done(4);
        assert!(b.is_empty());
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_window_first_and_counts() {
        let mut b = Buffer::new(5);
        let mut dropped = 0;
        for t in 0..8 {
            dropped += b.push(t * WINDOW_SECS, key("a"), t as f64);
        }
        assert_eq!((dropped, b.len()), (3, 5));
        let starts: Vec<_> = b.take().iter().map(|p| p.window_start / WINDOW_SECS).collect();
        assert_eq!(starts, [3, 4, 5, 6, 7]);
    }

    #[test]
    fn in_flight_samples_count_against_the_bound_and_a_failed_call_comes_back() {
        let mut b = Buffer::new(4);
        b.push(0, key("a"), 1.0);
        b.push(0, key("b"), 1.0);
        let taken = b.take();
        assert_eq!(b.push(60, key("a"), 2.0) + b.push(60, key("b"), 2.0), 0);
        // Two in flight and two buffered: the next sample pushes out the
        // oldest buffered one, since the call's samples cannot be taken back.
        assert_eq!(b.push(120, key("a"), 3.0), 1);
        assert_eq!(b.len(), 4);
        assert_eq!(b.restore(taken), 0, "restored samples were counted all along");
        let windows: Vec<_> = b.take().iter().map(|p| p.window_start).collect();
        assert_eq!(windows, [0, 0, 60, 120]);
    }

    #[test]
    fn memory_stays_bounded_through_a_long_outage() {
        let mut b = Buffer::new(1000);
        let mut dropped = 0;
        for t in 0..100_000i64 {
            dropped += b.push(t, key(&format!("s{}", t % 7)), (t % 13) as f64);
            if t % 60 == 59 {
                let taken = b.take();
                dropped += b.restore(taken);
            }
            assert!(b.len() <= 1000);
        }
        assert_eq!(dropped + b.len(), 100_000, "every sample is either buffered or counted as dropped");
    }
}
