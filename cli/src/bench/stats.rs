//! Percentiles and the printed table.

use std::time::Duration;

/// Nearest-rank percentile `q` (0..=1) of `samples`.
pub fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `1.23 ms` / `1.51 s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 { format!("{s:.2} s") } else { format!("{:.2} ms", s * 1e3) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let samples: Vec<Duration> = (1..=100).rev().map(ms).collect();
        assert_eq!(percentile(&samples, 0.5), ms(50));
        assert_eq!(percentile(&samples, 0.99), ms(99));
        assert_eq!(percentile(&samples[..1], 0.99), ms(100));
        assert_eq!(human(ms(1500)), "1.50 s");
        assert_eq!(human(Duration::from_micros(1234)), "1.23 ms");
    }
}
