//! The whole loop, real processes only: an `edge-agent` (fake NVML with two
//! GPUs, fake neuron-monitor replaying an inf2 fixture), two
//! `edge-inference serve` workers on the tiny model reporting to it (one
//! labelled `nvidia`, one `neuron`; both compute on the CPU, the label is what
//! the scaler selects on), an `edge-scaler` on its static agent list, and a
//! KEDA-side client generated from the project's `externalscaler.proto`.
//!
//! The nvidia worker advertises its own address: the scaler's endpoint
//! inventory must list it (and only it) with its live queue, at a URL that
//! reaches the worker.
//!
//! A burst on the nvidia worker must wake only the nvidia trigger (one `true`
//! on its StreamIsActive), GetMetrics must follow the worker's own queue, the
//! neuron trigger must stay inactive, and once the burst drains the metric
//! must return to 0 and IsActive to false. Then the agent is killed and
//! restarted on the same ports and the scaler must recover on its own: the
//! same open streams wake again on a second burst.

use std::thread::JoinHandle;
use std::time::Duration;

use edge_e2e::inventory;
use edge_e2e::keda::{Keda, trigger};
use edge_scaler::keda::ScaledObjectRef;
use edge_telemetry::catalogue::{dcgm, edge, inference, neuron, scaler};
use edge_testkit::{Agent, AgentBuilder, ScalerBuilder, Worker, WorkerBuilder, artifact, eventually, http, sample};

/// Generous bound for anything that crosses processes on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(120);

/// The workers' namespace, as their pods would report it.
const NS: &str = "inference";

/// Denoising steps per burst request: long enough (seconds on the tiny model)
/// that a queue builds up behind the first request and stays a while.
const STEPS: u32 = 100;

/// A worker on the tiny model reporting to `agent` as `sd-<accelerator>`.
fn worker(model: &std::path::Path, agent: &Agent, accelerator: &str) -> Worker {
    worker_builder(model, agent, accelerator).start()
}

fn worker_builder(model: &std::path::Path, agent: &Agent, accelerator: &str) -> WorkerBuilder {
    WorkerBuilder::new(artifact("edge-inference"), model)
        .flag("agent", agent.report_addr.expect("report port").to_string())
        // The reported type follows the device (cpu here); this test flag makes these CPU
        // workers stand in for a GPU and a Neuron worker.
        .flag("simulated-accelerator", accelerator)
        .flag("deployment", format!("sd-{accelerator}"))
        .flag("namespace", NS)
        .flag("worker-id", format!("sd-{accelerator}-0"))
        .flag("default-size", "64x64")
        .flag("max-steps", "1000")
        .flag("queue-capacity", "8")
}

/// `n` prompts at once, each answered on its own thread.
fn burst(w: &Worker, n: usize) -> Vec<JoinHandle<u16>> {
    (0..n)
        .map(|seed| {
            let addr = w.addr;
            let body = format!(r#"{{"prompt": "a rusty robot", "steps": {STEPS}, "seed": {seed}}}"#);
            let handle = std::thread::spawn(move || {
                let (status, _) =
                    http::post_json_timeout(addr, "/generate", &body, PATIENCE * 3).expect("POST /generate");
                status
            });
            // In order, so the queue depth the test expects is the one it gets.
            std::thread::sleep(Duration::from_millis(50));
            handle
        })
        .collect()
}

fn worker_queue(w: &Worker) -> Option<f64> {
    sample(&w.metrics(), inference::QUEUE_DEPTH.name)
}

/// The agent's own view of a worker group's queue.
fn agent_queue(agent: &Agent, accelerator: &str) -> Option<f64> {
    let series = format!(
        "{}{{accelerator=\"{accelerator}\",namespace=\"{NS}\",deployment=\"sd-{accelerator}\"",
        edge::WORKER_QUEUE_DEPTH.name
    );
    sample(&agent.metrics(), &series)
}

/// Waits until the scaler's GetMetrics equals the worker's own queue depth,
/// read just before and just after, at `queued` (the worker reports every
/// change at once, so one report carries it through agent and scaler).
fn scaler_follows_queue(keda: &Keda, w: &Worker, object: &ScaledObjectRef, queued: f64) {
    eventually(PATIENCE, &format!("GetMetrics = the worker's queue = {queued}"), || {
        let before = worker_queue(w)?;
        let seen = keda.metric(object).ok()?;
        let after = worker_queue(w)?;
        (before == queued && seen == queued && after == queued).then_some(())
    });
}

/// Waits for every burst request to be answered 200 (nothing lost), then for
/// the scaler to report 0 and inactive.
fn drains(keda: &Keda, object: &ScaledObjectRef, requests: Vec<JoinHandle<u16>>) {
    for r in requests {
        assert_eq!(r.join().expect("request thread"), 200, "a burst request failed");
    }
    eventually(PATIENCE, "the metric back to 0 and IsActive false", || {
        (keda.metric(object).ok()? == 0.0 && !keda.is_active(object).ok()?).then_some(())
    });
}

#[test]
fn a_burst_wakes_only_its_accelerator_and_the_scaler_survives_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let nvml_config = dir.path().join("nvml.json");
    edge_testkit::fake_nvml::Config::with_gpus(2).write(&nvml_config);
    let neuron_testdata = edge_e2e::repo_root().join("agent/testdata/neuron-monitor");
    let agent_builder = AgentBuilder::new(artifact("edge-agent"))
        .flag("nvml-library", edge_testkit::fake_nvml_library().display().to_string())
        .env(edge_testkit::fake_nvml::CONFIG_ENV, nvml_config.display().to_string())
        .flag("neuron-monitor", neuron_testdata.join("fake-neuron-monitor").display().to_string())
        .env("FAKE_NEURON_FIXTURE", neuron_testdata.join("inf2.xlarge.jsonl").display().to_string())
        .env("FAKE_NEURON_INTERVAL_MS", "200")
        .flag("stream-heartbeat", "200ms")
        .flag("node-name", "node-a");
    let agent = agent_builder.clone().start();
    eventually(PATIENCE, "GPU and NeuronCore series from the fakes", || {
        let m = agent.metrics();
        (sample(&m, dcgm::GPU_UTIL.name).is_some() && sample(&m, neuron::NEURONCORE_UTILIZATION_RATIO.name).is_some())
            .then_some(())
    });

    let model = dir.path().join("tiny");
    let out = std::process::Command::new(artifact("edge-inference")).arg("tiny-model").arg(&model).output().unwrap();
    assert!(out.status.success(), "tiny-model: {}", String::from_utf8_lossy(&out.stderr));
    // The nvidia worker tells devices where to find it (its own loopback address here; a node
    // address and NodePort in Kubernetes).
    let nvidia_addr = format!("127.0.0.1:{}", edge_testkit::free_port());
    let nvidia_url = format!("http://{nvidia_addr}");
    let nvidia = worker_builder(&model, &agent, "nvidia")
        .flag("listen", nvidia_addr.as_str())
        .flag("advertise-url", nvidia_url.as_str())
        .start();
    let neuron_worker = worker(&model, &agent, "neuron");
    eventually(PATIENCE, "both idle workers at the agent", || {
        (agent_queue(&agent, "nvidia")? == 0.0 && agent_queue(&agent, "neuron")? == 0.0).then_some(())
    });

    let mut scaler = ScalerBuilder::new(artifact("edge-scaler"))
        .flag("agents", agent.addr.to_string())
        .flag("stale-after", "2s")
        .flag("reconnect-max", "500ms")
        .start();
    let keda = Keda::connect(scaler.addr);
    let (nv, ne) = (trigger(NS, "nvidia"), trigger(NS, "neuron"));
    eventually(PATIENCE, "both triggers at 0 through the scaler", || {
        (keda.metric(&nv).ok()? == 0.0 && keda.metric(&ne).ok()? == 0.0).then_some(())
    });
    assert!(!keda.is_active(&nv).unwrap() && !keda.is_active(&ne).unwrap());
    let (nv_pushes, ne_pushes) = (keda.stream_is_active(&nv), keda.stream_is_active(&ne));
    eventually(PATIENCE, "the advertised worker, alone, in the inventory", || {
        (inventory(&scaler) == [(nvidia_url.clone(), 0)]).then_some(())
    });
    let via_inventory: std::net::SocketAddr = nvidia_url.trim_start_matches("http://").parse().unwrap();
    assert_eq!(http::get(via_inventory, "/readyz").unwrap().0, 200, "the listed URL reaches the worker");

    // Burst 1: one request runs, two wait.
    let requests = burst(&nvidia, 3);
    eventually(PATIENCE, "a true on the nvidia StreamIsActive", || (!nv_pushes.received().is_empty()).then_some(()));
    scaler_follows_queue(&keda, &nvidia, &nv, 2.0);
    eventually(PATIENCE, "the inventory showing the worker's queue of 2", || {
        let before = worker_queue(&nvidia)?;
        let listed = inventory(&scaler);
        let after = worker_queue(&nvidia)?;
        (before == 2.0 && after == 2.0 && listed == [(nvidia_url.clone(), 2)]).then_some(())
    });
    assert!(keda.is_active(&nv).unwrap(), "IsActive agrees with the push");
    assert_eq!(keda.metric(&ne).unwrap(), 0.0, "the neuron queue is untouched");
    assert!(!keda.is_active(&ne).unwrap(), "the neuron trigger stays inactive");
    drains(&keda, &nv, requests);
    assert_eq!(nv_pushes.received(), [true], "exactly one activation for one burst");
    assert!(ne_pushes.received().is_empty(), "the neuron stream got {:?}", ne_pushes.received());

    // The agent dies: with nothing fresh left the scaler answers UNAVAILABLE
    // (KEDA applies the ScaledObject's fallback) rather than a false 0.
    drop(agent);
    eventually(PATIENCE, "UNAVAILABLE while the agent is gone", || {
        matches!(keda.metric(&nv), Err(s) if s.code() == tonic::Code::Unavailable).then_some(())
    });
    // Restarted on the same ports: the workers' next reports and the
    // scaler's reconnect bring everything back, nobody told to.
    let agent = agent_builder.start();
    eventually(PATIENCE, "both triggers at 0 again after the restart", || {
        (keda.metric(&nv).ok()? == 0.0 && keda.metric(&ne).ok()? == 0.0 && agent_queue(&agent, "neuron")? == 0.0)
            .then_some(())
    });
    let disconnects = sample(&scaler.metrics(), &format!("{}_total", scaler::AGENT_DISCONNECTS.name));
    assert!(disconnects >= Some(1.0), "the scaler saw the agent go: {disconnects:?}\n{}", scaler.log());

    // Burst 2 on the same, still open, streams.
    let requests = burst(&nvidia, 2);
    eventually(PATIENCE, "a second true on the nvidia stream", || (nv_pushes.received().len() == 2).then_some(()));
    scaler_follows_queue(&keda, &nvidia, &nv, 1.0);
    assert!(!keda.is_active(&ne).unwrap());
    drains(&keda, &nv, requests);

    // SIGTERM: the scaler ends the streams with OK; nothing else was pushed.
    assert!(scaler.terminate().success(), "{}", scaler.log());
    for pushes in [&nv_pushes, &ne_pushes] {
        let ended = eventually(PATIENCE, "the stream to end", || pushes.ended.lock().unwrap().clone());
        assert!(ended.is_ok(), "{ended:?}");
    }
    assert_eq!(nv_pushes.received(), [true, true], "one activation per burst");
    assert!(ne_pushes.received().is_empty(), "the neuron stream got {:?}", ne_pushes.received());
    drop(neuron_worker);
}
