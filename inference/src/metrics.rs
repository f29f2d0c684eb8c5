//! The worker's own `/metrics`, names from `edge_telemetry::catalogue::inference`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use edge_telemetry::catalogue::{Metric, inference as cat};

use crate::queue::Counts;

type Labels = Vec<(&'static str, String)>;

/// Every series the worker exposes.
pub struct Metrics {
    registry: Registry,
    queue_depth: Gauge,
    in_flight: Gauge,
    capacity: Gauge,
    concurrency: Gauge,
    ready: Gauge,
    rejected: Family<Labels, Counter>,
    requests: Family<Labels, Counter>,
    images: Family<Labels, Counter>,
    /// Whole-request latency.
    pub request_seconds: Histogram,
    /// Queue wait.
    pub queue_wait_seconds: Histogram,
    /// One denoising step.
    pub step_seconds: Histogram,
    /// Images per batch.
    pub batch_images: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family (the worker's).
    pub fn new() -> Self {
        Self::build(true)
    }

    /// The proxy's families: the worker's without images, denoising steps
    /// and batches, which only the upstream server could count (a series it cannot
    /// know is left out, not reported as 0).
    pub fn for_proxy() -> Self {
        Self::build(false)
    }

    fn build(model: bool) -> Self {
        let mut registry = Registry::default();
        let gauge = |r: &mut Registry, m: Metric| {
            let g = Gauge::default();
            r.register(m.name, m.help, g.clone());
            g
        };
        let histogram = |r: &mut Registry, h: cat::Histogram| {
            let m = Histogram::new(h.buckets.iter().copied());
            r.register(h.name, h.help, m.clone());
            m
        };
        let queue_depth = gauge(&mut registry, cat::QUEUE_DEPTH);
        let in_flight = gauge(&mut registry, cat::IN_FLIGHT);
        let capacity = gauge(&mut registry, cat::CAPACITY);
        let concurrency = gauge(&mut registry, cat::CONCURRENCY);
        let ready = gauge(&mut registry, cat::READY);
        let rejected = Family::<Labels, Counter>::default();
        registry.register(cat::REJECTED.name, cat::REJECTED.help, rejected.clone());
        let requests = Family::<Labels, Counter>::default();
        registry.register(cat::REQUESTS.name, cat::REQUESTS.help, requests.clone());
        let images = Family::<Labels, Counter>::default();
        let request_seconds = histogram(&mut registry, cat::REQUEST_DURATION_SECONDS);
        let queue_wait_seconds = histogram(&mut registry, cat::QUEUE_WAIT_SECONDS);
        let step_seconds = Histogram::new(cat::STEP_DURATION_SECONDS.buckets.iter().copied());
        let batch_images = Histogram::new(cat::BATCH_IMAGES.buckets.iter().copied());
        if model {
            // Both kinds from the start, so a rate over either exists at 0.
            for kind in ["generate", "edit"] {
                let _ = images.get_or_create(&vec![(cat::LABEL_KIND, kind.to_owned())]);
            }
            registry.register(cat::IMAGES_GENERATED.name, cat::IMAGES_GENERATED.help, images.clone());
            for (h, m) in [(cat::STEP_DURATION_SECONDS, &step_seconds), (cat::BATCH_IMAGES, &batch_images)] {
                registry.register(h.name, h.help, m.clone());
            }
        }
        Self {
            registry,
            queue_depth,
            in_flight,
            capacity,
            concurrency,
            ready,
            rejected,
            requests,
            images,
            request_seconds,
            queue_wait_seconds,
            step_seconds,
            batch_images,
        }
    }

    /// Counts a request turned away (`full`, `draining`, `not_ready`, `upstream_down`).
    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&vec![(cat::LABEL_REASON, reason.to_owned())]).inc();
    }

    /// Counts an image produced; `edit` for img2img and inpainting.
    pub fn image(&self, edit: bool) {
        let kind = if edit { "edit" } else { "generate" };
        self.images.get_or_create(&vec![(cat::LABEL_KIND, kind.to_owned())]).inc();
    }

    /// Counts a generation request answered with `status`.
    pub fn answered(&self, status: u16) {
        self.requests.get_or_create(&vec![(cat::LABEL_STATUS, status.to_string())]).inc();
    }

    /// Renders the registry (OpenMetrics text) with the queue as it is now.
    pub fn render(&self, counts: Counts, concurrency: u32, ready: bool) -> String {
        self.queue_depth.set(i64::from(counts.queued));
        self.in_flight.set(i64::from(counts.in_flight));
        self.capacity.set(i64::from(counts.capacity));
        self.concurrency.set(i64::from(concurrency));
        self.ready.set(i64::from(ready));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_catalogued_family() {
        let m = Metrics::new();
        m.rejected("full");
        m.answered(200);
        m.step_seconds.observe(0.01);
        let text = m.render(Counts { queued: 3, in_flight: 1, capacity: 8, ..Counts::default() }, 2, true);
        for metric in cat::ALL {
            assert!(text.contains(&format!("# TYPE {} ", metric.name)), "{} missing:\n{text}", metric.name);
        }
        for h in cat::HISTOGRAMS {
            assert!(text.contains(&format!("{}_bucket", h.name)), "{} missing", h.name);
        }
        assert_eq!(edge_testkit::sample(&text, cat::QUEUE_DEPTH.name), Some(3.0));
        assert_eq!(edge_testkit::sample(&text, "edge_inference_rejected_total{reason=\"full\""), Some(1.0));
    }

    #[test]
    fn the_proxy_leaves_out_what_only_the_model_knows() {
        let text = Metrics::for_proxy().render(Counts::default(), 1, false);
        for name in [cat::IMAGES_GENERATED.name, cat::STEP_DURATION_SECONDS.name, cat::BATCH_IMAGES.name] {
            assert!(!text.contains(name), "{name} in the proxy's metrics:\n{text}");
        }
        assert!(text.contains(&format!("# TYPE {} ", cat::QUEUE_DEPTH.name)), "{text}");
        assert!(text.contains(&format!("{}_bucket", cat::REQUEST_DURATION_SECONDS.name)), "{text}");
    }
}
