//! Every line of the fixtures, mapped and checked against the raw JSON.

use super::*;
use crate::collector::neuron::fixtures::{FAULTS, X48LARGE, XLARGE};

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
