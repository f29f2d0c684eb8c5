//! Telling the node agent how much work is waiting: an
//! `edge_telemetry::WorkerReport` posted to the agent's `/v1/reports` over its
//! Unix socket or loopback port, on every change of the queue (coalesced) and
//! at least once per interval. An unreachable agent never stops the worker:
//! it logs once and keeps retrying quietly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use edge_telemetry::WorkerReport;
use edge_telemetry::http1;
use edge_telemetry::report::REPORT_PATH;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::queue::Counts;

/// Reports closer together than this are merged into one.
const MIN_GAP: Duration = Duration::from_millis(10);
/// How long one report may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the agent listens for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAddr {
    /// The agent's loopback TCP port.
    Tcp(SocketAddr),
    /// The agent's Unix socket (a hostPath shared by agent and worker pods).
    Unix(PathBuf),
}

impl FromStr for AgentAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with('/') || s.starts_with('.') {
            return Ok(Self::Unix(PathBuf::from(s)));
        }
        let addr: SocketAddr = s.parse().map_err(|_| {
            format!("{s:?} is neither a Unix socket path (starting with / or .) nor a loopback HOST:PORT")
        })?;
        if !addr.ip().is_loopback() {
            return Err(format!("{s:?} is not a loopback address; reports stay on the node"));
        }
        Ok(Self::Tcp(addr))
    }
}

impl std::fmt::Display for AgentAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The report with the queue's current counts filled in. A draining worker,
/// or one whose backend is down (the proxy's upstream), leaves its endpoint
/// out: devices must stop picking it from the inventory while it finishes
/// what it accepted or until it can take work again.
pub fn report(template: &WorkerReport, counts: Counts) -> WorkerReport {
    WorkerReport {
        queue_depth: counts.queued,
        in_flight: counts.in_flight,
        capacity: counts.capacity,
        latency_p50_seconds: counts.p50,
        latency_p99_seconds: counts.p99,
        endpoint: if counts.draining || counts.unavailable { None } else { template.endpoint.clone() },
        ..template.clone()
    }
}

/// Reports until `changes` closes. `template` carries the identity fields.
pub async fn run(agent: AgentAddr, template: WorkerReport, mut changes: watch::Receiver<Counts>, interval: Duration) {
    let mut failing = false;
    let mut last_sent = Instant::now() - MIN_GAP;
    loop {
        tokio::time::sleep_until(last_sent + MIN_GAP).await;
        let counts = *changes.borrow_and_update();
        let body = serde_json::to_vec(&report(&template, counts)).unwrap_or_default();
        last_sent = Instant::now();
        match tokio::time::timeout(SEND_TIMEOUT, send(&agent, &body)).await.unwrap_or_else(|_| Err("timed out".into()))
        {
            Ok(()) if failing => {
                tracing::info!(agent = %agent, "reporting to the node agent again");
                failing = false;
            }
            Ok(()) => {}
            Err(error) if !failing => {
                tracing::warn!(agent = %agent, %error, "cannot report to the node agent; serving on and retrying quietly");
                failing = true;
            }
            Err(error) => tracing::debug!(agent = %agent, %error, "report failed again"),
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// One `POST /v1/reports`; Ok on a 2xx answer.
pub async fn send(agent: &AgentAddr, body: &[u8]) -> Result<(), String> {
    match agent {
        AgentAddr::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            post(stream, body).await
        }
        AgentAddr::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| e.to_string())?;
            post(stream, body).await
        }
    }
}

async fn post(stream: impl AsyncRead + AsyncWrite + Unpin, body: &[u8]) -> Result<(), String> {
    // The agent's answers are tiny; cap what we read in case something else listens there.
    let answer =
        http1::post_json(stream, "localhost", REPORT_PATH, body, 64 * 1024).await.map_err(|e| e.to_string())?;
    if answer.is_success() { Ok(()) } else { Err(format!("agent answered {}: {}", answer.status, answer.text())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_socket_paths_and_loopback_addresses_only() {
        assert_eq!("/run/edge/agent.sock".parse(), Ok(AgentAddr::Unix("/run/edge/agent.sock".into())));
        assert_eq!("127.0.0.1:9101".parse(), Ok(AgentAddr::Tcp("127.0.0.1:9101".parse().unwrap())));
        assert_eq!("[::1]:9101".parse::<AgentAddr>().map(|a| a.to_string()), Ok("[::1]:9101".into()));
        assert!("10.0.0.1:9101".parse::<AgentAddr>().unwrap_err().contains("loopback"));
        assert!("agent:9101".parse::<AgentAddr>().unwrap_err().contains("Unix socket path"));
    }

    #[test]
    fn the_endpoint_is_reported_until_the_queue_drains() {
        let template = WorkerReport {
            worker_id: "w".into(),
            pod: String::new(),
            namespace: String::new(),
            deployment: "sd".into(),
            accelerator: edge_telemetry::AcceleratorType::Cpu,
            queue_depth: 0,
            in_flight: 0,
            capacity: 4,
            latency_p50_seconds: None,
            latency_p99_seconds: None,
            labels: Default::default(),
            endpoint: Some("http://10.0.3.7:30080".into()),
        };
        let queue = crate::queue::Queue::new(4, 1);
        let open_counts = queue.counts();
        let open = report(&template, open_counts);
        assert_eq!(open.endpoint.as_deref(), Some("http://10.0.3.7:30080"));
        let mut changes = queue.subscribe();
        changes.mark_unchanged();
        queue.close();
        assert!(changes.has_changed().unwrap(), "closing is published to the reporter");
        let draining = report(&template, *changes.borrow());
        assert_eq!((draining.endpoint, draining.capacity), (None, 4));
        let down = crate::queue::Counts { unavailable: true, ..open_counts };
        assert_eq!(report(&template, down).endpoint, None, "a worker whose upstream is down is withdrawn");
    }

    #[tokio::test]
    async fn an_unreachable_agent_is_an_error_not_a_panic() {
        let port = edge_testkit::free_port();
        let addr = AgentAddr::Tcp(([127, 0, 0, 1], port).into());
        assert!(send(&addr, b"{}").await.is_err());
        let missing = AgentAddr::Unix("/nonexistent/agent.sock".into());
        assert!(send(&missing, b"{}").await.is_err());
    }
}
