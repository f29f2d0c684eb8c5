//! The agent publishing to a CloudWatch-compatible server: moto's CloudWatch
//! behind `testkit/cloudwatch-front` (Smithy RPC v2 CBOR, as the SDK speaks
//! it). Read back with `GetMetricData` through the same SDK; the dashboard is
//! checked against what the agent publishes.
#![cfg(feature = "cloudwatch")]

#[path = "cloudwatch/front.rs"]
mod front;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use edge_agent::exporter::cloudwatch::series::{NodeDimensions, sample};
use edge_telemetry::catalogue::cloudwatch::{self as cw, CloudWatchMetric};
use edge_telemetry::proto::{Gpu, Host, NeuronCore, NeuronCoreMemory, Node, NodeSnapshot, Worker};
use edge_testkit::{Agent, AgentBuilder, eventually, fake_nvml, sample as metric};
use front::Front;

const CLUSTER: &str = "edge-test";
const ZONE: &str = "us-west-2-lax-1a";
const INSTANCE_TYPE: &str = "c7g.large";
/// Never in a log line: the agent must not print credentials.
const SECRET: &str = "wJalrXUtnFEMI-edge-test-SECRET-do-not-log";

fn agent(front: &Front, namespace: &str, flush: &str, buffer: u64) -> AgentBuilder {
    AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent"))
        .flag("cloudwatch-namespace", namespace)
        .flag("cloudwatch-flush-interval", flush)
        .flag("cloudwatch-buffer-samples", buffer.to_string())
        .flag("cluster-name", CLUSTER)
        .flag("instance-type", INSTANCE_TYPE)
        .flag("zone", ZONE)
        .flag("worker-expiry", "2s")
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", front.url())
        .env("AWS_ACCESS_KEY_ID", "AKIDEDGETEST")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", front::REGION)
        // Nothing from this machine's AWS set-up, no instance metadata.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/edge-test/config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/edge-test/credentials")
}

fn report(agent: &Agent, worker: &str, deployment: &str, queue: u32) {
    let body = serde_json::json!({
        "worker_id": worker, "pod": worker, "namespace": "inference", "deployment": deployment,
        "accelerator": "cpu", "queue_depth": queue, "in_flight": 1, "capacity": 8, "latency_p99_seconds": 1.25
    });
    let (status, text) = agent.report(&body.to_string());
    assert_eq!(status, 204, "{text}");
}

/// The exporter's counters from the line it logs when it stops.
#[derive(Debug, Default)]
struct Totals {
    sampled: u64,
    published: u64,
    dropped: u64,
    buffered: u64,
}

/// SIGTERM, then the final counters once the last flush is done.
fn stop(agent: &Agent) -> (Totals, String) {
    let status = std::process::Command::new("kill").arg("-TERM").arg(agent.pid().to_string()).status().unwrap();
    assert!(status.success());
    let line = eventually(Duration::from_secs(20), "the exporter's last line", || {
        agent.log().lines().find(|l| l.contains("CloudWatch exporter stopped")).map(str::to_owned)
    });
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
    };
    let totals = Totals {
        sampled: field("sampled"),
        published: field("published"),
        dropped: field("dropped"),
        buffered: field("buffered"),
    };
    (totals, agent.log())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Sum, sample count, minimum and maximum of one series over `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stats {
    sum: f64,
    count: f64,
    min: f64,
    max: f64,
    average: f64,
}

async fn stats(
    client: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    name: &str,
    dims: &[Dimension],
    (start, end): (i64, i64),
) -> Stats {
    let query = |id: &str, stat: &str| {
        let metric =
            Metric::builder().namespace(namespace).metric_name(name).set_dimensions(Some(dims.to_vec())).build();
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(MetricStat::builder().metric(metric).period(60).stat(stat).build())
            .build()
    };
    let out = client
        .get_metric_data()
        .start_time(DateTime::from_secs(start))
        .end_time(DateTime::from_secs(end))
        .metric_data_queries(query("sum", "Sum"))
        .metric_data_queries(query("count", "SampleCount"))
        .metric_data_queries(query("min", "Minimum"))
        .metric_data_queries(query("max", "Maximum"))
        .send()
        .await
        .expect("GetMetricData");
    let values = |id: &str| -> Vec<f64> {
        out.metric_data_results().iter().find(|r| r.id() == Some(id)).map(|r| r.values().to_vec()).unwrap_or_default()
    };
    let (sum, count) = (values("sum").iter().sum::<f64>(), values("count").iter().sum::<f64>());
    Stats {
        sum,
        count,
        min: values("min").into_iter().fold(f64::INFINITY, f64::min),
        max: values("max").into_iter().fold(f64::NEG_INFINITY, f64::max),
        average: sum / count,
    }
}

/// Every series in `namespace`, once each (moto lists a series once per datum).
async fn list_series(client: &aws_sdk_cloudwatch::Client, namespace: &str) -> Vec<(String, Vec<Dimension>)> {
    let mut out: Vec<(String, Vec<Dimension>)> = Vec::new();
    let mut token = None;
    loop {
        let page = client.list_metrics().namespace(namespace).set_next_token(token).send().await.expect("ListMetrics");
        for m in page.metrics() {
            let series = (m.metric_name().unwrap_or("").to_owned(), m.dimensions().to_vec());
            if !out.contains(&series) {
                out.push(series);
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return out;
        }
    }
}

fn dims(extra: &[(&str, &str)]) -> Vec<Dimension> {
    let node = [
        (cw::DIM_CLUSTER_NAME, CLUSTER),
        (cw::DIM_NODE_NAME, "test-node"),
        (cw::DIM_INSTANCE_TYPE, INSTANCE_TYPE),
        (cw::DIM_ACCELERATOR_TYPE, "cpu"),
        (cw::DIM_ZONE, ZONE),
    ];
    node.iter().chain(extra).map(|(n, v)| Dimension::builder().name(*n).value(*v).build()).collect()
}

/// Every accepted call kept CloudWatch's limits; returns (calls, datums, samples).
fn check_limits(front: &Front) -> (u64, u64, u64) {
    let s = front.stats();
    let datums: Vec<u64> = s["put_datums"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(datums.iter().all(|d| (1..=1000).contains(d)), "datums per call: {datums:?}");
    let bytes: Vec<u64> = s["put_body_bytes"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(bytes.iter().all(|b| *b <= 1_000_000), "body bytes per call: {bytes:?}");
    assert!(s["max_values_per_datum"].as_u64().unwrap() <= 150, "{s}");
    assert!(s["max_dimensions"].as_u64().unwrap() <= 30, "{s}");
    (s["put_calls"].as_u64().unwrap(), datums.iter().sum(), s["put_samples"].as_u64().unwrap())
}

#[test]
fn the_agent_publishes_batched_one_second_samples_that_read_back_exactly() {
    let front = Front::start();
    let namespace = "EdgeTest/ReadBack";
    let started = now_secs();
    let agent = agent(&front, namespace, "2s", 100_000).start();

    // Two Deployments: one steady at queue depth 2, one that bursts from 1 to 9.
    let feed_started = Instant::now();
    while feed_started.elapsed() < Duration::from_secs(5) {
        let burst = if feed_started.elapsed() < Duration::from_millis(2500) { 1 } else { 9 };
        report(&agent, "w-steady", "sd-steady", 2);
        report(&agent, "w-burst", "sd-burst", burst);
        // More Deployments make calls large enough for the SDK to gzip them.
        for i in 0..12 {
            report(&agent, &format!("w-extra-{i}"), &format!("sd-extra-{i}"), i);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eventually(Duration::from_secs(30), "a PutMetricData call", || {
        (front.stats()["put_calls"].as_u64().unwrap() >= 2).then_some(())
    });
    let metrics = agent.metrics();
    let (totals, log) = stop(&agent);
    let elapsed = (now_secs() - started).max(1);

    // Nothing lost: every sample taken was accepted, and arrived.
    assert!(totals.sampled > 0, "{totals:?}");
    assert_eq!((totals.published, totals.dropped, totals.buffered), (totals.sampled, 0, 0), "{totals:?}");
    let (calls, datums, samples) = check_limits(&front);
    assert_eq!(samples, totals.published, "the server got every sample the agent counted as published");
    assert!(metric(&metrics, "edge_cloudwatch_requests_total{outcome=\"ok\"").unwrap() >= 1.0, "{metrics}");
    assert!(!log.contains(SECRET), "the secret key appears in the log:\n{log}");
    assert!(front.stats()["put_gzip_calls"].as_u64().unwrap() >= 1, "no call was large enough to be gzipped");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = front::client(&front);
    let window = (started - started % 60 - 60, now_secs() + 120);
    rt.block_on(async {
        let series = list_series(&client, namespace).await;
        let mut stored = 0.0;
        for (name, d) in &series {
            let names: Vec<_> = d.iter().take(5).map(|d| d.name().unwrap_or("")).collect();
            assert_eq!(names, cw::NODE_DIMENSIONS, "{name}: node dimensions first, in order");
            stored += stats(&client, namespace, name, d, window).await.count;
        }
        assert_eq!(stored, totals.published as f64, "samples stored over {} series", series.len());

        let steady = dims(&[(cw::DIM_NAMESPACE, "inference"), (cw::DIM_DEPLOYMENT, "sd-steady")]);
        let q = stats(&client, namespace, cw::WORKER_QUEUE_DEPTH.name, &steady, window).await;
        assert_eq!((q.min, q.max, q.average), (2.0, 2.0, 2.0), "{q:?}");
        let workers = stats(&client, namespace, cw::WORKERS.name, &steady, window).await;
        assert_eq!(workers.count, q.count, "one sample per tick for every series of a Deployment");
        assert!(q.count >= 10.0, "{q:?}");
        let p99 = stats(&client, namespace, cw::WORKER_LATENCY_P99_SECONDS.name, &steady, window).await;
        assert_eq!((p99.average, p99.count), (1.25, q.count));

        let burst = dims(&[(cw::DIM_NAMESPACE, "inference"), (cw::DIM_DEPLOYMENT, "sd-burst")]);
        let b = stats(&client, namespace, cw::WORKER_QUEUE_DEPTH.name, &burst, window).await;
        assert_eq!((b.min, b.max), (1.0, 9.0), "the 1-second burst survives batching: {b:?}");
        // Sum = 1·low + 9·high with low + high = count: both phases were sampled.
        let high = (b.sum - b.count) / 8.0;
        assert!(high.fract() == 0.0 && high >= 1.0 && b.count - high >= 1.0, "{b:?}");

        let extra = dims(&[(cw::DIM_NAMESPACE, "inference"), (cw::DIM_DEPLOYMENT, "sd-extra-7")]);
        let e = stats(&client, namespace, cw::WORKER_QUEUE_DEPTH.name, &extra, window).await;
        assert_eq!((e.min, e.max, e.average), (7.0, 7.0, 7.0), "{e:?}");

        let up = stats(&client, namespace, cw::AGENT_UP.name, &dims(&[]), window).await;
        assert_eq!((up.min, up.max), (1.0, 1.0));
        let cpu = stats(&client, namespace, cw::NODE_CPU_UTILIZATION.name, &dims(&[]), window).await;
        assert!((0.0..=100.0).contains(&cpu.min) && cpu.max <= 100.0, "{cpu:?}");

        // The figures for the README: calls and datums against the naive one
        // call per metric per sample.
        eprintln!(
            "cloudwatch cost: {calls} PutMetricData calls carried {datums} datums and {samples} samples \
             from {} series in {elapsed} s ({:.1} datums/call, {:.1} samples/call); naive: {samples} calls",
            series.len(),
            datums as f64 / calls as f64,
            samples as f64 / calls as f64,
        );
    });
}

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

/// The value of the first sample `name{…}` on /metrics whose labels include all of `labels`.
fn labelled(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, v) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        let wanted = n == name && labels.iter().all(|(k, val)| rest.contains(&format!("{k}=\"{val}\"")));
        wanted.then(|| v.parse().ok()).flatten()
    })
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
}

#[test]
fn gpu_neuron_and_worker_series_read_back_with_the_averages_maxima_and_counts_fed_in() {
    let front = Front::start();
    let namespace = "EdgeTest/Devices";
    let dir = tempfile::tempdir().unwrap();

    // A GPU node: the fake NVML library with two GPUs. GPU 0 and its
    // memory go from low to high at a moment the test picks; GPU 1 is steady.
    let gpu_node = TestNode { name: "devices-gpu-node", instance_type: "g5.12xlarge", accelerator: "nvidia" };
    let gpu0_low = GpuLoad { util: 30, used_mib: 4_096, power_mw: 187_250, temp_c: 61 };
    let gpu0_high = GpuLoad { util: 90, used_mib: 16_384, ..gpu0_low };
    let gpu1 = GpuLoad { util: 11, used_mib: 1_025, power_mw: 96_500, temp_c: 48 };
    let nvml_path = dir.path().join("nvml.json");
    let mut nvml = fake_nvml::Config::with_gpus(2);
    gpu0_low.apply(nvml.gpu(0));
    gpu1.apply(nvml.gpu(1));
    nvml.write(&nvml_path);
    let gpu_worker = TestWorker {
        id: "w-gpu",
        deployment: "sd-gpu",
        accelerator: "nvidia",
        in_flight: 1,
        capacity: 4,
        p50: 0.5,
        p99: 1.25,
    };
    let (gpu_queue_low, gpu_queue_high) = (2, 6);

    // A Neuron node: the fake neuron-monitor replays two busy reports of the
    // checked-in inf2.xlarge fixture in turn, a second each. Their
    // utilisation and memory differ, so Sum and SampleCount tell how many
    // samples each report got, and every other Neuron series must agree.
    let fixture: Vec<String> = std::fs::read_to_string(NEURON_FIXTURE)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let (line_a, line_b) = (&fixture[1], &fixture[3]);
    let (report_a, report_b) = (neuron_report(line_a), neuron_report(line_b));
    assert_eq!(report_a.keys().collect::<Vec<_>>(), report_b.keys().collect::<Vec<_>>(), "the same cores in both");
    assert!(
        report_a.values().zip(report_b.values()).all(|(a, b)| a.0 != b.0 && a.1 != b.1),
        "{report_a:?} {report_b:?}"
    );
    let neuron_fixture = dir.path().join("two-reports.jsonl");
    std::fs::write(&neuron_fixture, format!("{line_a}\n{line_b}\n")).unwrap();
    let neuron_node = TestNode { name: "devices-inf2-node", instance_type: "inf2.xlarge", accelerator: "neuron" };
    let neuron_worker = TestWorker {
        id: "w-inf2",
        deployment: "sd-inf2",
        accelerator: "neuron",
        in_flight: 2,
        capacity: 6,
        p50: 0.125,
        p99: 0.75,
    };
    let neuron_queue = 5;

    let started = now_secs();
    let clock = Instant::now();
    let gpu_agent = gpu_node
        .agent(&front, namespace)
        .flag("nvml-library", edge_testkit::fake_nvml_library().display().to_string())
        .env(fake_nvml::CONFIG_ENV, nvml_path.display().to_string())
        .start();
    let neuron_agent = neuron_node
        .agent(&front, namespace)
        .flag("neuron-monitor", FAKE_NEURON_MONITOR)
        .flag("neuron-monitor-config", dir.path().join("monitor.json").display().to_string())
        .env("FAKE_NEURON_FIXTURE", neuron_fixture.display().to_string())
        .env("FAKE_NEURON_INTERVAL_MS", "1000")
        .start();

    let gpu_queue = AtomicU32::new(gpu_queue_low);
    let feeding = AtomicBool::new(true);
    std::thread::scope(|scope| {
        let _stop_feeding = Clear(&feeding);
        // Each worker reports several times per --worker-expiry, as a real one does.
        scope.spawn(|| {
            while feeding.load(Ordering::Relaxed) {
                gpu_worker.report(&gpu_agent, gpu_queue.load(Ordering::Relaxed));
                neuron_worker.report(&neuron_agent, neuron_queue);
                std::thread::sleep(Duration::from_millis(200));
            }
        });

        let gpu_state = |m: &str, gpu0: GpuLoad, queue: u32| {
            let gpu = [("gpu", "0")];
            labelled(m, "DCGM_FI_DEV_GPU_UTIL", &gpu) == Some(gpu0.util())
                && labelled(m, "DCGM_FI_DEV_FB_USED", &gpu) == Some(gpu0.used_mib as f64)
                && labelled(m, "edge_worker_queue_depth", &[("deployment", gpu_worker.deployment)])
                    == Some(f64::from(queue))
        };
        hold(&gpu_agent, "the GPU node's low phase in CloudWatch samples", |m| gpu_state(m, gpu0_low, gpu_queue_low));
        gpu0_high.apply(nvml.gpu(0));
        nvml.write(&nvml_path);
        gpu_queue.store(gpu_queue_high, Ordering::Relaxed);
        hold(&gpu_agent, "the GPU node's high phase in CloudWatch samples", |m| {
            gpu_state(m, gpu0_high, gpu_queue_high)
        });

        let neuron_state = |m: &str, report: &BTreeMap<u32, (f64, f64)>| {
            let worker = labelled(m, "edge_worker_queue_depth", &[("deployment", neuron_worker.deployment)]);
            worker == Some(f64::from(neuron_queue))
                && report.iter().all(|(core, (util, _))| {
                    let got = labelled(m, "neuroncore_utilization_ratio", &[("neuroncore", &core.to_string())]);
                    got.is_some_and(|g| (g - util / 100.0).abs() < 1e-9)
                })
        };
        hold(&neuron_agent, "the first Neuron report in CloudWatch samples", |m| neuron_state(m, &report_a));
        hold(&neuron_agent, "the second Neuron report in CloudWatch samples", |m| neuron_state(m, &report_b));
    });

    let (gpu_totals, gpu_log) = stop(&gpu_agent);
    let (neuron_totals, neuron_log) = stop(&neuron_agent);
    let elapsed = clock.elapsed().as_secs_f64();

    // Nothing lost, nothing left over, no secret in a log.
    for (totals, log) in [(&gpu_totals, &gpu_log), (&neuron_totals, &neuron_log)] {
        assert!(totals.sampled > 0, "{totals:?}");
        assert_eq!((totals.published, totals.dropped, totals.buffered), (totals.sampled, 0, 0), "{totals:?}");
        assert!(!log.contains(SECRET), "the secret key appears in the log:\n{log}");
    }
    let published = gpu_totals.published + neuron_totals.published;
    let (calls, datums, samples) = check_limits(&front);
    assert_eq!(samples, published, "the server got every sample the agents counted as published");
    // Batched: one call per node per 2 s flush and a last one at the stop, not one per sample.
    let most_calls = 2 * ((elapsed / 2.0).floor() as u64 + 2);
    assert!(calls <= most_calls, "{calls} calls from 2 nodes in {elapsed:.1} s with a 2 s flush");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let reader =
        Reader { client: front::client(&front), namespace, window: (started - started % 60 - 60, now_secs() + 120) };
    rt.block_on(async {
        // Exactly the series each node should publish, under its own node
        // dimensions (AcceleratorType nvidia or neuron), and no other.
        let gpu = |i: u32| extra(&[(cw::DIM_GPU_DEVICE, &format!("nvidia{i}"))]);
        let core = |i: u32| extra(&[(cw::DIM_NEURON_CORE, &format!("neuroncore{i}"))]);
        let worker = |w: &TestWorker| extra(&w.extra());
        let host = [cw::NODE_CPU_UTILIZATION, cw::NODE_MEMORY_UTILIZATION, cw::AGENT_UP];
        let workers = [
            cw::WORKERS,
            cw::WORKER_QUEUE_DEPTH,
            cw::WORKER_IN_FLIGHT,
            cw::WORKER_CAPACITY,
            cw::WORKER_LATENCY_P50_SECONDS,
            cw::WORKER_LATENCY_P99_SECONDS,
        ];
        let mut gpu_series: BTreeSet<(String, Extra)> = BTreeSet::new();
        for m in [cw::NODE_GPU_UTILIZATION, cw::NODE_GPU_MEMORY_UTILIZATION] {
            gpu_series.extend([(m.name.to_owned(), gpu(0)), (m.name.to_owned(), gpu(1)), (m.name.to_owned(), vec![])]);
        }
        for m in
            [cw::NODE_GPU_MEMORY_USED, cw::NODE_GPU_MEMORY_TOTAL, cw::NODE_GPU_POWER_DRAW, cw::NODE_GPU_TEMPERATURE]
        {
            gpu_series.extend([(m.name.to_owned(), gpu(0)), (m.name.to_owned(), gpu(1))]);
        }
        gpu_series.insert((cw::NODE_GPU_LIMIT.name.to_owned(), vec![]));
        gpu_series.extend(host.iter().map(|m| (m.name.to_owned(), vec![])));
        gpu_series.extend(workers.iter().map(|m| (m.name.to_owned(), worker(&gpu_worker))));
        let mut neuron_series: BTreeSet<(String, Extra)> = BTreeSet::new();
        for i in report_a.keys() {
            neuron_series.insert((cw::NODE_NEURONCORE_UTILIZATION.name.to_owned(), core(*i)));
            neuron_series.insert((cw::NODE_NEURONCORE_MEMORY_USAGE_TOTAL.name.to_owned(), core(*i)));
        }
        neuron_series.insert((cw::NODE_NEURONCORE_UTILIZATION.name.to_owned(), vec![]));
        neuron_series.extend(host.iter().map(|m| (m.name.to_owned(), vec![])));
        neuron_series.extend(workers.iter().map(|m| (m.name.to_owned(), worker(&neuron_worker))));

        let listed = list_series(&reader.client, namespace).await;
        let mut stored = 0.0;
        for (node, expected) in [(gpu_node, &gpu_series), (neuron_node, &neuron_series)] {
            let node_dims = extra(&node.node_dims());
            let mut got: BTreeSet<(String, Extra)> = BTreeSet::new();
            for (name, d) in &listed {
                let d: Extra =
                    d.iter().map(|d| (d.name().unwrap_or("").into(), d.value().unwrap_or("").into())).collect();
                if d.iter().any(|(n, v)| n == cw::DIM_NODE_NAME && v == node.name) {
                    assert_eq!(d[..5], node_dims[..], "{name}: the node's dimensions first, in order");
                    stored += reader.get(node, name, d[5..].to_vec()).await.count;
                    got.insert((name.clone(), d[5..].to_vec()));
                }
            }
            assert_eq!(&got, expected, "the series of {}", node.name);
        }
        assert_eq!(listed.len(), gpu_series.len() + neuron_series.len(), "series of no test node: {listed:?}");
        assert_eq!(stored, published as f64, "SampleCount over every series: every published sample stored");
        let read = |node: TestNode, metric: CloudWatchMetric, extra: Extra| reader.get(node, metric.name, extra);

        // GPU node. Utilisation and memory are separate NVML queries, each
        // re-reading the fake's config, so one tick may see the new
        // utilisation with the old memory: each family gets its own split.
        let g0 = read(gpu_node, cw::NODE_GPU_UTILIZATION, gpu(0)).await;
        let n_util = split(&g0, (gpu0_low.util(), gpu0_high.util()), "GPU 0 utilisation");
        let ticks = g0.count;
        let mean = |g0: GpuLoad| (g0.util() + gpu1.util()) / 2.0;
        let node_util = read(gpu_node, cw::NODE_GPU_UTILIZATION, vec![]).await;
        mix(&node_util, (mean(gpu0_low), mean(gpu0_high)), (ticks, n_util), "node GPU utilisation");
        assert!(node_util.max > node_util.average, "a maximum above the average: {node_util:?}");
        let g1 = read(gpu_node, cw::NODE_GPU_UTILIZATION, gpu(1)).await;
        constant(&g1, gpu1.util(), ticks, "GPU 1 utilisation");

        let m0 = read(gpu_node, cw::NODE_GPU_MEMORY_UTILIZATION, gpu(0)).await;
        let n_mem = split(&m0, (gpu0_low.memory_percent(), gpu0_high.memory_percent()), "GPU 0 memory utilisation");
        assert_eq!(m0.count, ticks, "every GPU series in the same ticks");
        let used0 = read(gpu_node, cw::NODE_GPU_MEMORY_USED, gpu(0)).await;
        mix(&used0, (gpu0_low.used_bytes() as f64, gpu0_high.used_bytes() as f64), (ticks, n_mem), "GPU 0 memory used");
        let node_mem = read(gpu_node, cw::NODE_GPU_MEMORY_UTILIZATION, vec![]).await;
        let node_mem_of = |g0: GpuLoad| GpuLoad::node_memory_percent(&[g0, gpu1]);
        mix(&node_mem, (node_mem_of(gpu0_low), node_mem_of(gpu0_high)), (ticks, n_mem), "node GPU memory utilisation");
        let m1 = read(gpu_node, cw::NODE_GPU_MEMORY_UTILIZATION, gpu(1)).await;
        constant(&m1, gpu1.memory_percent(), ticks, "GPU 1 memory utilisation");
        let used1 = read(gpu_node, cw::NODE_GPU_MEMORY_USED, gpu(1)).await;
        constant(&used1, gpu1.used_bytes() as f64, ticks, "GPU 1 memory used");
        // GPU 0's power and temperature are the same in both phases.
        for (i, load) in [(0, gpu0_low), (1, gpu1)] {
            let total = read(gpu_node, cw::NODE_GPU_MEMORY_TOTAL, gpu(i)).await;
            constant(&total, (GPU_TOTAL_MIB * MIB) as f64, ticks, &format!("GPU {i} memory total"));
            let power = read(gpu_node, cw::NODE_GPU_POWER_DRAW, gpu(i)).await;
            constant(&power, f64::from(load.power_mw) / 1000.0, ticks, &format!("GPU {i} power"));
            let temp = read(gpu_node, cw::NODE_GPU_TEMPERATURE, gpu(i)).await;
            constant(&temp, f64::from(load.temp_c), ticks, &format!("GPU {i} temperature"));
        }
        let limit = read(gpu_node, cw::NODE_GPU_LIMIT, vec![]).await;
        constant(&limit, 2.0, ticks, "GPUs on the node");

        // Neuron node: one split from core 0, which every Neuron series of
        // the node must match, since each sample reads one report.
        let cores: Vec<u32> = report_a.keys().copied().collect();
        let c0 = read(neuron_node, cw::NODE_NEURONCORE_UTILIZATION, core(cores[0])).await;
        let n_b = split(&c0, (report_a[&cores[0]].0, report_b[&cores[0]].0), "NeuronCore 0 utilisation");
        let neuron_ticks = c0.count;
        for i in &cores {
            let util = read(neuron_node, cw::NODE_NEURONCORE_UTILIZATION, core(*i)).await;
            let (a, b) = (report_a[i], report_b[i]);
            mix(&util, (a.0, b.0), (neuron_ticks, n_b), &format!("NeuronCore {i} utilisation"));
            let memory = read(neuron_node, cw::NODE_NEURONCORE_MEMORY_USAGE_TOTAL, core(*i)).await;
            mix(&memory, (a.1, b.1), (neuron_ticks, n_b), &format!("NeuronCore {i} memory"));
        }
        let node_neuron = read(neuron_node, cw::NODE_NEURONCORE_UTILIZATION, vec![]).await;
        let means = (neuron_mean(&report_a), neuron_mean(&report_b));
        mix(&node_neuron, means, (neuron_ticks, n_b), "node NeuronCore utilisation");
        assert!(node_neuron.max > node_neuron.average, "a maximum above the average: {node_neuron:?}");

        // Workers: the GPU node's queue went from low to high, the rest is steady.
        let q = read(gpu_node, cw::WORKER_QUEUE_DEPTH, worker(&gpu_worker)).await;
        split(&q, (f64::from(gpu_queue_low), f64::from(gpu_queue_high)), "GPU worker queue depth");
        let nq = read(neuron_node, cw::WORKER_QUEUE_DEPTH, worker(&neuron_worker)).await;
        constant(&nq, f64::from(neuron_queue), nq.count, "Neuron worker queue depth");
        for (node, w, count) in [(gpu_node, &gpu_worker, q.count), (neuron_node, &neuron_worker, nq.count)] {
            let steady = [
                (cw::WORKERS, 1.0),
                (cw::WORKER_IN_FLIGHT, f64::from(w.in_flight)),
                (cw::WORKER_CAPACITY, f64::from(w.capacity)),
                (cw::WORKER_LATENCY_P50_SECONDS, w.p50),
                (cw::WORKER_LATENCY_P99_SECONDS, w.p99),
            ];
            for (m, value) in steady {
                let s = read(node, m, worker(w)).await;
                constant(&s, value, count, &format!("{} of {}", m.name, w.deployment));
            }
        }

        // Host and liveness series: every sample of the node, in range.
        for (node, ticks) in [(gpu_node, ticks), (neuron_node, neuron_ticks)] {
            let up = read(node, cw::AGENT_UP, vec![]).await;
            assert_eq!((up.min, up.max), (1.0, 1.0), "{up:?}");
            assert!(up.count >= ticks, "edge_agent_up in every sample: {up:?}");
            for m in [cw::NODE_CPU_UTILIZATION, cw::NODE_MEMORY_UTILIZATION] {
                // The first CPU ratio needs two readings of /proc/stat: not in every sample.
                let s = read(node, m, vec![]).await;
                let ok = s.count >= 1.0 && s.count <= up.count && s.min >= 0.0 && s.max <= 100.0;
                assert!(ok, "{} of {}: {s:?}", m.name, node.name);
            }
        }

        let per_node_hour = calls as f64 / 2.0 * 3600.0 / elapsed;
        eprintln!(
            "cloudwatch devices: 2 nodes, {calls} PutMetricData calls carried {datums} datums and {samples} samples \
             from {} series in {elapsed:.1} s with a 2 s flush: {per_node_hour:.0} calls per node per hour, \
             {:.1} datums/call, {:.1} samples/call; naive: {samples} calls",
            listed.len(),
            datums as f64 / calls as f64,
            samples as f64 / calls as f64,
        );
    });
}

#[test]
fn an_outage_fills_a_bounded_buffer_drops_the_oldest_and_recovers() {
    let front = Front::start();
    let namespace = "EdgeTest/Outage";
    let capacity = 150;
    let started = now_secs();
    let agent = agent(&front, namespace, "1s", capacity).start();
    eventually(Duration::from_secs(30), "a first accepted call", || {
        (front.stats()["put_calls"].as_u64().unwrap() >= 1).then_some(())
    });

    let buffered = |m: &str| metric(m, "edge_cloudwatch_buffered_samples").expect("buffer gauge");
    let counter = |m: &str, series: &str| metric(m, series).unwrap_or(0.0);
    let mut peak = 0.0f64;
    for (mode, series) in [
        ("500", "edge_cloudwatch_requests_total{outcome=\"server_error\""),
        ("throttle", "edge_cloudwatch_requests_total{outcome=\"throttled\""),
        ("drop", "edge_cloudwatch_requests_total{outcome=\"network\""),
    ] {
        front.fault(mode);
        eventually(Duration::from_secs(60), &format!("a failed call in mode {mode}"), || {
            let m = agent.metrics();
            peak = peak.max(buffered(&m));
            assert!(buffered(&m) <= capacity as f64, "buffer beyond its bound:\n{m}");
            (counter(&m, series) >= 1.0).then_some(())
        });
    }
    // Long enough to overflow: the oldest samples go, counted.
    eventually(Duration::from_secs(60), "the full buffer to drop samples", || {
        let m = agent.metrics();
        peak = peak.max(buffered(&m));
        assert!(buffered(&m) <= capacity as f64, "buffer beyond its bound:\n{m}");
        (counter(&m, "edge_cloudwatch_samples_dropped_total{reason=\"buffer_full\"") > 0.0).then_some(())
    });
    assert!(peak >= capacity as f64 * 0.9, "the buffer filled up: peak {peak}");

    // Reports, scraping and the snapshot work throughout.
    report(&agent, "w-outage", "sd-outage", 4);
    let m = agent.metrics();
    assert_eq!(
        metric(&m, r#"edge_worker_queue_depth{accelerator="cpu",namespace="inference",deployment="sd-outage""#),
        Some(4.0)
    );

    front.fault("off");
    eventually(Duration::from_secs(60), "the buffer to drain", || {
        let m = agent.metrics();
        (buffered(&m) < capacity as f64 / 2.0 && agent.log().contains("CloudWatch publishing recovered")).then_some(())
    });
    let dropped_metric = counter(&agent.metrics(), "edge_cloudwatch_samples_dropped_total{reason=\"buffer_full\"");
    let (totals, log) = stop(&agent);

    // Nothing lost beyond the counted drops.
    assert_eq!(totals.buffered, 0, "{totals:?}");
    assert_eq!(totals.sampled, totals.published + totals.dropped, "{totals:?}");
    assert!(totals.dropped as f64 >= dropped_metric && dropped_metric > 0.0, "{totals:?}");
    let (_, _, samples) = check_limits(&front);
    assert_eq!(samples, totals.published);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = front::client(&front);
    let window = (started - started % 60 - 60, now_secs() + 120);
    let stored = rt.block_on(async {
        let mut stored = 0.0;
        for (name, d) in list_series(&client, namespace).await {
            stored += stats(&client, namespace, &name, &d, window).await.count;
        }
        stored
    });
    assert_eq!(stored, totals.published as f64);

    // One warning for the whole outage, one line when it ended, no secret.
    assert_eq!(log.matches("CloudWatch publishing failed").count(), 1, "{log}");
    assert_eq!(log.matches("CloudWatch publishing recovered").count(), 1, "{log}");
    assert!(!log.contains(SECRET), "the secret key appears in the log:\n{log}");
}

#[test]
fn without_a_namespace_no_aws_code_runs() {
    let agent = AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent"))
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", "http://127.0.0.1:9")
        .start();
    let m = agent.metrics();
    assert!(!m.contains("edge_cloudwatch_"), "{m}");
    assert!(!agent.log().contains("CloudWatch"), "{}", agent.log());
}

/// A node with every kind of device and a worker, for the dashboard check.
fn full_snapshot() -> NodeSnapshot {
    NodeSnapshot {
        node: Some(Node { name: "n".into(), instance_type: "t".into(), zone: "z".into() }),
        gpus: vec![Gpu {
            minor_number: Some(0),
            gpu_utilization_percent: Some(1),
            framebuffer_used_bytes: Some(1),
            framebuffer_total_bytes: Some(2),
            power_usage_watts: Some(1.0),
            temperature_celsius: Some(1),
            ..Default::default()
        }],
        neuron_cores: vec![NeuronCore {
            utilization_ratio: Some(0.5),
            memory: Some(NeuronCoreMemory { tensors_bytes: Some(1), ..Default::default() }),
            ..Default::default()
        }],
        host: Some(Host {
            cpu_utilization_ratio: Some(0.5),
            memory_total_bytes: Some(2),
            memory_available_bytes: Some(1),
            ..Default::default()
        }),
        workers: vec![Worker {
            worker_id: "w".into(),
            namespace: "ns".into(),
            deployment: "d".into(),
            accelerator: "cpu".into(),
            latency_p50_seconds: Some(1.0),
            latency_p99_seconds: Some(1.0),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// (metric, sorted dimension names) of every metric a dashboard widget names:
/// `metrics` arrays, `SEARCH('{Namespace,Dim,…} MetricName="…"')` and
/// Metrics Insights `SELECT F(metric) FROM SCHEMA(Namespace, Dim, …)`.
fn dashboard_metrics(body: &serde_json::Value, namespace: &str) -> BTreeSet<(String, Vec<String>)> {
    let mut out = BTreeSet::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        for row in widget["properties"]["metrics"].as_array().into_iter().flatten() {
            let row = row.as_array().expect("a metrics row is an array");
            for item in row {
                let Some(expr) = item.get("expression").and_then(|e| e.as_str()) else { continue };
                out.extend(expression_metrics(expr, namespace));
            }
            let strings: Vec<&str> = row.iter().filter_map(|v| v.as_str()).collect();
            if strings.first() == Some(&namespace) {
                let mut dims: Vec<String> = strings[2..].iter().step_by(2).map(|s| s.to_string()).collect();
                dims.sort();
                out.insert((strings[1].to_owned(), dims));
            } else if strings.len() >= 2 && strings[0] != "..." && !strings[0].is_empty() {
                panic!("a metrics row outside the namespace {namespace}: {row:?}");
            }
        }
    }
    out
}

fn expression_metrics(expr: &str, namespace: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    if let Some(rest) = expr.split("SCHEMA(").nth(1) {
        let inner = rest.split(')').next().unwrap();
        let mut parts = inner.split(',').map(|s| s.trim().trim_matches('"').to_owned());
        assert_eq!(parts.next().as_deref(), Some(namespace), "{expr}");
        let mut dims: Vec<String> = parts.collect();
        dims.sort();
        let name = expr.split('(').nth(1).unwrap().split(')').next().unwrap().trim().to_owned();
        out.push((name, dims));
    }
    if let Some(rest) = expr.split("SEARCH('{").nth(1) {
        let inner = rest.split('}').next().unwrap();
        let mut parts = inner.split(',').map(|s| s.trim().trim_matches('"').to_owned());
        assert_eq!(parts.next().as_deref(), Some(namespace), "{expr}");
        let mut dims: Vec<String> = parts.collect();
        dims.sort();
        let name = rest.split("MetricName=\"").nth(1).expect("SEARCH names its metric").split('"').next().unwrap();
        out.push((name.to_owned(), dims));
    }
    out
}

#[test]
fn every_metric_the_dashboard_names_is_published_with_the_same_dimensions() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/cloudwatch/edge-diffusion.json");
    let text = std::fs::read_to_string(path).unwrap();
    let body: serde_json::Value = serde_json::from_str(&text).expect("the dashboard body is JSON");
    let published: BTreeSet<(String, Vec<String>)> =
        sample(&full_snapshot(), &NodeDimensions { cluster: "c".into(), pods: false })
            .into_iter()
            .map(|(k, _)| {
                let mut dims: Vec<String> = k.dimensions.iter().map(|(n, _)| n.to_string()).collect();
                dims.sort();
                (k.metric.name.to_owned(), dims)
            })
            .collect();
    let named = dashboard_metrics(&body, "EdgeDiffusion");
    assert!(named.len() >= 5, "the dashboard names few metrics: {named:?}");
    for m in &named {
        assert!(published.contains(m), "the dashboard names {m:?}, which the agent does not publish");
    }
    let names: BTreeSet<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    for needed in [
        cw::NODE_GPU_UTILIZATION.name,
        cw::NODE_NEURONCORE_UTILIZATION.name,
        cw::NODE_CPU_UTILIZATION.name,
        cw::WORKER_QUEUE_DEPTH.name,
        cw::WORKER_LATENCY_P99_SECONDS.name,
        cw::AGENT_UP.name,
    ] {
        assert!(names.contains(needed), "the dashboard shows no {needed}");
    }
}
