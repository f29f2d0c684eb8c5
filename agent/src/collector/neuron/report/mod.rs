//! One line of neuron-monitor's stdout: the JSON report, its serde shape and
//! its mapping onto the snapshot's Neuron types.
//!
//! Every metric group is parsed on its own, so a group that is `null`,
//! missing, malformed or carries an `error` costs only that group: the rest of
//! the report is kept and the problem is listed in [`Report::problems`].
//! Counts are still per period here; [`super::totals`] adds them up.

mod raw;

use std::collections::BTreeMap;

use edge_telemetry::proto::{
    LatencyPercentile, NeuronCore, NeuronCoreMemory, NeuronErrorCounts, NeuronExecutionCounts, NeuronInstance,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use raw::{
    CoreCounters, ErrorSummary, ExecutionStats, ExecutionSummary, HardwareInfo, HwCounters, InstanceInfo, MemoryUsed,
    RawRuntime, RuntimeVcpu,
};

/// One report, mapped.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    /// One entry per Neuron runtime (application) neuron-monitor watches.
    pub runtimes: Vec<RuntimeReport>,
    /// ECC events of the period per device; None when the group was unusable.
    pub devices: Option<Vec<DeviceEcc>>,
    /// The instance, when `instance_info` was usable.
    pub instance: Option<NeuronInstance>,
    /// What was unusable: runtime errors and missing, failed or malformed groups.
    pub problems: Vec<String>,
}

/// One runtime of a report, with this period's counts.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RuntimeReport {
    /// The runtime's process id.
    pub pid: u32,
    /// `NEURON_PROCESS_TAG`, or the pid when the application set none.
    pub tag: String,
    /// neuron-monitor's error for this runtime; its groups are skipped then.
    pub error: String,
    /// The NeuronCores the runtime uses, utilisation and memory merged.
    pub cores: Vec<NeuronCore>,
    /// Execution outcomes during the period.
    pub executions: Option<NeuronExecutionCounts>,
    /// Execution errors during the period.
    pub errors: Option<NeuronErrorCounts>,
    /// Percentiles of the period; empty when nothing ran.
    pub total_latency: Vec<LatencyPercentile>,
    /// Device-only percentiles of the period; empty when nothing ran.
    pub device_latency: Vec<LatencyPercentile>,
    /// Host memory the runtime uses.
    pub host_memory_used_bytes: Option<u64>,
    /// Neuron device memory the runtime uses.
    pub device_memory_used_bytes: Option<u64>,
    /// Share of one vCPU in user mode, 0–1 per vCPU.
    pub vcpu_user_ratio: Option<f64>,
    /// Share of one vCPU in kernel mode.
    pub vcpu_system_ratio: Option<f64>,
}

/// ECC events one device reported for the period.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct DeviceEcc {
    /// Neuron device index.
    pub neuron_device_index: u32,
    /// Corrected DRAM ECC events.
    #[serde(default)]
    pub mem_ecc_corrected: u64,
    /// Uncorrected DRAM ECC events.
    #[serde(default)]
    pub mem_ecc_uncorrected: u64,
    /// Corrected SRAM ECC events.
    #[serde(default)]
    pub sram_ecc_corrected: u64,
    /// Uncorrected SRAM ECC events.
    #[serde(default)]
    pub sram_ecc_uncorrected: u64,
}

/// Why a line is not a report at all.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not a JSON object.
    #[error("not a JSON object: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but neither `neuron_runtime_data` nor `system_data` is there.
    #[error("not a neuron-monitor report: neither neuron_runtime_data nor system_data present")]
    NotAReport,
}

/// Parses one line of neuron-monitor output.
pub fn parse(line: &str) -> Result<Report, ParseError> {
    let top: Map<String, Value> = serde_json::from_str(line)?;
    if !top.contains_key("neuron_runtime_data") && !top.contains_key("system_data") {
        return Err(ParseError::NotAReport);
    }
    let mut report = Report::default();
    match top.get("neuron_runtime_data") {
        // No runtime running: neuron-monitor writes an empty array (or null).
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            for (i, entry) in entries.iter().enumerate() {
                match RawRuntime::deserialize(entry) {
                    Ok(raw) => report.runtimes.push(map_runtime(raw, &mut report.problems)),
                    Err(e) => report.problems.push(format!("neuron_runtime_data[{i}] malformed: {e}")),
                }
            }
        }
        Some(_) => report.problems.push("neuron_runtime_data is not an array".to_owned()),
    }
    match top.get("system_data") {
        Some(Value::Object(system)) => {
            report.devices = group::<HwCounters>(system, "neuron_hw_counters", "system_data")
                .map_err(|p| report.problems.push(p))
                .ok()
                .map(|hw| hw.neuron_devices);
        }
        _ => report.problems.push("system_data missing".to_owned()),
    }
    // Instance labels are decoration: a host without EC2 metadata is not a
    // failure to collect Neuron metrics, so this is not a problem.
    report.instance = group::<InstanceInfo>(&top, "instance_info", "report").ok().map(InstanceInfo::into_proto);
    if let Some(instance) = &mut report.instance {
        instance.neuroncores_per_device = group::<HardwareInfo>(&top, "neuron_hardware_info", "report")
            .ok()
            .and_then(|h| h.neuroncore_per_device_count);
    }
    Ok(report)
}

/// One metric group of `parent`: missing, `null`, carrying an `error` or not
/// matching `T` is a problem, described for the log.
fn group<T: DeserializeOwned>(parent: &Map<String, Value>, name: &str, owner: &str) -> Result<T, String> {
    let value = match parent.get(name) {
        None | Some(Value::Null) => return Err(format!("{owner}: {name} missing")),
        Some(v) => v,
    };
    if let Some(err) = value.get("error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
        return Err(format!("{owner}: {name} failed: {err}"));
    }
    T::deserialize(value).map_err(|e| format!("{owner}: {name} malformed: {e}"))
}

fn map_runtime(raw: RawRuntime, problems: &mut Vec<String>) -> RuntimeReport {
    let pid = raw.pid.unwrap_or(0);
    let tag = raw.neuron_runtime_tag.filter(|t| !t.is_empty()).unwrap_or_else(|| pid.to_string());
    let mut rt = RuntimeReport { pid, tag, error: raw.error.unwrap_or_default(), ..Default::default() };
    if !rt.error.is_empty() {
        problems.push(format!("runtime {}: {}", rt.tag, rt.error));
        return rt;
    }
    let Some(groups) = raw.report else {
        problems.push(format!("runtime {}: report missing", rt.tag));
        return rt;
    };
    let owner = format!("runtime {}", rt.tag);
    let mut cores: BTreeMap<u32, NeuronCore> = BTreeMap::new();
    match group::<CoreCounters>(&groups, "neuroncore_counters", &owner) {
        Ok(counters) => {
            for (key, data) in counters.neuroncores_in_use {
                let Some(core) = core_entry(&mut cores, &key, &rt.tag, problems) else { continue };
                core.utilization_ratio = data.neuroncore_utilization.filter(|v| v.is_finite()).map(|v| v / 100.0);
                core.flops = count(data.flops);
            }
        }
        Err(p) => problems.push(p),
    }
    match group::<MemoryUsed>(&groups, "memory_used", &owner) {
        Ok(memory) => {
            let used = memory.neuron_runtime_used_bytes;
            rt.host_memory_used_bytes = count(used.host);
            rt.device_memory_used_bytes = count(used.neuron_device);
            let per_core = used.usage_breakdown.map(|b| b.neuroncore_memory_usage).unwrap_or_default();
            for (key, m) in per_core {
                let Some(core) = core_entry(&mut cores, &key, &rt.tag, problems) else { continue };
                core.memory = Some(NeuronCoreMemory {
                    constants_bytes: count(m.constants),
                    model_code_bytes: count(m.model_code),
                    model_shared_scratchpad_bytes: count(m.model_shared_scratchpad),
                    runtime_memory_bytes: count(m.runtime_memory),
                    tensors_bytes: count(m.tensors),
                });
            }
        }
        Err(p) => problems.push(p),
    }
    match group::<RuntimeVcpu>(&groups, "neuron_runtime_vcpu_usage", &owner) {
        Ok(vcpu) => {
            rt.vcpu_user_ratio = percent(vcpu.vcpu_usage.user);
            rt.vcpu_system_ratio = percent(vcpu.vcpu_usage.system);
        }
        Err(p) => problems.push(p),
    }
    match group::<ExecutionStats>(&groups, "execution_stats", &owner) {
        Ok(stats) => {
            rt.executions = stats.execution_summary.map(ExecutionSummary::into_proto);
            rt.errors = stats.error_summary.map(ErrorSummary::into_proto);
            // `null` latency means nothing ran in the period: not a problem.
            let latency = stats.latency_stats.unwrap_or_default();
            rt.total_latency = percentiles(latency.total_latency);
            rt.device_latency = percentiles(latency.device_latency);
        }
        Err(p) => problems.push(p),
    }
    rt.cores = cores.into_values().collect();
    rt
}

fn core_entry<'a>(
    cores: &'a mut BTreeMap<u32, NeuronCore>,
    key: &str,
    tag: &str,
    problems: &mut Vec<String>,
) -> Option<&'a mut NeuronCore> {
    let Ok(index) = key.parse::<u32>() else {
        problems.push(format!("runtime {tag}: NeuronCore index {key:?} is not a number"));
        return None;
    };
    Some(cores.entry(index).or_insert_with(|| NeuronCore { index, runtime_tag: tag.to_owned(), ..Default::default() }))
}

/// A non-negative whole quantity; neuron-monitor writes integers, but a float
/// or a negative value must not fail the group.
fn count(v: Option<f64>) -> Option<u64> {
    v.filter(|x| x.is_finite() && *x >= 0.0).map(|x| x.round() as u64)
}

fn percent(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite()).map(|x| x / 100.0)
}

/// Percentiles in numeric order (p0, p1, p25, … p100), not the JSON's.
fn percentiles(map: Option<BTreeMap<String, f64>>) -> Vec<LatencyPercentile> {
    let mut out: Vec<LatencyPercentile> = map
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, s)| s.is_finite())
        .map(|(percentile, seconds)| LatencyPercentile { percentile, seconds })
        .collect();
    out.sort_by(|a, b| rank(&a.percentile).total_cmp(&rank(&b.percentile)));
    out
}

fn rank(p: &str) -> f64 {
    p.trim_start_matches('p').parse().unwrap_or(f64::MAX)
}

#[cfg(test)]
mod tests;
