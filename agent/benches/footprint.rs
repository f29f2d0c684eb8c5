//! The agent's footprint on a busy node, against an idle agent in the same run.
//!
//! Run with `scripts/bench-agent` (the agent image's size-optimised `daemon`
//! profile; it builds the fake NVML library there first), or:
//! `cargo build --profile daemon -p fake-nvml && cargo bench --profile daemon -p edge-agent --bench footprint`.
//!
//! Two real `edge-agent` processes at a 1 s tick:
//! - idle: /proc and the report intake only, nobody reporting;
//! - loaded: 8 GPUs (fake NVML library), the inf2.48xlarge neuron-monitor
//!   fixture replayed every second (fake neuron-monitor), 16 workers each
//!   reporting once a second with a changing queue.
//!
//! Prints RSS and CPU of both, and `/metrics` latency on a kept-alive
//! connection against `/healthz` on the same connection (the HTTP floor).
//! Targets (DESIGN.md): RSS < 10 MiB, CPU < 0.5 % of a core, /metrics p99 < 1 ms.

// A benchmark reports on stdout; the workspace lint against println! is for daemons.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edge_testkit::{Agent, AgentBuilder, http};

const WORKERS: usize = 16;
const GPUS: usize = 8;

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

    let idle = AgentBuilder::new(bin).flag("interval", "1s").start();
    let loaded = AgentBuilder::new(bin)
        .flag("interval", "1s")
        .flag("nvml-library", edge_testkit::fake_nvml_library().to_str().expect("utf-8 path"))
        .env(edge_testkit::fake_nvml::CONFIG_ENV, nvml_config.to_str().expect("utf-8 path"))
        .flag("neuron-monitor", neuron_fake.to_str().expect("utf-8 path"))
        .env("FAKE_NEURON_FIXTURE", neuron_fixture.to_str().expect("utf-8 path"))
        .env("FAKE_NEURON_INTERVAL_MS", "1000")
        .start();

    let stop = Arc::new(AtomicBool::new(false));
    let reporters = spawn_workers(&loaded, Arc::clone(&stop));
    // Let both settle: first ticks, neuron-monitor's first reports, allocator warm-up.
    std::thread::sleep(Duration::from_secs(5));
    check_loaded(&loaded);

    eprintln!("measuring CPU over {window:?} …");
    let (idle_cpu, loaded_cpu) = {
        let (i0, l0) = (cpu_seconds(idle.pid()), cpu_seconds(loaded.pid()));
        let t0 = Instant::now();
        std::thread::sleep(window);
        let elapsed = t0.elapsed().as_secs_f64();
        (100.0 * (cpu_seconds(idle.pid()) - i0) / elapsed, 100.0 * (cpu_seconds(loaded.pid()) - l0) / elapsed)
    };
    let (idle_rss, loaded_rss) = (rss_bytes(idle.pid()), rss_bytes(loaded.pid()));

    eprintln!("timing {scrapes} scrapes …");
    let mut conn = http::KeepAlive::connect(loaded.addr).expect("connect");
    let healthz = time_requests(&mut conn, "/healthz", &[], scrapes);
    let text = time_requests(&mut conn, "/metrics", &[], scrapes);
    let openmetrics = time_requests(&mut conn, "/metrics", &["Accept: application/openmetrics-text"], scrapes);
    let series = loaded.metrics().lines().filter(|l| !l.starts_with('#')).count();

    stop.store(true, Ordering::Relaxed);
    for r in reporters {
        let _ = r.join();
    }

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("edge-agent footprint: {GPUS} GPUs, inf2.48xlarge neuron-monitor fixture, {WORKERS} workers, 1 s tick");
    println!("loaded agent serves {series} series; CPU measured over {:.0} s", window.as_secs_f64());
    println!();
    println!("{:<28} {:>12} {:>12} {:>8} {:>10}", "", "idle agent", "loaded", "ratio", "target");
    println!(
        "{:<28} {:>9.2} MiB {:>8.2} MiB {:>7.2}x {:>10}",
        "RSS",
        mib(idle_rss),
        mib(loaded_rss),
        loaded_rss as f64 / idle_rss as f64,
        "< 10 MiB"
    );
    println!(
        "{:<28} {:>10.3} % {:>10.3} % {:>7.2}x {:>10}",
        "CPU (one core = 100 %)",
        idle_cpu,
        loaded_cpu,
        loaded_cpu / idle_cpu.max(1e-9),
        "< 0.5 %"
    );
    println!();
    println!("{:<28} {:>12} {:>12} {:>8} {:>10}", "latency, kept-alive conn", "p50", "p99", "p99/floor", "target");
    for (name, t) in
        [("/healthz (HTTP floor)", &healthz), ("/metrics text 0.0.4", &text), ("/metrics OpenMetrics", &openmetrics)]
    {
        println!(
            "{:<28} {:>9.1} µs {:>9.1} µs {:>7.2}x {:>10}",
            name,
            micros(t.p50),
            micros(t.p99),
            t.p99.as_secs_f64() / healthz.p99.as_secs_f64(),
            if name.starts_with("/metrics") { "p99 < 1 ms" } else { "" }
        );
    }
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
                let accelerator = ["nvidia", "neuron", "cpu"][i % 3];
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

fn check_loaded(agent: &Agent) {
    let m = agent.metrics();
    let count = |prefix: &str| m.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("DCGM_FI_DEV_GPU_UTIL{"), GPUS, "the fake GPUs are not all reporting:\n{m}");
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
