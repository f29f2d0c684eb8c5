//! Pure encoding: buffered samples → `PutMetricData` requests that respect
//! every CloudWatch limit, checked here because test servers do not:
//! ≤ [`MAX_DATUMS_PER_REQUEST`] datums and ≤ [`MAX_REQUEST_BYTES`] per call,
//! ≤ [`MAX_VALUES_PER_DATUM`] distinct values per datum, ≤
//! [`MAX_DIMENSIONS`] dimensions, timestamps no older than [`MAX_AGE_SECS`]
//! and no further ahead than [`MAX_AHEAD_SECS`], values CloudWatch can store.

use std::sync::Arc;

use super::buffer::Pending;
use super::series::SeriesKey;

/// CloudWatch's limit on `MetricData` entries per call.
pub const MAX_DATUMS_PER_REQUEST: usize = 1000;
/// CloudWatch's limit on a call's payload (1 MB), before compression.
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// CloudWatch's limit on `Values` (and `Counts`) per datum.
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// CloudWatch's limit on dimensions per datum.
pub const MAX_DIMENSIONS: usize = 30;
/// CloudWatch accepts timestamps up to two weeks old; an hour of margin.
pub const MAX_AGE_SECS: i64 = 14 * 24 * 3600 - 3600;
/// CloudWatch accepts timestamps up to two hours ahead; five minutes of margin.
pub const MAX_AHEAD_SECS: i64 = 2 * 3600 - 300;
/// Largest magnitude CloudWatch stores (base 10 limit of the API reference).
pub const MAX_MAGNITUDE: f64 = 1.174271e108;
/// Smallest non-zero magnitude CloudWatch stores; smaller ones are sent as 0.
pub const MIN_MAGNITUDE: f64 = 8.515920e-109;

/// One `MetricDatum`: a series, its window's timestamp and up to
/// [`MAX_VALUES_PER_DATUM`] distinct values with their counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    /// The series (metric, unit, dimensions).
    pub key: Arc<SeriesKey>,
    /// Unix seconds.
    pub timestamp: i64,
    /// Distinct values.
    pub values: Vec<f64>,
    /// How often each value was sampled.
    pub counts: Vec<f64>,
}

impl Datum {
    /// Samples this datum carries.
    pub fn samples(&self) -> u64 {
        self.counts.iter().map(|c| *c as u64).sum()
    }
}

/// One `PutMetricData` call's datums.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    /// At most [`MAX_DATUMS_PER_REQUEST`].
    pub datums: Vec<Datum>,
    /// Upper bound of the serialised payload, at most [`MAX_REQUEST_BYTES`].
    pub estimated_bytes: usize,
}

impl Request {
    /// Samples the call carries.
    pub fn samples(&self) -> u64 {
        self.datums.iter().map(Datum::samples).sum()
    }

    /// Back to buffer entries, for a call that failed.
    pub fn into_pending(self) -> Vec<Pending> {
        self.datums
            .into_iter()
            .map(|d| Pending {
                window_start: d.timestamp,
                key: d.key,
                values: d.values.into_iter().zip(d.counts.into_iter().map(|c| c as u32)).collect(),
            })
            .collect()
    }
}

/// The calls to make, and the samples no call may carry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Encoded {
    /// Calls in order, oldest data first.
    pub requests: Vec<Request>,
    /// Samples too old (or too far ahead) for CloudWatch to accept.
    pub expired: u64,
    /// Samples CloudWatch cannot store (NaN, infinite, out of range) or
    /// series it would refuse (too many dimensions).
    pub invalid: u64,
}

/// Splits `pending` into calls for `namespace` at `now` (Unix seconds).
pub fn encode(pending: Vec<Pending>, namespace: &str, now: i64) -> Encoded {
    let mut out = Encoded::default();
    let overhead = request_overhead(namespace);
    let mut current = Request { datums: Vec::new(), estimated_bytes: overhead };
    for p in pending {
        if p.window_start < now - MAX_AGE_SECS || p.window_start > now + MAX_AHEAD_SECS {
            out.expired += p.samples();
            continue;
        }
        if p.key.dimensions.len() > MAX_DIMENSIONS {
            out.invalid += p.samples();
            continue;
        }
        let (values, invalid) = storable(p.values);
        out.invalid += invalid;
        for chunk in values.chunks(MAX_VALUES_PER_DATUM) {
            let datum = Datum {
                key: Arc::clone(&p.key),
                timestamp: p.window_start,
                values: chunk.iter().map(|(v, _)| *v).collect(),
                counts: chunk.iter().map(|(_, c)| f64::from(*c)).collect(),
            };
            let size = datum_bytes(&datum);
            if !current.datums.is_empty()
                && (current.datums.len() == MAX_DATUMS_PER_REQUEST
                    || current.estimated_bytes + size > MAX_REQUEST_BYTES)
            {
                out.requests
                    .push(std::mem::replace(&mut current, Request { datums: Vec::new(), estimated_bytes: overhead }));
            }
            current.estimated_bytes += size;
            current.datums.push(datum);
        }
    }
    if !current.datums.is_empty() {
        out.requests.push(current);
    }
    out
}

/// Values CloudWatch stores, merged where rounding made them equal, and the
/// count of samples it would refuse.
fn storable(values: Vec<(f64, u32)>) -> (Vec<(f64, u32)>, u64) {
    let mut invalid = 0;
    let mut out: Vec<(f64, u32)> = Vec::with_capacity(values.len());
    for (v, c) in values {
        if !v.is_finite() || v.abs() > MAX_MAGNITUDE {
            invalid += u64::from(c);
            continue;
        }
        let v = if v.abs() < MIN_MAGNITUDE { 0.0 } else { v };
        match out.iter_mut().find(|(x, _)| x.to_bits() == v.to_bits()) {
            Some((_, n)) => *n += c,
            None => out.push((v, c)),
        }
    }
    (out, invalid)
}

// Upper bounds of the serialised size. The SDK sends CBOR, which is no
// larger than the JSON encoding of the same request (a number is at most 9
// bytes in CBOR, at least 1 character plus a comma in JSON); the bounds are
// for JSON, exact per number, and tested against a real JSON rendering.

/// Characters of `v` in JSON (as serde_json writes it) plus a comma.
fn number_bytes(v: f64) -> usize {
    serde_json::to_string(&v).map_or(25, |s| s.len()) + 1
}

fn request_overhead(namespace: &str) -> usize {
    // {"Namespace":"…","MetricData":[…]}
    32 + json_string_len(namespace)
}

/// Upper bound of one datum's serialised size.
pub fn datum_bytes(d: &Datum) -> usize {
    // {"MetricName":"…","Unit":"…","StorageResolution":1,"Timestamp":…,"Dimensions":[…],"Values":[…],"Counts":[…]},
    let dims: usize = d.key.dimensions.iter().map(|(n, v)| 22 + json_string_len(n) + json_string_len(v)).sum();
    let numbers: usize = d.values.iter().chain(&d.counts).map(|v| number_bytes(*v)).sum();
    110 + json_string_len(d.key.metric.name) + json_string_len(d.key.metric.unit) + dims + numbers
}

fn json_string_len(s: &str) -> usize {
    // Quotes plus the worst case of every byte escaped as \u00XX.
    2 + s.bytes().map(|b| if b < 0x20 || b == b'"' || b == b'\\' { 6 } else { 1 }).sum::<usize>()
}

#[cfg(test)]
mod tests;
