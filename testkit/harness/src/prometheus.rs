//! A real Prometheus server (Debian's package) scraping loopback targets,
//! queried through its HTTP API; its command line, config and query answers
//! are [`edge_telemetry::prometheus_server`]'s, as in the CLI's benchmark.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edge_telemetry::prometheus_server;
use serde_json::Value;

use crate::{eventually, free_port, http};

/// A running `prometheus`; killed on drop.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping every `(job, target)` once a second and waits
    /// until it answers `/-/ready`.
    pub fn start(targets: &[(&str, SocketAddr)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
        let args = prometheus_server::prepare(dir.path(), addr, targets).expect("prometheus config");
        let bin = prometheus_server::binary().unwrap_or_else(|e| panic!("{e}"));
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let mut prometheus = Self { child, addr, dir };
        eventually(Duration::from_secs(60), "prometheus /-/ready", || {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!("prometheus exited with {status}; its log:\n{}", prometheus.log());
            }
            matches!(http::get(prometheus.addr, "/-/ready"), Ok((200, _))).then_some(())
        });
        prometheus
    }

    /// The address of its HTTP API.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Runs an instant query; `Ok` holds the result vector (possibly empty),
    /// `Err` Prometheus's error (e.g. a PromQL parse error).
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let path = prometheus_server::query_path(expr);
        let r = http::get_response(self.addr, &path).map_err(|e| format!("GET {path}: {e}"))?;
        prometheus_server::query_result(r.status, &r.body).map_err(|e| e.to_string())
    }

    /// Waits until every scrape target is up.
    pub fn wait_targets_up(&self, count: usize) {
        eventually(Duration::from_secs(60), "every scrape target up", || {
            let up = self.query("up == 1").ok()?;
            (up.len() >= count).then_some(())
        });
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `text` as a Prometheus text exposition on a loopback port, for a
/// scrape target that stands in for a Kubernetes component (e.g.
/// kube-state-metrics). The server thread lives as long as the test process.
pub fn serve_exposition(text: String) -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    addr
}
