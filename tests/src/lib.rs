//! Helpers shared by the end-to-end tests: where the repository and the
//! external tools are, a real Prometheus server to query, and KEDA's client.

pub mod chart;
pub mod dashboard;
pub mod keda;
pub mod prometheus;
pub mod tools;

use std::path::PathBuf;

/// The workspace root (the directory holding `deploy/`, `dashboards/`, …).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

/// (url, queue depth) of every endpoint in the scaler's inventory (what devices pull).
pub fn inventory(scaler: &edge_testkit::Scaler) -> Vec<(String, u32)> {
    use edge_telemetry::inventory::{INVENTORY_PATH, Inventory};
    let (status, body) = edge_testkit::http::get(scaler.metrics_addr, INVENTORY_PATH).expect("GET /v1/endpoints");
    assert_eq!(status, 200, "{body}");
    let inventory: Inventory = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    inventory.endpoints.into_iter().map(|e| (e.url, e.queue_depth)).collect()
}

/// Percent-encodes a query-string value (RFC 3986 unreserved characters kept).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encode_escapes_promql() {
        assert_eq!(url_encode(r#"sum by (a) (m{x=~"y.*"})"#), "sum%20by%20%28a%29%20%28m%7Bx%3D~%22y.%2A%22%7D%29");
        assert_eq!(url_encode("a-b_c.d~"), "a-b_c.d~");
    }
}
