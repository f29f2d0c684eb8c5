//! Pure mapping: one [`NodeSnapshot`] → one value per CloudWatch series.
//!
//! Every series starts with the node dimensions in a fixed order; device and
//! workload dimensions follow. Dimension values are made valid here (never
//! empty, at most 1024 characters) so that nothing later can be refused for
//! them. A value a device does not support is left out, never sent as 0.

use edge_telemetry::catalogue::cloudwatch::{self as cw, CloudWatchMetric};
use edge_telemetry::proto::{CollectorState, NodeSnapshot, PodRef};
use edge_telemetry::view::{self, worker_totals};

/// CloudWatch refuses empty dimension values; a node run without
/// `--instance-type` or `--zone` publishes this instead.
pub const UNKNOWN: &str = "unknown";
/// CloudWatch's limit on a dimension value's length.
pub const MAX_DIMENSION_VALUE_CHARS: usize = 1024;

/// One CloudWatch time series: metric (name and unit) and dimensions in the
/// order they are sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Name and unit.
    pub metric: CloudWatchMetric,
    /// Dimension names and values, node dimensions first.
    pub dimensions: Vec<(&'static str, String)>,
}

/// The node's dimension values, taken once from the settings and snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDimensions {
    /// `--cluster-name`.
    pub cluster: String,
    /// `--cloudwatch-pod-dimensions`: per-device series of a held GPU or
    /// NeuronCore also carry `Namespace` and `PodName`, one series per holder.
    pub pods: bool,
}

/// Every series of `snapshot` with its current value; none before the
/// collectors first ran (see [`collected`]).
pub fn sample(snapshot: &NodeSnapshot, dims: &NodeDimensions) -> Vec<(SeriesKey, f64)> {
    if !collected(snapshot) {
        return Vec::new();
    }
    let node = snapshot.node.clone().unwrap_or_default();
    let base = |accelerator: &str| -> Vec<(&'static str, String)> {
        vec![
            (cw::DIM_CLUSTER_NAME, dimension_value(&dims.cluster)),
            (cw::DIM_NODE_NAME, dimension_value(&node.name)),
            (cw::DIM_INSTANCE_TYPE, dimension_value(&node.instance_type)),
            (cw::DIM_ACCELERATOR_TYPE, dimension_value(accelerator)),
            (cw::DIM_ZONE, dimension_value(&node.zone)),
        ]
    };
    let node_dims = base(view::node_accelerator(snapshot).as_str());
    let mut out = Out(Vec::new());
    gpus(&mut out, snapshot, &node_dims, dims.pods);
    neuron(&mut out, snapshot, &node_dims, dims.pods);
    if let Some(h) = &snapshot.host {
        out.opt(cw::NODE_CPU_UTILIZATION, &node_dims, &[], h.cpu_utilization_ratio.map(|r| r * 100.0));
        let used = match (h.memory_total_bytes, h.memory_available_bytes) {
            (Some(t), Some(a)) if t > 0 => Some(t.saturating_sub(a) as f64 / t as f64 * 100.0),
            _ => None,
        };
        out.opt(cw::NODE_MEMORY_UTILIZATION, &node_dims, &[], used);
    }
    out.opt(cw::AGENT_UP, &node_dims, &[], Some(1.0));
    workers(&mut out, snapshot, base);
    out.0
}

/// Whether the collectors have run: the agent starts with placeholder
/// health entries (state unspecified) and no devices, in which every node
/// would look like a CPU node. Sampling that snapshot would publish a GPU
/// node's first `edge_agent_up` under `AcceleratorType=cpu`: a wrong node
/// count, and one more billed series per node.
pub fn collected(snapshot: &NodeSnapshot) -> bool {
    snapshot.collectors.iter().all(|c| c.state() != CollectorState::Unspecified)
}

struct Out(Vec<(SeriesKey, f64)>);

impl Out {
    fn opt(
        &mut self,
        metric: CloudWatchMetric,
        base: &[(&'static str, String)],
        extra: &[(&'static str, String)],
        value: Option<f64>,
    ) {
        if let Some(v) = value {
            let dimensions = base.iter().chain(extra).cloned().collect();
            self.0.push((SeriesKey { metric, dimensions }, v));
        }
    }
}

type Dims = Vec<(&'static str, String)>;

/// The dimensions after the node's of one device's series: the device, then
/// (with pod dimensions on) `Namespace` and `PodName` once per holder.
fn device_dims(device: (&'static str, String), pods: &[PodRef], with_pods: bool) -> Vec<Dims> {
    if !with_pods || pods.is_empty() {
        return vec![vec![device]];
    }
    pods.iter()
        .map(|p| {
            vec![
                device.clone(),
                (cw::DIM_NAMESPACE, dimension_value(&p.namespace)),
                (cw::DIM_POD_NAME, dimension_value(&p.pod)),
            ]
        })
        .collect()
}

fn gpus(out: &mut Out, snapshot: &NodeSnapshot, node_dims: &[(&'static str, String)], with_pods: bool) {
    if snapshot.gpus.is_empty() {
        return;
    }
    let (mut util_sum, mut util_n, mut mem_utils) = (0.0, 0u32, Vec::with_capacity(snapshot.gpus.len()));
    for g in &snapshot.gpus {
        let device = g.minor_number.unwrap_or(g.index);
        let extras = device_dims((cw::DIM_GPU_DEVICE, format!("nvidia{device}")), &g.pods, with_pods);
        let util = g.gpu_utilization_percent.map(f64::from);
        let mem_util = view::memory_percent(g.framebuffer_used_bytes, g.framebuffer_total_bytes);
        mem_utils.push(mem_util);
        if let Some(u) = util {
            util_sum += u;
            util_n += 1;
        }
        for extra in &extras {
            out.opt(cw::NODE_GPU_UTILIZATION, node_dims, extra, util);
            out.opt(cw::NODE_GPU_MEMORY_UTILIZATION, node_dims, extra, mem_util);
            out.opt(cw::NODE_GPU_MEMORY_USED, node_dims, extra, g.framebuffer_used_bytes.map(|b| b as f64));
            out.opt(cw::NODE_GPU_MEMORY_TOTAL, node_dims, extra, g.framebuffer_total_bytes.map(|b| b as f64));
            out.opt(cw::NODE_GPU_POWER_DRAW, node_dims, extra, g.power_usage_watts);
            out.opt(cw::NODE_GPU_TEMPERATURE, node_dims, extra, g.temperature_celsius.map(f64::from));
        }
    }
    out.opt(cw::NODE_GPU_UTILIZATION, node_dims, &[], (util_n > 0).then(|| util_sum / f64::from(util_n)));
    out.opt(cw::NODE_GPU_MEMORY_UTILIZATION, node_dims, &[], view::mean_of(mem_utils));
    out.opt(cw::NODE_GPU_LIMIT, node_dims, &[], Some(snapshot.gpus.len() as f64));
}

fn neuron(out: &mut Out, snapshot: &NodeSnapshot, node_dims: &[(&'static str, String)], with_pods: bool) {
    let (mut sum, mut n) = (0.0, 0u32);
    for c in &snapshot.neuron_cores {
        let extras = device_dims((cw::DIM_NEURON_CORE, format!("neuroncore{}", c.index)), &c.pods, with_pods);
        let util = c.utilization_ratio.map(|r| r * 100.0);
        if let Some(u) = util {
            sum += u;
            n += 1;
        }
        let memory = c.memory.as_ref().and_then(|m| {
            let parts = [
                m.constants_bytes,
                m.model_code_bytes,
                m.model_shared_scratchpad_bytes,
                m.runtime_memory_bytes,
                m.tensors_bytes,
            ];
            parts.iter().any(Option::is_some).then(|| parts.iter().flatten().sum::<u64>() as f64)
        });
        for extra in &extras {
            out.opt(cw::NODE_NEURONCORE_UTILIZATION, node_dims, extra, util);
            out.opt(cw::NODE_NEURONCORE_MEMORY_USAGE_TOTAL, node_dims, extra, memory);
        }
    }
    out.opt(cw::NODE_NEURONCORE_UTILIZATION, node_dims, &[], (n > 0).then(|| sum / f64::from(n)));
}

/// Summed per (accelerator, namespace, deployment), like `/metrics`: a worker
/// dimension would make a new (billed) metric for every pod.
fn workers(out: &mut Out, snapshot: &NodeSnapshot, base: impl Fn(&str) -> Vec<(&'static str, String)>) {
    let totals =
        worker_totals(snapshot, |w| Some((w.accelerator.as_str(), w.namespace.as_str(), w.deployment.as_str())));
    for ((accelerator, namespace, deployment), t) in totals {
        let dims = base(accelerator);
        let extra =
            [(cw::DIM_NAMESPACE, dimension_value(namespace)), (cw::DIM_DEPLOYMENT, dimension_value(deployment))];
        out.opt(cw::WORKERS, &dims, &extra, Some(f64::from(t.workers)));
        out.opt(cw::WORKER_QUEUE_DEPTH, &dims, &extra, Some(t.queue_depth as f64));
        out.opt(cw::WORKER_IN_FLIGHT, &dims, &extra, Some(t.in_flight as f64));
        out.opt(cw::WORKER_CAPACITY, &dims, &extra, Some(t.capacity as f64));
        out.opt(cw::WORKER_LATENCY_P50_SECONDS, &dims, &extra, t.latency_p50_seconds);
        out.opt(cw::WORKER_LATENCY_P99_SECONDS, &dims, &extra, t.latency_p99_seconds);
    }
}

/// A valid CloudWatch dimension value: trimmed, [`UNKNOWN`] when empty, cut
/// to [`MAX_DIMENSION_VALUE_CHARS`] characters.
pub fn dimension_value(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() {
        return UNKNOWN.to_owned();
    }
    s.chars().take(MAX_DIMENSION_VALUE_CHARS).collect()
}

#[cfg(test)]
mod tests;
