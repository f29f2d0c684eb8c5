//! Shared by the scaler's process-level tests: start a real `edge-scaler`,
//! real `edge-agent`s, and talk to the scaler with the KEDA client generated
//! from the project's own `externalscaler.proto`.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use edge_scaler::keda::external_scaler_client::ExternalScalerClient;
use edge_scaler::keda::{GetMetricsRequest, ScaledObjectRef};
use edge_testkit::{Agent, AgentBuilder, ScalerBuilder, free_port};
use tonic::transport::Channel;

/// Generous bound for anything that crosses processes on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The namespace the test workers report and the ScaledObjects live in.
pub const NS: &str = "inference";

/// An agent with a loopback report port, a fast stream heartbeat and a zone.
pub fn start_agent(zone: &str) -> Agent {
    agent_builder(zone).start()
}

/// The builder behind [`start_agent`], to add flags.
pub fn agent_builder(zone: &str) -> AgentBuilder {
    AgentBuilder::new(edge_testkit::artifact("edge-agent"))
        .flag("stream-heartbeat", "200ms")
        .flag("zone", zone)
        .flag("node-name", format!("node-{zone}"))
}

/// Reports one worker's queue to `agent` (what a worker does on every change).
pub fn report(agent: &Agent, worker: &str, deployment: &str, accelerator: &str, queue: u32, in_flight: u32) {
    report_with(agent, worker, deployment, accelerator, queue, in_flight, serde_json::json!({}));
}

/// [`report`] with extra report fields (`labels`, …) merged in.
pub fn report_with(
    agent: &Agent,
    worker: &str,
    deployment: &str,
    accelerator: &str,
    queue: u32,
    in_flight: u32,
    extra: serde_json::Value,
) {
    let mut body = serde_json::json!({
        "worker_id": worker,
        "pod": worker,
        "namespace": NS,
        "deployment": deployment,
        "accelerator": accelerator,
        "queue_depth": queue,
        "in_flight": in_flight,
        "capacity": 16,
    });
    for (k, v) in extra.as_object().expect("extra fields are an object") {
        body[k] = v.clone();
    }
    let (status, reply) = agent.report(&body.to_string());
    assert_eq!(status, 204, "report refused: {reply}");
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub use edge_testkit::Scaler;

/// Starts the scaler with `flags` (plus loopback --listen/--metrics-listen)
/// and waits until both ports answer.
pub fn start_scaler(flags: &[(&str, String)], env: &[(&str, String)]) -> Scaler {
    start_scaler_at(loopback(free_port()), flags, env)
}

/// [`start_scaler`] with its HTTP port at `metrics_addr` (known before it
/// starts, as peers need).
pub fn start_scaler_at(metrics_addr: SocketAddr, flags: &[(&str, String)], env: &[(&str, String)]) -> Scaler {
    let mut scaler =
        ScalerBuilder::new(env!("CARGO_BIN_EXE_edge-scaler")).flag("metrics-listen", metrics_addr.to_string());
    for (k, v) in flags {
        scaler = scaler.flag(k, v.clone());
    }
    for (k, v) in env {
        scaler = scaler.env(k, v.clone());
    }
    scaler.start()
}

/// Trigger metadata as KEDA sends it (with its own `scalerAddress`).
pub fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    m.insert("scalerAddress".into(), "edge-scaler.edge:9500".into());
    m
}

/// The ScaledObject reference KEDA sends.
pub fn object(pairs: &[(&str, &str)]) -> ScaledObjectRef {
    ScaledObjectRef { name: "sd".into(), namespace: NS.into(), scaler_metadata: metadata(pairs) }
}

/// `GetMetrics` as KEDA calls it: with the name from `GetMetricSpec`.
pub async fn get_metric(
    client: &mut ExternalScalerClient<Channel>,
    pairs: &[(&str, &str)],
) -> Result<f64, tonic::Status> {
    let spec = client.get_metric_spec(object(pairs)).await?.into_inner();
    let name = spec.metric_specs[0].metric_name.clone();
    let reply = client
        .get_metrics(GetMetricsRequest { scaled_object_ref: Some(object(pairs)), metric_name: name.clone() })
        .await?
        .into_inner();
    assert_eq!(reply.metric_values.len(), 1);
    let v = &reply.metric_values[0];
    assert_eq!(v.metric_name, name);
    assert_eq!(v.metric_value, v.metric_value_float.round() as i64, "int and float agree");
    Ok(v.metric_value_float)
}
