//! The device test: a GPU node and a Neuron node on their fakes, each
//! series read back and checked against what was fed in.

use super::*;
use edge_testkit::sample_with;

/// The device test's cluster: its own, so no series of another test can match
/// (moto ignores the namespace in `GetMetricData` when dimensions are given).
const DEVICES_CLUSTER: &str = "edge-test-devices";
const MIB: u64 = 1024 * 1024;
/// Generous for a loaded 2-core machine: moto, two agents and a Python fake.
const WAIT: Duration = Duration::from_secs(90);
const FAKE_NEURON_MONITOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/neuron-monitor/fake-neuron-monitor");
const NEURON_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/neuron-monitor/inf2.xlarge.jsonl");
/// How many CloudWatch samples a fed state must get before the test moves on.
const TICKS_PER_STATE: u32 = 3;

/// One node of the device test, as the first five dimensions of its datums name it.
#[derive(Debug, Clone, Copy)]
struct TestNode {
    name: &'static str,
    instance_type: &'static str,
    accelerator: &'static str,
}

impl TestNode {
    fn node_dims(&self) -> [(&'static str, &'static str); 5] {
        [
            (cw::DIM_CLUSTER_NAME, DEVICES_CLUSTER),
            (cw::DIM_NODE_NAME, self.name),
            (cw::DIM_INSTANCE_TYPE, self.instance_type),
            (cw::DIM_ACCELERATOR_TYPE, self.accelerator),
            (cw::DIM_ZONE, ZONE),
        ]
    }

    fn dims(&self, extra: &[(&str, &str)]) -> Vec<Dimension> {
        self.node_dims().iter().chain(extra).map(|(n, v)| Dimension::builder().name(*n).value(*v).build()).collect()
    }

    fn agent(&self, front: &Front, namespace: &str) -> AgentBuilder {
        agent(front, namespace, "2s", 100_000)
            .flag("cluster-name", DEVICES_CLUSTER)
            .flag("node-name", self.name)
            .flag("instance-type", self.instance_type)
    }
}

/// A worker reporting to one agent; only its queue depth changes.
#[derive(Debug, Clone, Copy)]
struct TestWorker {
    id: &'static str,
    deployment: &'static str,
    accelerator: &'static str,
    in_flight: u32,
    capacity: u32,
    p50: f64,
    p99: f64,
}

impl TestWorker {
    fn report(&self, agent: &Agent, queue: u32) {
        let body = serde_json::json!({
            "worker_id": self.id, "pod": self.id, "namespace": "inference", "deployment": self.deployment,
            "accelerator": self.accelerator, "queue_depth": queue, "in_flight": self.in_flight,
            "capacity": self.capacity, "latency_p50_seconds": self.p50, "latency_p99_seconds": self.p99,
        });
        let (status, text) = agent.report(&body.to_string());
        assert_eq!(status, 204, "{text}");
    }

    fn extra(&self) -> [(&'static str, &'static str); 2] {
        [(cw::DIM_NAMESPACE, "inference"), (cw::DIM_DEPLOYMENT, self.deployment)]
    }
}

/// What one fake GPU answers, in the fake's units. Every value the agent
/// publishes is set here, so the expectations derive from these numbers.
#[derive(Debug, Clone, Copy)]
struct GpuLoad {
    util: u32,
    used_mib: u64,
    power_mw: u32,
    temp_c: u32,
}

const GPU_TOTAL_MIB: u64 = 23_028;
const GPU_RESERVED_MIB: u64 = 300;

impl GpuLoad {
    fn apply(self, gpu: &mut fake_nvml::Gpu) {
        let (total, reserved, used) = (GPU_TOTAL_MIB * MIB, GPU_RESERVED_MIB * MIB, self.used_mib * MIB);
        gpu.set("utilization", serde_json::json!({ "gpu": self.util, "memory": self.util / 2 }))
            .set(
                "memory",
                serde_json::json!({ "total": total, "reserved": reserved, "used": used, "free": total - reserved - used }),
            )
            .set("power_usage_mw", self.power_mw)
            .set("temperature_gpu_c", self.temp_c);
    }

    fn util(self) -> f64 {
        f64::from(self.util)
    }

    fn used_bytes(self) -> u64 {
        self.used_mib * MIB
    }

    /// As the agent computes it: bytes used over bytes total, in percent.
    fn memory_percent(self) -> f64 {
        self.used_bytes() as f64 / (GPU_TOTAL_MIB * MIB) as f64 * 100.0
    }

    /// The node's memory utilisation over `gpus`, as `edge_telemetry::view`
    /// defines it: the mean of the GPUs' percentages, summed in index order
    /// (on same-size GPUs, as here, all bytes used over all bytes).
    fn node_memory_percent(gpus: &[GpuLoad]) -> f64 {
        gpus.iter().map(|g| g.memory_percent()).sum::<f64>() / gpus.len() as f64
    }
}

/// Per NeuronCore of one neuron-monitor report, in index order: utilisation
/// in percent and memory in bytes, computed from the JSON the way the agent
/// does (percent → ratio → percent; the five per-core memory parts summed).
fn neuron_report(line: &str) -> BTreeMap<u32, (f64, f64)> {
    let v: serde_json::Value = serde_json::from_str(line).expect("fixture line");
    let mut cores = BTreeMap::new();
    for rt in v["neuron_runtime_data"].as_array().expect("runtimes") {
        let report = &rt["report"];
        let in_use = report["neuroncore_counters"]["neuroncores_in_use"].as_object().expect("cores in use");
        let memory = &report["memory_used"]["neuron_runtime_used_bytes"]["usage_breakdown"]["neuroncore_memory_usage"];
        for (index, data) in in_use {
            let util = data["neuroncore_utilization"].as_f64().expect("utilization") / 100.0 * 100.0;
            let parts = ["constants", "model_code", "model_shared_scratchpad", "runtime_memory", "tensors"];
            let bytes: u64 = parts.iter().map(|p| memory[index][*p].as_u64().expect("memory part")).sum();
            let fresh = cores.insert(index.parse().expect("core index"), (util, bytes as f64));
            assert!(fresh.is_none(), "core {index} in two runtimes: the expectations would not be simple sums");
        }
    }
    cores
}

/// The node-level NeuronCore utilisation: the mean over cores, summed in index order as the agent does.
fn neuron_mean(cores: &BTreeMap<u32, (f64, f64)>) -> f64 {
    cores.values().map(|(u, _)| u).sum::<f64>() / cores.len() as f64
}

/// Polls `agent`'s /metrics until its CloudWatch sampler has run at least
/// [`TICKS_PER_STATE`] times between two scrapes that both showed the state
/// `holds` looks for. /metrics and the sampler read the same latest snapshot,
/// so those samples saw that state (one may have read the snapshot just
/// before the first scrape; the others did not), and both values of a series
/// are then certain to be in CloudWatch, whatever the machine's load.
fn hold(agent: &Agent, what: &str, holds: impl Fn(&str) -> bool) {
    let mut ticks = 0;
    let mut previous: Option<f64> = None;
    eventually(WAIT, what, || {
        let m = agent.metrics();
        let sampled = metric(&m, "edge_cloudwatch_samples_total")?;
        if holds(&m) {
            ticks += u32::from(previous.is_some_and(|p| sampled > p));
            previous = Some(sampled);
        } else {
            previous = None;
        }
        (ticks >= TICKS_PER_STATE).then_some(())
    });
}

fn close(a: f64, b: f64) -> bool {
    // moto adds the samples up in its own order.
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// A series that was `first` in some samples and `second` in the others:
/// checks Minimum and Maximum, and that Sum is a whole number of each over
/// SampleCount with both sampled; returns how many samples were `second`.
#[track_caller]
fn split(s: &Stats, (first, second): (f64, f64), what: &str) -> f64 {
    assert_ne!(first, second, "{what}: the two states must differ");
    assert_eq!((s.min, s.max), (first.min(second), first.max(second)), "{what}: {s:?}");
    let n = (s.sum - first * s.count) / (second - first);
    let whole = n.round();
    assert!((n - whole).abs() < 1e-6, "{what}: Sum is no mix of {first} and {second} over SampleCount: {s:?}");
    assert!(whole >= 1.0 && s.count - whole >= 1.0, "{what}: both values were sampled: {s:?}");
    whole
}

/// A series sampled in the same ticks as one [`split`] counted: `count`
/// samples, `n_second` of them `second` and the rest `first`.
#[track_caller]
fn mix(s: &Stats, (first, second): (f64, f64), (count, n_second): (f64, f64), what: &str) {
    assert_eq!(s.count, count, "{what}: sampled in the same ticks: {s:?}");
    let sum = first * (count - n_second) + second * n_second;
    assert!(close(s.sum, sum) && close(s.average, sum / count), "{what}: Sum {sum} expected: {s:?}");
    let values: Vec<f64> =
        [(first, count - n_second), (second, n_second)].into_iter().filter(|(_, n)| *n > 0.0).map(|(v, _)| v).collect();
    let (min, max) = (
        values.iter().copied().fold(f64::INFINITY, f64::min),
        values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    assert_eq!((s.min, s.max), (min, max), "{what}: {s:?}");
}

#[track_caller]
fn constant(s: &Stats, value: f64, count: f64, what: &str) {
    mix(s, (value, value), (count, 0.0), what);
}

/// Sets `flag` back to false when dropped, so a panicking test still ends its
/// feeding thread (a scoped thread is joined before the panic goes on).
struct Clear<'a>(&'a AtomicBool);

impl Drop for Clear<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Dimension names and values after the node's five.
type Extra = Vec<(String, String)>;

fn extra(dims: &[(&str, &str)]) -> Extra {
    dims.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// Reads series back over one window.
struct Reader<'a> {
    client: aws_sdk_cloudwatch::Client,
    namespace: &'a str,
    window: (i64, i64),
}

impl Reader<'_> {
    async fn get(&self, node: TestNode, metric: &str, extra: Extra) -> Stats {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        stats(&self.client, self.namespace, metric, &node.dims(&extra), self.window).await
    }

    async fn read(&self, node: TestNode, metric: CloudWatchMetric, extra: Extra) -> Stats {
        self.get(node, metric.name, extra).await
    }
}

/// The device test's inputs: what each fake device and worker answers. Every
/// expectation derives from these numbers.
struct Devices {
    gpu_node: TestNode,
    /// GPU 0 and its memory go from low to high at a moment the test picks.
    gpu0_low: GpuLoad,
    gpu0_high: GpuLoad,
    /// GPU 1 is steady.
    gpu1: GpuLoad,
    gpu_worker: TestWorker,
    /// The GPU worker's queue in the low phase, then the high.
    gpu_queue: (u32, u32),
    neuron_node: TestNode,
    /// Two busy reports of the checked-in inf2.xlarge fixture, replayed in
    /// turn, a second each, and what the agent makes of each.
    neuron_lines: (String, String),
    report_a: BTreeMap<u32, (f64, f64)>,
    report_b: BTreeMap<u32, (f64, f64)>,
    neuron_worker: TestWorker,
    neuron_queue: u32,
}

impl Devices {
    fn new() -> Self {
        let gpu0_low = GpuLoad { util: 30, used_mib: 4_096, power_mw: 187_250, temp_c: 61 };
        let fixture: Vec<String> = std::fs::read_to_string(NEURON_FIXTURE)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        let neuron_lines = (fixture[1].clone(), fixture[3].clone());
        let (report_a, report_b) = (neuron_report(&neuron_lines.0), neuron_report(&neuron_lines.1));
        // Their utilisation and memory differ, so Sum and SampleCount tell how
        // many samples each report got, and every other Neuron series must agree.
        assert_eq!(report_a.keys().collect::<Vec<_>>(), report_b.keys().collect::<Vec<_>>(), "the same cores in both");
        assert!(
            report_a.values().zip(report_b.values()).all(|(a, b)| a.0 != b.0 && a.1 != b.1),
            "{report_a:?} {report_b:?}"
        );
        Self {
            gpu_node: TestNode { name: "devices-gpu-node", instance_type: "g5.12xlarge", accelerator: "nvidia" },
            gpu0_low,
            gpu0_high: GpuLoad { util: 90, used_mib: 16_384, ..gpu0_low },
            gpu1: GpuLoad { util: 11, used_mib: 1_025, power_mw: 96_500, temp_c: 48 },
            gpu_worker: TestWorker {
                id: "w-gpu",
                deployment: "sd-gpu",
                accelerator: "nvidia",
                in_flight: 1,
                capacity: 4,
                p50: 0.5,
                p99: 1.25,
            },
            gpu_queue: (2, 6),
            neuron_node: TestNode { name: "devices-inf2-node", instance_type: "inf2.xlarge", accelerator: "neuron" },
            neuron_lines,
            report_a,
            report_b,
            neuron_worker: TestWorker {
                id: "w-inf2",
                deployment: "sd-inf2",
                accelerator: "neuron",
                in_flight: 2,
                capacity: 6,
                p50: 0.125,
                p99: 0.75,
            },
            neuron_queue: 5,
        }
    }

    /// The NeuronCore indexes, in order.
    fn cores(&self) -> Vec<u32> {
        self.report_a.keys().copied().collect()
    }
}

/// What feeding the two agents left: each one's final counters and log, and when.
struct Fed {
    gpu: (Totals, String),
    neuron: (Totals, String),
    /// Unix seconds when the agents started.
    started: i64,
    /// Seconds from the agents' start to their stop.
    elapsed: f64,
}

/// Starts both agents on their fake devices, holds each phase until the
/// CloudWatch sampler has certainly seen it, and stops them.
fn feed(d: &Devices, front: &Front, namespace: &str) -> Fed {
    let dir = tempfile::tempdir().unwrap();
    let nvml_path = dir.path().join("nvml.json");
    let mut nvml = fake_nvml::Config::with_gpus(2);
    d.gpu0_low.apply(nvml.gpu(0));
    d.gpu1.apply(nvml.gpu(1));
    nvml.write(&nvml_path);
    let neuron_fixture = dir.path().join("two-reports.jsonl");
    std::fs::write(&neuron_fixture, format!("{}\n{}\n", d.neuron_lines.0, d.neuron_lines.1)).unwrap();

    let started = now_secs();
    let clock = Instant::now();
    let gpu_agent = d
        .gpu_node
        .agent(front, namespace)
        .flag("nvml-library", edge_testkit::fake_nvml_library().display().to_string())
        .env(fake_nvml::CONFIG_ENV, nvml_path.display().to_string())
        .start();
    let neuron_agent = d
        .neuron_node
        .agent(front, namespace)
        .flag("neuron-monitor", FAKE_NEURON_MONITOR)
        .flag("neuron-monitor-config", dir.path().join("monitor.json").display().to_string())
        .env("FAKE_NEURON_FIXTURE", neuron_fixture.display().to_string())
        .env("FAKE_NEURON_INTERVAL_MS", "1000")
        .start();

    let (gpu_queue_low, gpu_queue_high) = d.gpu_queue;
    let gpu_queue = AtomicU32::new(gpu_queue_low);
    let feeding = AtomicBool::new(true);
    std::thread::scope(|scope| {
        let _stop_feeding = Clear(&feeding);
        // Each worker reports several times per --worker-expiry, as a real one does.
        scope.spawn(|| {
            while feeding.load(Ordering::Relaxed) {
                d.gpu_worker.report(&gpu_agent, gpu_queue.load(Ordering::Relaxed));
                d.neuron_worker.report(&neuron_agent, d.neuron_queue);
                std::thread::sleep(Duration::from_millis(200));
            }
        });

        let gpu_state = |m: &str, gpu0: GpuLoad, queue: u32| {
            let gpu = [("gpu", "0")];
            sample_with(m, "DCGM_FI_DEV_GPU_UTIL", &gpu) == Some(gpu0.util())
                && sample_with(m, "DCGM_FI_DEV_FB_USED", &gpu) == Some(gpu0.used_mib as f64)
                && sample_with(m, "edge_worker_queue_depth", &[("deployment", d.gpu_worker.deployment)])
                    == Some(f64::from(queue))
        };
        hold(&gpu_agent, "the GPU node's low phase in CloudWatch samples", |m| gpu_state(m, d.gpu0_low, gpu_queue_low));
        d.gpu0_high.apply(nvml.gpu(0));
        nvml.write(&nvml_path);
        gpu_queue.store(gpu_queue_high, Ordering::Relaxed);
        hold(&gpu_agent, "the GPU node's high phase in CloudWatch samples", |m| {
            gpu_state(m, d.gpu0_high, gpu_queue_high)
        });

        let neuron_state = |m: &str, report: &BTreeMap<u32, (f64, f64)>| {
            let worker = sample_with(m, "edge_worker_queue_depth", &[("deployment", d.neuron_worker.deployment)]);
            worker == Some(f64::from(d.neuron_queue))
                && report.iter().all(|(core, (util, _))| {
                    let got = sample_with(m, "neuroncore_utilization_ratio", &[("neuroncore", &core.to_string())]);
                    got.is_some_and(|g| (g - util / 100.0).abs() < 1e-9)
                })
        };
        hold(&neuron_agent, "the first Neuron report in CloudWatch samples", |m| neuron_state(m, &d.report_a));
        hold(&neuron_agent, "the second Neuron report in CloudWatch samples", |m| neuron_state(m, &d.report_b));
    });

    let gpu = stop(&gpu_agent);
    let neuron = stop(&neuron_agent);
    Fed { gpu, neuron, started, elapsed: clock.elapsed().as_secs_f64() }
}

/// Nothing lost, nothing left over, no secret in a log, CloudWatch's limits
/// kept, and batched: one call per node per 2 s flush and a last one at the
/// stop, not one per sample. Returns (calls, datums, samples, published).
fn check_delivery(fed: &Fed, front: &Front) -> (u64, u64, u64, u64) {
    for (totals, log) in [&fed.gpu, &fed.neuron] {
        assert!(totals.sampled > 0, "{totals:?}");
        assert_eq!((totals.published, totals.dropped, totals.buffered), (totals.sampled, 0, 0), "{totals:?}");
        assert!(!log.contains(SECRET), "the secret key appears in the log:\n{log}");
    }
    let published = fed.gpu.0.published + fed.neuron.0.published;
    let (calls, datums, samples) = check_limits(front);
    assert_eq!(samples, published, "the server got every sample the agents counted as published");
    let most_calls = 2 * ((fed.elapsed / 2.0).floor() as u64 + 2);
    assert!(calls <= most_calls, "{calls} calls from 2 nodes in {:.1} s with a 2 s flush", fed.elapsed);
    (calls, datums, samples, published)
}

fn gpu_dim(i: u32) -> Extra {
    extra(&[(cw::DIM_GPU_DEVICE, &format!("nvidia{i}"))])
}

fn core_dim(i: u32) -> Extra {
    extra(&[(cw::DIM_NEURON_CORE, &format!("neuroncore{i}"))])
}

fn worker_dim(w: &TestWorker) -> Extra {
    extra(&w.extra())
}

const HOST_SERIES: [CloudWatchMetric; 3] = [cw::NODE_CPU_UTILIZATION, cw::NODE_MEMORY_UTILIZATION, cw::AGENT_UP];
const WORKER_SERIES: [CloudWatchMetric; 6] = [
    cw::WORKERS,
    cw::WORKER_QUEUE_DEPTH,
    cw::WORKER_IN_FLIGHT,
    cw::WORKER_CAPACITY,
    cw::WORKER_LATENCY_P50_SECONDS,
    cw::WORKER_LATENCY_P99_SECONDS,
];

/// Exactly the series each node should publish (metric name, dimensions
/// after the node's five): per GPU or core, per node, host and worker.
fn expected_series(d: &Devices) -> [(TestNode, BTreeSet<(String, Extra)>); 2] {
    let mut gpu: BTreeSet<(String, Extra)> = BTreeSet::new();
    for m in [cw::NODE_GPU_UTILIZATION, cw::NODE_GPU_MEMORY_UTILIZATION] {
        gpu.extend([(m.name.to_owned(), gpu_dim(0)), (m.name.to_owned(), gpu_dim(1)), (m.name.to_owned(), vec![])]);
    }
    for m in [cw::NODE_GPU_MEMORY_USED, cw::NODE_GPU_MEMORY_TOTAL, cw::NODE_GPU_POWER_DRAW, cw::NODE_GPU_TEMPERATURE] {
        gpu.extend([(m.name.to_owned(), gpu_dim(0)), (m.name.to_owned(), gpu_dim(1))]);
    }
    gpu.insert((cw::NODE_GPU_LIMIT.name.to_owned(), vec![]));
    gpu.extend(HOST_SERIES.iter().map(|m| (m.name.to_owned(), vec![])));
    gpu.extend(WORKER_SERIES.iter().map(|m| (m.name.to_owned(), worker_dim(&d.gpu_worker))));
    let mut neuron: BTreeSet<(String, Extra)> = BTreeSet::new();
    for i in d.cores() {
        neuron.insert((cw::NODE_NEURONCORE_UTILIZATION.name.to_owned(), core_dim(i)));
        neuron.insert((cw::NODE_NEURONCORE_MEMORY_USAGE_TOTAL.name.to_owned(), core_dim(i)));
    }
    neuron.insert((cw::NODE_NEURONCORE_UTILIZATION.name.to_owned(), vec![]));
    neuron.extend(HOST_SERIES.iter().map(|m| (m.name.to_owned(), vec![])));
    neuron.extend(WORKER_SERIES.iter().map(|m| (m.name.to_owned(), worker_dim(&d.neuron_worker))));
    [(d.gpu_node, gpu), (d.neuron_node, neuron)]
}

/// The namespace lists exactly the expected series, each under its node's
/// dimensions (AcceleratorType nvidia or neuron) in order, and their sample
/// counts add up to every published sample. Returns how many series.
async fn check_listed(reader: &Reader<'_>, d: &Devices, published: u64) -> usize {
    let listed = list_series(&reader.client, reader.namespace).await;
    let expected = expected_series(d);
    let mut stored = 0.0;
    for (node, series) in &expected {
        let node_dims = extra(&node.node_dims());
        let mut got: BTreeSet<(String, Extra)> = BTreeSet::new();
        for (name, dims) in &listed {
            let dims: Extra =
                dims.iter().map(|d| (d.name().unwrap_or("").into(), d.value().unwrap_or("").into())).collect();
            if dims.iter().any(|(n, v)| n == cw::DIM_NODE_NAME && v == node.name) {
                assert_eq!(dims[..5], node_dims[..], "{name}: the node's dimensions first, in order");
                stored += reader.get(*node, name, dims[5..].to_vec()).await.count;
                got.insert((name.clone(), dims[5..].to_vec()));
            }
        }
        assert_eq!(&got, series, "the series of {}", node.name);
    }
    let expected_len = expected.iter().map(|(_, s)| s.len()).sum::<usize>();
    assert_eq!(listed.len(), expected_len, "series of no test node: {listed:?}");
    assert_eq!(stored, published as f64, "SampleCount over every series: every published sample stored");
    listed.len()
}

/// The GPU node's series. Utilisation and memory are separate NVML queries,
/// each re-reading the fake's config, so one tick may see the new
/// utilisation with the old memory: each family gets its own split. Returns
/// the node's sample count.
async fn check_gpu_node(reader: &Reader<'_>, d: &Devices) -> f64 {
    let (node, low, high, gpu1) = (d.gpu_node, d.gpu0_low, d.gpu0_high, d.gpu1);
    let g0 = reader.read(node, cw::NODE_GPU_UTILIZATION, gpu_dim(0)).await;
    let n_util = split(&g0, (low.util(), high.util()), "GPU 0 utilisation");
    let ticks = g0.count;
    let mean = |g0: GpuLoad| (g0.util() + gpu1.util()) / 2.0;
    let node_util = reader.read(node, cw::NODE_GPU_UTILIZATION, vec![]).await;
    mix(&node_util, (mean(low), mean(high)), (ticks, n_util), "node GPU utilisation");
    assert!(node_util.max > node_util.average, "a maximum above the average: {node_util:?}");
    let g1 = reader.read(node, cw::NODE_GPU_UTILIZATION, gpu_dim(1)).await;
    constant(&g1, gpu1.util(), ticks, "GPU 1 utilisation");

    let m0 = reader.read(node, cw::NODE_GPU_MEMORY_UTILIZATION, gpu_dim(0)).await;
    let n_mem = split(&m0, (low.memory_percent(), high.memory_percent()), "GPU 0 memory utilisation");
    assert_eq!(m0.count, ticks, "every GPU series in the same ticks");
    let used0 = reader.read(node, cw::NODE_GPU_MEMORY_USED, gpu_dim(0)).await;
    mix(&used0, (low.used_bytes() as f64, high.used_bytes() as f64), (ticks, n_mem), "GPU 0 memory used");
    let node_mem = reader.read(node, cw::NODE_GPU_MEMORY_UTILIZATION, vec![]).await;
    let node_mem_of = |g0: GpuLoad| GpuLoad::node_memory_percent(&[g0, gpu1]);
    mix(&node_mem, (node_mem_of(low), node_mem_of(high)), (ticks, n_mem), "node GPU memory utilisation");
    let m1 = reader.read(node, cw::NODE_GPU_MEMORY_UTILIZATION, gpu_dim(1)).await;
    constant(&m1, gpu1.memory_percent(), ticks, "GPU 1 memory utilisation");
    let used1 = reader.read(node, cw::NODE_GPU_MEMORY_USED, gpu_dim(1)).await;
    constant(&used1, gpu1.used_bytes() as f64, ticks, "GPU 1 memory used");
    // GPU 0's power and temperature are the same in both phases.
    for (i, load) in [(0, low), (1, gpu1)] {
        let total = reader.read(node, cw::NODE_GPU_MEMORY_TOTAL, gpu_dim(i)).await;
        constant(&total, (GPU_TOTAL_MIB * MIB) as f64, ticks, &format!("GPU {i} memory total"));
        let power = reader.read(node, cw::NODE_GPU_POWER_DRAW, gpu_dim(i)).await;
        constant(&power, f64::from(load.power_mw) / 1000.0, ticks, &format!("GPU {i} power"));
        let temp = reader.read(node, cw::NODE_GPU_TEMPERATURE, gpu_dim(i)).await;
        constant(&temp, f64::from(load.temp_c), ticks, &format!("GPU {i} temperature"));
    }
    let limit = reader.read(node, cw::NODE_GPU_LIMIT, vec![]).await;
    constant(&limit, 2.0, ticks, "GPUs on the node");
    ticks
}

/// The Neuron node's series: one split from core 0, which every Neuron
/// series of the node must match, since each sample reads one report.
/// Returns the node's sample count.
async fn check_neuron_node(reader: &Reader<'_>, d: &Devices) -> f64 {
    let (node, report_a, report_b) = (d.neuron_node, &d.report_a, &d.report_b);
    let cores = d.cores();
    let c0 = reader.read(node, cw::NODE_NEURONCORE_UTILIZATION, core_dim(cores[0])).await;
    let n_b = split(&c0, (report_a[&cores[0]].0, report_b[&cores[0]].0), "NeuronCore 0 utilisation");
    let ticks = c0.count;
    for i in &cores {
        let util = reader.read(node, cw::NODE_NEURONCORE_UTILIZATION, core_dim(*i)).await;
        let (a, b) = (report_a[i], report_b[i]);
        mix(&util, (a.0, b.0), (ticks, n_b), &format!("NeuronCore {i} utilisation"));
        let memory = reader.read(node, cw::NODE_NEURONCORE_MEMORY_USAGE_TOTAL, core_dim(*i)).await;
        mix(&memory, (a.1, b.1), (ticks, n_b), &format!("NeuronCore {i} memory"));
    }
    let node_neuron = reader.read(node, cw::NODE_NEURONCORE_UTILIZATION, vec![]).await;
    let means = (neuron_mean(report_a), neuron_mean(report_b));
    mix(&node_neuron, means, (ticks, n_b), "node NeuronCore utilisation");
    assert!(node_neuron.max > node_neuron.average, "a maximum above the average: {node_neuron:?}");
    ticks
}

/// The workers' series: the GPU node's queue went from low to high, the rest is steady.
async fn check_workers(reader: &Reader<'_>, d: &Devices) {
    let (low, high) = d.gpu_queue;
    let q = reader.read(d.gpu_node, cw::WORKER_QUEUE_DEPTH, worker_dim(&d.gpu_worker)).await;
    split(&q, (f64::from(low), f64::from(high)), "GPU worker queue depth");
    let nq = reader.read(d.neuron_node, cw::WORKER_QUEUE_DEPTH, worker_dim(&d.neuron_worker)).await;
    constant(&nq, f64::from(d.neuron_queue), nq.count, "Neuron worker queue depth");
    for (node, w, count) in [(d.gpu_node, &d.gpu_worker, q.count), (d.neuron_node, &d.neuron_worker, nq.count)] {
        let steady = [
            (cw::WORKERS, 1.0),
            (cw::WORKER_IN_FLIGHT, f64::from(w.in_flight)),
            (cw::WORKER_CAPACITY, f64::from(w.capacity)),
            (cw::WORKER_LATENCY_P50_SECONDS, w.p50),
            (cw::WORKER_LATENCY_P99_SECONDS, w.p99),
        ];
        for (m, value) in steady {
            let s = reader.read(node, m, worker_dim(w)).await;
            constant(&s, value, count, &format!("{} of {}", m.name, w.deployment));
        }
    }
}

/// Host and liveness series: every sample of the node, in range.
async fn check_host(reader: &Reader<'_>, nodes: [(TestNode, f64); 2]) {
    for (node, ticks) in nodes {
        let up = reader.read(node, cw::AGENT_UP, vec![]).await;
        assert_eq!((up.min, up.max), (1.0, 1.0), "{up:?}");
        assert!(up.count >= ticks, "edge_agent_up in every sample: {up:?}");
        for m in [cw::NODE_CPU_UTILIZATION, cw::NODE_MEMORY_UTILIZATION] {
            // The first CPU ratio needs two readings of /proc/stat: not in every sample.
            let s = reader.read(node, m, vec![]).await;
            let ok = s.count >= 1.0 && s.count <= up.count && s.min >= 0.0 && s.max <= 100.0;
            assert!(ok, "{} of {}: {s:?}", m.name, node.name);
        }
    }
}

/// A GPU node (the fake NVML library, two GPUs) and a Neuron node (the fake
/// neuron-monitor) publish what they were fed: each series' average,
/// maximum and sample count read back from CloudWatch match the inputs.
#[test]
fn gpu_neuron_and_worker_series_read_back_with_the_averages_maxima_and_counts_fed_in() {
    let front = Front::start();
    let namespace = "EdgeTest/Devices";
    let d = Devices::new();
    let fed = feed(&d, &front, namespace);
    let (calls, datums, samples, published) = check_delivery(&fed, &front);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let window = (fed.started - fed.started % 60 - 60, now_secs() + 120);
    let reader = Reader { client: front::client(&front), namespace, window };
    let series = rt.block_on(async {
        let series = check_listed(&reader, &d, published).await;
        let gpu_ticks = check_gpu_node(&reader, &d).await;
        let neuron_ticks = check_neuron_node(&reader, &d).await;
        check_workers(&reader, &d).await;
        check_host(&reader, [(d.gpu_node, gpu_ticks), (d.neuron_node, neuron_ticks)]).await;
        series
    });

    let elapsed = fed.elapsed;
    let per_node_hour = calls as f64 / 2.0 * 3600.0 / elapsed;
    eprintln!(
        "cloudwatch devices: 2 nodes, {calls} PutMetricData calls carried {datums} datums and {samples} samples \
         from {series} series in {elapsed:.1} s with a 2 s flush: {per_node_hour:.0} calls per node per hour, \
         {:.1} datums/call, {:.1} samples/call; naive: {samples} calls",
        datums as f64 / calls as f64,
        samples as f64 / calls as f64,
    );
}
