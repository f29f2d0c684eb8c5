//! Plays a worker towards the agent: posts `WorkerReport`s to its report
//! port on every change and twice a second (the agent expires a silent
//! worker), one post at a time so a heartbeat never overtakes a change.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use edge_telemetry::report::REPORT_PATH;
use edge_telemetry::{AcceleratorType, WorkerReport};
use tokio::sync::Mutex;

/// The reporting worker.
pub struct Reporter {
    state: Arc<Mutex<WorkerReport>>,
    addr: SocketAddr,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Reporter {
    /// Starts the heartbeat; the first report goes out with [`Reporter::set`].
    pub fn start(addr: SocketAddr, namespace: &str, deployment: &str) -> Self {
        let report = WorkerReport {
            worker_id: format!("{deployment}-0"),
            pod: format!("{deployment}-0"),
            namespace: namespace.to_owned(),
            deployment: deployment.to_owned(),
            accelerator: AcceleratorType::Nvidia,
            queue_depth: 0,
            in_flight: 0,
            capacity: 16,
            latency_p50_seconds: None,
            latency_p99_seconds: None,
            labels: Default::default(),
            endpoint: None,
        };
        let state = Arc::new(Mutex::new(report));
        let beat = Arc::clone(&state);
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let report = beat.lock().await;
                // A failed heartbeat shows up as the next change failing.
                let _ = post(addr, &report).await;
            }
        });
        Self { state, addr, heartbeat }
    }

    /// Sets the queue depth and reports it at once.
    pub async fn set(&self, queue_depth: u32) -> anyhow::Result<()> {
        let mut report = self.state.lock().await;
        report.queue_depth = queue_depth;
        post(self.addr, &report).await
    }

    /// Stops the heartbeat.
    pub fn stop(&self) {
        self.heartbeat.abort();
    }
}

async fn post(addr: SocketAddr, report: &WorkerReport) -> anyhow::Result<()> {
    let body = serde_json::to_string(report)?;
    let reply = crate::http::post_json(addr, REPORT_PATH, &body, Duration::from_secs(5)).await?;
    if reply.status != 204 {
        bail!("the agent refused a report: HTTP {} {}", reply.status, reply.text());
    }
    Ok(())
}
