//! CloudWatch: the node snapshot, sampled every tick, published in batches.
//!
//! Opt-in with `--cloudwatch-namespace`; without it no AWS code runs. The
//! pieces, each testable on its own:
//! - [`series`]: snapshot → one value per CloudWatch series (pure);
//! - [`buffer`]: samples per series and minute as distinct values with
//!   counts, bounded, oldest dropped first (pure);
//! - [`encode`]: buffered samples → `PutMetricData` calls within every
//!   CloudWatch limit (pure);
//! - `publish` and `task` (feature `cloudwatch`): the SDK call with retries,
//!   and the two loops that sample and flush;
//! - [`stats`]: the `edge_cloudwatch_*` series on `/metrics`.
//!
//! One datum carries a series' samples of one minute as `Values`/`Counts`
//! with `StorageResolution` 1, so a node makes about one call per flush
//! interval instead of one per metric per second, and every 1-second sample
//! still counts in the statistics (maximum, minimum, sample count, average).

pub mod buffer;
pub mod encode;
#[cfg(feature = "cloudwatch")]
mod publish;
pub mod series;
pub mod stats;
#[cfg(feature = "cloudwatch")]
mod task;

use std::time::Duration;

#[cfg(feature = "cloudwatch")]
pub use task::spawn;

use edge_telemetry::exposition::to_text_format;

use crate::exporter::samples::Samples;

/// Checked CloudWatch settings; present only when publishing is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudWatchSettings {
    /// The CloudWatch namespace (`--cloudwatch-namespace`).
    pub namespace: String,
    /// How often buffered samples are sent (`--cloudwatch-flush-interval`).
    pub flush_interval: Duration,
    /// The `ClusterName` dimension (`--cluster-name`).
    pub cluster_name: String,
    /// The most samples kept while CloudWatch is unreachable
    /// (`--cloudwatch-buffer-samples`).
    pub buffer_samples: u64,
    /// `Namespace`/`PodName` on held devices' series (`--cloudwatch-pod-dimensions`).
    pub pod_dimensions: bool,
}

/// Allowed flush intervals: at least a second, at most ten minutes (older
/// samples would wait longer than a dashboard user does).
pub const FLUSH_INTERVAL_RANGE: std::ops::RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(600);

/// Allowed buffer sizes, in samples (16 bytes each, plus bookkeeping).
pub const BUFFER_SAMPLES_RANGE: std::ops::RangeInclusive<u64> = 100..=10_000_000;

/// Checks a namespace against CloudWatch's rules; the error says what is allowed.
pub fn check_namespace(ns: &str) -> Result<(), String> {
    if ns.len() > 255 {
        return Err(format!("{} characters; at most 255 are allowed", ns.len()));
    }
    if let Some(c) = ns.chars().find(|c| !(c.is_ascii_alphanumeric() || ".-_/#: ".contains(*c))) {
        return Err(format!("{ns:?} contains {c:?}; allowed: letters, digits and . - _ / # : space"));
    }
    if ns.starts_with("AWS/") {
        return Err(format!("{ns:?} starts with AWS/, which is reserved for AWS services"));
    }
    if ns.starts_with(':') {
        return Err(format!("{ns:?} starts with ':', which CloudWatch does not allow"));
    }
    Ok(())
}

/// Appends the exporter's own series to a `/metrics` body rendered from the
/// snapshot (which the cache keeps per snapshot sequence; these change on
/// their own, so they are rendered per scrape).
pub fn append_metrics(body: &str, openmetrics: bool, stats: &stats::Stats) -> String {
    let mut samples = Samples::default();
    stats.add_to(&mut samples);
    let own = samples.encode();
    if openmetrics {
        let head = body.strip_suffix("# EOF\n").unwrap_or(body);
        format!("{head}{own}")
    } else {
        format!("{body}{}", to_text_format(&own))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_follow_cloudwatch_rules() {
        for ok in ["EdgeDiffusion", "Edge/Diffusion-1_a.b#c:d e"] {
            assert!(check_namespace(ok).is_ok(), "{ok}");
        }
        for (bad, hint) in [("AWS/EC2", "reserved"), ("a*b", "allowed"), (":x", "':'")] {
            let err = check_namespace(bad).unwrap_err();
            assert!(err.contains(hint), "{bad}: {err}");
        }
        assert!(check_namespace(&"a".repeat(256)).unwrap_err().contains("255"));
    }

    #[test]
    fn own_series_are_appended_in_both_formats() {
        let stats = stats::Stats::new(500);
        stats.sampled(7);
        stats.dropped(stats::DropReason::BufferFull, 2);
        let om = append_metrics("# HELP x X.\n# TYPE x gauge\nx 1\n# EOF\n", true, &stats);
        assert_eq!(om.matches("# EOF").count(), 1, "{om}");
        assert!(om.ends_with("# EOF\n") && om.contains("edge_cloudwatch_samples_total 7"), "{om}");
        assert!(om.contains(r#"edge_cloudwatch_samples_dropped_total{reason="buffer_full"} 2"#), "{om}");
        let text = append_metrics("x 1\n", false, &stats);
        assert!(!text.contains("# EOF") && text.contains("edge_cloudwatch_buffer_capacity_samples 500"), "{text}");
    }
}
