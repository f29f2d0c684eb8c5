//! The endpoint inventory through real processes: `edge-agent`s fed by
//! reporting workers (one advertising an endpoint, one not), a real
//! `edge-scaler` following them, and `GET /v1/endpoints` on its HTTP port.

mod common;

use common::*;
use edge_telemetry::inventory::{INVENTORY_PATH, Inventory, InventoryError};
use edge_testkit::http;
use serde_json::json;

fn get(scaler: &Scaler, query: &str) -> (u16, String) {
    http::get(scaler.metrics_addr, &format!("{INVENTORY_PATH}{query}")).expect("GET /v1/endpoints")
}

fn urls(scaler: &Scaler, query: &str) -> Vec<String> {
    let (status, body) = get(scaler, query);
    assert_eq!(status, 200, "{body}");
    let inventory: Inventory = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    inventory.endpoints.into_iter().map(|e| e.url).collect()
}

#[test]
fn lists_advertised_workers_of_fresh_agents_least_loaded_first() {
    let (a, b) = (start_agent("zone-a"), start_agent("zone-b"));
    let busy = json!({"endpoint": "http://10.0.3.7:30080", "latency_p50_seconds": 0.8});
    report_with(&a, "w1", "sd-cpu", "cpu", 3, 1, busy.clone());
    report(&a, "w2", "sd-cpu", "cpu", 0, 0); // serves, but advertises no endpoint
    report_with(&b, "w3", "sd-nvidia", "nvidia", 0, 1, json!({"endpoint": "http://10.0.4.9:30081"}));
    let agents = format!("{},{}", a.addr, b.addr);
    let scaler = start_scaler(&[("agents", agents), ("stale-after", "1s".into())], &[]);

    edge_testkit::eventually(PATIENCE, "both advertised workers in the inventory", || {
        (urls(&scaler, "") == ["http://10.0.4.9:30081", "http://10.0.3.7:30080"]).then_some(())
    });
    let (_, body) = get(&scaler, "");
    let w1 = &serde_json::from_str::<serde_json::Value>(&body).unwrap()["endpoints"][1];
    assert_eq!(
        w1,
        &json!({
            "url": "http://10.0.3.7:30080", "accelerator": "cpu", "zone": "zone-a", "node": "node-zone-a",
            "namespace": NS, "deployment": "sd-cpu", "pod": "w1", "queue_depth": 3, "in_flight": 1,
            "capacity": 16, "latency_p50_seconds": 0.8, "latency_p99_seconds": null,
            // Static discovery reads no Nodes: the address as advertised, private.
            "address": "advertised", "reachability": "vpc"
        }),
        "{body}"
    );

    // Filters and the page size.
    assert_eq!(urls(&scaler, "?accelerator=cpu"), ["http://10.0.3.7:30080"]);
    assert_eq!(urls(&scaler, "?zone=zone-b"), ["http://10.0.4.9:30081"]);
    // No cpu endpoint in zone-b: demand, answered with the best others (cpu elsewhere first).
    assert_eq!(urls(&scaler, "?accelerator=cpu&zone=zone-b"), ["http://10.0.3.7:30080", "http://10.0.4.9:30081"]);
    let (_, body) = get(&scaler, "?accelerator=cpu&zone=zone-b");
    let answer: Inventory = serde_json::from_str(&body).unwrap();
    assert!(answer.waking.is_empty(), "no trigger listens for cpu: {body}");
    assert_eq!(urls(&scaler, "?limit=1"), ["http://10.0.4.9:30081"]);
    for (query, param, needle) in [
        ("?accelerator=tpu", "accelerator", "nvidia, neuron, cpu"),
        ("?limit=5000", "limit", "1..=1000"),
        ("?region=west", "region", "accelerator, zone, limit, device"),
    ] {
        let (status, body) = get(&scaler, query);
        assert_eq!(status, 400, "{query}: {body}");
        let err: InventoryError = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(err.param, param, "{query}");
        assert!(err.error.contains(needle), "{query}: {body}");
    }

    // Load changes reorder the answer.
    report_with(&b, "w3", "sd-nvidia", "nvidia", 16, 0, json!({"endpoint": "http://10.0.4.9:30081"}));
    edge_testkit::eventually(PATIENCE, "the busier worker last", || {
        (urls(&scaler, "") == ["http://10.0.3.7:30080", "http://10.0.4.9:30081"]).then_some(())
    });
    // A worker that stops advertising (draining) leaves at once ...
    report(&a, "w1", "sd-cpu", "cpu", 3, 1);
    edge_testkit::eventually(PATIENCE, "the draining worker gone", || {
        (urls(&scaler, "") == ["http://10.0.4.9:30081"]).then_some(())
    });
    // ... and an agent that goes silent takes its workers along once it is stale.
    drop(b);
    edge_testkit::eventually(PATIENCE, "the silent agent's worker gone", || urls(&scaler, "").is_empty().then_some(()));
}

#[test]
fn one_address_pulling_too_fast_gets_429_and_a_long_query_400() {
    let agent = start_agent("zone-a");
    report_with(&agent, "w1", "sd-cpu", "cpu", 0, 0, json!({"endpoint": "http://10.0.3.7:30080"}));
    let scaler = start_scaler(&[("agents", agent.addr.to_string()), ("inventory-rate", "1".into())], &[]);
    let path = format!("{INVENTORY_PATH}?accelerator=cpu");
    // A burst of twice the rate, then 429 naming no parameter, with Retry-After.
    let answers: Vec<http::Response> =
        (0..3).map(|_| http::get_response(scaler.metrics_addr, &path).expect("GET")).collect();
    assert_eq!(answers.iter().map(|r| r.status).collect::<Vec<_>>(), [200, 200, 429], "{answers:?}");
    let limited = &answers[2];
    assert_eq!(limited.header("retry-after"), Some("1"), "{limited:?}");
    let err: InventoryError = serde_json::from_slice(&limited.body).unwrap();
    assert_eq!(err.param, "");
    assert!(err.error.starts_with("too many pulls from 127.0.0.1"), "{}", err.error);
    let m = scaler.metrics();
    let refused = r#"edge_scaler_inventory_refused_total{reason="rate_limited"}"#;
    assert_eq!(edge_testkit::sample(&m, refused), Some(1.0), "{m}");

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let long = format!("{path}&zone={}", "z".repeat(2000));
    let (status, body) = http::get(scaler.metrics_addr, &long).expect("GET");
    assert_eq!(status, 400, "{body}");
    let err: InventoryError = serde_json::from_str(&body).unwrap();
    let query_len = long.len() - INVENTORY_PATH.len() - 1;
    assert_eq!((err.param, err.error), ("query".to_owned(), format!("{query_len} bytes; at most 1024")));
}
