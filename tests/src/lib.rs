//! Helpers shared by the end-to-end tests: where the repository and the
//! external tools are, the chart and dashboards as data, and KEDA's client
//! (the Prometheus launcher is `edge_testkit::prometheus`).

pub mod chart;
pub mod dashboard;
pub mod keda;
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
