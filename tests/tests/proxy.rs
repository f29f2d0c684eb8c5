//! Any SD server scales: `edge-inference proxy` in front of a third-party
//! shaped upstream (`testkit/sd-upstream/upstream.py`, a Python server that
//! answers A1111's and OpenAI's shapes and sleeps per generation), with real
//! processes only: the proxy reports to a real `edge-agent`, a real
//! `edge-scaler` streams from the agent, and KEDA's client (generated from
//! `externalscaler.proto`) watches the neuron trigger.
//!
//! A burst past capacity: the queue rises at the agent, the scaler's
//! StreamIsActive wakes, the requests past capacity get 429 with Retry-After,
//! and everything accepted is answered and drains back to 0. Then the
//! upstream is killed: a request gets 502 naming the upstream, and the
//! endpoint leaves the scaler's inventory; restarted on the same port, the
//! upstream's health URL brings the endpoint back and requests succeed.

use std::thread::JoinHandle;
use std::time::Duration;

use edge_e2e::inventory;
use edge_e2e::keda::{Keda, trigger};
use edge_telemetry::catalogue::edge;
use edge_testkit::{AgentBuilder, ScalerBuilder, SdUpstreamBuilder, WorkerBuilder, artifact, eventually, http, sample};

/// Generous bound for anything that crosses processes on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);
const NS: &str = "inference";
/// Requests the proxy accepts at once (one runs, the rest wait).
const CAPACITY: usize = 4;

fn txt2img(seed: usize) -> String {
    format!(r#"{{"prompt": "a lighthouse at dusk", "steps": 20, "seed": {seed}}}"#)
}

#[test]
fn a_burst_through_the_proxy_wakes_the_scaler_and_a_dead_upstream_leaves_the_inventory() {
    let agent = AgentBuilder::new(artifact("edge-agent")).flag("stream-heartbeat", "200ms").start();
    // 1.5 s per generation: the full queue stays up long enough to be seen.
    let upstream_builder = SdUpstreamBuilder::new().sleep(1.5);
    let upstream = upstream_builder.start();
    let listen = format!("127.0.0.1:{}", edge_testkit::free_port());
    let url = format!("http://{listen}");
    let proxy = WorkerBuilder::proxy(artifact("edge-inference"), &upstream_builder.url())
        .flag("listen", listen.as_str())
        .flag("upstream-health", "/internal/ping")
        .flag("health-interval", "100ms")
        .flag("agent", agent.report_addr.expect("report port").to_string())
        .flag("accelerator", "neuron")
        .flag("deployment", "sd-neuron")
        .flag("namespace", NS)
        .flag("worker-id", "sd-neuron-0")
        .flag("advertise-url", url.as_str())
        .flag("queue-capacity", CAPACITY.to_string())
        .flag("concurrency", "1")
        .start();

    let scaler = ScalerBuilder::new(artifact("edge-scaler"))
        .flag("agents", agent.addr.to_string())
        .flag("stale-after", "3s")
        .flag("reconnect-max", "500ms")
        .start();
    let keda = Keda::connect(scaler.addr);
    let neuron = trigger(NS, "neuron");
    eventually(PATIENCE, "the neuron trigger at 0 through the scaler", || {
        (keda.metric(&neuron).ok()? == 0.0).then_some(())
    });
    let pushes = keda.stream_is_active(&neuron);
    eventually(PATIENCE, "the proxy's endpoint in the inventory", || {
        (inventory(&scaler) == [(url.clone(), 0)]).then_some(())
    });

    // The burst: CAPACITY requests are accepted (in order), the rest are turned away.
    let accepted: Vec<JoinHandle<http::Response>> = (0..CAPACITY)
        .map(|seed| {
            let addr = proxy.addr;
            let handle = std::thread::spawn(move || {
                http::post_response(addr, "/sdapi/v1/txt2img", &txt2img(seed), PATIENCE).expect("POST txt2img")
            });
            std::thread::sleep(Duration::from_millis(50));
            handle
        })
        .collect();
    // All accepted (the first running for a while): the next one is past capacity.
    eventually(PATIENCE, "every burst request accepted by the proxy", || {
        let m = proxy.metrics();
        (sample(&m, "edge_inference_queue_depth")? + sample(&m, "edge_inference_in_flight")? == CAPACITY as f64)
            .then_some(())
    });
    let full = http::post_response(proxy.addr, "/v1/images/generations", r#"{"prompt": "one too many"}"#, PATIENCE)
        .expect("POST past capacity");
    assert_eq!(full.status, 429, "{}", full.text());
    let queue = format!(
        "{}{{accelerator=\"neuron\",namespace=\"{NS}\",deployment=\"sd-neuron\"",
        edge::WORKER_QUEUE_DEPTH.name
    );
    eventually(PATIENCE, "the queue rising at the agent", || (sample(&agent.metrics(), &queue)? >= 2.0).then_some(()));
    let retry: u64 = full.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!(retry >= 1, "{retry}");
    assert!(full.text().contains("rate_limit_error"), "{}", full.text());
    eventually(PATIENCE, "a true on the neuron StreamIsActive", || (!pushes.received().is_empty()).then_some(()));
    assert!(keda.is_active(&neuron).unwrap(), "IsActive agrees with the push");

    for (i, r) in accepted.into_iter().enumerate() {
        let r = r.join().expect("request thread");
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        let v: serde_json::Value = serde_json::from_str(&r.text()).expect("A1111 JSON");
        assert_eq!(v["images"].as_array().map(Vec::len), Some(1), "request {i}: {v}");
    }
    assert_eq!(upstream.stats()["max_active"], 1, "--concurrency 1 let more through");
    eventually(PATIENCE, "the queue drained at the agent and the trigger inactive", || {
        (sample(&agent.metrics(), &queue)? == 0.0
            && keda.metric(&neuron).ok()? == 0.0
            && !keda.is_active(&neuron).ok()?)
        .then_some(())
    });
    assert_eq!(pushes.received(), [true], "one activation for one burst");
    let m = proxy.metrics();
    assert_eq!(sample(&m, "edge_inference_rejected_total{reason=\"full\""), Some(1.0), "{m}");

    // The upstream dies: 502 naming it, endpoint withdrawn, readiness off.
    drop(upstream);
    let r = http::post_response(proxy.addr, "/sdapi/v1/txt2img", &txt2img(9), PATIENCE).unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    let message: serde_json::Value = serde_json::from_str(&r.text()).expect("error JSON");
    assert_eq!(message["error"]["type"], "upstream_error", "{message}");
    let text = message["error"]["message"].as_str().unwrap();
    assert!(text.contains(&upstream_builder.url()), "the error names the upstream: {text}");
    eventually(PATIENCE, "the endpoint withdrawn from the inventory", || inventory(&scaler).is_empty().then_some(()));
    assert_eq!(http::get(proxy.addr, "/readyz").unwrap().0, 503);
    let again = http::post_response(proxy.addr, "/sdapi/v1/txt2img", &txt2img(10), PATIENCE).unwrap();
    assert_eq!(again.status, 502, "still down until the health URL answers: {}", again.text());

    // Restarted on the same port: its health URL answers, the endpoint comes back.
    let upstream = upstream_builder.start();
    eventually(PATIENCE, "the endpoint back in the inventory", || {
        (inventory(&scaler) == [(url.clone(), 0)]).then_some(())
    });
    let r =
        http::post_response(proxy.addr, "/v1/images/generations", r#"{"prompt": "back", "n": 2}"#, PATIENCE).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(upstream.stats()["served"], 1);
    let m = proxy.metrics();
    assert_eq!(sample(&m, "edge_inference_rejected_total{reason=\"upstream_down\""), Some(1.0), "{m}");
    assert_eq!(sample(&m, "edge_inference_requests_total{status=\"502\""), Some(2.0), "{m}");
}
