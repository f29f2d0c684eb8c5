//! The batching against every CloudWatch limit.

use edge_telemetry::catalogue::cloudwatch as cw;

use super::*;

const NOW: i64 = 1_800_000_000;

fn key(i: usize, dims: usize, value_len: usize) -> Arc<SeriesKey> {
    let dimensions =
        (0..dims).map(|d| (cw::NODE_DIMENSIONS[d % 5], format!("{i}-{d}-{}", "v".repeat(value_len)))).collect();
    Arc::new(SeriesKey { metric: cw::NODE_GPU_UTILIZATION, dimensions })
}

fn pending(key: Arc<SeriesKey>, window_start: i64, values: Vec<(f64, u32)>) -> Pending {
    Pending { window_start, key, values }
}

fn minute() -> i64 {
    NOW - NOW % 60
}

/// The JSON protocol body of a request, for checking the size bound.
fn json_body(namespace: &str, r: &Request) -> String {
    let data: Vec<_> = r
        .datums
        .iter()
        .map(|d| {
            serde_json::json!({
                "MetricName": d.key.metric.name,
                "Unit": d.key.metric.unit,
                "StorageResolution": 1,
                "Timestamp": d.timestamp,
                "Dimensions": d.key.dimensions.iter().map(|(n, v)| serde_json::json!({"Name": n, "Value": v})).collect::<Vec<_>>(),
                "Values": d.values,
                "Counts": d.counts,
            })
        })
        .collect();
    serde_json::json!({"Namespace": namespace, "MetricData": data}).to_string()
}

fn total_samples(e: &Encoded) -> u64 {
    e.requests.iter().map(Request::samples).sum::<u64>() + e.expired + e.invalid
}

#[test]
fn a_thousand_datums_per_call_at_most_and_nothing_lost() {
    let input: Vec<_> =
        (0..2500).map(|i| pending(key(i, 5, 1), minute(), (0..20).map(|v| (f64::from(v), 3)).collect())).collect();
    let e = encode(input, "EdgeDiffusion", NOW);
    let sizes: Vec<_> = e.requests.iter().map(|r| r.datums.len()).collect();
    assert_eq!(sizes, [1000, 1000, 500]);
    assert_eq!(total_samples(&e), 2500 * 20 * 3);
    assert!(e.requests.iter().all(|r| r.estimated_bytes <= MAX_REQUEST_BYTES));
    assert_eq!((e.expired, e.invalid), (0, 0));
}

#[test]
fn more_than_150_distinct_values_split_into_datums_of_one_timestamp() {
    let values: Vec<_> = (0..400).map(|v| (f64::from(v) / 7.0, 2)).collect();
    let e = encode(vec![pending(key(0, 5, 4), minute(), values.clone())], "ns", NOW);
    assert_eq!(e.requests.len(), 1);
    let datums = &e.requests[0].datums;
    assert_eq!(datums.iter().map(|d| d.values.len()).collect::<Vec<_>>(), [150, 150, 100]);
    assert!(datums.iter().all(|d| d.timestamp == minute() && d.counts.len() == d.values.len()));
    let sent: Vec<_> =
        datums.iter().flat_map(|d| d.values.iter().copied().zip(d.counts.iter().map(|c| *c as u32))).collect();
    assert_eq!(sent, values);
}

#[test]
fn calls_stay_under_one_megabyte_even_with_the_largest_datums() {
    // 30 dimensions of ~1 KiB values and 150 long values: ~40 KB per datum.
    let long_values: Vec<_> = (0..150).map(|v| (-1.234_567_890_123_456_7e-100 * f64::from(v + 1), 600)).collect();
    let input: Vec<_> =
        (0..100).map(|i| pending(key(i, MAX_DIMENSIONS, 1000), minute(), long_values.clone())).collect();
    let e = encode(input, "EdgeDiffusion", NOW);
    assert!(e.requests.len() > 3, "the byte limit, not the datum limit, splits these");
    for r in &e.requests {
        assert!(r.estimated_bytes <= MAX_REQUEST_BYTES, "{}", r.estimated_bytes);
        let json = json_body("EdgeDiffusion", r);
        assert!(json.len() <= r.estimated_bytes, "estimate {} below the real size {}", r.estimated_bytes, json.len());
    }
    assert_eq!(total_samples(&e), 100 * 150 * 600);
}

#[test]
fn the_size_bound_holds_for_escaped_text() {
    let mut k = (*key(0, 5, 3)).clone();
    k.dimensions[1].1 = "a\"b\\c\u{1}\u{7f}é漢".repeat(20);
    let e =
        encode(vec![pending(Arc::new(k), minute(), vec![(-1.123_456_789_012_345_7e107, 1), (-0.1, 3)])], "n\"s", NOW);
    let r = &e.requests[0];
    assert!(json_body("n\"s", r).len() <= r.estimated_bytes);
}

#[test]
fn timestamps_outside_the_accepted_window_are_counted_not_sent() {
    let input = vec![
        pending(key(0, 5, 1), minute() - 15 * 24 * 3600, vec![(1.0, 3)]),
        pending(key(1, 5, 1), minute() - 13 * 24 * 3600, vec![(1.0, 1)]),
        pending(key(2, 5, 1), minute(), vec![(1.0, 1)]),
        pending(key(3, 5, 1), minute() + 3 * 3600, vec![(1.0, 2)]),
    ];
    let e = encode(input, "ns", NOW);
    assert_eq!(e.expired, 5);
    let sent: Vec<_> = e.requests[0].datums.iter().map(|d| d.timestamp).collect();
    assert_eq!(sent, [minute() - 13 * 24 * 3600, minute()]);
}

#[test]
fn values_cloudwatch_cannot_store_are_counted_and_tiny_ones_become_zero() {
    let values = vec![(f64::NAN, 1), (f64::INFINITY, 2), (2e108, 1), (1e-200, 4), (0.0, 1), (5.0, 1)];
    let e = encode(vec![pending(key(0, 5, 1), minute(), values)], "ns", NOW);
    assert_eq!(e.invalid, 4);
    let d = &e.requests[0].datums[0];
    assert_eq!((d.values.clone(), d.counts.clone()), (vec![0.0, 5.0], vec![5.0, 1.0]));
}

#[test]
fn series_with_too_many_dimensions_are_refused_here() {
    let e = encode(vec![pending(key(0, MAX_DIMENSIONS + 1, 1), minute(), vec![(1.0, 7)])], "ns", NOW);
    assert!(e.requests.is_empty());
    assert_eq!(e.invalid, 7);
}

#[test]
fn a_failed_call_turns_back_into_buffer_entries() {
    let input = vec![pending(key(0, 5, 1), minute(), vec![(1.0, 2), (3.0, 1)])];
    let e = encode(input.clone(), "ns", NOW);
    assert_eq!(e.requests[0].clone().into_pending(), input);
}
