//! Starting the real `edge-inference` binary and talking HTTP to it. The
//! client keeps bodies as bytes (PNGs) and headers (Retry-After), which the
//! shared harness's text client does not.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_edge-inference");

/// A tiny model written by the binary's own `tiny-model` subcommand.
pub fn tiny_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).arg("tiny-model").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "tiny-model failed: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A metric's `dur` from the `Server-Timing` header, in milliseconds.
    pub fn server_timing(&self, name: &str) -> Option<f64> {
        self.header("server-timing")?
            .split(',')
            .find_map(|part| part.trim().strip_prefix(name)?.strip_prefix(";dur=")?.parse().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Writes a request on a fresh connection and returns the open stream.
pub fn send(addr: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<TcpStream> {
    send_bytes(addr, method, path, "application/json", body.as_bytes())
}

/// `send` with any content type and a binary body (multipart forms).
pub fn send_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    Ok(stream)
}

/// Reads a whole response from a stream `send` returned.
pub fn receive(mut stream: TcpStream) -> std::io::Result<Response> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))).collect();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body);
    }
    Ok(Response { status, headers, body })
}

pub fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<Response> {
    receive(send(addr, method, path, body)?)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let Ok(n) = usize::from_str_radix(String::from_utf8_lossy(&body[..eol]).trim(), 16) else { break };
        if n == 0 || body.len() < eol + 2 + n {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + n]);
        body = &body[(eol + 4 + n).min(body.len())..];
    }
    out
}

/// Decodes a PNG: (width, height, RGB bytes).
pub fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("valid PNG header");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("valid PNG data");
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// A running `edge-inference serve`; killed on drop.
pub struct Worker {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

pub struct WorkerBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    model_dir: PathBuf,
}

impl WorkerBuilder {
    pub fn new(model_dir: &Path) -> Self {
        Self { args: Vec::new(), env: Vec::new(), model_dir: model_dir.to_owned() }
    }

    pub fn arg(mut self, flag: &str, value: impl Into<String>) -> Self {
        self.args.push(format!("--{flag}={}", value.into()));
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Starts the worker without waiting.
    pub fn spawn(self) -> Worker {
        let addr: SocketAddr = format!("127.0.0.1:{}", edge_testkit::free_port()).parse().unwrap();
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("worker.log");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg(format!("--model-dir={}", self.model_dir.display()))
            .arg(format!("--listen={addr}"))
            .arg("--default-size=64x64")
            .args(&self.args)
            .env("EDGE_INFERENCE_LOG", "info,edge_inference=debug")
            // One candle thread per worker keeps parallel tests from oversubscribing CI's cores.
            .env("RAYON_NUM_THREADS", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().unwrap();
        Worker { child, addr, log, _logdir: logdir }
    }

    /// Starts the worker and waits until `/readyz` says ready.
    pub fn start(self) -> Worker {
        let mut w = self.spawn();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = w.child.try_wait().unwrap() {
                panic!("edge-inference exited with {status} before it was ready; log:\n{}", w.log());
            }
            if matches!(request(w.addr, "GET", "/readyz", ""), Ok(r) if r.status == 200) {
                return w;
            }
            assert!(Instant::now() < deadline, "edge-inference not ready in time; log:\n{}", w.log());
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Worker {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn post(&self, path: &str, body: &serde_json::Value) -> Response {
        request(self.addr, "POST", path, &body.to_string()).expect("POST")
    }

    pub fn metrics(&self) -> String {
        request(self.addr, "GET", "/metrics", "").expect("GET /metrics").text()
    }

    pub fn metric(&self, series: &str) -> Option<f64> {
        edge_testkit::sample(&self.metrics(), series)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "edge-inference did not exit; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
