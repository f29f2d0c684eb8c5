//! The scaler's `/metrics` as scrapers read it: text format 0.0.4 under its
//! own content type unless OpenMetrics is asked for, and clean under
//! `promtool check metrics`.

mod common;

use common::*;
use edge_telemetry::exposition::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
use edge_testkit::http;

#[test]
fn metrics_speak_the_format_their_content_type_names() {
    let agent = start_agent("zone-a");
    report(&agent, "w1", "sd-cpu", "cpu", 1, 0);
    let scaler = start_scaler(&[("agents", agent.addr.to_string())], &[]);
    edge_testkit::eventually(PATIENCE, "the agent followed", || {
        (edge_testkit::sample(&scaler.metrics(), "edge_scaler_snapshots_total")? >= 1.0).then_some(())
    });

    let plain = http::get_response(scaler.metrics_addr, "/metrics").expect("GET /metrics");
    assert_eq!(plain.header("content-type"), Some(TEXT_CONTENT_TYPE));
    let text = plain.text();
    assert!(text.contains("# TYPE edge_scaler_snapshots_total counter\n"), "{text}");
    assert!(!text.contains("# EOF"), "{text}");
    let problems = edge_testkit::promtool::problems(&text);
    assert!(problems.is_empty(), "promtool found problems:\n{}\n\nin:\n{text}", problems.join("\n"));

    // What Prometheus asks for by default.
    let accept = "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let om = http::get_response_with(scaler.metrics_addr, "/metrics", &[accept]).expect("GET /metrics");
    assert_eq!((om.status, om.header("content-type")), (200, Some(OPENMETRICS_CONTENT_TYPE)));
    let text = om.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE edge_scaler_snapshots counter\n"), "{text}");
}
