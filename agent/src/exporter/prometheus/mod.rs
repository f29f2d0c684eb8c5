//! `GET /metrics`: the snapshot in Prometheus exposition formats.
//!
//! Rendering goes through `prometheus-client` (OpenMetrics). The result is
//! cached per snapshot sequence, so a scrape between two changes costs one
//! string clone. Scrapers that do not ask for OpenMetrics (curl, promtool,
//! older agents) get the classic text format 0.0.4, derived from the same
//! output by `edge_telemetry::exposition::to_text_format`.

mod edge;
mod gpu;
mod neuron;

use std::sync::{Arc, Mutex};

use edge_telemetry::exposition::to_text_format;
use edge_telemetry::proto::NodeSnapshot;

pub use gpu::HostnameLabel;

use super::samples::{Labels, Samples};

/// Renders a snapshot as OpenMetrics text.
pub fn render(snapshot: &NodeSnapshot, hostname_label: HostnameLabel) -> String {
    let mut samples = Samples::default();
    gpu::add(&mut samples, snapshot, hostname_label);
    neuron::add(&mut samples, snapshot);
    edge::add(&mut samples, snapshot);
    samples.encode()
}

/// Renders lazily and caches per snapshot sequence.
pub struct MetricsCache {
    hostname_label: HostnameLabel,
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    sequence: u64,
    openmetrics: Arc<str>,
    text: Option<Arc<str>>,
}

impl MetricsCache {
    /// An empty cache.
    pub fn new(hostname_label: HostnameLabel) -> Self {
        Self { hostname_label, cached: Mutex::new(None) }
    }

    /// The exposition of `snapshot`, OpenMetrics or text format.
    pub fn get(&self, snapshot: &NodeSnapshot, openmetrics: bool) -> Arc<str> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let entry = match cached.as_mut() {
            Some(c) if c.sequence == snapshot.sequence => c,
            _ => cached.insert(Cached {
                sequence: snapshot.sequence,
                openmetrics: render(snapshot, self.hostname_label).into(),
                text: None,
            }),
        };
        if openmetrics {
            return Arc::clone(&entry.openmetrics);
        }
        let om = Arc::clone(&entry.openmetrics);
        Arc::clone(entry.text.get_or_insert_with(|| to_text_format(&om).into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_families_are_left_out() {
        let snapshot = NodeSnapshot::default();
        let out = render(&snapshot, HostnameLabel::Hostname);
        assert!(!out.contains("DCGM_FI_DEV_GPU_UTIL"), "{out}");
        assert!(!out.contains("neuroncore_utilization_ratio"), "{out}");
    }

    #[test]
    fn the_cache_renders_once_per_sequence() {
        let cache = MetricsCache::new(HostnameLabel::Hostname);
        let mut snap = NodeSnapshot { sequence: 1, ..Default::default() };
        let a = cache.get(&snap, true);
        let b = cache.get(&snap, true);
        assert!(Arc::ptr_eq(&a, &b));
        snap.sequence = 2;
        assert!(!Arc::ptr_eq(&a, &cache.get(&snap, true)));
    }
}
