//! The serde shape of neuron-monitor's JSON: only the fields the agent maps.
//! Unknown fields are ignored, so newer neuron-monitor releases that add
//! fields keep working; numbers are read as `f64` where a float or an integer
//! may appear, and converted in [`super`].

use std::collections::BTreeMap;

use edge_telemetry::proto::{NeuronErrorCounts, NeuronExecutionCounts, NeuronInstance};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::DeviceEcc;

#[derive(Deserialize)]
pub(super) struct RawRuntime {
    pub(super) pid: Option<u32>,
    pub(super) neuron_runtime_tag: Option<String>,
    pub(super) error: Option<String>,
    pub(super) report: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
pub(super) struct CoreCounters {
    pub(super) neuroncores_in_use: BTreeMap<String, CoreUse>,
}

#[derive(Deserialize)]
pub(super) struct CoreUse {
    pub(super) neuroncore_utilization: Option<f64>,
    pub(super) flops: Option<f64>,
}

#[derive(Deserialize)]
pub(super) struct MemoryUsed {
    pub(super) neuron_runtime_used_bytes: RuntimeBytes,
}

#[derive(Deserialize)]
pub(super) struct RuntimeBytes {
    pub(super) host: Option<f64>,
    pub(super) neuron_device: Option<f64>,
    pub(super) usage_breakdown: Option<Breakdown>,
}

#[derive(Deserialize)]
pub(super) struct Breakdown {
    #[serde(default)]
    pub(super) neuroncore_memory_usage: BTreeMap<String, CoreMemory>,
}

#[derive(Deserialize)]
pub(super) struct CoreMemory {
    pub(super) constants: Option<f64>,
    pub(super) model_code: Option<f64>,
    pub(super) model_shared_scratchpad: Option<f64>,
    pub(super) runtime_memory: Option<f64>,
    pub(super) tensors: Option<f64>,
}

#[derive(Deserialize)]
pub(super) struct RuntimeVcpu {
    pub(super) vcpu_usage: UserSystem,
}

#[derive(Deserialize)]
pub(super) struct UserSystem {
    pub(super) user: Option<f64>,
    pub(super) system: Option<f64>,
}

#[derive(Deserialize)]
pub(super) struct ExecutionStats {
    pub(super) error_summary: Option<ErrorSummary>,
    pub(super) execution_summary: Option<ExecutionSummary>,
    pub(super) latency_stats: Option<LatencyStats>,
}

#[derive(Deserialize)]
pub(super) struct ExecutionSummary {
    #[serde(default)]
    pub(super) completed: u64,
    #[serde(default)]
    pub(super) completed_with_err: u64,
    #[serde(default)]
    pub(super) completed_with_num_err: u64,
    #[serde(default)]
    pub(super) timed_out: u64,
    #[serde(default)]
    pub(super) incorrect_input: u64,
    #[serde(default)]
    pub(super) failed_to_queue: u64,
}

impl ExecutionSummary {
    pub(super) fn into_proto(self) -> NeuronExecutionCounts {
        NeuronExecutionCounts {
            completed: self.completed,
            completed_with_err: self.completed_with_err,
            completed_with_num_err: self.completed_with_num_err,
            timed_out: self.timed_out,
            incorrect_input: self.incorrect_input,
            failed_to_queue: self.failed_to_queue,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct ErrorSummary {
    #[serde(default)]
    pub(super) generic: u64,
    #[serde(default)]
    pub(super) numerical: u64,
    #[serde(default)]
    pub(super) transient: u64,
    #[serde(default)]
    pub(super) model: u64,
    #[serde(default)]
    pub(super) runtime: u64,
    #[serde(default)]
    pub(super) hardware: u64,
}

impl ErrorSummary {
    pub(super) fn into_proto(self) -> NeuronErrorCounts {
        NeuronErrorCounts {
            generic: self.generic,
            numerical: self.numerical,
            transient: self.transient,
            model: self.model,
            runtime: self.runtime,
            hardware: self.hardware,
        }
    }
}

#[derive(Deserialize, Default)]
pub(super) struct LatencyStats {
    pub(super) total_latency: Option<BTreeMap<String, f64>>,
    pub(super) device_latency: Option<BTreeMap<String, f64>>,
}

#[derive(Deserialize)]
pub(super) struct HwCounters {
    pub(super) neuron_devices: Vec<DeviceEcc>,
}

/// `neuron_hardware_info`: how NeuronCores group into NeuronDevices, which
/// a `aws.amazon.com/neuron` (device) allocation needs to name its cores.
#[derive(Deserialize)]
pub(super) struct HardwareInfo {
    pub(super) neuroncore_per_device_count: Option<u32>,
}

#[derive(Deserialize)]
pub(super) struct InstanceInfo {
    #[serde(default)]
    pub(super) instance_name: String,
    #[serde(default)]
    pub(super) instance_id: String,
    #[serde(default)]
    pub(super) instance_type: String,
    #[serde(default)]
    pub(super) instance_availability_zone: String,
    #[serde(default)]
    pub(super) instance_region: String,
    #[serde(default)]
    pub(super) subnet_id: String,
}

impl InstanceInfo {
    pub(super) fn into_proto(self) -> NeuronInstance {
        NeuronInstance {
            instance_name: self.instance_name,
            instance_id: self.instance_id,
            instance_type: self.instance_type,
            availability_zone: self.instance_availability_zone,
            region: self.instance_region,
            subnet_id: self.subnet_id,
            neuroncores_per_device: None,
        }
    }
}
