//! Process handles for the scaler and the inference worker, shaped like
//! [`crate::AgentBuilder`]: loopback ports chosen here, flags as `--name=value`,
//! the child's log kept in a temp file for failure messages, killed on drop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, http};

/// How long a child may take to start or stop on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

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
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
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
}

/// Builds an `edge-inference serve` command line on a model directory, with a
/// loopback `--listen` and one candle thread (parallel tests share few cores).
#[derive(Debug, Clone)]
pub struct WorkerBuilder {
    bin: PathBuf,
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
        Self { bin: bin.into(), flags, env }
    }

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

    /// Starts the worker and waits until `/readyz` answers 200 (model loaded,
    /// warm-up step done).
    pub fn start(self) -> Worker {
        let addr: SocketAddr = self.flags["listen"].parse().expect("--listen is an address");
        let mut proc = Proc::spawn("edge-inference", command(&self.bin, &["serve"], &self.flags, &self.env));
        proc.wait_ready(|| matches!(http::get(addr, "/readyz"), Ok((200, _))));
        Worker { proc, addr }
    }
}

/// A running `edge-inference serve`; killed on drop.
pub struct Worker {
    proc: Proc,
    /// The HTTP API address.
    pub addr: SocketAddr,
}

impl Worker {
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

    /// Sends SIGTERM and waits for the exit status (the worker drains first).
    pub fn terminate(&mut self) -> ExitStatus {
        self.proc.terminate()
    }
}
