//! Process handles for the scaler, the inference worker, the reporting proxy
//! and the third-party-shaped SD server it fronts in tests, shaped like
//! [`crate::AgentBuilder`]: loopback ports chosen here, flags as `--name=value`,
//! the child's log kept in a temp file for failure messages, killed on drop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use edge_telemetry::keda::external_scaler_client::ExternalScalerClient;
use tonic::transport::Channel;

use crate::{free_port, http};

/// How long a child may take to start or stop on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long an image generation may wait for its answer (queued behind
/// others on a loaded machine).
pub const GENERATION_PATIENCE: Duration = Duration::from_secs(120);

/// `flag` and `env` for a builder with `flags` and `env` fields.
macro_rules! flag_and_env {
    () => {
        /// Sets `--name value`, replacing a default.
        pub fn flag(mut self, name: &str, value: impl Into<String>) -> Self {
            self.flags.insert(name.to_owned(), value.into());
            self
        }

        /// Sets an environment variable for the child.
        pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
            self.env.push((key.to_owned(), value.into()));
            self
        }
    };
}

/// A child process with its log file.
struct Proc {
    name: &'static str,
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command) -> Self {
        let log = tempfile::NamedTempFile::new().expect("log file");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log.reopen().expect("reopen log"));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Self { name, child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits until `ready` holds, panicking with the log if the child exits first.
    fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("{} exited with {status} before it was ready; its log:\n{}", self.name, self.log());
            }
            if ready() {
                return;
            }
            assert!(Instant::now() < deadline, "{} not ready after {PATIENCE:?}; its log:\n{}", self.name, self.log());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait()
    }

    fn sigterm(&self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit after SIGTERM; its log:\n{}", self.name, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

fn command(bin: &Path, pre: &[&str], flags: &BTreeMap<String, String>, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(pre);
    for (k, v) in flags {
        cmd.arg(format!("--{k}={v}"));
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Builds an `edge-scaler` command line: loopback `--listen` and
/// `--metrics-listen`, debug logs; the test adds `--agents` (or other discovery).
#[derive(Debug, Clone)]
pub struct ScalerBuilder {
    bin: PathBuf,
    flags: BTreeMap<String, String>,
    env: Vec<(String, String)>,
}

impl ScalerBuilder {
    /// A scaler from `bin` (e.g. `artifact("edge-scaler")`).
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        let mut flags = BTreeMap::new();
        flags.insert("listen".to_owned(), loopback().to_string());
        flags.insert("metrics-listen".to_owned(), loopback().to_string());
        Self { bin: bin.into(), flags, env: vec![("EDGE_SCALER_LOG".into(), "info,edge_scaler=debug".into())] }
    }

    flag_and_env!();

    /// Starts the scaler and waits until its gRPC port accepts connections
    /// and its `/healthz` answers 200.
    pub fn start(self) -> Scaler {
        let addr: SocketAddr = self.flags["listen"].parse().expect("--listen is an address");
        let metrics_addr: SocketAddr = self.flags["metrics-listen"].parse().expect("--metrics-listen is an address");
        let mut proc = Proc::spawn("edge-scaler", command(&self.bin, &[], &self.flags, &self.env));
        proc.wait_ready(|| {
            matches!(http::get(metrics_addr, "/healthz"), Ok((200, _)))
                && std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        });
        Scaler { proc, addr, metrics_addr }
    }
}

/// A running `edge-scaler`; killed on drop.
pub struct Scaler {
    proc: Proc,
    /// The KEDA gRPC address.
    pub addr: SocketAddr,
    /// The scaler's own `/metrics` address.
    pub metrics_addr: SocketAddr,
}

impl Scaler {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// Everything the scaler logged so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The scaler's own `/metrics`.
    pub fn metrics(&self) -> String {
        let (status, body) = http::get(self.metrics_addr, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.proc.terminate()
    }

    /// A KEDA client (generated from the project's `externalscaler.proto`) over plain HTTP/2.
    pub async fn client(&self) -> ExternalScalerClient<Channel> {
        ExternalScalerClient::connect(format!("http://{}", self.addr)).await.expect("connect to the scaler")
    }
}

/// Builds an `edge-inference serve` command line on a model directory, with a
/// loopback `--listen` and one candle thread (parallel tests share few cores);
/// or, from [`WorkerBuilder::proxy`], an `edge-inference proxy` one.
#[derive(Debug, Clone)]
pub struct WorkerBuilder {
    bin: PathBuf,
    subcommand: &'static str,
    /// What answers 200 once it is up: the worker's `/readyz`, the proxy's
    /// `/healthz` (its `/readyz` follows the upstream's health).
    ready_path: &'static str,
    flags: BTreeMap<String, String>,
    env: Vec<(String, String)>,
}

impl WorkerBuilder {
    /// A worker from `bin` (e.g. `artifact("edge-inference")`) serving `model_dir`.
    pub fn new(bin: impl Into<PathBuf>, model_dir: &Path) -> Self {
        let mut flags = BTreeMap::new();
        flags.insert("model-dir".to_owned(), model_dir.display().to_string());
        flags.insert("listen".to_owned(), loopback().to_string());
        let env = vec![
            ("EDGE_INFERENCE_LOG".into(), "info,edge_inference=debug".into()),
            ("RAYON_NUM_THREADS".into(), "1".into()),
        ];
        Self { bin: bin.into(), subcommand: "serve", ready_path: "/readyz", flags, env }
    }

    /// An `edge-inference proxy` from `bin` in front of `upstream` (`http://HOST:PORT`), with a
    /// loopback `--listen`; the test adds `--agent`, `--accelerator`, ….
    pub fn proxy(bin: impl Into<PathBuf>, upstream: &str) -> Self {
        let mut flags = BTreeMap::new();
        flags.insert("listen".to_owned(), loopback().to_string());
        flags.insert("upstream".to_owned(), upstream.to_owned());
        let env = vec![("EDGE_INFERENCE_LOG".into(), "info,edge_inference=debug".into())];
        Self { bin: bin.into(), subcommand: "proxy", ready_path: "/healthz", flags, env }
    }

    flag_and_env!();

    fn proc(&self) -> Proc {
        Proc::spawn("edge-inference", command(&self.bin, &[self.subcommand], &self.flags, &self.env))
    }

    fn addr(&self) -> SocketAddr {
        self.flags["listen"].parse().expect("--listen is an address")
    }

    /// Starts it and waits until it is up: a worker's `/readyz` answers 200
    /// (model loaded, warm-up step done), a proxy's `/healthz`.
    pub fn start(self) -> Worker {
        let mut worker = self.spawn();
        worker.proc.wait_ready(|| matches!(http::get(worker.addr, self.ready_path), Ok((200, _))));
        worker
    }

    /// Starts it without waiting (a test of how it fails to start).
    pub fn spawn(&self) -> Worker {
        Worker { proc: self.proc(), addr: self.addr() }
    }

    /// Runs it to its exit (a bad flag), returning its status and log.
    pub fn run_to_exit(self) -> (ExitStatus, String) {
        let mut proc = self.proc();
        let status = proc.wait();
        (status, proc.log())
    }
}

/// A running `edge-inference serve` (or `proxy`); killed on drop.
pub struct Worker {
    proc: Proc,
    /// The HTTP API address.
    pub addr: SocketAddr,
}

impl Worker {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// Everything the worker logged so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The worker's own `/metrics`.
    pub fn metrics(&self) -> String {
        let (status, body) = http::get(self.addr, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    /// The value of one series of its `/metrics` (see [`crate::sample`]).
    pub fn metric(&self, series: &str) -> Option<f64> {
        crate::sample(&self.metrics(), series)
    }

    /// `POST path` with a JSON body, waiting up to [`GENERATION_PATIENCE`].
    pub fn post(&self, path: &str, body: &serde_json::Value) -> http::Response {
        http::post_response(self.addr, path, &body.to_string(), GENERATION_PATIENCE)
            .unwrap_or_else(|e| panic!("POST {path}: {e}; log:\n{}", self.log()))
    }

    /// Sends SIGTERM and waits for the exit status (the worker drains first).
    pub fn terminate(&mut self) -> ExitStatus {
        self.proc.terminate()
    }

    /// Sends SIGTERM without waiting (it drains what it accepted).
    pub fn sigterm(&self) {
        self.proc.sigterm();
    }

    /// Waits for the exit status (after [`Worker::sigterm`]).
    pub fn wait(&mut self) -> ExitStatus {
        self.proc.wait()
    }
}

/// A running `edge-inference proxy`: the same handle as the worker's.
pub type Proxy = Worker;

/// Starts `testkit/sd-upstream/upstream.py` (Python 3, standard library
/// only): a server shaped like AUTOMATIC1111 and OpenAI-style SD servers,
/// which knows nothing of edge-diffusion. Clone before `start` to restart it
/// on the same port.
#[derive(Debug, Clone)]
pub struct SdUpstreamBuilder {
    port: u16,
    args: Vec<String>,
}

impl Default for SdUpstreamBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SdUpstreamBuilder {
    /// On a free loopback port, answering at once.
    pub fn new() -> Self {
        Self { port: free_port(), args: Vec::new() }
    }

    /// Seconds each generation sleeps, as a model would compute.
    pub fn sleep(mut self, seconds: f64) -> Self {
        self.args.push(format!("--sleep={seconds}"));
        self
    }

    /// Adds a flag of the script (`--image-bytes=N`, `--chunked`).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it and waits until `GET /internal/ping` (A1111's health route) answers 200.
    pub fn start(&self) -> SdUpstream {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sd-upstream/upstream.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(format!("--port={}", self.port)).args(&self.args);
        let mut proc = Proc::spawn("sd-upstream (python3)", cmd);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        proc.wait_ready(|| matches!(http::get(addr, "/internal/ping"), Ok((200, _))));
        SdUpstream { _proc: proc, addr }
    }
}

/// A running test upstream; killed (SIGKILL, as a crash) on drop.
pub struct SdUpstream {
    _proc: Proc,
    /// Its address.
    pub addr: SocketAddr,
}

impl SdUpstream {
    /// Its `GET /stats`: `active`, `max_active` (most generations at once), `served`, `received_bytes`.
    pub fn stats(&self) -> serde_json::Value {
        let (status, body) = http::get(self.addr, "/stats").expect("GET /stats");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("stats are JSON")
    }
}
