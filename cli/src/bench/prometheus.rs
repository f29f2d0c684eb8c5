//! A real Prometheus server (Debian's `prometheus` on PATH) scraping the
//! agent once a second, with a temp config and storage, queried over its HTTP
//! API the way KEDA's Prometheus scaler does (an instant query). Its command
//! line, config and answers are [`edge_telemetry::prometheus_server`]'s, as
//! in the end-to-end tests; here it runs under the CLI's supervisor.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use edge_telemetry::prometheus_server;

use crate::children::Child;
use crate::http;

/// A running Prometheus.
pub struct Prometheus {
    /// The child process.
    pub child: Child,
    /// `prometheus --version`'s first line.
    pub version: String,
}

/// Starts Prometheus on `addr` scraping `target` every second, and waits
/// until it has scraped it once.
pub async fn start(addr: SocketAddr, target: SocketAddr, dir: &Path) -> anyhow::Result<Prometheus> {
    let bin = prometheus_server::binary()?;
    let version = tokio::process::Command::new(&bin)
        .arg("--version")
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let args = prometheus_server::prepare(dir, addr, &[("edge-agent", target)])?;
    let mut child = Child::spawn("prometheus", &bin, &args, &[], dir)?;
    child.wait_ready(addr, "/-/ready", Duration::from_secs(60)).await?;
    let prometheus = Prometheus { child, version };
    let deadline = Instant::now() + Duration::from_secs(60);
    while query(addr, "up{job=\"edge-agent\"} == 1").await? == 0 {
        if Instant::now() > deadline {
            bail!("Prometheus did not scrape the agent at {target} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(prometheus)
}

/// Runs an instant query against the Prometheus at `addr`; the number of
/// series in the answer.
pub async fn query(addr: SocketAddr, expr: &str) -> anyhow::Result<usize> {
    let reply = http::get(addr, &prometheus_server::query_path(expr), Duration::from_secs(5)).await?;
    let result = prometheus_server::query_result(reply.status, &reply.body);
    Ok(result.with_context(|| format!("query {expr:?}"))?.len())
}
