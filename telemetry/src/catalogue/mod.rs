//! Every metric name the project exposes, defined once.
//!
//! Compatibility series keep the names and labels other tools established, so
//! existing dashboards work unchanged: [`dcgm`] (NVIDIA dcgm-exporter, Grafana
//! dashboard 12239) and [`neuron`] (neuron-monitor-prometheus). Series of our
//! own live in [`edge`]: `edge_` prefix, base units, bounded labels; the
//! scaler's in [`scaler`], the inference worker's in [`inference`]. What goes
//! to CloudWatch, and the CloudWatch exporter's own series, are in [`cloudwatch`].
//!
//! Names are registered with `prometheus-client`, which appends `_total` to
//! counters itself, so counter names here carry no `_total`.

pub mod cloudwatch;
pub mod dcgm;
pub mod edge;
pub mod inference;
pub mod neuron;
pub mod scaler;

/// How a series behaves over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A value that only goes up; exposed with a `_total` suffix.
    Counter,
}

/// One metric family: its name, help text and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The family name as registered (without `_total` for counters).
    pub name: &'static str,
    /// One sentence for `# HELP`, without the final period (prometheus-client adds it).
    pub help: &'static str,
    /// Gauge or counter.
    pub kind: Kind,
}

impl Metric {
    /// A gauge.
    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self { name, help, kind: Kind::Gauge }
    }

    /// A counter; `name` without `_total`.
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self { name, help, kind: Kind::Counter }
    }

    /// The name of the sample line as scraped (`_total` added to counters).
    pub fn sample_name(&self) -> String {
        match self.kind {
            Kind::Gauge => self.name.to_owned(),
            Kind::Counter => format!("{}_total", self.name),
        }
    }
}

/// A histogram family: name, help, and bucket bounds in the metric's unit.
///
/// One type for every crate's histograms (the scaler's and the inference
/// worker's), so a consumer reads them all the same way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Histogram {
    /// The family name (no `_bucket`/`_sum`/`_count`; prometheus-client adds them).
    pub name: &'static str,
    /// One sentence for `# HELP`.
    pub help: &'static str,
    /// Upper bounds of the buckets.
    pub buckets: &'static [f64],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Metric> {
        [dcgm::ALL, neuron::ALL, edge::ALL, scaler::ALL, cloudwatch::EXPORTER, inference::ALL].concat()
    }

    #[test]
    fn names_are_unique_and_valid() {
        let mut seen = std::collections::HashSet::new();
        for m in all() {
            assert!(seen.insert(m.name), "duplicate metric {}", m.name);
            assert!(
                m.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !m.name.starts_with(|c: char| c.is_ascii_digit()),
                "invalid name {}",
                m.name
            );
            assert!(!m.name.ends_with("_total"), "{}: prometheus-client adds _total", m.name);
            assert!(!m.help.is_empty(), "{} has no help", m.name);
            // prometheus-client ends every help text with a period itself.
            assert!(!m.help.ends_with('.'), "{}: help must not end with a period", m.name);
        }
    }

    #[test]
    fn our_own_series_use_the_prefix() {
        for m in edge::ALL.iter().chain(scaler::ALL) {
            assert!(m.name.starts_with("edge_"), "{}", m.name);
        }
        for m in inference::ALL {
            assert!(m.name.starts_with("edge_inference_"), "{}", m.name);
        }
    }

    #[test]
    fn histograms_are_unique_sorted_and_in_base_units() {
        let gauges: Vec<&str> = all().iter().map(|m| m.name).collect();
        let mut seen = std::collections::HashSet::new();
        for h in inference::HISTOGRAMS {
            assert!(seen.insert(h.name) && !gauges.contains(&h.name), "duplicate metric {}", h.name);
            // Durations in seconds; a batch's size counts images.
            let unit = h.name.ends_with("_seconds") || h.name.ends_with("_images");
            assert!(h.name.starts_with("edge_inference_") && unit, "{}", h.name);
            assert!(h.buckets.windows(2).all(|w| w[0] < w[1]), "{} buckets not increasing", h.name);
            assert!(!h.help.is_empty(), "{} has no help", h.name);
        }
    }
}
