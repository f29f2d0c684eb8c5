//! Series of our own: `edge_` prefix, base units, bounded labels (never a
//! worker id, prompt or request id).

use super::Metric;

/// Label: accelerator type (`nvidia`, `neuron`, `cpu`).
pub const LABEL_ACCELERATOR: &str = "accelerator";
/// Label: the worker's Deployment.
pub const LABEL_DEPLOYMENT: &str = "deployment";
/// Label: the worker's namespace.
pub const LABEL_NAMESPACE: &str = "namespace";
/// Label: the node's name.
pub const LABEL_NODE: &str = "node";
/// Label: the node's EC2 instance type.
pub const LABEL_INSTANCE_TYPE: &str = "instance_type";
/// Label: the node's zone (region zone or Local Zone).
pub const LABEL_ZONE: &str = "zone";
/// Label: a kubelet resource name (`nvidia.com/gpu`, `aws.amazon.com/neuroncore`, …).
pub const LABEL_RESOURCE: &str = "resource";
/// Label: a collector's name (`nvml`, `neuron`, `procfs`, `workers`, `pod_resources`).
pub const LABEL_COLLECTOR: &str = "collector";

/// Always 1; carries the node's name, instance type and zone for joins.
pub const NODE_INFO: Metric =
    Metric::gauge("edge_node_info", "The node this agent runs on: name, instance type and zone (always 1)");
/// Requests waiting, summed over a Deployment's workers on this node.
pub const WORKER_QUEUE_DEPTH: Metric =
    Metric::gauge("edge_worker_queue_depth", "Requests waiting in the workers' queues on this node");
/// Requests running, summed over a Deployment's workers on this node.
pub const WORKER_IN_FLIGHT: Metric =
    Metric::gauge("edge_worker_in_flight", "Requests the workers on this node are running now");
/// Capacity (queued + running), summed over a Deployment's workers.
pub const WORKER_CAPACITY: Metric =
    Metric::gauge("edge_worker_capacity", "Requests the workers on this node accept in total");
/// Workers reporting to this agent.
pub const WORKERS: Metric = Metric::gauge("edge_workers", "Workers currently reporting to this agent");
/// Median request latency of the slowest reporting worker. Not a `quantile`
/// label: that label is reserved for summaries.
pub const WORKER_LATENCY_P50_SECONDS: Metric = Metric::gauge(
    "edge_worker_latency_p50_seconds",
    "Median request latency reported by the workers (the slowest worker on this node)",
);
/// 99th percentile request latency of the slowest reporting worker.
pub const WORKER_LATENCY_P99_SECONDS: Metric = Metric::gauge(
    "edge_worker_latency_p99_seconds",
    "99th percentile request latency reported by the workers (the slowest worker on this node)",
);
/// 1 while a GPU answers NVML, 0 once it failed (e.g. fell off the bus).
pub const GPU_HEALTHY: Metric =
    Metric::gauge("edge_gpu_healthy", "Whether a GPU answers NVML queries (1) or failed (0)");
/// 1 while a collector works, 0 when it is absent or failing.
pub const COLLECTOR_UP: Metric =
    Metric::gauge("edge_collector_up", "Whether a collector works on this node (1) or is absent or failing (0)");
/// 1 when a collector's source is not on this node (not an error).
pub const COLLECTOR_ABSENT: Metric =
    Metric::gauge("edge_collector_absent", "Whether a collector's source is absent on this node (1)");
/// Failures per collector: bad lines, failed queries, restarts, rejected reports.
pub const COLLECTOR_ERRORS: Metric = Metric::counter("edge_collector_errors", "Collector failures since start");
/// Duration of a collector's last run.
pub const COLLECTOR_DURATION_SECONDS: Metric =
    Metric::gauge("edge_collector_duration_seconds", "How long the collector's last run took");
/// Node CPU busy ratio over the last tick.
pub const NODE_CPU_UTILIZATION_RATIO: Metric =
    Metric::gauge("edge_node_cpu_utilization_ratio", "Node CPU busy ratio over the last collection interval");
/// Node memory size.
pub const NODE_MEMORY_TOTAL_BYTES: Metric = Metric::gauge("edge_node_memory_total_bytes", "Node memory size");
/// Node memory available to new work.
pub const NODE_MEMORY_AVAILABLE_BYTES: Metric =
    Metric::gauge("edge_node_memory_available_bytes", "Node memory available (MemAvailable)");
/// CPU time the agent used.
pub const AGENT_CPU_SECONDS: Metric = Metric::counter("edge_agent_cpu_seconds", "CPU time the agent used");
/// The agent's resident memory.
pub const AGENT_RESIDENT_MEMORY_BYTES: Metric =
    Metric::gauge("edge_agent_resident_memory_bytes", "The agent's resident set size");
/// Changes of the node snapshot since start.
pub const AGENT_SNAPSHOT_SEQUENCE: Metric =
    Metric::counter("edge_agent_snapshot_changes", "Changes of the node snapshot since the agent started");
/// Devices the kubelet can allocate, per resource name (PodResources
/// `GetAllocatableResources`).
pub const POD_RESOURCES_ALLOCATABLE_DEVICES: Metric = Metric::gauge(
    "edge_pod_resources_allocatable_devices",
    "Devices the kubelet can allocate on this node, per resource name",
);
/// Of those, devices some container holds (PodResources `List`).
pub const POD_RESOURCES_ASSIGNED_DEVICES: Metric =
    Metric::gauge("edge_pod_resources_assigned_devices", "Devices a container holds on this node, per resource name");
/// Every `edge_` series.
pub const ALL: &[Metric] = &[
    NODE_INFO,
    WORKER_QUEUE_DEPTH,
    WORKER_IN_FLIGHT,
    WORKER_CAPACITY,
    WORKERS,
    WORKER_LATENCY_P50_SECONDS,
    WORKER_LATENCY_P99_SECONDS,
    GPU_HEALTHY,
    COLLECTOR_UP,
    COLLECTOR_ABSENT,
    COLLECTOR_ERRORS,
    COLLECTOR_DURATION_SECONDS,
    NODE_CPU_UTILIZATION_RATIO,
    NODE_MEMORY_TOTAL_BYTES,
    NODE_MEMORY_AVAILABLE_BYTES,
    AGENT_CPU_SECONDS,
    AGENT_RESIDENT_MEMORY_BYTES,
    AGENT_SNAPSHOT_SEQUENCE,
    POD_RESOURCES_ALLOCATABLE_DEVICES,
    POD_RESOURCES_ASSIGNED_DEVICES,
];
