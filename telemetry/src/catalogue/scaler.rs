//! The scaler's own series (`edge-scaler`'s /metrics): how many agents it
//! follows, how fresh they are, and how it answers KEDA.

use super::{Histogram, Metric};

/// Label: a KEDA RPC, e.g. `GetMetrics`.
pub const LABEL_METHOD: &str = "method";
/// Label: the gRPC status code name, e.g. `Ok`, `InvalidArgument`.
pub const LABEL_CODE: &str = "code";
/// Label: an accelerator type (`nvidia`, `neuron`, `cpu`).
pub const LABEL_ACCELERATOR: &str = "accelerator";
/// Label: a zone; empty for a regional trigger.
pub const LABEL_ZONE: &str = "zone";
/// Label: a cold start's phase, `report` or `image`.
pub const LABEL_PHASE: &str = "phase";
/// Label: an agent's address as discovery found it (`host:port`).
pub const LABEL_AGENT: &str = "agent";
/// Label: why the inventory refused a pull, `bad_request` or `rate_limited`.
pub const LABEL_REASON: &str = "reason";
/// Label: how a peer sync ended, `ok` or `failed`.
pub const LABEL_OUTCOME: &str = "outcome";

/// Agents followed (discovered and not dropped).
pub const AGENTS: Metric = Metric::gauge("edge_scaler_agents", "Agents the scaler follows");
/// Agents with an open change stream.
pub const AGENTS_CONNECTED: Metric =
    Metric::gauge("edge_scaler_agents_connected", "Agents whose change stream is open");
/// Agents silent for longer than --stale-after; their data does not count.
pub const AGENTS_STALE: Metric = Metric::gauge(
    "edge_scaler_agents_stale",
    "Agents silent for longer than --stale-after (their data does not count)",
);
/// Seconds since each followed agent last sent anything (since discovery for one never heard from).
pub const AGENT_AGE_SECONDS: Metric = Metric::gauge(
    "edge_scaler_agent_age_seconds",
    "Seconds since the agent last sent a snapshot or heartbeat (since discovery if it never did)",
);
/// Worker groups (accelerator, namespace, Deployment) known.
pub const WORKER_GROUPS: Metric =
    Metric::gauge("edge_scaler_worker_groups", "Worker groups (accelerator, namespace, Deployment, labels) known");
/// Snapshot messages received from agents, heartbeats included.
pub const SNAPSHOTS: Metric = Metric::counter("edge_scaler_snapshots", "Snapshot messages received from agents");
/// Agent streams that failed or ended (each is followed by a reconnect).
pub const AGENT_DISCONNECTS: Metric =
    Metric::counter("edge_scaler_agent_disconnects", "Agent change streams that failed or ended");
/// KEDA calls answered, by method and status code.
pub const GRPC_REQUESTS: Metric = Metric::counter("edge_scaler_grpc_requests", "KEDA calls answered");
/// `true`s pushed on StreamIsActive (inactive -> active transitions).
pub const ACTIVATIONS: Metric =
    Metric::counter("edge_scaler_activations", "Activations pushed on StreamIsActive (inactive to active)");
/// StreamIsActive streams open now.
pub const ACTIVE_STREAMS: Metric = Metric::gauge("edge_scaler_active_streams", "StreamIsActive streams open now");
/// Devices remembered as waiting for a class with no ready endpoint.
pub const DEMAND_REQUESTERS: Metric = Metric::gauge(
    "edge_scaler_demand_requesters",
    "Devices that recently asked the inventory for a class with no ready endpoint",
);
/// Inventory pulls that woke a class (it had no demand before).
pub const DEMAND_WAKES: Metric =
    Metric::counter("edge_scaler_demand_wakes", "Inventory pulls that woke a class with no ready endpoint");
/// Inventory pulls refused, by reason.
pub const INVENTORY_REFUSED: Metric = Metric::counter("edge_scaler_inventory_refused", "Inventory pulls refused");
/// Other scaler replicas that synced with this one within the freshness window.
pub const PEERS: Metric =
    Metric::gauge("edge_scaler_peers", "Other scaler replicas heard from recently (device demand is shared with them)");
/// Syncs sent to peers, by outcome.
pub const PEER_SYNCS: Metric = Metric::counter("edge_scaler_peer_syncs", "Syncs sent to other scaler replicas");
/// Demand records not sent to a peer because its buffer was full.
pub const PEER_DEMAND_DROPPED: Metric = Metric::counter(
    "edge_scaler_peer_demand_dropped",
    "Device demand records not sent to a peer because its buffer was full",
);

/// How long KEDA calls take, by method (unary calls; StreamIsActive until it is set up).
pub const GRPC_REQUEST_DURATION_SECONDS: Histogram = Histogram {
    name: "edge_scaler_grpc_request_duration_seconds",
    help: "Time to answer a KEDA call",
    buckets: &[0.000_05, 0.0001, 0.000_25, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5],
};

/// A wake from zero, by accelerator, zone and phase: activation → the first
/// fresh report of a selected worker (`report`) → the first report of one
/// that has served an image (`image`).
pub const COLD_START_SECONDS: Histogram = Histogram {
    name: "edge_scaler_cold_start_seconds",
    help: "Time from waking a trigger with no worker to its first worker report (phase=report) and first image served (phase=image)",
    buckets: &[0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0],
};

/// Every gauge and counter of the scaler.
pub const ALL: &[Metric] = &[
    AGENTS,
    AGENTS_CONNECTED,
    AGENTS_STALE,
    WORKER_GROUPS,
    SNAPSHOTS,
    AGENT_DISCONNECTS,
    GRPC_REQUESTS,
    ACTIVATIONS,
    ACTIVE_STREAMS,
    DEMAND_REQUESTERS,
    DEMAND_WAKES,
    AGENT_AGE_SECONDS,
    INVENTORY_REFUSED,
    PEERS,
    PEER_SYNCS,
    PEER_DEMAND_DROPPED,
];

/// Every histogram of the scaler.
pub const HISTOGRAMS: &[Histogram] = &[GRPC_REQUEST_DURATION_SECONDS, COLD_START_SECONDS];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_use_the_prefix_and_sorted_buckets() {
        for h in HISTOGRAMS {
            assert!(h.name.starts_with("edge_scaler_") && h.name.ends_with("_seconds"), "{}", h.name);
            assert!(ALL.iter().all(|m| m.name != h.name), "{} twice", h.name);
            assert!(h.buckets.windows(2).all(|w| w[0] < w[1]), "{} buckets unsorted", h.name);
        }
    }
}
