//! The value syntax the scaler's flags and KEDA's trigger metadata share:
//! durations, names of Kubernetes objects and zones, and the bounds of a
//! staleness window.

use std::time::Duration;

/// Bounds of --stale-after (and of a trigger's `staleAfter`).
pub const STALE_AFTER_RANGE: std::ops::RangeInclusive<Duration> = Duration::from_millis(200)..=Duration::from_secs(600);

/// Parses `1s`, `500ms`, … for flags and trigger metadata.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e}; expected a duration such as 6s or 500ms"))
}

/// Whether `v` is a name of a Kubernetes object or a zone: letters, digits,
/// '-', '.', '_', at most 253 bytes. The inventory's `zone` is checked alike.
pub fn is_name(v: &str) -> bool {
    v.len() <= 253 && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}
