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

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use edge_telemetry::catalogue::{Kind, Metric};
use edge_telemetry::exposition::to_text_format;
use edge_telemetry::proto::NodeSnapshot;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::HostnameLabel;

/// A label set: bounded names from the catalogue, values from the snapshot.
pub type Labels = Vec<(&'static str, String)>;

/// Samples grouped by family, in the order first added. Only families with
/// samples are rendered: a value a device does not support is left out.
#[derive(Default)]
pub struct Samples {
    families: Vec<(Metric, Vec<(Labels, f64)>)>,
}

impl Samples {
    /// Adds one sample.
    pub fn add(&mut self, metric: Metric, labels: Labels, value: f64) {
        match self.families.iter_mut().find(|(m, _)| m.name == metric.name) {
            Some((_, samples)) => samples.push((labels, value)),
            None => self.families.push((metric, vec![(labels, value)])),
        }
    }

    /// Adds a sample if `value` is present.
    pub fn add_opt(&mut self, metric: Metric, labels: &Labels, value: Option<f64>) {
        if let Some(v) = value {
            self.add(metric, labels.clone(), v);
        }
    }

    pub(crate) fn encode(self) -> String {
        let mut registry = Registry::default();
        for (metric, samples) in self.families {
            // A single unlabelled sample is a plain metric, rendered without `{}`.
            if let [(labels, v)] = samples.as_slice()
                && labels.is_empty()
            {
                match metric.kind {
                    Kind::Gauge => {
                        let g = Gauge::<f64, AtomicU64>::default();
                        g.set(*v);
                        registry.register(metric.name, metric.help, g);
                    }
                    Kind::Counter => {
                        let c = Counter::<f64, AtomicU64>::default();
                        c.inc_by(*v);
                        registry.register(metric.name, metric.help, c);
                    }
                }
                continue;
            }
            match metric.kind {
                Kind::Gauge => {
                    let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
                    for (labels, v) in samples {
                        family.get_or_create(&labels).set(v);
                    }
                    registry.register(metric.name, metric.help, family);
                }
                Kind::Counter => {
                    let family = Family::<Labels, Counter<f64, AtomicU64>>::default();
                    for (labels, v) in samples {
                        family.get_or_create(&labels).inc_by(v);
                    }
                    registry.register(metric.name, metric.help, family);
                }
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

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
