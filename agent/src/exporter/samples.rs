//! One snapshot's samples, grouped by metric family, and their OpenMetrics
//! rendering through `prometheus-client`. Shared by the Prometheus exporter
//! (`/metrics`) and the CloudWatch exporter (its own counters on `/metrics`).

use std::sync::atomic::AtomicU64;

use edge_telemetry::catalogue::{Kind, Metric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
