//! The mapping on hand-built snapshots: GPU, Neuron, CPU nodes and workers.

use edge_telemetry::catalogue::cloudwatch as cw;
use edge_telemetry::proto::{
    CollectorHealth, CollectorState, Gpu, Host, NeuronCore, NeuronCoreMemory, NeuronDevice, Node, NodeSnapshot, Worker,
};

use super::*;

const GIB: u64 = 1 << 30;

fn node() -> Option<Node> {
    Some(Node { name: "ip-10-0-0-1".into(), instance_type: "g5.2xlarge".into(), zone: "us-west-2-lax-1a".into() })
}

fn dims() -> NodeDimensions {
    NodeDimensions { cluster: "edge".into(), pods: false }
}

fn gpu(index: u32, util: Option<u32>, used_gib: u64) -> Gpu {
    Gpu {
        index,
        uuid: format!("GPU-{index}"),
        minor_number: Some(index),
        healthy: true,
        gpu_utilization_percent: util,
        framebuffer_used_bytes: Some(used_gib * GIB),
        framebuffer_total_bytes: Some(24 * GIB),
        power_usage_watts: Some(150.5),
        temperature_celsius: Some(61),
        ..Default::default()
    }
}

/// The value of `metric` whose dimensions end with `extra` (exactly five node
/// dimensions before them).
fn value(samples: &[(SeriesKey, f64)], metric: &str, extra: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(k, _)| {
            k.metric.name == metric
                && k.dimensions.len() == 5 + extra.len()
                && k.dimensions[5..].iter().zip(extra).all(|((n, v), (en, ev))| n == en && v == *ev)
        })
        .map(|(_, v)| *v)
}

#[test]
fn gpus_map_per_device_and_per_node_with_container_insights_names() {
    let snapshot = NodeSnapshot {
        node: node(),
        gpus: vec![gpu(0, Some(80), 6), gpu(1, Some(40), 12), gpu(2, None, 0)],
        ..Default::default()
    };
    let s = sample(&snapshot, &dims());
    let dev = |i: &'static str| [(cw::DIM_GPU_DEVICE, i)];
    assert_eq!(value(&s, "node_gpu_utilization", &dev("nvidia0")), Some(80.0));
    assert_eq!(value(&s, "node_gpu_utilization", &dev("nvidia1")), Some(40.0));
    assert_eq!(value(&s, "node_gpu_utilization", &dev("nvidia2")), None, "unsupported is left out, not 0");
    // The node's mean counts only GPUs that reported utilisation.
    assert_eq!(value(&s, "node_gpu_utilization", &[]), Some(60.0));
    assert_eq!(value(&s, "node_gpu_memory_utilization", &dev("nvidia0")), Some(25.0));
    assert_eq!(value(&s, "node_gpu_memory_utilization", &[]), Some(18.0 / 72.0 * 100.0));
    assert_eq!(value(&s, "node_gpu_memory_used", &dev("nvidia1")), Some((12 * GIB) as f64));
    assert_eq!(value(&s, "node_gpu_memory_total", &dev("nvidia1")), Some((24 * GIB) as f64));
    assert_eq!(value(&s, "node_gpu_power_draw", &dev("nvidia0")), Some(150.5));
    assert_eq!(value(&s, "node_gpu_temperature", &dev("nvidia0")), Some(61.0));
    assert_eq!(value(&s, "node_gpu_limit", &[]), Some(3.0));
    let first = &s[0].0.dimensions;
    let names: Vec<_> = first.iter().map(|(n, _)| *n).collect();
    assert_eq!(names[..5], cw::NODE_DIMENSIONS, "node dimensions first, in a fixed order");
    let values: Vec<_> = first.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values[..5], ["edge", "ip-10-0-0-1", "g5.2xlarge", "nvidia", "us-west-2-lax-1a"]);
}

#[test]
fn neuroncores_map_as_percent_with_memory_summed() {
    let core = |index, util: Option<f64>| NeuronCore {
        index,
        runtime_tag: "1".into(),
        utilization_ratio: util,
        memory: Some(NeuronCoreMemory {
            constants_bytes: Some(100),
            model_code_bytes: Some(1000),
            tensors_bytes: Some(10),
            ..Default::default()
        }),
        ..Default::default()
    };
    let snapshot = NodeSnapshot {
        node: node(),
        neuron_cores: vec![core(0, Some(0.5)), core(1, Some(0.25))],
        ..Default::default()
    };
    let s = sample(&snapshot, &dims());
    let nc = |i: &'static str| [(cw::DIM_NEURON_CORE, i)];
    assert_eq!(value(&s, "node_neuroncore_utilization", &nc("neuroncore0")), Some(50.0));
    assert_eq!(value(&s, "node_neuroncore_utilization", &nc("neuroncore1")), Some(25.0));
    assert_eq!(value(&s, "node_neuroncore_utilization", &[]), Some(37.5));
    assert_eq!(value(&s, "node_neuroncore_memory_usage_total", &nc("neuroncore1")), Some(1110.0));
    assert!(s.iter().all(|(k, _)| k.dimensions[3].1 == "neuron"), "a Neuron node's AcceleratorType");
    assert!(!s.iter().any(|(k, _)| k.metric.name.starts_with("node_gpu")));
}

#[test]
fn workers_are_summed_per_deployment_with_their_own_accelerator() {
    let w = |id: &str, deployment: &str, accelerator: &str, q, p99| Worker {
        worker_id: id.into(),
        pod: id.into(),
        namespace: "inference".into(),
        deployment: deployment.into(),
        accelerator: accelerator.into(),
        queue_depth: q,
        in_flight: 1,
        capacity: 4,
        latency_p99_seconds: p99,
        ..Default::default()
    };
    let snapshot = NodeSnapshot {
        node: node(),
        host: Some(Host {
            cpu_utilization_ratio: Some(0.25),
            memory_total_bytes: Some(8 * GIB),
            memory_available_bytes: Some(6 * GIB),
            ..Default::default()
        }),
        workers: vec![
            // Labels never become dimensions (each distinct set would be a new, billed metric).
            Worker { labels: [("tier".to_owned(), "gold".to_owned())].into(), ..w("a", "sd-cpu", "cpu", 2, Some(1.5)) },
            w("b", "sd-cpu", "cpu", 3, Some(2.5)),
            w("c", "sd-gpu", "nvidia", 7, None),
        ],
        ..Default::default()
    };
    let s = sample(&snapshot, &dims());
    let dep = |d: &'static str| [(cw::DIM_NAMESPACE, "inference"), (cw::DIM_DEPLOYMENT, d)];
    assert_eq!(value(&s, "edge_worker_queue_depth", &dep("sd-cpu")), Some(5.0));
    assert_eq!(value(&s, "edge_worker_in_flight", &dep("sd-cpu")), Some(2.0));
    assert_eq!(value(&s, "edge_worker_capacity", &dep("sd-cpu")), Some(8.0));
    assert_eq!(value(&s, "edge_workers", &dep("sd-cpu")), Some(2.0));
    assert_eq!(value(&s, "edge_worker_latency_p99_seconds", &dep("sd-cpu")), Some(2.5));
    assert_eq!(value(&s, "edge_worker_latency_p99_seconds", &dep("sd-gpu")), None);
    let gpu_worker = s.iter().find(|(k, _)| k.dimensions.iter().any(|(_, v)| v == "sd-gpu")).unwrap();
    assert_eq!(gpu_worker.0.dimensions[3], (cw::DIM_ACCELERATOR_TYPE, "nvidia".to_owned()));
    assert_eq!(value(&s, "node_cpu_utilization", &[]), Some(25.0));
    assert_eq!(value(&s, "node_memory_utilization", &[]), Some(25.0));
    assert_eq!(value(&s, "edge_agent_up", &[]), Some(1.0));
    assert!(!s.iter().any(|(k, _)| k.dimensions.iter().any(|(_, v)| v == "a" || v == "b")), "no worker ids");
    assert!(!s.iter().any(|(k, _)| k.dimensions.iter().any(|(n, v)| *n == "tier" || v == "gold")), "no labels");
}

#[test]
fn dimension_values_are_never_empty_or_too_long() {
    let snapshot = NodeSnapshot {
        node: Some(Node { name: "n".repeat(2000), instance_type: String::new(), zone: "  ".into() }),
        ..Default::default()
    };
    let s = sample(&snapshot, &dims());
    let (key, _) = s.iter().find(|(k, _)| k.metric == cw::AGENT_UP).unwrap();
    assert_eq!(key.dimensions[1].1.chars().count(), MAX_DIMENSION_VALUE_CHARS);
    assert_eq!(key.dimensions[2].1, UNKNOWN);
    assert_eq!(key.dimensions[4].1, UNKNOWN);
    assert_eq!(key.dimensions[3].1, "cpu");
}

fn health(collector: &str, state: CollectorState) -> CollectorHealth {
    CollectorHealth { collector: collector.into(), state: state.into(), ..Default::default() }
}

/// The AcceleratorType of the node's `edge_agent_up`.
fn node_type(snapshot: &NodeSnapshot) -> String {
    let s = sample(snapshot, &dims());
    let (key, _) = s.iter().find(|(k, _)| k.metric == cw::AGENT_UP).expect("edge_agent_up");
    key.dimensions[3].1.clone()
}

#[test]
fn nothing_is_sampled_before_the_collectors_ran() {
    // The agent's first snapshot: placeholder health, no devices yet.
    let store = crate::snapshot::SnapshotStore::new(node().unwrap());
    let first = store.latest();
    assert!(!first.collectors.is_empty());
    assert_eq!(sample(&first, &dims()), Vec::new(), "a GPU node would be published as a CPU node");
    store.update(|s| {
        for c in &mut s.collectors {
            c.state = CollectorState::Ok.into();
        }
        s.gpus = vec![gpu(0, Some(50), 1)];
    });
    assert_eq!(node_type(&store.latest()), "nvidia");
}

#[test]
fn a_node_keeps_its_accelerator_type_while_its_devices_report_nothing() {
    use CollectorState::{Absent, Failing};
    let node_with = |nvml: CollectorState, neuron: CollectorState| NodeSnapshot {
        node: node(),
        collectors: vec![health("nvml", nvml), health("neuron", neuron), health("procfs", CollectorState::Ok)],
        ..Default::default()
    };
    // NVML found a driver that fails (or every GPU fell off): still a GPU node.
    assert_eq!(node_type(&node_with(Failing, Absent)), "nvidia");
    // neuron-monitor started but has not reported yet, or is down and restarting.
    assert_eq!(node_type(&node_with(Absent, CollectorState::Ok)), "neuron");
    assert_eq!(node_type(&node_with(Absent, Failing)), "neuron");
    // No model loaded: no NeuronCore in use, but the devices are listed.
    let idle = NodeSnapshot { neuron_devices: vec![NeuronDevice::default()], ..node_with(Absent, Absent) };
    assert_eq!(node_type(&idle), "neuron");
    assert_eq!(node_type(&node_with(Absent, Absent)), "cpu");
    // neuron-monitor not spawned yet (a CPU node's is about to be found
    // missing): nothing is sampled until it is known.
    assert!(!super::collected(&node_with(Absent, CollectorState::Unspecified)));
    assert!(super::collected(&node_with(Absent, Absent)));
}

#[test]
fn pod_dimensions_only_behind_the_flag() {
    let mut held = gpu(0, Some(80), 6);
    held.pods =
        vec![edge_telemetry::proto::PodRef { namespace: "ml".into(), pod: "sd-0".into(), container: "w".into() }];
    let snapshot = NodeSnapshot { node: node(), gpus: vec![held, gpu(1, Some(40), 12)], ..Default::default() };
    let dev = |i: &'static str| [(cw::DIM_GPU_DEVICE, i)];
    let off = sample(&snapshot, &dims());
    assert_eq!(value(&off, "node_gpu_utilization", &dev("nvidia0")), Some(80.0), "off: no pod dimensions");
    let on = sample(&snapshot, &NodeDimensions { pods: true, ..dims() });
    let pod = [(cw::DIM_GPU_DEVICE, "nvidia0"), (cw::DIM_NAMESPACE, "ml"), (cw::DIM_POD_NAME, "sd-0")];
    assert_eq!(value(&on, "node_gpu_utilization", &pod), Some(80.0));
    assert_eq!(value(&on, "node_gpu_utilization", &dev("nvidia0")), None, "a held GPU is one series per holder");
    assert_eq!(value(&on, "node_gpu_utilization", &dev("nvidia1")), Some(40.0), "nobody holds GPU 1");
    assert_eq!(value(&on, "node_gpu_utilization", &[]), Some(60.0), "the node's mean is unchanged");
}
