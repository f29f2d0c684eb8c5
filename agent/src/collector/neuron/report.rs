//! One line of neuron-monitor's stdout: the JSON report, its serde shape and
//! its mapping onto the snapshot's Neuron types.
//!
//! Every metric group is parsed on its own, so a group that is `null`,
//! missing, malformed or carries an `error` costs only that group: the rest of
//! the report is kept and the problem is listed in [`Report::problems`].
//! Counts are still per period here; [`super::totals`] adds them up.

use std::collections::BTreeMap;

use edge_telemetry::proto::{
    LatencyPercentile, NeuronCore, NeuronCoreMemory, NeuronErrorCounts, NeuronExecutionCounts, NeuronInstance,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

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

#[derive(Deserialize)]
struct RawRuntime {
    pid: Option<u32>,
    neuron_runtime_tag: Option<String>,
    error: Option<String>,
    report: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct CoreCounters {
    neuroncores_in_use: BTreeMap<String, CoreUse>,
}

#[derive(Deserialize)]
struct CoreUse {
    neuroncore_utilization: Option<f64>,
    flops: Option<f64>,
}

#[derive(Deserialize)]
struct MemoryUsed {
    neuron_runtime_used_bytes: RuntimeBytes,
}

#[derive(Deserialize)]
struct RuntimeBytes {
    host: Option<f64>,
    neuron_device: Option<f64>,
    usage_breakdown: Option<Breakdown>,
}

#[derive(Deserialize)]
struct Breakdown {
    #[serde(default)]
    neuroncore_memory_usage: BTreeMap<String, CoreMemory>,
}

#[derive(Deserialize)]
struct CoreMemory {
    constants: Option<f64>,
    model_code: Option<f64>,
    model_shared_scratchpad: Option<f64>,
    runtime_memory: Option<f64>,
    tensors: Option<f64>,
}

#[derive(Deserialize)]
struct RuntimeVcpu {
    vcpu_usage: UserSystem,
}

#[derive(Deserialize)]
struct UserSystem {
    user: Option<f64>,
    system: Option<f64>,
}

#[derive(Deserialize)]
struct ExecutionStats {
    error_summary: Option<ErrorSummary>,
    execution_summary: Option<ExecutionSummary>,
    latency_stats: Option<LatencyStats>,
}

#[derive(Deserialize)]
struct ExecutionSummary {
    #[serde(default)]
    completed: u64,
    #[serde(default)]
    completed_with_err: u64,
    #[serde(default)]
    completed_with_num_err: u64,
    #[serde(default)]
    timed_out: u64,
    #[serde(default)]
    incorrect_input: u64,
    #[serde(default)]
    failed_to_queue: u64,
}

impl ExecutionSummary {
    fn into_proto(self) -> NeuronExecutionCounts {
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
struct ErrorSummary {
    #[serde(default)]
    generic: u64,
    #[serde(default)]
    numerical: u64,
    #[serde(default)]
    transient: u64,
    #[serde(default)]
    model: u64,
    #[serde(default)]
    runtime: u64,
    #[serde(default)]
    hardware: u64,
}

impl ErrorSummary {
    fn into_proto(self) -> NeuronErrorCounts {
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
struct LatencyStats {
    total_latency: Option<BTreeMap<String, f64>>,
    device_latency: Option<BTreeMap<String, f64>>,
}

#[derive(Deserialize)]
struct HwCounters {
    neuron_devices: Vec<DeviceEcc>,
}

#[derive(Deserialize)]
struct InstanceInfo {
    #[serde(default)]
    instance_name: String,
    #[serde(default)]
    instance_id: String,
    #[serde(default)]
    instance_type: String,
    #[serde(default)]
    instance_availability_zone: String,
    #[serde(default)]
    instance_region: String,
    #[serde(default)]
    subnet_id: String,
}

impl InstanceInfo {
    fn into_proto(self) -> NeuronInstance {
        NeuronInstance {
            instance_name: self.instance_name,
            instance_id: self.instance_id,
            instance_type: self.instance_type,
            availability_zone: self.instance_availability_zone,
            region: self.instance_region,
            subnet_id: self.subnet_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{FAULTS, X48LARGE, XLARGE};
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn line(fixture: &str, n: usize) -> Report {
        parse(fixture.lines().nth(n).unwrap()).unwrap()
    }

    /// Walks the raw JSON of `text` independently of the serde types and
    /// checks every mapped value of every runtime, core and device.
    fn check_against_raw_json(text: &str) {
        let raw: Value = serde_json::from_str(text).unwrap();
        let report = parse(text).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let raw_runtimes = raw["neuron_runtime_data"].as_array().unwrap();
        assert_eq!(report.runtimes.len(), raw_runtimes.len());
        for (raw_rt, rt) in raw_runtimes.iter().zip(&report.runtimes) {
            assert_eq!(u64::from(rt.pid), raw_rt["pid"].as_u64().unwrap());
            assert_eq!(rt.tag, raw_rt["neuron_runtime_tag"].as_str().unwrap());
            assert_eq!(rt.error, "");
            let groups = &raw_rt["report"];
            let in_use = groups["neuroncore_counters"]["neuroncores_in_use"].as_object().unwrap();
            let used = &groups["memory_used"]["neuron_runtime_used_bytes"];
            assert_eq!(rt.cores.len(), in_use.len(), "runtime {}", rt.tag);
            for core in &rt.cores {
                let key = core.index.to_string();
                assert_eq!(core.runtime_tag, rt.tag);
                let util = in_use[&key]["neuroncore_utilization"].as_f64().unwrap();
                assert!(close(core.utilization_ratio.unwrap(), util / 100.0), "core {key}");
                assert_eq!(core.flops, in_use[&key]["flops"].as_u64());
                let mem = &used["usage_breakdown"]["neuroncore_memory_usage"][&key];
                let m = core.memory.unwrap();
                assert_eq!(m.constants_bytes, mem["constants"].as_u64());
                assert_eq!(m.model_code_bytes, mem["model_code"].as_u64());
                assert_eq!(m.model_shared_scratchpad_bytes, mem["model_shared_scratchpad"].as_u64());
                assert_eq!(m.runtime_memory_bytes, mem["runtime_memory"].as_u64());
                assert_eq!(m.tensors_bytes, mem["tensors"].as_u64());
            }
            assert_eq!(rt.host_memory_used_bytes, used["host"].as_u64());
            assert_eq!(rt.device_memory_used_bytes, used["neuron_device"].as_u64());
            let vcpu = &groups["neuron_runtime_vcpu_usage"]["vcpu_usage"];
            assert!(close(rt.vcpu_user_ratio.unwrap(), vcpu["user"].as_f64().unwrap() / 100.0));
            assert!(close(rt.vcpu_system_ratio.unwrap(), vcpu["system"].as_f64().unwrap() / 100.0));
            let stats = &groups["execution_stats"];
            let x = rt.executions.unwrap();
            let s = &stats["execution_summary"];
            assert_eq!(x.completed, s["completed"].as_u64().unwrap());
            assert_eq!(x.completed_with_err, s["completed_with_err"].as_u64().unwrap());
            assert_eq!(x.completed_with_num_err, s["completed_with_num_err"].as_u64().unwrap());
            assert_eq!(x.timed_out, s["timed_out"].as_u64().unwrap());
            assert_eq!(x.incorrect_input, s["incorrect_input"].as_u64().unwrap());
            assert_eq!(x.failed_to_queue, s["failed_to_queue"].as_u64().unwrap());
            let e = rt.errors.unwrap();
            let es = &stats["error_summary"];
            let pairs = [
                (e.generic, "generic"),
                (e.numerical, "numerical"),
                (e.transient, "transient"),
                (e.model, "model"),
                (e.runtime, "runtime"),
                (e.hardware, "hardware"),
            ];
            for (got, key) in pairs {
                assert_eq!(got, es[key].as_u64().unwrap(), "{key}");
            }
            for (mapped, key) in [(&rt.total_latency, "total_latency"), (&rt.device_latency, "device_latency")] {
                let raw_lat = &stats["latency_stats"][key];
                if raw_lat.is_null() {
                    assert!(mapped.is_empty(), "{key} of {}", rt.tag);
                    continue;
                }
                assert_eq!(mapped.len(), raw_lat.as_object().unwrap().len());
                for p in mapped {
                    assert!(close(p.seconds, raw_lat[&p.percentile].as_f64().unwrap()), "{key} {}", p.percentile);
                }
            }
        }
        let raw_devices = raw["system_data"]["neuron_hw_counters"]["neuron_devices"].as_array().unwrap();
        let devices = report.devices.unwrap();
        assert_eq!(devices.len(), raw_devices.len());
        for (d, raw_d) in devices.iter().zip(raw_devices) {
            assert_eq!(u64::from(d.neuron_device_index), raw_d["neuron_device_index"].as_u64().unwrap());
            assert_eq!(d.mem_ecc_corrected, raw_d["mem_ecc_corrected"].as_u64().unwrap());
            assert_eq!(d.mem_ecc_uncorrected, raw_d["mem_ecc_uncorrected"].as_u64().unwrap());
            assert_eq!(d.sram_ecc_corrected, raw_d["sram_ecc_corrected"].as_u64().unwrap());
            assert_eq!(d.sram_ecc_uncorrected, raw_d["sram_ecc_uncorrected"].as_u64().unwrap());
        }
        let instance = report.instance.unwrap();
        assert_eq!(instance.instance_id, raw["instance_info"]["instance_id"].as_str().unwrap());
        assert_eq!(instance.availability_zone, raw["instance_info"]["instance_availability_zone"].as_str().unwrap());
    }

    #[test]
    fn every_line_of_both_fixtures_maps_completely() {
        for (name, fixture, lines) in [("inf2.xlarge", XLARGE, 6), ("inf2.48xlarge", X48LARGE, 4)] {
            let all: Vec<&str> = fixture.lines().collect();
            assert_eq!(all.len(), lines, "{name}");
            for text in all {
                check_against_raw_json(text);
            }
        }
    }

    #[test]
    fn inf2_xlarge_numbers_read_from_the_fixture() {
        let idle = line(XLARGE, 0);
        let rt = &idle.runtimes[0];
        assert_eq!((rt.pid, rt.tag.as_str()), (2817, "2817"));
        assert!(rt.total_latency.is_empty() && rt.device_latency.is_empty(), "null latency is empty");
        assert_eq!(rt.cores.iter().map(|c| c.index).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(rt.cores[0].utilization_ratio, Some(0.0));

        let busy = line(XLARGE, 1);
        let rt = &busy.runtimes[0];
        assert!(close(rt.cores[0].utilization_ratio.unwrap(), 0.3482));
        assert!(close(rt.cores[1].utilization_ratio.unwrap(), 0.3397));
        assert_eq!(rt.cores[0].flops, Some(10_078_369_882_065));
        let m = rt.cores[1].memory.unwrap();
        assert_eq!(m.constants_bytes, Some(1_342_177_280));
        assert_eq!(m.model_code_bytes, Some(232_783_872));
        assert_eq!(m.model_shared_scratchpad_bytes, Some(536_870_912));
        assert_eq!(m.runtime_memory_bytes, Some(47_185_920));
        assert_eq!(m.tensors_bytes, Some(201_326_592));
        assert_eq!(rt.executions.unwrap().completed, 412);
        assert_eq!(rt.host_memory_used_bytes, Some(1_919_418_368));
        assert_eq!(rt.device_memory_used_bytes, Some(4_720_689_152));
        assert!(close(rt.vcpu_user_ratio.unwrap(), 0.184) && close(rt.vcpu_system_ratio.unwrap(), 0.032));
        let order: Vec<&str> = rt.total_latency.iter().map(|p| p.percentile.as_str()).collect();
        assert_eq!(order, ["p0", "p1", "p25", "p50", "p75", "p99", "p100"]);
        assert!(close(rt.total_latency[3].seconds, 0.02314577));
        assert!(close(rt.device_latency[5].seconds, 0.028631933));
        let i = busy.instance.unwrap();
        assert_eq!(i.instance_name, "gpu-pool-inf2-a");
        assert_eq!(i.instance_type, "inf2.xlarge");
        assert_eq!(i.region, "us-east-2");
        assert_eq!(i.subnet_id, "subnet-0f1e2d3c4b5a69788");
        assert_eq!(busy.devices.unwrap().len(), 1);
    }

    #[test]
    fn inf2_48xlarge_numbers_read_from_the_fixture() {
        let first = line(X48LARGE, 0);
        let tags: Vec<&str> = first.runtimes.iter().map(|r| r.tag.as_str()).collect();
        assert_eq!(tags, ["llama-8b-a", "llama-8b-b", "12044", "embedder"]);
        let cores: Vec<u32> = first.runtimes.iter().flat_map(|r| r.cores.iter().map(|c| c.index)).collect();
        assert_eq!(cores, (0..20).collect::<Vec<_>>());
        assert_eq!(first.runtimes[0].cores[7].flops, Some(22_563_068_468_071));
        assert!(close(first.runtimes[2].cores[0].utilization_ratio.unwrap(), 0.385));
        assert_eq!(first.runtimes[2].cores[0].runtime_tag, "12044");
        assert_eq!(first.devices.unwrap().len(), 12);

        let last = line(X48LARGE, 3);
        let new = &last.runtimes[2];
        assert_eq!((new.pid, new.tag.as_str()), (13310, "13310"));
        assert_eq!(new.executions.unwrap().completed, 2210);
        assert!(new.total_latency.is_empty(), "null latency although executions completed");
        let embedder = &last.runtimes[3];
        assert!(close(embedder.total_latency.last().unwrap().seconds, 0.015093689));
        assert!(close(embedder.cores[1].utilization_ratio.unwrap(), 0.094));
        assert_eq!(embedder.cores[1].memory.unwrap().constants_bytes, Some(671_088_640));
        assert_eq!(last.instance.unwrap().instance_id, "i-07f6e5d4c3b2a1908");
    }

    #[test]
    fn a_runtime_with_an_error_keeps_the_rest_of_the_report() {
        let r = line(FAULTS, 0);
        assert_eq!(r.runtimes.len(), 2);
        let crashed = &r.runtimes[0];
        assert_eq!((crashed.pid, crashed.tag.as_str()), (3001, "crashed-app"));
        assert!(crashed.error.contains("connection refused"));
        assert!(crashed.cores.is_empty() && crashed.executions.is_none() && crashed.vcpu_user_ratio.is_none());
        let ok = &r.runtimes[1];
        assert_eq!(ok.cores.len(), 2);
        let x = ok.executions.unwrap();
        assert_eq!((x.completed, x.completed_with_err, x.timed_out, x.failed_to_queue), (400, 3, 1, 2));
        let e = ok.errors.unwrap();
        assert_eq!((e.generic, e.transient, e.hardware), (1, 5, 2));
        let d = r.devices.unwrap()[0];
        assert_eq!((d.mem_ecc_corrected, d.sram_ecc_uncorrected), (4, 1));
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].contains("crashed-app"), "{:?}", r.problems);
    }

    #[test]
    fn null_missing_and_failed_groups_cost_only_themselves() {
        let r = line(FAULTS, 1);
        let rt = &r.runtimes[0];
        // neuroncore_counters null: cores still come from memory_used.
        assert_eq!(rt.cores.len(), 2);
        assert!(rt.cores.iter().all(|c| c.utilization_ratio.is_none() && c.flops.is_none()));
        assert_eq!(rt.cores[0].memory.unwrap().tensors_bytes, Some(201_326_592));
        assert_eq!(rt.host_memory_used_bytes, Some(1_919_418_368));
        assert!(rt.vcpu_user_ratio.is_none(), "vcpu group missing");
        assert!(rt.executions.is_none() && rt.errors.is_none(), "execution_stats failed");
        assert!(r.devices.is_none(), "hw counters null");
        let mut problems = r.problems.clone();
        problems.sort();
        assert_eq!(problems.len(), 4, "{problems:?}");
        for (p, want) in problems.iter().zip([
            "runtime 2817: execution_stats failed: execution stats unavailable",
            "runtime 2817: neuron_runtime_vcpu_usage missing",
            "runtime 2817: neuroncore_counters missing",
            "system_data: neuron_hw_counters missing",
        ]) {
            assert_eq!(p, want);
        }
    }

    #[test]
    fn no_runtime_running_is_a_report_without_problems() {
        let r = line(FAULTS, 2);
        assert!(r.runtimes.is_empty() && r.problems.is_empty());
        assert_eq!(r.devices.unwrap().len(), 1);
    }

    #[test]
    fn lines_that_are_not_reports_are_errors() {
        let real = XLARGE.lines().nth(1).unwrap();
        let truncated = &real[..real.len() / 2];
        for bad in
            ["", "neuron-monitor: starting", "[1, 2]", "{}", r#"{"foo": 1}"#, "{\"neuron_runtime_data\": [", truncated]
        {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_malformed_runtime_entry_or_core_index_is_skipped_and_listed() {
        let mut v: Value = serde_json::from_str(XLARGE.lines().nth(1).unwrap()).unwrap();
        let good = v["neuron_runtime_data"][0].clone();
        let mut odd_core = good.clone();
        odd_core["pid"] = 77.into();
        odd_core["neuron_runtime_tag"] = "".into();
        let in_use = odd_core["report"]["neuroncore_counters"]["neuroncores_in_use"].as_object_mut().unwrap();
        let zero = in_use["0"].clone();
        in_use.insert("core-x".into(), zero);
        v["neuron_runtime_data"] = serde_json::json!([{"pid": "not a number"}, good, odd_core]);
        let r = parse(&v.to_string()).unwrap();
        assert_eq!(r.runtimes.len(), 2);
        assert_eq!(r.runtimes[1].tag, "77", "an empty tag falls back to the pid");
        assert_eq!(r.runtimes[1].cores.len(), 2);
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(r.problems[0].starts_with("neuron_runtime_data[0] malformed"), "{:?}", r.problems);
        assert!(r.problems[1].contains("\"core-x\""), "{:?}", r.problems);
    }
}
