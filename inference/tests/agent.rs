//! The worker's queue reaches a real `edge-agent` through the report
//! contract, over loopback TCP and over a Unix socket; an absent agent does
//! not stop the worker.

mod common;

use std::time::Duration;

use common::{tiny_model, worker};
use edge_testkit::http;
use edge_testkit::{AgentBuilder, artifact, eventually};
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

fn slow() -> String {
    json!({"prompt": "keep the queue busy", "steps": 800, "size": "64x64"}).to_string()
}

fn queue_depth_reaches(agent: &edge_testkit::Agent, w: &edge_testkit::Worker) {
    let series = "edge_worker_queue_depth{accelerator=\"cpu\",namespace=\"edge-test\",deployment=\"sd-tiny\"";
    eventually(LONG, "the idle worker to appear at the agent", || {
        (edge_testkit::sample(&agent.metrics(), series) == Some(0.0)).then_some(())
    });
    let _clients: Vec<_> = (0..3).map(|_| http::send_json(w.addr, "/generate", &slow()).unwrap()).collect();
    eventually(LONG, "queue depth 2 at the agent", || {
        (edge_testkit::sample(&agent.metrics(), series) == Some(2.0)).then_some(())
    });
    let in_flight = "edge_worker_in_flight{accelerator=\"cpu\",namespace=\"edge-test\",deployment=\"sd-tiny\"";
    assert_eq!(edge_testkit::sample(&agent.metrics(), in_flight), Some(1.0), "{}", agent.metrics());
}

#[test]
fn queue_depth_reaches_a_running_agent_over_tcp() {
    let agent = AgentBuilder::new(artifact("edge-agent")).start();
    let model = tiny_model();
    let w = worker(model.path())
        .flag("agent", agent.report_addr.unwrap().to_string())
        .flag("deployment", "sd-tiny")
        .flag("queue-capacity", "4")
        .flag("max-steps", "1000")
        .env("POD_NAME", "sd-tiny-abc12")
        .env("POD_NAMESPACE", "edge-test")
        .env("EDGE_INFERENCE_ACCELERATOR", "cpu")
        .env("EDGE_INFERENCE_LABELS", "app.kubernetes.io/name=sd,tier=gold")
        // An IPv6 node address as the downward API gives it: the worker brackets it.
        .env("EDGE_INFERENCE_ADVERTISE_URL", "http://fd00:ec2::7:30080")
        .start();
    queue_depth_reaches(&agent, &w);
    // Labels and endpoint travel with the reports to the agent's feed, where the scaler reads them.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let worker = rt.block_on(async {
        let mut feed = agent.watch().await;
        let snapshot = feed.message().await.unwrap().expect("a first snapshot");
        snapshot.workers.into_iter().find(|w| w.worker_id == "sd-tiny-abc12").expect("the worker")
    });
    let labels: Vec<_> = worker.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(labels, [("app.kubernetes.io/name", "sd"), ("tier", "gold")]);
    assert_eq!(worker.endpoint, "http://[fd00:ec2::7]:30080");
}

#[test]
fn queue_depth_reaches_a_running_agent_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let agent = AgentBuilder::new(artifact("edge-agent")).flag("report-socket", socket.display().to_string()).start();
    let model = tiny_model();
    let w = worker(model.path())
        .env("EDGE_INFERENCE_AGENT", socket.display().to_string())
        .env("EDGE_INFERENCE_DEPLOYMENT", "sd-tiny")
        .env("POD_NAMESPACE", "edge-test")
        .flag("queue-capacity", "4")
        .flag("max-steps", "1000")
        .start();
    queue_depth_reaches(&agent, &w);
}

#[test]
fn an_unreachable_agent_is_logged_once_and_serving_goes_on() {
    let model = tiny_model();
    let port = edge_testkit::free_port();
    let w = worker(model.path()).flag("agent", format!("127.0.0.1:{port}")).flag("report-interval", "100ms").start();
    eventually(LONG, "the warning", || w.log().contains("cannot report to the node agent").then_some(()));
    // Every request changes the queue three times, each a report attempt.
    for seed in 0..3 {
        let r = w.post("/generate", &json!({"prompt": "still here", "steps": 1, "seed": seed}));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    eventually(LONG, "more failed reports", || (w.log().matches("report failed again").count() >= 5).then_some(()));
    assert_eq!(w.log().matches("cannot report to the node agent").count(), 1, "{}", w.log());
}
