//! Shared by the scaler's process-level tests: start a real `edge-scaler`,
//! real `edge-agent`s, and talk to the scaler with the KEDA client generated
//! from the project's own `externalscaler.proto`.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use edge_scaler::keda::external_scaler_client::ExternalScalerClient;
use edge_scaler::keda::{GetMetricsRequest, ScaledObjectRef};
use edge_testkit::{Agent, AgentBuilder, free_port, http};
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

/// A running `edge-scaler`; killed on drop.
pub struct Scaler {
    child: Child,
    /// The KEDA gRPC address.
    pub addr: SocketAddr,
    /// The /metrics address.
    pub metrics_addr: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Scaler {
    /// Starts the scaler with `flags` (plus loopback --listen/--metrics-listen)
    /// and waits until both ports answer.
    pub fn start(flags: &[(&str, String)], env: &[(&str, String)]) -> Scaler {
        Self::start_at(loopback(free_port()), flags, env)
    }

    /// [`Scaler::start`] with its HTTP port at `metrics_addr` (known before
    /// it starts, as peers need).
    pub fn start_at(metrics_addr: SocketAddr, flags: &[(&str, String)], env: &[(&str, String)]) -> Scaler {
        let addr = loopback(free_port());
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-scaler"));
        cmd.arg(format!("--listen={addr}")).arg(format!("--metrics-listen={metrics_addr}"));
        for (k, v) in flags {
            cmd.arg(format!("--{k}={v}"));
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .env("EDGE_SCALER_LOG", "info,edge_scaler=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("reopen log"));
        let child = cmd.spawn().expect("spawn edge-scaler");
        let mut scaler = Scaler { child, addr, metrics_addr, log };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = scaler.child.try_wait().expect("try_wait") {
                panic!("edge-scaler exited with {status}; its log:\n{}", scaler.log());
            }
            if matches!(http::get(metrics_addr, "/healthz"), Ok((200, _)))
                && std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            {
                return scaler;
            }
            assert!(Instant::now() < deadline, "edge-scaler not up; its log:\n{}", scaler.log());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the scaler logged so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(self.log.path()).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// `GET /metrics`.
    pub fn metrics(&self) -> String {
        let (status, body) = http::get(self.metrics_addr, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// A KEDA client over plain HTTP/2.
    pub async fn client(&self) -> ExternalScalerClient<Channel> {
        ExternalScalerClient::connect(format!("http://{}", self.addr)).await.expect("connect to the scaler")
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "edge-scaler did not exit after SIGTERM; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Scaler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
