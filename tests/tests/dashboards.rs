//! The Grafana dashboards against a real Prometheus (Debian's package)
//! scraping a real edge-agent that workers report to: every query of every
//! panel, with its variables substituted, must parse and return data.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_e2e::dashboard::{metric_names, panel_queries, parse_label_values, substitute, variable_queries};
use edge_e2e::repo_root;
use edge_telemetry::catalogue::{dcgm, edge, neuron};
use edge_telemetry::prometheus_server::url_encode;
use edge_testkit::prometheus::{Prometheus, serve_exposition};
use edge_testkit::{Agent, AgentBuilder, artifact, eventually};
use serde_json::Value;

const ZONE: &str = "us-west-2-lax-1a";
const DEPLOYMENT: &str = "edge-edge-diffusion-cpu";

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo_root().join("dashboards/grafana/edge-diffusion.json")).unwrap())
        .unwrap()
}

/// Panels that need GPU or Neuron series, which the agent serves only with
/// the NVML and neuron-monitor collectors on.
fn needs_device(expr: &str) -> bool {
    expr.contains("DCGM_") || expr.contains("edge_gpu_") || expr.contains("neuron")
}

/// Posts worker reports every 500 ms (workers report at least once a second;
/// the agent forgets a silent one) until dropped.
struct Worker {
    body: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn start(agent: &Agent, queue_depth: u32) -> Self {
        let body = Arc::new(Mutex::new(report(queue_depth)));
        let stop = Arc::new(AtomicBool::new(false));
        let addr = agent.report_addr.expect("report port");
        let (b, s) = (body.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let body = b.lock().unwrap().clone();
                let (status, text) =
                    edge_testkit::http::post_json(addr, edge_telemetry::report::REPORT_PATH, &body).expect("report");
                assert_eq!(status, 204, "{text}");
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Self { body, stop }
    }

    fn set_queue(&self, queue_depth: u32) {
        *self.body.lock().unwrap() = report(queue_depth);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn report(queue_depth: u32) -> String {
    format!(
        r#"{{"worker_id":"{DEPLOYMENT}-7d9c-abcde","pod":"{DEPLOYMENT}-7d9c-abcde","namespace":"edge-diffusion","deployment":"{DEPLOYMENT}","accelerator":"cpu","queue_depth":{queue_depth},"in_flight":1,"capacity":4,"latency_p50_seconds":0.8,"latency_p99_seconds":1.9}}"#
    )
}

/// An agent, a reporting worker whose queue wakes from empty, a
/// kube-state-metrics exposition, and Prometheus scraping them.
fn stack(agent: AgentBuilder) -> (Agent, Worker, Prometheus) {
    let agent = agent.flag("zone", ZONE).flag("instance-type", "c6i.2xlarge").start();
    let worker = Worker::start(&agent, 0);
    let ksm = std::fs::read_to_string(repo_root().join("tests/testdata/kube-state-metrics.prom")).unwrap();
    let prometheus = Prometheus::start(&[("edge-agent", agent.addr), ("kube-state-metrics", serve_exposition(ksm))]);
    prometheus.wait_targets_up(2);
    let query = format!(r#"edge_worker_queue_depth{{deployment="{DEPLOYMENT}"}}"#);
    // Empty for a while, as a real idle queue is: longer than the activation
    // panel's 5 s look-back.
    eventually(Duration::from_secs(60), "an empty queue scraped for 8 s", || {
        let expr = format!("count_over_time({query}[8s]) >= 7 and max_over_time({query}[8s]) == 0");
        prometheus.query(&expr).ok().filter(|r| !r.is_empty())
    });
    // The queue wakes: the activation panel counts this edge.
    worker.set_queue(3);
    eventually(Duration::from_secs(60), "the waiting queue scraped", || {
        prometheus.query(&format!("{query} == 3")).ok().filter(|r| !r.is_empty())
    });
    (agent, worker, prometheus)
}

/// Two ways a user looks at the dashboard: everything, and one accelerator,
/// zone and Deployment picked.
fn selections() -> [BTreeMap<&'static str, &'static str>; 2] {
    [
        BTreeMap::from([("accelerator", ".*"), ("zone", ".*"), ("deployment", ".*")]),
        BTreeMap::from([("accelerator", "cpu"), ("zone", ZONE), ("deployment", DEPLOYMENT)]),
    ]
}

/// Runs every query; returns the failures (parse errors always, empty
/// results where `require_data` says so).
fn run_queries(prometheus: &Prometheus, require_data: impl Fn(&str) -> bool) -> Vec<String> {
    let dash = dashboard();
    let mut failures = Vec::new();
    for selection in selections() {
        for q in panel_queries(&dash) {
            let expr = substitute(&q.expr, &selection);
            match prometheus.query(&expr) {
                Err(e) => failures.push(format!("{}: {expr}: {e}", q.panel)),
                Ok(r) if r.is_empty() && require_data(&q.expr) => {
                    failures.push(format!("{}: no data for {expr}", q.panel))
                }
                Ok(_) => {}
            }
        }
    }
    failures
}

#[test]
fn every_panel_of_our_dashboard_returns_data_from_a_live_agent() {
    let (_agent, _worker, prometheus) = stack(AgentBuilder::new(artifact("edge-agent")));
    // Series arrive scrape by scrape; poll until every non-device panel has data.
    let mut last = Vec::new();
    let ok = (0..60).any(|_| {
        last = run_queries(&prometheus, |expr| !needs_device(expr));
        if !last.is_empty() {
            std::thread::sleep(Duration::from_secs(1));
        }
        last.is_empty()
    });
    assert!(ok, "panels without data or with bad PromQL:\n{}\nprometheus log:\n{}", last.join("\n"), prometheus.log());
    let dash = dashboard();
    let device = panel_queries(&dash).iter().filter(|q| needs_device(&q.expr)).count();
    assert!(device >= 6, "the GPU and Neuron panels were parsed too ({device})");

    // The template variables list what the panels are then filtered by.
    for (name, query) in variable_queries(&dash) {
        let query = substitute(&query, &BTreeMap::from([("accelerator", ".*")]));
        let (label, selector) = parse_label_values(&query).expect("label_values query");
        let mut path = format!("/api/v1/label/{label}/values");
        if let Some(sel) = selector {
            path.push_str(&format!("?match[]={}", url_encode(&sel)));
        }
        let addr = prometheus.addr();
        let (status, body) = edge_testkit::http::get(addr, &path).unwrap();
        let values: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status, 200, "{name}: {body}");
        let want = match name.as_str() {
            "accelerator" => "cpu",
            "zone" => ZONE,
            "deployment" => DEPLOYMENT,
            other => panic!("a variable the test does not know: {other}"),
        };
        assert!(values["data"].as_array().unwrap().iter().any(|v| v == want), "{name} lists {want}: {body}");
    }
}

/// Every metric the dashboard names is one the agent serves (the telemetry
/// catalogue) or kube-state-metrics'.
#[test]
fn the_dashboard_names_only_catalogue_metrics() {
    let known: Vec<&str> = edge::ALL.iter().chain(dcgm::ALL).chain(neuron::ALL).map(|m| m.name).collect();
    let ksm = ["kube_horizontalpodautoscaler_status_desired_replicas", "kube_deployment_status_replicas_ready"];
    let queries = panel_queries(&dashboard());
    assert!(queries.len() >= 20, "{} queries", queries.len());
    for q in queries {
        for name in metric_names(&q.expr, &["edge_", "DCGM_", "neuron", "kube_"]) {
            assert!(known.contains(&name) || ksm.contains(&name), "{}: {name} is not in the catalogue", q.panel);
        }
    }
    let dash = dashboard();
    let ds = &dash["templating"]["list"][0];
    assert_eq!((ds["name"].as_str(), ds["type"].as_str()), (Some("datasource"), Some("datasource")));
    assert!(
        dash["panels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["type"] == "row" || p["datasource"]["uid"] == "${datasource}"),
        "every panel uses the data source variable"
    );
}

/// GPU and Neuron panels, and dashboard 12239's GPU queries unchanged, with
/// the agent reading the fake NVML library (two A10G GPUs,
/// tests/testdata/fake-nvml-2-gpus.json in testkit/fake-nvml's config format)
/// and the fake neuron-monitor replaying an inf2.xlarge fixture (both from
/// the nvml and neuron branches).
#[test]
fn gpu_and_neuron_panels_and_dashboard_12239_return_data() {
    let dir = tempfile::tempdir().unwrap();
    let neuron = repo_root().join("agent/testdata/neuron-monitor");
    let agent = AgentBuilder::new(artifact("edge-agent"))
        .flag("nvml-library", edge_testkit::fake_nvml_library().display().to_string())
        .env("FAKE_NVML_CONFIG", repo_root().join("tests/testdata/fake-nvml-2-gpus.json").display().to_string())
        .flag("neuron-monitor", neuron.join("fake-neuron-monitor").display().to_string())
        .flag("neuron-monitor-config", dir.path().join("monitor.json").display().to_string())
        .env("FAKE_NEURON_FIXTURE", neuron.join("inf2.xlarge.jsonl").display().to_string());
    let (_agent, _worker, prometheus) = stack(agent);
    let mut last = Vec::new();
    let ok = (0..60).any(|_| {
        last = run_queries(&prometheus, |_| true);
        if !last.is_empty() {
            std::thread::sleep(Duration::from_secs(1));
        }
        last.is_empty()
    });
    assert!(ok, "panels without data:\n{}", last.join("\n"));

    let nvidia: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/testdata/dashboard-12239-queries.json")).unwrap(),
    )
    .unwrap();
    let all = BTreeMap::from([("instance", ".*"), ("gpu", ".*")]);
    for panel in nvidia["panels"].as_array().unwrap() {
        let expr = substitute(panel["expr"].as_str().unwrap(), &all);
        let result = prometheus.query(&expr).unwrap_or_else(|e| panic!("12239 {}: {e}", panel["title"]));
        if panel["not_served"].is_null() {
            assert!(!result.is_empty(), "12239 panel {} has no data: {expr}", panel["title"]);
        }
    }
}
