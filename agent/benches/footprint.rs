//! The agent's footprint on a busy node, against an idle agent in the same run.
//!
//! Run with `scripts/bench-agent` (the agent image's size-optimised `daemon`
//! profile; it builds the fake NVML library there first), or:
//! `cargo build --profile daemon -p fake-nvml && cargo bench --profile daemon -p edge-agent --bench footprint`.
//!
//! Three real `edge-agent` processes at a 1 s tick:
//! - idle: /proc and the report intake only, nobody reporting;
//! - loaded: 8 GPUs (fake NVML library), the inf2.48xlarge neuron-monitor
//!   fixture replayed every second (fake neuron-monitor), 16 workers each
//!   reporting once a second with a changing queue;
//! - attributed: the same load, plus the kubelet's PodResources API asked
//!   every second (the fake kubelet, a real process on a Unix socket): each
//!   GPU and NeuronCore held by one of the workers' pods, so every device
//!   series carries namespace/pod/container.
//!
//! Prints RSS and CPU of all three (attributed against loaded: what
//! attribution costs), and `/metrics` latency of the loaded and the
//! attributed agent on a kept-alive connection against `/healthz` on the
//! same connection (the HTTP floor).
//! Targets (DESIGN.md): RSS < 10 MiB, CPU < 0.5 % of a core, /metrics p99 < 1 ms.

// A benchmark reports on stdout; the workspace lint against println! is for daemons.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edge_testkit::fake_kubelet::{FakeKubelet, Fixture};
use edge_testkit::{Agent, AgentBuilder, http};

const WORKERS: usize = 16;
const GPUS: usize = 8;
/// inf2.48xlarge: 12 NeuronDevices of 2 cores.
const NEURONCORES: usize = 24;
/// Worker `i` runs on `ACCELERATORS[i % 3]`.
const ACCELERATORS: [&str; 3] = ["nvidia", "neuron", "cpu"];

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let window = Duration::from_secs(env_u64("EDGE_BENCH_SECONDS", 30));
    let scrapes = env_u64("EDGE_BENCH_SCRAPES", 2000) as usize;
    let bin = env!("CARGO_BIN_EXE_edge-agent");
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));

    let nvml_dir = tempfile::tempdir().expect("tempdir");
    let nvml_config = nvml_dir.path().join("gpus.json");
    edge_testkit::fake_nvml::Config::with_gpus(GPUS as u32).write(&nvml_config);
    let neuron_fake = manifest.join("testdata/neuron-monitor/fake-neuron-monitor");
    let neuron_fixture = manifest.join("testdata/neuron-monitor/inf2.48xlarge.jsonl");

    let kubelet_dir = tempfile::tempdir().expect("tempdir");
    let kubelet =
        FakeKubelet::start(kubelet_dir.path(), &node_pods(&edge_testkit::fake_nvml::Config::with_gpus(GPUS as u32)));

    let idle = AgentBuilder::new(bin).flag("interval", "1s").start();
    let busy = || {
        AgentBuilder::new(bin)
            .flag("interval", "1s")
            .flag("nvml-library", edge_testkit::fake_nvml_library().to_str().expect("utf-8 path"))
            .env(edge_testkit::fake_nvml::CONFIG_ENV, nvml_config.to_str().expect("utf-8 path"))
            .flag("neuron-monitor", neuron_fake.to_str().expect("utf-8 path"))
            .env("FAKE_NEURON_FIXTURE", neuron_fixture.to_str().expect("utf-8 path"))
            .env("FAKE_NEURON_INTERVAL_MS", "1000")
    };
    let loaded = busy().start();
    let attributed = busy().flag("pod-resources-socket", kubelet.socket().to_str().expect("utf-8 path")).start();

    let stop = Arc::new(AtomicBool::new(false));
    let mut reporters = spawn_workers(&loaded, Arc::clone(&stop));
    reporters.extend(spawn_workers(&attributed, Arc::clone(&stop)));
    // Let them settle: first ticks, neuron-monitor's first reports, allocator warm-up.
    std::thread::sleep(Duration::from_secs(5));
    check_loaded(&loaded, false);
    check_loaded(&attributed, true);

    eprintln!("measuring CPU over {window:?} …");
    let agents = [&idle, &loaded, &attributed];
    let before = agents.map(|a| cpu_seconds(a.pid()));
    let t0 = Instant::now();
    std::thread::sleep(window);
    let elapsed = t0.elapsed().as_secs_f64();
    let mut cpu = [0.0; 3];
    for (i, a) in agents.iter().enumerate() {
        cpu[i] = 100.0 * (cpu_seconds(a.pid()) - before[i]) / elapsed;
    }
    let rss = agents.map(|a| rss_bytes(a.pid()));

    eprintln!("timing {scrapes} scrapes per agent …");
    let latency = |agent: &Agent| {
        let mut conn = http::KeepAlive::connect(agent.addr).expect("connect");
        let healthz = time_requests(&mut conn, "/healthz", &[], scrapes);
        let text = time_requests(&mut conn, "/metrics", &[], scrapes);
        let openmetrics = time_requests(&mut conn, "/metrics", &["Accept: application/openmetrics-text"], scrapes);
        [healthz, text, openmetrics]
    };
    let (plain, held) = (latency(&loaded), latency(&attributed));
    let series = |agent: &Agent| agent.metrics().lines().filter(|l| !l.starts_with('#')).count();
    let (series_loaded, series_attributed) = (series(&loaded), series(&attributed));

    stop.store(true, Ordering::Relaxed);
    for r in reporters {
        let _ = r.join();
    }

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("edge-agent footprint: {GPUS} GPUs, inf2.48xlarge neuron-monitor fixture, {WORKERS} workers, 1 s tick");
    println!(
        "loaded agent serves {series_loaded} series, attributed {series_attributed} (kubelet PodResources asked every second); CPU measured over {:.0} s",
        window.as_secs_f64()
    );
    println!();
    println!(
        "{:<24} {:>12} {:>12} {:>12} {:>9} {:>10}",
        "", "idle agent", "loaded", "attributed", "attr/load", "target"
    );
    println!(
        "{:<24} {:>8.2} MiB {:>8.2} MiB {:>8.2} MiB {:>8.3}x {:>10}",
        "RSS",
        mib(rss[0]),
        mib(rss[1]),
        mib(rss[2]),
        rss[2] as f64 / rss[1] as f64,
        "< 10 MiB"
    );
    println!(
        "{:<24} {:>10.3} % {:>10.3} % {:>10.3} % {:>8.3}x {:>10}",
        "CPU (one core = 100 %)",
        cpu[0],
        cpu[1],
        cpu[2],
        cpu[2] / cpu[1].max(1e-9),
        "< 0.5 %"
    );
    println!();
    println!("{:<32} {:>12} {:>12} {:>10} {:>10}", "latency, kept-alive conn", "p50", "p99", "p99/floor", "target");
    for (agent, [healthz, text, openmetrics]) in [("loaded", &plain), ("attributed", &held)] {
        for (name, t) in
            [("/healthz (HTTP floor)", healthz), ("/metrics text 0.0.4", text), ("/metrics OpenMetrics", openmetrics)]
        {
            println!(
                "{:<32} {:>9.1} µs {:>9.1} µs {:>9.2}x {:>10}",
                format!("{agent} {name}"),
                micros(t.p50),
                micros(t.p99),
                t.p99.as_secs_f64() / healthz.p99.as_secs_f64(),
                if name.starts_with("/metrics") { "p99 < 1 ms" } else { "" }
            );
        }
    }
    drop(kubelet);
}

/// The fake kubelet's node: the GPUs dealt round-robin to the nvidia
/// workers' pods, four NeuronCores to each neuron worker's pod (the pods are
/// `sd-<accelerator>-<i>`, as [`spawn_workers`] reports them).
fn node_pods(nvml: &edge_testkit::fake_nvml::Config) -> Fixture {
    let pods = |accelerator: &str| -> Vec<String> {
        (0..WORKERS).filter(|i| ACCELERATORS[i % 3] == accelerator).map(|i| format!("sd-{accelerator}-{i}")).collect()
    };
    let mut f = Fixture::default();
    let uuids: Vec<&str> = nvml.gpus.iter().map(|g| g.uuid()).collect();
    f.allocatable("nvidia.com/gpu", &uuids);
    let cores: Vec<String> = (0..NEURONCORES).map(|c| c.to_string()).collect();
    f.allocatable("aws.amazon.com/neuroncore", &cores.iter().map(String::as_str).collect::<Vec<_>>());
    let nvidia = pods("nvidia");
    for (k, uuid) in uuids.iter().enumerate() {
        f.assign("inference", &nvidia[k % nvidia.len()], "worker", "nvidia.com/gpu", &[uuid]);
    }
    for (k, pod) in pods("neuron").iter().enumerate() {
        let held: Vec<&str> = cores.iter().skip(4 * k).take(4).map(String::as_str).collect();
        f.assign("inference", pod, "worker", "aws.amazon.com/neuroncore", &held);
    }
    f
}

struct Latency {
    p50: Duration,
    p99: Duration,
}

fn time_requests(conn: &mut http::KeepAlive, path: &str, headers: &[&str], n: usize) -> Latency {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let (status, body) = conn.get(path, headers).expect("request");
        samples.push(t.elapsed());
        assert_eq!(status, 200, "{path}: {body}");
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Latency { p50: at(0.50), p99: at(0.99) }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// 16 threads, each one worker reporting once a second with a changing queue.
fn spawn_workers(agent: &Agent, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    let addr = agent.report_addr.expect("report port");
    (0..WORKERS)
        .map(|i| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let accelerator = ACCELERATORS[i % 3];
                let mut tick = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let body = serde_json::json!({
                        "worker_id": format!("sd-{accelerator}-{i}"), "pod": format!("sd-{accelerator}-{i}"),
                        "namespace": "inference", "deployment": format!("sd-{accelerator}"),
                        "accelerator": accelerator, "queue_depth": (tick + i as u32) % 5, "in_flight": 1,
                        "capacity": 8, "latency_p50_seconds": 0.8, "latency_p99_seconds": 1.9
                    });
                    let _ = http::post_json(addr, "/v1/reports", &body.to_string());
                    tick += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        })
        .collect()
}

fn check_loaded(agent: &Agent, attributed: bool) {
    let m = agent.metrics();
    let count = |prefix: &str| m.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("DCGM_FI_DEV_GPU_UTIL{"), GPUS, "the fake GPUs are not all reporting:\n{m}");
    let held = m.lines().filter(|l| l.starts_with("DCGM_FI_DEV_GPU_UTIL{") && l.contains("pod=")).count();
    assert_eq!(held, if attributed { GPUS } else { 0 }, "GPU series with pod labels; agent log:\n{}", agent.log());
    assert!(count("neuroncore_utilization_ratio{") > 0, "no NeuronCore series; agent log:\n{}", agent.log());
    assert!(count("edge_worker_queue_depth{") > 0, "no worker series:\n{m}");
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the parenthesised command name; utime and stime are 14th and 15th overall.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS")
}

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
