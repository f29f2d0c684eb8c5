//! Test harness: starts the project's real binaries as child processes and
//! talks to them over their real interfaces (HTTP, gRPC, Unix sockets).
//!
//! Nothing here fakes the code under test; the fakes at the machine boundary
//! (the NVML library, neuron-monitor, the kubelet) live in their own places under
//! `testkit/` and `testdata/`.

pub mod cloudwatch_front;
pub mod fake_kube;
pub mod fake_kubelet;
pub mod fake_nvml;
pub mod fuzz;
pub mod http;
pub mod process;
pub mod prometheus;
pub mod promtool;

pub use edge_telemetry::loopback::free_port;
pub use process::{Proxy, Scaler, ScalerBuilder, SdUpstream, SdUpstreamBuilder, Worker, WorkerBuilder};

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edge_telemetry::proto::NodeSnapshot;
use edge_telemetry::proto::snapshot_feed_client::SnapshotFeedClient;

/// The cargo target profile directory the running test binary lives in
/// (e.g. `target/debug`), where workspace binaries and cdylibs land: a test
/// runs from `target/debug/deps/<test>-<hash>`, a workspace binary (the soak)
/// from `target/debug/<bin>`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("a binary inside target/<profile>");
    if dir.file_name().is_some_and(|n| n == "deps") { dir.parent().expect("target/<profile>/deps") } else { dir }
        .to_owned()
}

/// A workspace artifact built into the target dir; panics with what to run if
/// it is missing (`scripts/test` builds the whole workspace first).
pub fn artifact(file_name: &str) -> PathBuf {
    let path = target_dir().join(file_name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`, as scripts/test does)",
        path.display()
    );
    path
}

/// The fake NVML library (`testkit/fake-nvml`).
pub fn fake_nvml_library() -> PathBuf {
    artifact("libfake_nvml.so")
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout`
/// with `what` in the message.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`eventually`] for checks that await (a gRPC call, an async client): polls
/// `check` every 20 ms on the tokio timer until it returns `Some`, or panics
/// after `timeout` with `what` in the message.
pub async fn eventually_async<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Builds an `edge-agent` command line with loopback ports and every device
/// collector off unless a test turns it on. Clone it before `start` to
/// restart the same agent (same ports, flags and environment) later.
#[derive(Debug, Clone)]
pub struct AgentBuilder {
    bin: PathBuf,
    flags: BTreeMap<String, String>,
    env: Vec<(String, String)>,
}

impl AgentBuilder {
    /// An agent from `bin` (use `env!("CARGO_BIN_EXE_edge-agent")` in the
    /// agent's own tests, [`artifact`] elsewhere).
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        let mut flags = BTreeMap::new();
        for (k, v) in [
            ("listen", format!("127.0.0.1:{}", free_port())),
            ("report-listen", format!("127.0.0.1:{}", free_port())),
            ("nvml-library", String::new()),
            ("neuron-monitor", String::new()),
            ("pod-resources-socket", String::new()),
            ("interval", "200ms".to_owned()),
            ("node-name", "test-node".to_owned()),
        ] {
            flags.insert(k.to_owned(), v);
        }
        Self { bin: bin.into(), flags, env: Vec::new() }
    }

    /// Sets `--name value`, replacing a default.
    pub fn flag(mut self, name: &str, value: impl Into<String>) -> Self {
        self.flags.insert(name.to_owned(), value.into());
        self
    }

    /// Drops a flag, default included, so the agent falls back to its
    /// `EDGE_AGENT_*` variable or built-in default (as in a pod whose
    /// manifest sets it through the environment).
    pub fn unset(mut self, name: &str) -> Self {
        self.flags.remove(name);
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Starts the agent and waits until `/readyz` answers 200.
    pub fn start(self) -> Agent {
        let addr: SocketAddr = self.flags["listen"].parse().expect("--listen is an address");
        let report_addr = self.flags.get("report-listen").and_then(|v| v.parse().ok());
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut cmd = Command::new(&self.bin);
        for (k, v) in &self.flags {
            cmd.arg(format!("--{k}={v}"));
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("EDGE_AGENT_LOG", "info,edge_agent=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("reopen log"));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        let mut agent = Agent { child, addr, report_addr, log };
        agent.wait_ready(Duration::from_secs(20));
        agent
    }
}

/// A running `edge-agent`; killed on drop.
pub struct Agent {
    child: Child,
    /// The public port (HTTP + gRPC).
    pub addr: SocketAddr,
    /// The loopback report port, if enabled.
    pub report_addr: Option<SocketAddr>,
    log: tempfile::NamedTempFile,
}

impl Agent {
    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("edge-agent exited with {status} before it was ready; its log:\n{}", self.log());
            }
            if matches!(http::get(self.addr, "/readyz"), Ok((200, _))) {
                return;
            }
            assert!(Instant::now() < deadline, "edge-agent not ready after {timeout:?}; its log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(self.log.path()).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// `GET /metrics` in the classic text format.
    pub fn metrics(&self) -> String {
        let (status, body) = http::get(self.addr, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    /// Posts a worker report to the loopback report port.
    pub fn report(&self, body: &str) -> (u16, String) {
        let addr = self.report_addr.expect("agent started without --report-listen");
        http::post_json(addr, edge_telemetry::report::REPORT_PATH, body).expect("POST report")
    }

    /// Opens the gRPC snapshot feed.
    pub async fn watch(&self) -> tonic::Streaming<NodeSnapshot> {
        let mut client =
            SnapshotFeedClient::connect(format!("http://{}", self.addr)).await.expect("connect to snapshot feed");
        client.watch(edge_telemetry::proto::WatchRequest {}).await.expect("Watch").into_inner()
    }

    /// The first snapshot on the gRPC feed that satisfies `done`; panics
    /// after `timeout`. Each tick changes the snapshot (at least the
    /// collectors' durations), so this also waits for ticks.
    pub fn snapshot_until(&self, timeout: Duration, mut done: impl FnMut(&NodeSnapshot) -> bool) -> NodeSnapshot {
        let wanted = async {
            let mut feed = self.watch().await;
            loop {
                let snapshot = feed.message().await.expect("feed error").expect("feed open");
                if done(&snapshot) {
                    return snapshot;
                }
            }
        };
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        // The timer must be created inside the runtime.
        runtime.block_on(async { tokio::time::timeout(timeout, wanted).await }).unwrap_or_else(|_| {
            panic!("no awaited snapshot on the feed within {timeout:?}; agent log:\n{}", self.log())
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the agent at once (SIGKILL: no shutdown of its own) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "edge-agent did not exit after SIGTERM; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the first sample line `name{labels} value` whose series
/// starts with `series` (a metric name, optionally with the opening of its
/// label set), from a text exposition.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(series) && matches!(l.as_bytes().get(series.len()), Some(b' ' | b'{' | b',' | b'}')))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The value of the first sample `name{…}` whose label set includes every
/// `(key, value)` of `labels`, in any order, from a text exposition.
pub fn sample_with(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, v) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        let wanted = n == name && labels.iter().all(|(k, val)| rest.contains(&format!("{k}=\"{val}\"")));
        wanted.then(|| v.parse().ok()).flatten()
    })
}
