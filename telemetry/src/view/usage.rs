//! Device usage: the one formula for memory utilisation that the agent's
//! exporters and the scaler share.
//!
//! A device's memory utilisation is `used / total × 100`; a node's (or a
//! fleet's) is the **mean of its devices' percentages**, like GPU
//! utilisation. On every EC2 GPU instance the GPUs are one model, so this
//! equals pooled `Σ used / Σ total`; unlike pooling it also combines across
//! nodes by sum and count alone, which the scaler needs.

/// A device's memory use in percent; `None` without both numbers or with a
/// total of 0.
pub fn memory_percent(used: Option<u64>, total: Option<u64>) -> Option<f64> {
    match (used, total) {
        (Some(used), Some(total)) if total > 0 => Some(used as f64 / total as f64 * 100.0),
        _ => None,
    }
}

/// The mean of the values present; `None` when there are none.
pub fn mean_of(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let (sum, n) = values.into_iter().flatten().fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_percent_needs_both_numbers_and_a_size() {
        assert_eq!(memory_percent(Some(25), Some(100)), Some(25.0));
        assert_eq!(memory_percent(Some(25), Some(0)), None);
        assert_eq!(memory_percent(None, Some(100)), None);
    }

    #[test]
    fn node_memory_is_the_mean_of_device_percentages() {
        // Same-size GPUs: equal to pooled bytes (75 / 200 = 37.5 %).
        let same = [memory_percent(Some(50), Some(100)), memory_percent(Some(25), Some(100))];
        assert_eq!(mean_of(same), Some(37.5));
        assert_eq!(mean_of([None, Some(10.0)]), Some(10.0));
        assert_eq!(mean_of([None]), None);
    }
}
