//! What the agent publishes to CloudWatch, and the `edge_cloudwatch_*` series
//! on `/metrics` that show how publishing goes.
//!
//! Node and device metrics take the names Container Insights uses for
//! accelerated compute (`node_gpu_utilization`, `node_neuroncore_utilization`,
//! …), so operators find them where they look already; worker queues keep our
//! own `edge_` names. Every datum carries [`NODE_DIMENSIONS`] in this order,
//! then at most one device or workload dimension set: CloudWatch identifies a
//! series by its exact dimension set, and some emulators also by their order.

use super::{Metric, edge};

/// Dimension: the EKS cluster (`--cluster-name`).
pub const DIM_CLUSTER_NAME: &str = "ClusterName";
/// Dimension: the Kubernetes node.
pub const DIM_NODE_NAME: &str = "NodeName";
/// Dimension: the node's EC2 instance type.
pub const DIM_INSTANCE_TYPE: &str = "InstanceType";
/// Dimension: `nvidia`, `neuron` or `cpu` (the node's, or the worker's).
pub const DIM_ACCELERATOR_TYPE: &str = "AcceleratorType";
/// Dimension: the node's zone (region zone or Local Zone).
pub const DIM_ZONE: &str = "Zone";
/// Dimension: one GPU, `nvidia<minor>` as Container Insights names it.
pub const DIM_GPU_DEVICE: &str = "GpuDevice";
/// Dimension: one NeuronCore, `neuroncore<index>`.
pub const DIM_NEURON_CORE: &str = "NeuronCore";
/// Dimension: the worker's Kubernetes namespace.
pub const DIM_NAMESPACE: &str = "Namespace";
/// Dimension: the pod holding a GPU or NeuronCore, as Container Insights
/// names it; with `Namespace`, only behind `--cloudwatch-pod-dimensions`
/// (every pod is a new, billed metric).
pub const DIM_POD_NAME: &str = "PodName";
/// Dimension: the worker's Deployment.
pub const DIM_DEPLOYMENT: &str = "Deployment";

/// The dimensions every datum starts with, in this order.
pub const NODE_DIMENSIONS: [&str; 5] =
    [DIM_CLUSTER_NAME, DIM_NODE_NAME, DIM_INSTANCE_TYPE, DIM_ACCELERATOR_TYPE, DIM_ZONE];

/// One CloudWatch metric: its name and CloudWatch `StandardUnit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloudWatchMetric {
    /// The metric name.
    pub name: &'static str,
    /// A CloudWatch `StandardUnit` name (`Percent`, `Bytes`, `Count`, `Seconds`, `None`).
    pub unit: &'static str,
}

const fn cw(name: &'static str, unit: &'static str) -> CloudWatchMetric {
    CloudWatchMetric { name, unit }
}

/// GPU utilisation, percent: per GPU, and the node's mean over its GPUs.
pub const NODE_GPU_UTILIZATION: CloudWatchMetric = cw("node_gpu_utilization", "Percent");
/// GPU framebuffer used over total, percent: per GPU, and for the node.
pub const NODE_GPU_MEMORY_UTILIZATION: CloudWatchMetric = cw("node_gpu_memory_utilization", "Percent");
/// GPU framebuffer used, per GPU.
pub const NODE_GPU_MEMORY_USED: CloudWatchMetric = cw("node_gpu_memory_used", "Bytes");
/// GPU framebuffer size, per GPU.
pub const NODE_GPU_MEMORY_TOTAL: CloudWatchMetric = cw("node_gpu_memory_total", "Bytes");
/// GPU power draw in watts (CloudWatch has no watt unit), per GPU.
pub const NODE_GPU_POWER_DRAW: CloudWatchMetric = cw("node_gpu_power_draw", "None");
/// GPU temperature in degrees Celsius, per GPU.
pub const NODE_GPU_TEMPERATURE: CloudWatchMetric = cw("node_gpu_temperature", "None");
/// GPUs on the node (NVML's count, healthy or not).
pub const NODE_GPU_LIMIT: CloudWatchMetric = cw("node_gpu_limit", "Count");
/// NeuronCore utilisation, percent: per core, and the node's mean.
pub const NODE_NEURONCORE_UTILIZATION: CloudWatchMetric = cw("node_neuroncore_utilization", "Percent");
/// Device memory a NeuronCore holds, all categories, per core.
pub const NODE_NEURONCORE_MEMORY_USAGE_TOTAL: CloudWatchMetric = cw("node_neuroncore_memory_usage_total", "Bytes");
/// Node CPU busy, percent.
pub const NODE_CPU_UTILIZATION: CloudWatchMetric = cw("node_cpu_utilization", "Percent");
/// Node memory in use (total − available), percent.
pub const NODE_MEMORY_UTILIZATION: CloudWatchMetric = cw("node_memory_utilization", "Percent");
/// Always 1 while the agent publishes: summed over nodes, the node count.
pub const AGENT_UP: CloudWatchMetric = cw("edge_agent_up", "Count");
/// Requests waiting, per Deployment on the node.
pub const WORKER_QUEUE_DEPTH: CloudWatchMetric = cw(edge::WORKER_QUEUE_DEPTH.name, "Count");
/// Requests running, per Deployment on the node.
pub const WORKER_IN_FLIGHT: CloudWatchMetric = cw(edge::WORKER_IN_FLIGHT.name, "Count");
/// Requests accepted in total, per Deployment on the node.
pub const WORKER_CAPACITY: CloudWatchMetric = cw(edge::WORKER_CAPACITY.name, "Count");
/// Workers reporting, per Deployment on the node.
pub const WORKERS: CloudWatchMetric = cw(edge::WORKERS.name, "Count");
/// Median latency of the slowest worker of a Deployment on the node.
pub const WORKER_LATENCY_P50_SECONDS: CloudWatchMetric = cw(edge::WORKER_LATENCY_P50_SECONDS.name, "Seconds");
/// 99th percentile latency of the slowest worker of a Deployment on the node.
pub const WORKER_LATENCY_P99_SECONDS: CloudWatchMetric = cw(edge::WORKER_LATENCY_P99_SECONDS.name, "Seconds");

/// Every metric the agent publishes to CloudWatch.
pub const ALL: &[CloudWatchMetric] = &[
    NODE_GPU_UTILIZATION,
    NODE_GPU_MEMORY_UTILIZATION,
    NODE_GPU_MEMORY_USED,
    NODE_GPU_MEMORY_TOTAL,
    NODE_GPU_POWER_DRAW,
    NODE_GPU_TEMPERATURE,
    NODE_GPU_LIMIT,
    NODE_NEURONCORE_UTILIZATION,
    NODE_NEURONCORE_MEMORY_USAGE_TOTAL,
    NODE_CPU_UTILIZATION,
    NODE_MEMORY_UTILIZATION,
    AGENT_UP,
    WORKER_QUEUE_DEPTH,
    WORKER_IN_FLIGHT,
    WORKER_CAPACITY,
    WORKERS,
    WORKER_LATENCY_P50_SECONDS,
    WORKER_LATENCY_P99_SECONDS,
];

/// Label on the exporter's own series: why samples were dropped.
pub const LABEL_REASON: &str = "reason";
/// Label on the exporter's own series: how a PutMetricData call ended.
pub const LABEL_OUTCOME: &str = "outcome";

/// Samples taken from the snapshot for CloudWatch.
pub const EXPORTER_SAMPLES: Metric =
    Metric::counter("edge_cloudwatch_samples", "Samples of the node snapshot taken for CloudWatch");
/// Samples CloudWatch accepted.
pub const EXPORTER_SAMPLES_PUBLISHED: Metric =
    Metric::counter("edge_cloudwatch_samples_published", "Samples CloudWatch accepted");
/// Samples given up on, by reason (`buffer_full`, `rejected`, `expired`, `invalid`).
pub const EXPORTER_SAMPLES_DROPPED: Metric =
    Metric::counter("edge_cloudwatch_samples_dropped", "Samples dropped before CloudWatch accepted them, by reason");
/// Samples waiting for CloudWatch, in the buffer or in a call.
pub const EXPORTER_BUFFERED_SAMPLES: Metric =
    Metric::gauge("edge_cloudwatch_buffered_samples", "Samples waiting to be published to CloudWatch");
/// The most samples the buffer holds before it drops the oldest.
pub const EXPORTER_BUFFER_CAPACITY_SAMPLES: Metric =
    Metric::gauge("edge_cloudwatch_buffer_capacity_samples", "Samples the CloudWatch buffer holds at most");
/// PutMetricData calls by outcome (after the SDK's retries).
pub const EXPORTER_REQUESTS: Metric =
    Metric::counter("edge_cloudwatch_requests", "PutMetricData calls by outcome, after retries");
/// Datums CloudWatch accepted.
pub const EXPORTER_DATUMS_PUBLISHED: Metric =
    Metric::counter("edge_cloudwatch_datums_published", "MetricDatum entries CloudWatch accepted");
/// When CloudWatch last accepted a call.
pub const EXPORTER_LAST_SUCCESS_SECONDS: Metric = Metric::gauge(
    "edge_cloudwatch_last_success_timestamp_seconds",
    "Unix time of the last PutMetricData call CloudWatch accepted",
);

/// Every `edge_cloudwatch_*` series on `/metrics`.
pub const EXPORTER: &[Metric] = &[
    EXPORTER_SAMPLES,
    EXPORTER_SAMPLES_PUBLISHED,
    EXPORTER_SAMPLES_DROPPED,
    EXPORTER_BUFFERED_SAMPLES,
    EXPORTER_BUFFER_CAPACITY_SAMPLES,
    EXPORTER_REQUESTS,
    EXPORTER_DATUMS_PUBLISHED,
    EXPORTER_LAST_SUCCESS_SECONDS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_units_and_dimensions_are_valid_for_cloudwatch() {
        let units = ["Percent", "Bytes", "Count", "Seconds", "None"];
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "duplicate {}", m.name);
            assert!(!m.name.is_empty() && m.name.len() <= 255 && m.name.is_ascii(), "{}", m.name);
            assert!(units.contains(&m.unit), "{}: unit {}", m.name, m.unit);
        }
        for d in NODE_DIMENSIONS.iter().chain(&[
            DIM_GPU_DEVICE,
            DIM_NEURON_CORE,
            DIM_NAMESPACE,
            DIM_DEPLOYMENT,
            DIM_POD_NAME,
        ]) {
            assert!(!d.is_empty() && d.len() <= 255 && d.is_ascii() && !d.starts_with(':'), "{d}");
        }
    }

    #[test]
    fn exporter_series_use_the_prefix() {
        for m in EXPORTER {
            assert!(m.name.starts_with("edge_cloudwatch_"), "{}", m.name);
        }
    }
}
