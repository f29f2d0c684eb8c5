//! A real Prometheus server beside the project's processes, defined once:
//! where the binary is, its command line and scrape config, and an instant
//! query as KEDA's `prometheus` trigger runs it. `edge-diffusion bench
//! activation` (under the CLI's async supervisor) and the end-to-end tests
//! (blocking, in a test thread) each start the process their own way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Why Prometheus could not be run or queried.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// No `prometheus` on PATH.
    #[error("prometheus is not on PATH: install Debian's prometheus package (scripts/install-test-deps does)")]
    NotOnPath,
    /// Writing its config failed.
    #[error("cannot write {path}: {source}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A query answer that is not Prometheus's JSON.
    #[error("Prometheus answered HTTP {status}, not its JSON: {body}")]
    NotJson {
        /// The HTTP status.
        status: u16,
        /// The body, for the message.
        body: String,
    },
    /// Prometheus refused the query (e.g. a PromQL parse error).
    #[error("Prometheus query failed: {error_type}: {error}")]
    Query {
        /// Prometheus's `errorType`.
        error_type: String,
        /// Prometheus's `error`.
        error: String,
    },
}

/// The `prometheus` binary on PATH.
pub fn binary() -> Result<PathBuf, PrometheusError> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("prometheus")).find(|p| p.is_file()))
        .ok_or(PrometheusError::NotOnPath)
}

/// Writes `dir/prometheus.yml`, scraping every `(job, target)` once a second,
/// and returns the arguments that run Prometheus on it: storage in
/// `dir/data`, the HTTP API on `listen`, warnings only.
pub fn prepare(dir: &Path, listen: SocketAddr, targets: &[(&str, SocketAddr)]) -> Result<Vec<String>, PrometheusError> {
    let mut config = String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n");
    for (job, addr) in targets {
        config.push_str(&format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"));
    }
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, config).map_err(|source| PrometheusError::Config { path: path.clone(), source })?;
    Ok(vec![
        format!("--config.file={}", path.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address={listen}"),
        "--log.level=warn".to_owned(),
    ])
}

/// The path of an instant query for `expr`.
pub fn query_path(expr: &str) -> String {
    format!("/api/v1/query?query={}", url_encode(expr))
}

/// The result of an instant query from its HTTP answer: the result vector
/// (possibly empty), or a scalar or string as one value.
pub fn query_result(status: u16, body: &[u8]) -> Result<Vec<Value>, PrometheusError> {
    let not_json = || PrometheusError::NotJson { status, body: String::from_utf8_lossy(body).into_owned() };
    let json: Value = serde_json::from_slice(body).map_err(|_| not_json())?;
    if json["status"] != "success" {
        let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        return Err(PrometheusError::Query { error_type: text(&json["errorType"]), error: text(&json["error"]) });
    }
    match &json["data"]["result"] {
        Value::Array(v) => Ok(v.clone()),
        Value::Null => Err(not_json()),
        other => Ok(vec![other.clone()]),
    }
}

/// Percent-encodes a query-string value (PromQL, series selectors).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promql_is_percent_encoded() {
        assert_eq!(url_encode(r#"sum by (a) (m{x=~"y.*"})"#), "sum%20by%20%28a%29%20%28m%7Bx%3D~%22y.%2A%22%7D%29");
        assert_eq!(url_encode("a-b_c.d~"), "a-b_c.d~");
        assert_eq!(query_path("up == 1"), "/api/v1/query?query=up%20%3D%3D%201");
    }

    #[test]
    fn answers_give_the_result_or_name_the_error() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"2"]}]}}"#;
        assert_eq!(query_result(200, ok).unwrap().len(), 1);
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#;
        assert_eq!(query_result(200, scalar).unwrap().len(), 2);
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(query_result(400, bad).unwrap_err().to_string(), "Prometheus query failed: bad_data: parse error");
        assert!(query_result(502, b"<html>").unwrap_err().to_string().contains("HTTP 502"));
    }

    #[test]
    fn the_config_scrapes_every_target_each_second() {
        let dir = std::env::temp_dir().join(format!("edge-prom-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let args = prepare(&dir, "127.0.0.1:9090".parse().unwrap(), &[("a", "127.0.0.1:1".parse().unwrap())]).unwrap();
        let config = std::fs::read_to_string(dir.join("prometheus.yml")).unwrap();
        assert!(config.contains("scrape_interval: 1s") && config.contains("job_name: a"), "{config}");
        assert!(config.contains("targets: ['127.0.0.1:1']"), "{config}");
        assert!(args.contains(&"--web.listen-address=127.0.0.1:9090".to_owned()), "{args:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
