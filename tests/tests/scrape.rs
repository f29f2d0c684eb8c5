//! One real Prometheus (Debian's package) scrapes the agent, the scaler and a
//! worker together. Every `/metrics` answers the classic text format under
//! its `text/plain; version=0.0.4` content type unless OpenMetrics is asked
//! for by `Accept` (what Prometheus itself asks for first), each body is
//! what its header says (promtool lints it), and Prometheus ingests every
//! target with no scrape error.

use std::net::SocketAddr;
use std::time::Duration;

use edge_telemetry::catalogue::{edge, inference, scaler};
use edge_telemetry::exposition::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
use edge_testkit::prometheus::Prometheus;
use edge_testkit::{AgentBuilder, ScalerBuilder, WorkerBuilder, artifact, eventually, http, promtool};

/// What Prometheus 2.x sends on a scrape.
const PROMETHEUS_ACCEPT: &str = "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn check_exposition(job: &str, addr: SocketAddr) {
    for (accept, want) in [
        (None, TEXT_CONTENT_TYPE),
        (Some("Accept: text/plain"), TEXT_CONTENT_TYPE),
        (Some(PROMETHEUS_ACCEPT), OPENMETRICS_CONTENT_TYPE),
    ] {
        let headers: Vec<&str> = accept.into_iter().collect();
        let r = http::get_response_with(addr, "/metrics", &headers).unwrap();
        assert_eq!(r.status, 200, "{job} {accept:?}");
        assert_eq!(r.header("content-type"), Some(want), "{job} {accept:?}");
        let openmetrics = want == OPENMETRICS_CONTENT_TYPE;
        assert_eq!(
            r.text().trim_end().ends_with("# EOF"),
            openmetrics,
            "{job} {accept:?}: the body is what the header says"
        );
        if !openmetrics {
            let problems = promtool::problems(&r.text());
            assert!(problems.is_empty(), "{job}: promtool check metrics: {problems:?}");
        }
    }
}

#[test]
fn prometheus_scrapes_agent_scaler_and_worker_without_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentBuilder::new(artifact("edge-agent")).start();
    let model = dir.path().join("tiny");
    let out = std::process::Command::new(artifact("edge-inference")).arg("tiny-model").arg(&model).output().unwrap();
    assert!(out.status.success(), "tiny-model: {}", String::from_utf8_lossy(&out.stderr));
    let worker = WorkerBuilder::new(artifact("edge-inference"), &model)
        .flag("agent", agent.report_addr.expect("report port").to_string())
        .flag("accelerator", "cpu")
        .flag("deployment", "sd-cpu")
        .flag("default-size", "64x64")
        .start();
    let scaler = ScalerBuilder::new(artifact("edge-scaler")).flag("agents", agent.addr.to_string()).start();

    let targets = [("edge-agent", agent.addr), ("edge-scaler", scaler.metrics_addr), ("edge-inference", worker.addr)];
    for (job, addr) in targets {
        check_exposition(job, addr);
    }

    let prometheus = Prometheus::start(&targets);
    prometheus.wait_targets_up(targets.len());
    // Each job's own series arrived: parsed, not only reached.
    for (job, metric) in [
        ("edge-agent", edge::NODE_INFO.name),
        ("edge-scaler", scaler::AGENTS.name),
        ("edge-inference", inference::QUEUE_DEPTH.name),
    ] {
        eventually(Duration::from_secs(60), &format!("{metric} from {job}"), || {
            prometheus.query(&format!(r#"{metric}{{job="{job}"}}"#)).ok().filter(|r| !r.is_empty())
        });
    }
    let (status, body) = http::get(prometheus.addr(), "/api/v1/targets").unwrap();
    assert_eq!(status, 200, "{body}");
    let targets: serde_json::Value = serde_json::from_str(&body).unwrap();
    for t in targets["data"]["activeTargets"].as_array().unwrap() {
        assert_eq!(t["health"], "up", "{t}");
        assert_eq!(t["lastError"], "", "{t}");
    }
    let scraped = prometheus.query("sum by (job) (scrape_samples_post_metric_relabeling)").unwrap();
    assert_eq!(scraped.len(), 3, "{scraped:?}");
}
