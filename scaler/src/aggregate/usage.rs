//! Device usage of a node (or of the devices a class's pods hold): running means that combine
//! exactly across nodes.

use super::*;

/// A running mean: sum and count, so means over nodes combine exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Mean {
    /// Sum of the values.
    pub sum: f64,
    /// How many values.
    pub count: u32,
}

impl Mean {
    pub(super) fn add(&mut self, v: f64) {
        self.sum += v;
        self.count += 1;
    }

    pub(super) fn merge(&mut self, other: &Mean) {
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// Per-device usage of one node, in percent (0–100).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeUsage {
    /// Healthy GPUs' utilisation.
    pub gpu_utilization: Mean,
    /// Healthy GPUs' framebuffer used / total.
    pub gpu_memory: Mean,
    /// NeuronCores' utilisation.
    pub neuron_utilization: Mean,
    /// Node CPU busy.
    pub cpu_utilization: Mean,
    /// Node memory used (1 - available / total).
    pub cpu_memory: Mean,
}

impl NodeUsage {
    pub(super) fn merge(&mut self, other: &NodeUsage) {
        self.gpu_utilization.merge(&other.gpu_utilization);
        self.gpu_memory.merge(&other.gpu_memory);
        self.neuron_utilization.merge(&other.neuron_utilization);
        self.cpu_utilization.merge(&other.cpu_utilization);
        self.cpu_memory.merge(&other.cpu_memory);
    }

    /// The device mean a utilisation metric reads for an accelerator type.
    pub fn for_metric(&self, accelerator: AcceleratorType, metric: MetricKind) -> Mean {
        match (accelerator, metric) {
            (AcceleratorType::Nvidia, MetricKind::Utilization) => self.gpu_utilization,
            (AcceleratorType::Nvidia, MetricKind::MemoryUtilization) => self.gpu_memory,
            (AcceleratorType::Neuron, MetricKind::Utilization) => self.neuron_utilization,
            (AcceleratorType::Cpu, MetricKind::Utilization) => self.cpu_utilization,
            (AcceleratorType::Cpu, MetricKind::MemoryUtilization) => self.cpu_memory,
            _ => Mean::default(),
        }
    }
}
pub(super) fn add_gpu(usage: &mut NodeUsage, util: Option<f64>, memory: Option<f64>) {
    if let Some(u) = util {
        usage.gpu_utilization.add(u);
    }
    if let Some(m) = memory {
        usage.gpu_memory.add(m);
    }
}
