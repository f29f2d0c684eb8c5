//! A real Prometheus server (Debian's `prometheus` on PATH) scraping the
//! agent once a second, with a temp config and storage, queried over its HTTP
//! API the way KEDA's Prometheus scaler does (an instant query).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::children::Child;
use crate::http;

/// A running Prometheus.
pub struct Prometheus {
    /// The child process.
    pub child: Child,
    /// `prometheus --version`'s first line.
    pub version: String,
}

/// The `prometheus` binary on PATH.
pub fn binary() -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("prometheus")).find(|p| p.is_file()))
        .context("prometheus is not on PATH: install Debian's prometheus package (scripts/install-test-deps does)")
}

/// Starts Prometheus on `addr` scraping `target` every second, and waits
/// until it has scraped it once.
pub async fn start(addr: SocketAddr, target: SocketAddr, dir: &Path) -> anyhow::Result<Prometheus> {
    let bin = binary()?;
    let version = tokio::process::Command::new(&bin)
        .arg("--version")
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: edge-agent\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    let args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address={addr}"),
        "--log.level=warn".to_owned(),
    ];
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
    let path = format!("/api/v1/query?query={}", url_encode(expr));
    let reply = http::get(addr, &path, Duration::from_secs(5)).await?;
    let json: serde_json::Value =
        serde_json::from_slice(&reply.body).with_context(|| format!("Prometheus answered {}", reply.text()))?;
    if json["status"] != "success" {
        bail!("Prometheus query {expr:?} failed: {}", json["error"]);
    }
    Ok(json["data"]["result"].as_array().map_or(0, Vec::len))
}

/// Percent-encodes a query-string value.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn promql_is_encoded() {
        assert_eq!(super::url_encode(r#"sum(m{a="b"}) > 0"#), "sum%28m%7Ba%3D%22b%22%7D%29%20%3E%200");
    }
}
