//! The worker → agent report: how an inference server tells its node's agent
//! how much work is waiting.
//!
//! Wire format: `POST /v1/reports` with a JSON body, over the agent's Unix
//! socket (Kubernetes) or its loopback TCP port (local runs). The agent answers
//! `204 No Content`, or `4xx` with `{"error": "...", "field": "..."}`.
//! A worker sends a report on every change and at least once a second; the
//! agent forgets a worker that has been silent for a few seconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::AcceleratorType;
use crate::labels::{self, MAX_LABELS};

/// The path the agent serves reports on.
pub const REPORT_PATH: &str = "/v1/reports";

/// Largest report body the agent accepts, in bytes.
pub const MAX_REPORT_BYTES: usize = 16 * 1024;

/// Longest identifier (worker id, pod, namespace, deployment) accepted.
pub const MAX_ID_LEN: usize = 253;

/// Longest `endpoint` URL accepted.
pub const MAX_ENDPOINT_LEN: usize = 512;

/// What `endpoint` may be, for error messages.
pub const ENDPOINT_SYNTAX: &str =
    "an http:// or https:// URL with a host and a port and no query, e.g. http://10.0.3.7:30080";

/// Largest queue, in-flight or capacity value accepted. Far above any real
/// worker; it keeps a corrupt report from dwarfing every other node.
pub const MAX_COUNT: u32 = 1_000_000;

/// One worker's state as it reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerReport {
    /// Unique per worker process on the node (the pod name is a good choice).
    pub worker_id: String,
    /// Kubernetes pod name; empty outside Kubernetes.
    #[serde(default)]
    pub pod: String,
    /// Kubernetes namespace; empty outside Kubernetes.
    #[serde(default)]
    pub namespace: String,
    /// The Deployment (or other workload) the worker belongs to: the scaler's
    /// worker selector matches on it.
    pub deployment: String,
    /// The device the worker runs its model on.
    pub accelerator: AcceleratorType,
    /// Requests accepted and waiting to start.
    pub queue_depth: u32,
    /// Requests running now.
    pub in_flight: u32,
    /// How many requests the worker accepts in total (queued + running).
    pub capacity: u32,
    /// Median request latency over the worker's recent window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p50_seconds: Option<f64>,
    /// 99th percentile request latency over the worker's recent window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99_seconds: Option<f64>,
    /// Kubernetes-style labels (typically the pod's selector labels): the
    /// scaler's `labelSelector` matches on them. At most [`MAX_LABELS`], in
    /// Kubernetes label syntax. Never turned into metric labels (unbounded).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The URL clients reach this worker at (in Kubernetes its node's
    /// address and its Service's NodePort): the scaler lists it in the
    /// endpoint inventory. Sent only while the worker accepts requests, so a
    /// draining worker drops out of the inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Why a report was refused. `field` names the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ReportError {
    /// The JSON field at fault, or `body` for the document as a whole.
    pub field: String,
    /// What is wrong and what is allowed.
    pub reason: String,
}

impl ReportError {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        Self { field: field.to_owned(), reason: reason.into() }
    }
}

impl WorkerReport {
    /// Every field a report may carry.
    pub const FIELDS: [&'static str; 12] = [
        "worker_id",
        "pod",
        "namespace",
        "deployment",
        "accelerator",
        "queue_depth",
        "in_flight",
        "capacity",
        "latency_p50_seconds",
        "latency_p99_seconds",
        "labels",
        "endpoint",
    ];

    /// Parses and validates a report body. Each field is read on its own so a
    /// wrong type is reported against the field that has it.
    pub fn from_json(body: &[u8]) -> Result<Self, ReportError> {
        if body.len() > MAX_REPORT_BYTES {
            return Err(ReportError::new(
                "body",
                format!("{} bytes is over the limit of {MAX_REPORT_BYTES} bytes", body.len()),
            ));
        }
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| ReportError::new("body", format!("not valid JSON: {e}")))?;
        let serde_json::Value::Object(obj) = value else {
            return Err(ReportError::new("body", "must be a JSON object"));
        };
        if let Some(unknown) = obj.keys().find(|k| !Self::FIELDS.contains(&k.as_str())) {
            return Err(ReportError::new(unknown, format!("unknown field; allowed: {}", Self::FIELDS.join(", "))));
        }
        let report = WorkerReport {
            worker_id: required(&obj, "worker_id", "a string")?,
            pod: optional(&obj, "pod", "a string")?.unwrap_or_default(),
            namespace: optional(&obj, "namespace", "a string")?.unwrap_or_default(),
            deployment: required(&obj, "deployment", "a string")?,
            accelerator: required(&obj, "accelerator", AcceleratorType::ALLOWED)?,
            queue_depth: required(&obj, "queue_depth", "an integer 0..=1000000")?,
            in_flight: required(&obj, "in_flight", "an integer 0..=1000000")?,
            capacity: required(&obj, "capacity", "an integer 0..=1000000")?,
            latency_p50_seconds: optional(&obj, "latency_p50_seconds", "a number of seconds >= 0")?,
            latency_p99_seconds: optional(&obj, "latency_p99_seconds", "a number of seconds >= 0")?,
            labels: label_map(&obj)?,
            endpoint: optional(&obj, "endpoint", ENDPOINT_SYNTAX)?,
        };
        report.validate()?;
        Ok(report)
    }

    /// Checks the values a well-formed document can still get wrong.
    pub fn validate(&self) -> Result<(), ReportError> {
        check_id("worker_id", &self.worker_id, true)?;
        check_id("pod", &self.pod, false)?;
        check_id("namespace", &self.namespace, false)?;
        check_id("deployment", &self.deployment, true)?;
        for (field, value) in
            [("queue_depth", self.queue_depth), ("in_flight", self.in_flight), ("capacity", self.capacity)]
        {
            if value > MAX_COUNT {
                return Err(ReportError::new(field, format!("{value} is over the maximum of {MAX_COUNT}")));
            }
        }
        for (field, value) in
            [("latency_p50_seconds", self.latency_p50_seconds), ("latency_p99_seconds", self.latency_p99_seconds)]
        {
            if let Some(v) = value
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(ReportError::new(field, format!("{v} is not a finite number >= 0")));
            }
        }
        check_labels(&self.labels)?;
        if let Some(url) = &self.endpoint {
            check_endpoint(url).map_err(|reason| ReportError::new("endpoint", reason))?;
        }
        Ok(())
    }
}

/// `http(s)://host:port[/path]`: devices connect to it as given, so it must
/// name both host and port, with nothing a client would have to interpret.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{url:?} {why}; expected {ENDPOINT_SYNTAX}"));
    if url.len() > MAX_ENDPOINT_LEN {
        return bad(&format!("is longer than {MAX_ENDPOINT_LEN} characters"));
    }
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return bad("is not an http:// or https:// URL");
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if authority.contains('@') {
        return bad("carries user information");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, tail)) if addr.parse::<std::net::Ipv6Addr>().is_ok() => (addr, tail.strip_prefix(':')),
            _ => return bad("has a malformed IPv6 address"),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let bracketed = authority.starts_with('[');
    let named = !host.is_empty()
        && host.len() <= MAX_ID_LEN
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    if !(bracketed || named) {
        return bad("has no valid host name or address");
    }
    let Some(port) = port.filter(|p| !p.is_empty()) else { return bad("has no port") };
    if !(port.bytes().all(|b| b.is_ascii_digit()) && matches!(port.parse::<u16>(), Ok(p) if p > 0)) {
        return bad(&format!("has port {port:?}, not a number in 1..=65535"));
    }
    if let Some(c) = path.chars().find(|c| !(c.is_ascii_alphanumeric() || "-._~/%!$&'()*+,;=:@".contains(*c))) {
        return bad(&format!("has {c:?} in its path (no query, fragment or spaces)"));
    }
    Ok(())
}

/// Bounded count, Kubernetes syntax; a bad pair is named `labels.<key>`.
/// What the agent checks of a report's `labels`, so a worker can check its
/// own before sending them.
pub fn check_labels(map: &BTreeMap<String, String>) -> Result<(), ReportError> {
    if map.len() > MAX_LABELS {
        return Err(ReportError::new("labels", format!("{} labels; at most {MAX_LABELS} allowed", map.len())));
    }
    for (key, value) in map {
        let field = format!("labels.{key}");
        labels::check_key(key).map_err(|e| ReportError::new(&field, e))?;
        labels::check_value(value).map_err(|e| ReportError::new(&field, e))?;
    }
    Ok(())
}

/// `labels`: an object of strings. Read pair by pair so a value of the wrong
/// type is named by its key.
fn label_map(obj: &Object) -> Result<BTreeMap<String, String>, ReportError> {
    let map = match obj.get("labels") {
        None | Some(serde_json::Value::Null) => return Ok(BTreeMap::new()),
        Some(serde_json::Value::Object(map)) => map,
        Some(v) => {
            return Err(ReportError::new(
                "labels",
                format!("{v} is not allowed; expected an object of label key to string value"),
            ));
        }
    };
    // The count and the syntax are checked once, by `validate`.
    map.iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
            other => {
                Err(ReportError::new(&format!("labels.{k}"), format!("{other} is not allowed; expected a string")))
            }
        })
        .collect()
}

/// Identifiers become label values: keep them to what Kubernetes names allow.
fn check_id(field: &str, value: &str, required: bool) -> Result<(), ReportError> {
    if value.is_empty() {
        return if required { Err(ReportError::new(field, "must not be empty")) } else { Ok(()) };
    }
    if value.len() > MAX_ID_LEN {
        return Err(ReportError::new(field, format!("longer than {MAX_ID_LEN} characters")));
    }
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))) {
        return Err(ReportError::new(
            field,
            format!("character {c:?} not allowed; allowed: ASCII letters, digits, '-', '_', '.', ':'"),
        ));
    }
    Ok(())
}

type Object = serde_json::Map<String, serde_json::Value>;

fn optional<T: serde::de::DeserializeOwned>(
    obj: &Object,
    field: &str,
    allowed: &str,
) -> Result<Option<T>, ReportError> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|_| ReportError::new(field, format!("{v} is not allowed; expected {allowed}"))),
    }
}

fn required<T: serde::de::DeserializeOwned>(obj: &Object, field: &str, allowed: &str) -> Result<T, ReportError> {
    optional(obj, field, allowed)?.ok_or_else(|| ReportError::new(field, format!("missing; expected {allowed}")))
}

#[cfg(test)]
mod tests;
