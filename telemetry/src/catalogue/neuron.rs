//! neuron-monitor-prometheus's series (the exporter AWS ships next to
//! `neuron-monitor`), so the Neuron Grafana dashboards work unchanged.
//!
//! Names, help texts and labels follow AWS's `neuron-monitor-prometheus.py`
//! (`/opt/aws/neuron/bin/`, documented in the Neuron Monitor User Guide): its
//! `process_neuroncore_counters`, `process_memory_used`,
//! `process_neuron_runtime_vcpu_usage`, `process_execution_stats` and
//! `process_neuron_hw_counters`. Every series carries the instance labels
//! (one value per node, so bounded); runtime series add `runtime_tag`.

use super::Metric;

/// Label: NeuronCore index.
pub const LABEL_NEURONCORE: &str = "neuroncore";
/// Label: the namespace of the pod holding the NeuronCore, as Container
/// Insights' Neuron series spell it (kubelet PodResources).
pub const LABEL_NAMESPACE: &str = "namespace";
/// Label: the pod holding the NeuronCore.
pub const LABEL_POD: &str = "pod";
/// Label: the container holding the NeuronCore.
pub const LABEL_CONTAINER: &str = "container";
/// Label: the runtime's tag (neuron-monitor's `neuron_runtime_tag`).
pub const LABEL_RUNTIME_TAG: &str = "runtime_tag";
/// Label: `host` or `neuron_device` on [`NEURON_RUNTIME_MEMORY_USED_BYTES`].
pub const LABEL_MEMORY_LOCATION: &str = "memory_location";
/// The `memory_location` value neuron-monitor-prometheus writes on the
/// per-core `neuroncore_memory_usage_*` series (Python's `None`); kept so
/// label sets match the real exporter's.
pub const MEMORY_LOCATION_PER_CORE: &str = "None";
/// Label: error category of `execution_errors_total`.
pub const LABEL_ERROR_TYPE: &str = "error_type";
/// Label: status of `execution_status_total`.
pub const LABEL_STATUS_TYPE: &str = "status_type";
/// Label: latency percentile, e.g. `p50`.
pub const LABEL_PERCENTILE: &str = "percentile";
/// Label: `user` or `system`.
pub const LABEL_USAGE_TYPE: &str = "usage_type";
/// Label: ECC event kind.
pub const LABEL_EVENT_TYPE: &str = "event_type";
/// Label: Neuron device index.
pub const LABEL_NEURON_DEVICE_INDEX: &str = "neuron_device_index";
/// Instance label: the EC2 instance's Name tag (often empty).
pub const LABEL_INSTANCE_NAME: &str = "instance_name";
/// Instance label: the EC2 instance id.
pub const LABEL_INSTANCE_ID: &str = "instance_id";
/// Instance label: the EC2 instance type.
pub const LABEL_INSTANCE_TYPE: &str = "instance_type";
/// Instance label: the availability zone (or Local Zone).
pub const LABEL_AVAILABILITY_ZONE: &str = "availability_zone";
/// Instance label: the AWS region.
pub const LABEL_REGION: &str = "region";
/// Instance label: the subnet id.
pub const LABEL_SUBNET_ID: &str = "subnet_id";

/// NeuronCore utilisation, 0–1.
pub const NEURONCORE_UTILIZATION_RATIO: Metric =
    Metric::gauge("neuroncore_utilization_ratio", "NeuronCore utilization ratio");
/// Memory a runtime uses, by location.
pub const NEURON_RUNTIME_MEMORY_USED_BYTES: Metric =
    Metric::gauge("neuron_runtime_memory_used_bytes", "Runtime memory used bytes");
/// NeuronCore memory holding constants.
pub const NEURONCORE_MEMORY_USAGE_CONSTANTS: Metric =
    Metric::gauge("neuroncore_memory_usage_constants", "NeuronCore memory utilization for constants");
/// NeuronCore memory holding model code.
pub const NEURONCORE_MEMORY_USAGE_MODEL_CODE: Metric =
    Metric::gauge("neuroncore_memory_usage_model_code", "NeuronCore memory utilization for model_code");
/// NeuronCore memory holding the shared scratchpad.
pub const NEURONCORE_MEMORY_USAGE_MODEL_SHARED_SCRATCHPAD: Metric = Metric::gauge(
    "neuroncore_memory_usage_model_shared_scratchpad",
    "NeuronCore memory utilization for model_shared_scratchpad",
);
/// NeuronCore memory used by the runtime itself.
pub const NEURONCORE_MEMORY_USAGE_RUNTIME_MEMORY: Metric =
    Metric::gauge("neuroncore_memory_usage_runtime_memory", "NeuronCore memory utilization for runtime_memory");
/// NeuronCore memory holding tensors.
pub const NEURONCORE_MEMORY_USAGE_TENSORS: Metric =
    Metric::gauge("neuroncore_memory_usage_tensors", "NeuronCore memory utilization for tensors");
/// vCPU a runtime uses, by user/system.
pub const NEURON_RUNTIME_VCPU_USAGE_RATIO: Metric =
    Metric::gauge("neuron_runtime_vcpu_usage_ratio", "Runtime vCPU utilization ratio");
/// Execution errors by category, cumulative.
pub const EXECUTION_ERRORS: Metric = Metric::counter("execution_errors", "Execution errors total");
/// Executions by outcome, cumulative.
pub const EXECUTION_STATUS: Metric = Metric::counter("execution_status", "Execution status total");
/// Execution latency percentiles of the last period (`total_latency`).
pub const EXECUTION_LATENCY_SECONDS: Metric =
    Metric::gauge("execution_latency_seconds", "Execution latency in seconds");
/// Hardware ECC events per device, cumulative.
pub const HARDWARE_ECC_EVENTS: Metric = Metric::counter("hardware_ecc_events", "Hardware ecc events total");

/// Every neuron-monitor-prometheus series the agent serves.
pub const ALL: &[Metric] = &[
    NEURONCORE_UTILIZATION_RATIO,
    NEURON_RUNTIME_MEMORY_USED_BYTES,
    NEURONCORE_MEMORY_USAGE_CONSTANTS,
    NEURONCORE_MEMORY_USAGE_MODEL_CODE,
    NEURONCORE_MEMORY_USAGE_MODEL_SHARED_SCRATCHPAD,
    NEURONCORE_MEMORY_USAGE_RUNTIME_MEMORY,
    NEURONCORE_MEMORY_USAGE_TENSORS,
    NEURON_RUNTIME_VCPU_USAGE_RATIO,
    EXECUTION_ERRORS,
    EXECUTION_STATUS,
    EXECUTION_LATENCY_SECONDS,
    HARDWARE_ECC_EVENTS,
];
