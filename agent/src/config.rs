//! Command-line flags (each also an `EDGE_AGENT_*` variable) and their checks.

pub use edge_telemetry::daemon::LogFormat;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

pub use crate::binding::BindingMode;
use crate::collector::pod_resources::PodResourcesSettings;
use crate::exporter::cloudwatch::{self, CloudWatchSettings};
pub use crate::exporter::prometheus::HostnameLabel;
pub use crate::privileges::RunAs;

/// The node agent of edge-diffusion.
///
/// Reads NVIDIA GPUs (NVML), AWS Neuron devices (neuron-monitor), /proc and the
/// queue reports of the inference workers on this node into one snapshot per
/// tick. Serves it as Prometheus metrics (dcgm-exporter and
/// neuron-monitor-prometheus names included) and as a gRPC change stream for
/// the edge-diffusion scaler, on one port.
#[derive(Debug, Clone, Parser)]
#[command(name = "edge-agent", version, about, long_about)]
pub struct Config {
    /// Address for HTTP (/metrics, /healthz, /readyz) and the gRPC snapshot
    /// feed; the one port a DaemonSet exposes.
    #[arg(long, env = "EDGE_AGENT_LISTEN", default_value = "0.0.0.0:9400")]
    pub listen: SocketAddr,

    /// Unix socket on which workers on this node report their queues
    /// (POST /v1/reports), e.g. /run/edge-diffusion/agent.sock on a hostPath
    /// shared with the worker pods (the Helm chart sets it). Its directory
    /// must exist. Empty (the default) disables it.
    #[arg(long, env = "EDGE_AGENT_REPORT_SOCKET", default_value = "")]
    pub report_socket: String,

    /// Group (numeric gid) given the report socket, which is created 0660: the
    /// workers run in this group. Empty: the agent's own group.
    #[arg(long, env = "EDGE_AGENT_REPORT_SOCKET_GROUP", default_value = "")]
    pub report_socket_group: String,

    /// Run as this user (UID:GID, numbers) once the report socket is made.
    /// For a socket directory only root may write in (a hostPath the kubelet
    /// created): start as uid 0 with CAP_CHOWN, CAP_SETUID and CAP_SETGID, and
    /// the agent gives the socket to UID and --report-socket-group, then
    /// becomes UID:GID with no capabilities left. Empty: stay as started. Not
    /// with --pod-resources-socket, which needs root throughout.
    #[arg(long, env = "EDGE_AGENT_USER", default_value = "")]
    pub user: String,

    /// Whether a report on the socket must match the pod that sent it:
    /// `off` (taken as written), `warn` (corrected to the sender's namespace,
    /// pod, Deployment and labels, with a warning) or `strict` (refused, 403).
    /// On: the agent needs the node's PID namespace (to see the sender's
    /// cgroup under --procfs) and read access to the pods on its node
    /// (KUBECONFIG or its service account); --report-listen must be empty,
    /// since a TCP peer cannot be identified.
    #[arg(long, env = "EDGE_AGENT_REPORT_BINDING", value_enum, default_value_t = BindingMode::Off)]
    pub report_binding: BindingMode,

    /// Loopback TCP address for worker reports, for local runs. Must be a
    /// loopback address: reports never leave the node. Empty disables it.
    #[arg(long, env = "EDGE_AGENT_REPORT_LISTEN", default_value = "127.0.0.1:9401")]
    pub report_listen: String,

    /// Path of the NVML library. Empty disables the NVML collector; a path
    /// that does not load turns it off with one log line.
    #[arg(long, env = "EDGE_AGENT_NVML_LIBRARY", default_value = "libnvidia-ml.so.1")]
    pub nvml_library: String,

    /// Command that runs neuron-monitor (split on whitespace; the agent adds
    /// `-c <config>`). Empty disables the Neuron collector.
    #[arg(long, env = "EDGE_AGENT_NEURON_MONITOR", default_value = "neuron-monitor")]
    pub neuron_monitor: String,

    /// Where the agent writes the neuron-monitor config file (a writable
    /// path; the root filesystem is read-only in Kubernetes).
    #[arg(long, env = "EDGE_AGENT_NEURON_MONITOR_CONFIG", default_value_os_t = default_neuron_config())]
    pub neuron_monitor_config: PathBuf,

    /// The kubelet's PodResources socket, which says which pod holds which
    /// GPU, MIG device or NeuronCore (the namespace/pod/container labels). In
    /// Kubernetes mount its directory, not the socket, so a kubelet restart
    /// (which recreates the socket) is survived. No socket there: the
    /// collector is absent, not failing. Empty disables it.
    #[arg(long, env = "EDGE_AGENT_POD_RESOURCES_SOCKET", default_value = crate::collector::pod_resources::DEFAULT_SOCKET)]
    pub pod_resources_socket: String,

    /// How long one question to the kubelet may take; a slower answer keeps
    /// the last mapping (ticks never wait for the kubelet). Between 10ms and 30s.
    #[arg(long, env = "EDGE_AGENT_POD_RESOURCES_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub pod_resources_timeout: Duration,

    /// Root of the proc filesystem to read node and agent statistics from.
    #[arg(long, env = "EDGE_AGENT_PROCFS", default_value = "/proc")]
    pub procfs: PathBuf,

    /// Collection interval (e.g. 1s, 500ms). Between 100ms and 60s.
    #[arg(long, env = "EDGE_AGENT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,

    /// A worker silent for this long is dropped from the snapshot. At least
    /// twice the workers' 1 s heartbeat.
    #[arg(long, env = "EDGE_AGENT_WORKER_EXPIRY", default_value = "5s", value_parser = parse_duration)]
    pub worker_expiry: Duration,

    /// Most workers reporting on this node at once; a report from one more
    /// is refused (429) until a silent one expires. Bounds the snapshot
    /// (at most 128).
    #[arg(long, env = "EDGE_AGENT_MAX_WORKERS", default_value_t = 64)]
    pub max_workers: usize,

    /// How often the change stream repeats the latest snapshot when nothing
    /// changed, so the scaler can tell a quiet agent from a dead one.
    #[arg(long, env = "EDGE_AGENT_STREAM_HEARTBEAT", default_value = "2s", value_parser = parse_duration)]
    pub stream_heartbeat: Duration,

    /// Spelling of the host label on the dcgm-exporter series: `Hostname`
    /// (dcgm-exporter ≥ 2.x) or `hostname` (older dashboards).
    #[arg(long, env = "EDGE_AGENT_HOSTNAME_LABEL", value_enum, default_value_t = HostnameLabel::Hostname)]
    pub hostname_label: HostnameLabel,

    /// This node's name; in Kubernetes set from the downward API
    /// (spec.nodeName). Defaults to the host name.
    #[arg(long, env = "EDGE_AGENT_NODE_NAME", default_value = "")]
    pub node_name: String,

    /// This node's EC2 instance type (label node.kubernetes.io/instance-type).
    #[arg(long, env = "EDGE_AGENT_INSTANCE_TYPE", default_value = "")]
    pub instance_type: String,

    /// This node's zone (label topology.kubernetes.io/zone), e.g. a Local Zone.
    #[arg(long, env = "EDGE_AGENT_ZONE", default_value = "")]
    pub zone: String,

    /// CloudWatch namespace to publish the node's metrics to, e.g.
    /// EdgeDiffusion. Empty (the default) turns CloudWatch off: no AWS code
    /// runs. Credentials and region come from the AWS SDK's default chain
    /// (IRSA, EKS Pod Identity, instance profile); AWS_ENDPOINT_URL_CLOUDWATCH
    /// overrides the endpoint.
    #[arg(long, env = "EDGE_AGENT_CLOUDWATCH_NAMESPACE", default_value = "")]
    pub cloudwatch_namespace: String,

    /// How often buffered samples go to CloudWatch in one PutMetricData call
    /// (samples are taken every --interval and kept). Between 1s and 10m.
    #[arg(long, env = "EDGE_AGENT_CLOUDWATCH_FLUSH_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub cloudwatch_flush_interval: Duration,

    /// The most samples kept for CloudWatch while it cannot be reached; the
    /// oldest go first when full (16 bytes each). Between 100 and 10000000.
    #[arg(long, env = "EDGE_AGENT_CLOUDWATCH_BUFFER_SAMPLES", default_value_t = 100_000)]
    pub cloudwatch_buffer_samples: u64,

    /// Also publish per-device GPU and NeuronCore metrics with the Namespace
    /// and PodName dimensions of the pod holding the device (kubelet
    /// PodResources), as Container Insights does. Off by default: every pod
    /// becomes new CloudWatch metrics, each billed.
    #[arg(long, env = "EDGE_AGENT_CLOUDWATCH_POD_DIMENSIONS")]
    pub cloudwatch_pod_dimensions: bool,

    /// The EKS cluster's name: the ClusterName dimension of every CloudWatch
    /// metric. Required with --cloudwatch-namespace.
    #[arg(long, env = "EDGE_AGENT_CLUSTER_NAME", default_value = "")]
    pub cluster_name: String,

    /// Log format.
    #[arg(long, env = "EDGE_AGENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A flag whose value is not allowed; the message names the flag.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for --{flag}: {reason}")]
pub struct ConfigError {
    /// The flag, without dashes.
    pub flag: &'static str,
    /// What is wrong and what is allowed.
    pub reason: String,
}

/// The checked configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// See [`Config::listen`].
    pub listen: SocketAddr,
    /// Unix socket for reports, if enabled.
    pub report_socket: Option<PathBuf>,
    /// Loopback TCP address for reports, if enabled.
    pub report_listen: Option<SocketAddr>,
    /// See [`Config::report_binding`].
    pub report_binding: BindingMode,
    /// See [`Config::report_socket_group`].
    pub report_socket_group: Option<u32>,
    /// See [`Config::user`].
    pub run_as: Option<RunAs>,
    /// NVML library, if enabled.
    pub nvml_library: Option<PathBuf>,
    /// neuron-monitor program and arguments, if enabled.
    pub neuron_monitor: Option<Vec<String>>,
    /// See [`Config::neuron_monitor_config`].
    pub neuron_monitor_config: PathBuf,
    /// The kubelet PodResources collector.
    pub pod_resources: PodResourcesSettings,
    /// See [`Config::procfs`].
    pub procfs: PathBuf,
    /// See [`Config::interval`].
    pub interval: Duration,
    /// See [`Config::worker_expiry`].
    pub worker_expiry: Duration,
    /// See [`Config::max_workers`].
    pub max_workers: usize,
    /// See [`Config::stream_heartbeat`].
    pub stream_heartbeat: Duration,
    /// See [`Config::hostname_label`].
    pub hostname_label: HostnameLabel,
    /// Node name, instance type and zone.
    pub node: edge_telemetry::proto::Node,
    /// CloudWatch publishing, if on.
    pub cloudwatch: Option<CloudWatchSettings>,
}

impl Config {
    /// Checks every value and resolves defaults that depend on the host.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let interval = self.interval;
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&interval) {
            return Err(ConfigError { flag: "interval", reason: format!("{interval:?} is outside 100ms..=60s") });
        }
        if self.worker_expiry < Duration::from_secs(2) {
            return Err(ConfigError {
                flag: "worker-expiry",
                reason: format!("{:?} is below the minimum of 2s (twice the workers' heartbeat)", self.worker_expiry),
            });
        }
        let max = crate::collector::workers::MAX_WORKERS_LIMIT;
        if !(1..=max).contains(&self.max_workers) {
            return Err(ConfigError {
                flag: "max-workers",
                reason: format!(
                    "{} is outside 1..={max} (the snapshot must stay under the scaler's message limit)",
                    self.max_workers
                ),
            });
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.stream_heartbeat) {
            return Err(ConfigError {
                flag: "stream-heartbeat",
                reason: format!("{:?} is outside 100ms..=60s", self.stream_heartbeat),
            });
        }
        let report_listen = non_empty(&self.report_listen)
            .map(|s| {
                let addr: SocketAddr = s.parse().map_err(|e| ConfigError {
                    flag: "report-listen",
                    reason: format!("{s:?} is not an address like 127.0.0.1:9401 ({e})"),
                })?;
                if !addr.ip().is_loopback() {
                    return Err(ConfigError {
                        flag: "report-listen",
                        reason: format!(
                            "{addr} is not a loopback address; reports must stay on the node (use 127.0.0.1 or [::1])"
                        ),
                    });
                }
                Ok(addr)
            })
            .transpose()?;
        let report_socket = non_empty(&self.report_socket).map(PathBuf::from);
        if self.report_binding != BindingMode::Off {
            let err = |flag, reason: &str| Err(ConfigError { flag, reason: reason.to_owned() });
            if report_socket.is_none() {
                return err(
                    "report-binding",
                    "binding needs --report-socket (only a Unix socket names its sender); use off",
                );
            }
            if report_listen.is_some() {
                return err(
                    "report-listen",
                    "must be empty with --report-binding warn|strict: a TCP peer cannot be tied to a pod",
                );
            }
        }
        let report_socket_group = non_empty(&self.report_socket_group)
            .map(|g| {
                g.parse::<u32>().map_err(|_| ConfigError {
                    flag: "report-socket-group",
                    reason: format!("{g:?} is not a numeric group id (e.g. 65532), or leave it empty"),
                })
            })
            .transpose()?;
        let run_as = non_empty(&self.user)
            .map(|u| u.parse::<RunAs>().map_err(|reason| ConfigError { flag: "user", reason }))
            .transpose()?;
        if run_as.is_some() && non_empty(&self.pod_resources_socket).is_some() {
            return Err(ConfigError {
                flag: "user",
                reason: "the kubelet's PodResources socket is root's: with --pod-resources-socket set the agent stays root; \
                         leave --user empty, or set --pod-resources-socket="
                    .to_owned(),
            });
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(30)).contains(&self.pod_resources_timeout) {
            return Err(ConfigError {
                flag: "pod-resources-timeout",
                reason: format!("{:?} is outside 10ms..=30s", self.pod_resources_timeout),
            });
        }
        let pod_resources = PodResourcesSettings {
            socket: non_empty(&self.pod_resources_socket).map(PathBuf::from),
            period: interval,
            timeout: self.pod_resources_timeout,
        };
        let neuron_monitor =
            non_empty(&self.neuron_monitor).map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>());
        let cloudwatch = self.cloudwatch()?;
        let node_name = match non_empty(&self.node_name) {
            Some(n) => n.to_owned(),
            None => host_name(),
        };
        Ok(Settings {
            listen: self.listen,
            report_socket,
            report_listen,
            report_binding: self.report_binding,
            report_socket_group,
            run_as,
            nvml_library: non_empty(&self.nvml_library).map(PathBuf::from),
            neuron_monitor,
            neuron_monitor_config: self.neuron_monitor_config,
            pod_resources,
            procfs: self.procfs,
            interval,
            worker_expiry: self.worker_expiry,
            max_workers: self.max_workers,
            stream_heartbeat: self.stream_heartbeat,
            hostname_label: self.hostname_label,
            node: edge_telemetry::proto::Node { name: node_name, instance_type: self.instance_type, zone: self.zone },
            cloudwatch,
        })
    }

    fn cloudwatch(&self) -> Result<Option<CloudWatchSettings>, ConfigError> {
        let Some(namespace) = non_empty(&self.cloudwatch_namespace) else { return Ok(None) };
        let err = |flag, reason| ConfigError { flag, reason };
        if !cfg!(feature = "cloudwatch") {
            return Err(err(
                "cloudwatch-namespace",
                "this edge-agent was built without the `cloudwatch` feature; leave it empty".to_owned(),
            ));
        }
        cloudwatch::check_namespace(namespace).map_err(|r| err("cloudwatch-namespace", r))?;
        let flush_interval = self.cloudwatch_flush_interval;
        if !cloudwatch::FLUSH_INTERVAL_RANGE.contains(&flush_interval) {
            return Err(err("cloudwatch-flush-interval", format!("{flush_interval:?} is outside 1s..=10m")));
        }
        let buffer_samples = self.cloudwatch_buffer_samples;
        if !cloudwatch::BUFFER_SAMPLES_RANGE.contains(&buffer_samples) {
            return Err(err("cloudwatch-buffer-samples", format!("{buffer_samples} is outside 100..=10000000")));
        }
        let Some(cluster_name) = non_empty(&self.cluster_name) else {
            return Err(err(
                "cluster-name",
                "required with --cloudwatch-namespace (the ClusterName dimension)".to_owned(),
            ));
        };
        Ok(Some(CloudWatchSettings {
            namespace: namespace.to_owned(),
            flush_interval,
            cluster_name: cloudwatch::series::dimension_value(cluster_name),
            buffer_samples,
            pod_dimensions: self.cloudwatch_pod_dimensions,
        }))
    }
}

fn non_empty(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e}; expected a duration such as 1s or 500ms"))
}

fn default_neuron_config() -> PathBuf {
    std::env::temp_dir().join("edge-agent-neuron-monitor.json")
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests;
