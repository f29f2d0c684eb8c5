//! Neuron series under neuron-monitor-prometheus's names and labels, so AWS's
//! Neuron Grafana dashboards work unchanged.
//!
//! Label sets follow AWS's `neuron-monitor-prometheus.py`: the instance
//! labels on every series, `runtime_tag` on runtime and core series, then the
//! series' own label. Execution and ECC counters are the agent's cumulative
//! totals. Only `total_latency` is exported, as the real exporter does; device
//! latency stays in the snapshot.

use edge_telemetry::catalogue::neuron as n;
use edge_telemetry::proto::{NeuronCore, NeuronInstance, NeuronRuntime, NodeSnapshot};

use super::{Labels, Samples};

/// Adds every NeuronCore, runtime and device of `snapshot`.
pub fn add(samples: &mut Samples, snapshot: &NodeSnapshot) {
    let instance = instance_labels(snapshot.neuron_instance.as_ref());
    for r in &snapshot.neuron_runtimes {
        add_runtime(samples, &instance, r);
    }
    for c in &snapshot.neuron_cores {
        add_core(samples, &instance, c);
    }
    for d in &snapshot.neuron_devices {
        let events = [
            ("mem_ecc_corrected", d.mem_ecc_corrected),
            ("mem_ecc_uncorrected", d.mem_ecc_uncorrected),
            ("sram_ecc_corrected", d.sram_ecc_corrected),
            ("sram_ecc_uncorrected", d.sram_ecc_uncorrected),
        ];
        for (event, count) in events {
            let mut l = instance.clone();
            l.push((n::LABEL_EVENT_TYPE, event.to_owned()));
            l.push((n::LABEL_NEURON_DEVICE_INDEX, d.index.to_string()));
            samples.add(n::HARDWARE_ECC_EVENTS, l, count as f64);
        }
    }
}

/// The six instance labels when neuron-monitor told us the instance (the real
/// exporter writes them all, empty ones included); none otherwise.
fn instance_labels(instance: Option<&NeuronInstance>) -> Labels {
    let Some(i) = instance else { return Vec::new() };
    vec![
        (n::LABEL_INSTANCE_NAME, i.instance_name.clone()),
        (n::LABEL_INSTANCE_ID, i.instance_id.clone()),
        (n::LABEL_INSTANCE_TYPE, i.instance_type.clone()),
        (n::LABEL_AVAILABILITY_ZONE, i.availability_zone.clone()),
        (n::LABEL_REGION, i.region.clone()),
        (n::LABEL_SUBNET_ID, i.subnet_id.clone()),
    ]
}

fn with(base: &Labels, name: &'static str, value: &str) -> Labels {
    let mut l = base.clone();
    l.push((name, value.to_owned()));
    l
}

fn add_runtime(samples: &mut Samples, instance: &Labels, r: &NeuronRuntime) {
    let labels = with(instance, n::LABEL_RUNTIME_TAG, &r.tag);
    for (usage, value) in [("user", r.vcpu_user_ratio), ("system", r.vcpu_system_ratio)] {
        samples.add_opt(n::NEURON_RUNTIME_VCPU_USAGE_RATIO, &with(&labels, n::LABEL_USAGE_TYPE, usage), value);
    }
    let memory = [("host", r.host_memory_used_bytes), ("neuron_device", r.device_memory_used_bytes)];
    for (location, value) in memory {
        let l = with(&labels, n::LABEL_MEMORY_LOCATION, location);
        samples.add_opt(n::NEURON_RUNTIME_MEMORY_USED_BYTES, &l, value.map(|v| v as f64));
    }
    if let Some(e) = &r.errors {
        let errors = [
            ("generic", e.generic),
            ("numerical", e.numerical),
            ("transient", e.transient),
            ("model", e.model),
            ("runtime", e.runtime),
            ("hardware", e.hardware),
        ];
        for (kind, count) in errors {
            samples.add(n::EXECUTION_ERRORS, with(&labels, n::LABEL_ERROR_TYPE, kind), count as f64);
        }
    }
    if let Some(x) = &r.executions {
        let statuses = [
            ("completed", x.completed),
            ("completed_with_err", x.completed_with_err),
            ("completed_with_num_err", x.completed_with_num_err),
            ("timed_out", x.timed_out),
            ("incorrect_input", x.incorrect_input),
            ("failed_to_queue", x.failed_to_queue),
        ];
        for (status, count) in statuses {
            samples.add(n::EXECUTION_STATUS, with(&labels, n::LABEL_STATUS_TYPE, status), count as f64);
        }
    }
    for p in &r.total_latency {
        samples.add(n::EXECUTION_LATENCY_SECONDS, with(&labels, n::LABEL_PERCENTILE, &p.percentile), p.seconds);
    }
}

/// A core a container holds (kubelet PodResources) carries `namespace`,
/// `pod` and `container` after its own labels, once per holder, as Container
/// Insights' Neuron series do.
fn add_core(samples: &mut Samples, instance: &Labels, c: &NeuronCore) {
    let runtime = with(instance, n::LABEL_RUNTIME_TAG, &c.runtime_tag);
    let index = c.index.to_string();
    let utilization = with(&runtime, n::LABEL_NEURONCORE, &index);
    let memory =
        with(&with(&runtime, n::LABEL_MEMORY_LOCATION, n::MEMORY_LOCATION_PER_CORE), n::LABEL_NEURONCORE, &index);
    if c.pods.is_empty() {
        add_core_values(samples, c, &utilization, &memory);
    }
    for p in &c.pods {
        let held = |l: &Labels| {
            with(
                &with(&with(l, n::LABEL_NAMESPACE, &p.namespace), n::LABEL_POD, &p.pod),
                n::LABEL_CONTAINER,
                &p.container,
            )
        };
        add_core_values(samples, c, &held(&utilization), &held(&memory));
    }
}

fn add_core_values(samples: &mut Samples, c: &NeuronCore, utilization: &Labels, labels: &Labels) {
    samples.add_opt(n::NEURONCORE_UTILIZATION_RATIO, utilization, c.utilization_ratio);
    let Some(m) = &c.memory else { return };
    let parts = [
        (n::NEURONCORE_MEMORY_USAGE_CONSTANTS, m.constants_bytes),
        (n::NEURONCORE_MEMORY_USAGE_MODEL_CODE, m.model_code_bytes),
        (n::NEURONCORE_MEMORY_USAGE_MODEL_SHARED_SCRATCHPAD, m.model_shared_scratchpad_bytes),
        (n::NEURONCORE_MEMORY_USAGE_RUNTIME_MEMORY, m.runtime_memory_bytes),
        (n::NEURONCORE_MEMORY_USAGE_TENSORS, m.tensors_bytes),
    ];
    for (metric, value) in parts {
        samples.add_opt(metric, labels, value.map(|v| v as f64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_telemetry::proto::{
        LatencyPercentile, NeuronCoreMemory, NeuronDevice, NeuronErrorCounts, NeuronExecutionCounts,
    };

    fn instance() -> NeuronInstance {
        NeuronInstance {
            instance_name: String::new(),
            instance_id: "i-0a1b2c3d4e5f60718".into(),
            instance_type: "inf2.xlarge".into(),
            availability_zone: "us-east-2b".into(),
            region: "us-east-2".into(),
            subnet_id: "subnet-0f1e2d3c4b5a69788".into(),
            neuroncores_per_device: Some(2),
        }
    }

    const INSTANCE: &str = r#"instance_name="",instance_id="i-0a1b2c3d4e5f60718",instance_type="inf2.xlarge",availability_zone="us-east-2b",region="us-east-2",subnet_id="subnet-0f1e2d3c4b5a69788""#;

    fn render(snapshot: &NodeSnapshot) -> String {
        let mut s = Samples::default();
        add(&mut s, snapshot);
        s.encode()
    }

    #[test]
    fn series_carry_the_real_exporters_names_and_labels() {
        let snapshot = NodeSnapshot {
            neuron_instance: Some(instance()),
            neuron_cores: vec![NeuronCore {
                index: 1,
                runtime_tag: "2817".into(),
                utilization_ratio: Some(0.3397),
                flops: Some(9),
                memory: Some(NeuronCoreMemory { constants_bytes: Some(1342177280), ..Default::default() }),
                pods: Vec::new(),
            }],
            neuron_runtimes: vec![NeuronRuntime {
                tag: "2817".into(),
                pid: 2817,
                executions: Some(NeuronExecutionCounts { completed: 412, ..Default::default() }),
                errors: Some(NeuronErrorCounts { hardware: 2, ..Default::default() }),
                total_latency: vec![LatencyPercentile { percentile: "p99".into(), seconds: 0.031861575 }],
                device_latency: vec![LatencyPercentile { percentile: "p99".into(), seconds: 0.028631933 }],
                host_memory_used_bytes: Some(1919418368),
                vcpu_user_ratio: Some(0.184),
                ..Default::default()
            }],
            neuron_devices: vec![NeuronDevice { index: 0, sram_ecc_corrected: 3, ..Default::default() }],
            ..Default::default()
        };
        let out = render(&snapshot);
        let rt = format!(r#"{INSTANCE},runtime_tag="2817""#);
        for line in [
            format!(r#"neuroncore_utilization_ratio{{{rt},neuroncore="1"}} 0.3397"#),
            format!(r#"neuroncore_memory_usage_constants{{{rt},memory_location="None",neuroncore="1"}} 1342177280"#),
            format!(r#"neuron_runtime_vcpu_usage_ratio{{{rt},usage_type="user"}} 0.184"#),
            format!(r#"neuron_runtime_memory_used_bytes{{{rt},memory_location="host"}} 1919418368"#),
            format!(r#"execution_status_total{{{rt},status_type="completed"}} 412"#),
            format!(r#"execution_status_total{{{rt},status_type="failed_to_queue"}} 0"#),
            format!(r#"execution_errors_total{{{rt},error_type="hardware"}} 2"#),
            format!(r#"execution_latency_seconds{{{rt},percentile="p99"}} 0.031861575"#),
            format!(
                r#"hardware_ecc_events_total{{{INSTANCE},event_type="sram_ecc_corrected",neuron_device_index="0"}} 3"#
            ),
            "# TYPE execution_errors counter".to_owned(),
            "# HELP hardware_ecc_events Hardware ecc events total.".to_owned(),
        ] {
            assert!(out.contains(&line), "missing {line}\n{out}");
        }
        // Device latency is not a neuron-monitor-prometheus series.
        assert!(!out.contains("0.028631933"), "{out}");
    }

    #[test]
    fn values_a_runtime_did_not_report_are_left_out() {
        let snapshot = NodeSnapshot {
            neuron_cores: vec![NeuronCore { index: 0, runtime_tag: "7".into(), ..Default::default() }],
            neuron_runtimes: vec![NeuronRuntime { tag: "7".into(), error: "gone".into(), ..Default::default() }],
            ..Default::default()
        };
        let out = render(&snapshot);
        for name in [
            "neuroncore_utilization_ratio",
            "neuroncore_memory_usage",
            "neuron_runtime_vcpu_usage_ratio",
            "neuron_runtime_memory_used_bytes",
            "execution_status",
            "execution_errors",
            "execution_latency_seconds",
        ] {
            assert!(!out.contains(name), "{name} rendered without data:\n{out}");
        }
    }

    #[test]
    fn without_instance_info_only_the_series_own_labels_remain() {
        let snapshot = NodeSnapshot {
            neuron_cores: vec![NeuronCore {
                index: 4,
                runtime_tag: "a".into(),
                utilization_ratio: Some(0.5),
                ..Default::default()
            }],
            ..Default::default()
        };
        let out = render(&snapshot);
        assert!(out.contains(r#"neuroncore_utilization_ratio{runtime_tag="a",neuroncore="4"} 0.5"#), "{out}");
    }

    #[test]
    fn held_cores_carry_pod_labels() {
        let snapshot = NodeSnapshot {
            neuron_cores: vec![NeuronCore {
                index: 2,
                runtime_tag: "a".into(),
                utilization_ratio: Some(0.5),
                memory: Some(NeuronCoreMemory { tensors_bytes: Some(8), ..Default::default() }),
                pods: vec![edge_telemetry::proto::PodRef {
                    namespace: "ml".into(),
                    pod: "sd-neuron-0".into(),
                    container: "worker".into(),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let out = render(&snapshot);
        let pod = r#"namespace="ml",pod="sd-neuron-0",container="worker""#;
        for line in [
            format!(r#"neuroncore_utilization_ratio{{runtime_tag="a",neuroncore="2",{pod}}} 0.5"#),
            format!(
                r#"neuroncore_memory_usage_tensors{{runtime_tag="a",memory_location="None",neuroncore="2",{pod}}} 8"#
            ),
        ] {
            assert!(out.contains(&line), "missing {line}\n{out}");
        }
        assert!(!out.contains(r#"neuroncore="2"} 0.5"#), "an unlabelled copy as well:\n{out}");
    }
}
