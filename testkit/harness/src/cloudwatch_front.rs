//! Starts `testkit/cloudwatch-front` (moto's CloudWatch behind the RPC v2
//! CBOR front) on a loopback port, and drives its fault switch.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::http;

/// The region every test uses; moto keeps one store per region.
pub const REGION: &str = "us-east-1";

/// The Python with moto and cbor2: `EDGE_TEST_PYTHON`, or the venv
/// `scripts/install-test-deps` creates.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGE_TEST_PYTHON") {
        return p.into();
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    let venv = PathBuf::from(home).join(".cache/edge-diffusion/venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/install-test-deps (it installs moto[server] and cbor2 there)",
        venv.display()
    );
    venv
}

/// A running front; killed on drop.
pub struct Front {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Front {
    /// Starts it on a free port and waits until it listens.
    pub fn start() -> Front {
        Self::start_on(0)
    }

    /// Starts it on `port` (0: a free one), e.g. again where a killed one was.
    pub fn start_on(port: u16) -> Front {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cloudwatch-front/front.py");
        let mut child = Command::new(python())
            .arg(&script)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        // Importing moto takes seconds on a loaded machine.
        let line = rx.recv_timeout(Duration::from_secs(120)).expect("the front printed its port");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the front: {line:?}"));
        Front { child, addr }
    }

    /// The endpoint URL for `AWS_ENDPOINT_URL_CLOUDWATCH`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Makes CloudWatch calls fail (`500`, `throttle`, `drop`) or work (`off`).
    pub fn fault(&self, mode: &str) {
        let (status, body) =
            http::post_json(self.addr, "/_front/fault", &serde_json::json!({ "mode": mode }).to_string()).unwrap();
        assert_eq!(status, 204, "{body}");
    }

    /// What arrived so far.
    pub fn stats(&self) -> serde_json::Value {
        let (status, body) = http::get(self.addr, "/_front/stats").unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
