//! Command-line flags (each also an `EDGE_SCALER_*` variable) and their checks.

pub use edge_telemetry::daemon::LogFormat;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

pub use crate::values::{STALE_AFTER_RANGE, parse_duration};

mod parse;
use parse::{check_dns_name, non_empty, parse_advertise_host, parse_host_list, read_pem};

/// The KEDA external scaler of edge-diffusion.
///
/// Follows the change stream of every edge-agent (found through the agents'
/// EndpointSlices in Kubernetes, or a static list), keeps the whole cluster's
/// worker queues and accelerator utilisation in memory, and answers KEDA's
/// external scaler gRPC calls per accelerator type, pushing activation the
/// moment a queue wakes.
#[derive(Debug, Clone, Parser)]
#[command(name = "edge-scaler", version, about, long_about)]
pub struct Config {
    /// Address of the KEDA external scaler gRPC service (the `scalerAddress`
    /// of the ScaledObjects).
    #[arg(long, env = "EDGE_SCALER_LISTEN", default_value = "0.0.0.0:9500")]
    pub listen: SocketAddr,

    /// Address of the scaler's own HTTP endpoints (/metrics, /healthz). Empty
    /// disables them.
    #[arg(long, env = "EDGE_SCALER_METRICS_LISTEN", default_value = "0.0.0.0:9501")]
    pub metrics_listen: String,

    /// Static discovery: comma-separated agent addresses (`host:port`, the
    /// agents' --listen port). For runs outside Kubernetes; excludes
    /// --agent-service.
    #[arg(long, env = "EDGE_SCALER_AGENTS", default_value = "")]
    pub agents: String,

    /// Kubernetes discovery: the agent DaemonSet's (headless) Service, whose
    /// EndpointSlices list the agents. Excludes --agents.
    #[arg(long, env = "EDGE_SCALER_AGENT_SERVICE", default_value = "")]
    pub agent_service: String,

    /// Namespace of --agent-service. Empty: the namespace of the kubeconfig
    /// context, or the scaler's own namespace in a pod.
    #[arg(long, env = "EDGE_SCALER_AGENT_NAMESPACE", default_value = "")]
    pub agent_namespace: String,

    /// Which EndpointSlice port is the agent's feed: a port name, or a number
    /// to use regardless of the slice. Empty: the slice's first port.
    #[arg(long, env = "EDGE_SCALER_AGENT_PORT", default_value = "")]
    pub agent_port: String,

    /// An agent silent for this long (no snapshot, no heartbeat) stops
    /// counting. Well above the agents' --stream-heartbeat (2s by default).
    /// A trigger may shorten or lengthen it with `staleAfter`.
    #[arg(long, env = "EDGE_SCALER_STALE_AFTER", default_value = "6s", value_parser = parse_duration)]
    pub stale_after: Duration,

    /// Longest wait between reconnection attempts to an agent (the wait
    /// starts at 100ms and doubles).
    #[arg(long, env = "EDGE_SCALER_RECONNECT_MAX", default_value = "5s", value_parser = parse_duration)]
    pub reconnect_max: Duration,

    /// PEM certificate chain for serving KEDA over TLS. Needs --tls-key.
    #[arg(long, env = "EDGE_SCALER_TLS_CERT", default_value = "")]
    pub tls_cert: String,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "EDGE_SCALER_TLS_KEY", default_value = "")]
    pub tls_key: String,

    /// PEM CA bundle: when set, KEDA must present a client certificate signed
    /// by it (mutual TLS; KEDA's `tlsClientCert`/`tlsClientKey`). Needs
    /// --tls-cert.
    #[arg(long, env = "EDGE_SCALER_TLS_CLIENT_CA", default_value = "")]
    pub tls_client_ca: String,

    /// How long a device's inventory pull for a class with no ready
    /// endpoint (accelerator, zone) keeps that class's triggers awake
    /// (device demand, which wakes a Deployment at zero). `0s` turns demand
    /// off: only worker queues then wake a trigger.
    #[arg(long, env = "EDGE_SCALER_DEMAND_TTL", default_value = "5m", value_parser = parse_duration)]
    pub demand_ttl: Duration,

    /// Distinct devices remembered per demand class; beyond it the oldest is
    /// forgotten, so a flood of pulls cannot grow memory.
    #[arg(long, env = "EDGE_SCALER_DEMAND_MAX_REQUESTERS", default_value_t = 10_000)]
    pub demand_max_requesters: usize,

    /// The other replicas of this scaler, to share device demand with:
    /// comma-separated `host:port` of their HTTP port (--metrics-listen),
    /// each name resolved again every few seconds, so a headless Service
    /// listing every replica fits (the chart's `<scaler>-peers`). This
    /// replica finds itself among the addresses and skips it. A device's
    /// pull can reach any replica, KEDA's stream only one: without peers, a
    /// replica only wakes on the pulls it served itself. Empty: one replica.
    #[arg(long, env = "EDGE_SCALER_PEERS", default_value = "")]
    pub peers: String,

    /// Inventory pulls a second one client address may make (an IPv6 /64
    /// counts as one), with bursts of twice that; beyond it the pull is
    /// answered 429 with Retry-After. Off (0) by default: behind a proxy or
    /// a load balancer that does not keep client addresses, every device
    /// shares the proxy's address (limit there instead). Turn it on where
    /// the scaler sees the devices' own addresses.
    #[arg(long, env = "EDGE_SCALER_INVENTORY_RATE", default_value_t = 0)]
    pub inventory_rate: u32,

    /// List each endpoint at its node's ExternalIP when the node has one
    /// (the scaler then gets, lists and watches Nodes; needs
    /// --agent-service). Workers advertise the node's primary address,
    /// private even in a public subnet. Also lists a worker that advertises
    /// its Service's port at the NodePort Kubernetes picked for it (the
    /// scaler lists and watches the Services labelled
    /// edge-diffusion.io/workload in its own namespace).
    #[arg(long, env = "EDGE_SCALER_NODE_ADDRESSES", default_value_t = false, action = clap::ArgAction::Set)]
    pub node_addresses: bool,

    /// Per zone, the host devices reach that zone's nodes by (a load
    /// balancer or DNS name), for nodes without an ExternalIP:
    /// `ZONE=HOST,ZONE=HOST`. Endpoints with neither keep their advertised
    /// (private) address, marked `reachability: "vpc"`.
    #[arg(long, env = "EDGE_SCALER_ADVERTISE_HOST", default_value = "")]
    pub advertise_host: String,

    /// Longest wait for every discovered agent's first snapshot before
    /// `/readyz` says Ready anyway (the silent ones count as stale). Until
    /// then a new replica stays out of the Service, so KEDA never reads a
    /// partial sum from it. `0s`: Ready once discovery has listed the agents.
    #[arg(long, env = "EDGE_SCALER_READY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub ready_timeout: Duration,

    /// Log format.
    #[arg(long, env = "EDGE_SCALER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
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

fn err(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError { flag, reason: reason.into() }
}

/// Where the agents are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// A fixed list of `host:port` addresses.
    Static(Vec<String>),
    /// The EndpointSlices of a Kubernetes Service.
    Kubernetes(KubeDiscovery),
}

/// Kubernetes discovery settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeDiscovery {
    /// The agents' Service.
    pub service: String,
    /// Its namespace; `None`: the client's default namespace.
    pub namespace: Option<String>,
    /// Which port of the slice to connect to.
    pub port: PortSelector,
}

/// How the agent port is taken from an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSelector {
    /// The slice's first port.
    First,
    /// The port with this name.
    Named(String),
    /// This number, whatever the slice says.
    Number(u16),
}

/// Server TLS material, read at start.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: Vec<u8>,
    /// PEM private key.
    pub key: Vec<u8>,
    /// PEM CA bundle for client certificates; `Some` turns on mutual TLS.
    pub client_ca: Option<Vec<u8>>,
}

/// The checked configuration the scaler runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// See [`Config::listen`].
    pub listen: SocketAddr,
    /// See [`Config::metrics_listen`]; `None` when disabled.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the agents come from.
    pub discovery: Discovery,
    /// See [`Config::stale_after`].
    pub stale_after: Duration,
    /// See [`Config::reconnect_max`].
    pub reconnect_max: Duration,
    /// TLS for the KEDA port, if enabled.
    pub tls: Option<TlsFiles>,
    /// See [`Config::demand_ttl`]; zero: off.
    pub demand_ttl: Duration,
    /// See [`Config::demand_max_requesters`].
    pub demand_max_requesters: usize,
    /// See [`Config::peers`]; empty: no peers.
    pub peers: Vec<String>,
    /// See [`Config::ready_timeout`].
    pub ready_timeout: Duration,
    /// See [`Config::inventory_rate`]; 0: no limit.
    pub inventory_rate: u32,
    /// See [`Config::node_addresses`].
    pub node_addresses: bool,
    /// See [`Config::advertise_host`]: zone → host.
    pub advertise_host: std::collections::BTreeMap<String, String>,
}

impl Config {
    /// Checks every value; reads the TLS files so a bad path fails at start.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        if !STALE_AFTER_RANGE.contains(&self.stale_after) {
            return Err(err("stale-after", format!("{:?} is outside 200ms..=10m", self.stale_after)));
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(300)).contains(&self.reconnect_max) {
            return Err(err("reconnect-max", format!("{:?} is outside 10ms..=5m", self.reconnect_max)));
        }
        if self.demand_ttl > Duration::from_secs(24 * 3600) {
            return Err(err("demand-ttl", format!("{:?} is outside 0s..=24h (0s turns demand off)", self.demand_ttl)));
        }
        if self.inventory_rate > 100_000 {
            return Err(err(
                "inventory-rate",
                format!("{} is outside 0..=100000 (0 turns the limit off)", self.inventory_rate),
            ));
        }
        if self.ready_timeout > Duration::from_secs(600) {
            return Err(err("ready-timeout", format!("{:?} is outside 0s..=10m", self.ready_timeout)));
        }
        if !(1..=1_000_000).contains(&self.demand_max_requesters) {
            return Err(err("demand-max-requesters", format!("{} is outside 1..=1000000", self.demand_max_requesters)));
        }
        let metrics_listen = non_empty(&self.metrics_listen)
            .map(|s| {
                s.parse::<SocketAddr>()
                    .map_err(|e| err("metrics-listen", format!("{s:?} is not an address like 0.0.0.0:9501 ({e})")))
            })
            .transpose()?;
        let discovery = self.discovery()?;
        if self.node_addresses && !matches!(discovery, Discovery::Kubernetes(_)) {
            return Err(err("node-addresses", "reads Nodes through the Kubernetes API: needs --agent-service"));
        }
        let advertise_host = parse_advertise_host(&self.advertise_host)?;
        let tls = self.tls()?;
        let peers = match non_empty(&self.peers) {
            None => Vec::new(),
            Some(_) if metrics_listen.is_none() => {
                return Err(err("peers", "peers talk to each other's HTTP port: --metrics-listen must not be empty"));
            }
            Some(list) => parse_host_list("peers", list)?,
        };
        Ok(Settings {
            listen: self.listen,
            metrics_listen,
            discovery,
            stale_after: self.stale_after,
            reconnect_max: self.reconnect_max,
            tls,
            demand_ttl: self.demand_ttl,
            demand_max_requesters: self.demand_max_requesters,
            peers,
            ready_timeout: self.ready_timeout,
            inventory_rate: self.inventory_rate,
            node_addresses: self.node_addresses,
            advertise_host,
        })
    }

    fn discovery(&self) -> Result<Discovery, ConfigError> {
        let agents = non_empty(&self.agents);
        let service = non_empty(&self.agent_service);
        match (agents, service) {
            (Some(_), Some(_)) => Err(err(
                "agents",
                "--agents (static list) and --agent-service (Kubernetes discovery) exclude each other; set one",
            )),
            (None, None) => Err(err(
                "agents",
                "no agents to follow: set --agents host:port,... or --agent-service NAME (Kubernetes discovery)",
            )),
            (Some(list), None) => {
                if non_empty(&self.agent_namespace).is_some() || non_empty(&self.agent_port).is_some() {
                    return Err(err("agent-namespace", "--agent-namespace and --agent-port need --agent-service"));
                }
                parse_host_list("agents", list).map(Discovery::Static)
            }
            (None, Some(service)) => {
                check_dns_name("agent-service", service)?;
                let namespace = non_empty(&self.agent_namespace).map(str::to_owned);
                if let Some(ns) = &namespace {
                    check_dns_name("agent-namespace", ns)?;
                }
                let port = match non_empty(&self.agent_port) {
                    None => PortSelector::First,
                    Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u16>() {
                        Ok(n) if n > 0 => PortSelector::Number(n),
                        _ => return Err(err("agent-port", format!("{p:?} is not a port number in 1..=65535"))),
                    },
                    Some(name) => {
                        check_dns_name("agent-port", name)?;
                        PortSelector::Named(name.to_owned())
                    }
                };
                Ok(Discovery::Kubernetes(KubeDiscovery { service: service.to_owned(), namespace, port }))
            }
        }
    }

    fn tls(&self) -> Result<Option<TlsFiles>, ConfigError> {
        let cert = non_empty(&self.tls_cert);
        let key = non_empty(&self.tls_key);
        let ca = non_empty(&self.tls_client_ca);
        match (cert, key) {
            (None, None) if ca.is_some() => {
                Err(err("tls-client-ca", "client certificate checks need server TLS: set --tls-cert and --tls-key"))
            }
            (None, None) => Ok(None),
            (Some(_), None) => Err(err("tls-key", "--tls-cert needs --tls-key")),
            (None, Some(_)) => Err(err("tls-cert", "--tls-key needs --tls-cert")),
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: read_pem("tls-cert", cert)?,
                key: read_pem("tls-key", key)?,
                client_ca: ca.map(|ca| read_pem("tls-client-ca", ca)).transpose()?,
            })),
        }
    }
}

#[cfg(test)]
mod tests;
