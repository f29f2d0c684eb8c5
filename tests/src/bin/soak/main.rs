//! The soak: the whole loop on loopback for a bounded time, under faults.
//!
//! 16 `edge-inference` workers (tiny model) report to one `edge-agent`, which
//! also runs the fake NVML library (a GPU lost and back), the fake
//! neuron-monitor (garbage before every report, a crash every 30 reports) and
//! publishes to moto's CloudWatch behind the project's front (killed and
//! restarted); one `edge-scaler` follows the agent while a KEDA client calls
//! GetMetrics/IsActive in a loop and holds a StreamIsActive per accelerator.
//! Bursts of generations wake one accelerator after another. Midway the scaler
//! is restarted under the KEDA load, later the agent is killed (SIGKILL) and
//! restarted under the scaler.
//!
//! It prints RSS over time for every process, errors counted, requests
//! accepted against answered, and StreamIsActive wakes missed; it exits 1 when
//! a request accepted was not answered or a wake was missed. Not a test: run
//! by `scripts/soak`, figures in docs/reliability.md.

// The report on stdout is what the soak is for; progress goes to stderr.
#![allow(clippy::print_stdout)]

mod counts;
mod report;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_e2e::keda::{Keda, Pushes, trigger};
use edge_testkit::cloudwatch_front::Front;
use edge_testkit::fake_nvml::{CONFIG_ENV, Config};
use edge_testkit::{AgentBuilder, ScalerBuilder, Worker, WorkerBuilder, artifact, fake_nvml_library, sample};

use counts::Counts;
use report::Report;

const ACCELERATORS: [&str; 3] = ["cpu", "nvidia", "neuron"];
const NS: &str = "soak";
const WORKERS: usize = 16;

fn main() {
    let minutes: f64 = std::env::args().nth(1).map(|m| m.parse().expect("minutes, e.g. 10")).unwrap_or(10.0);
    let total = Duration::from_secs_f64(minutes * 60.0);
    let at = |fraction: f64| total.mul_f64(fraction);
    let dir = tempfile::tempdir().unwrap();
    let repo = edge_e2e::repo_root();
    eprintln!("soak: {minutes} min, {WORKERS} workers, loopback only");

    // The model, the fake GPUs, the CloudWatch front.
    let model = dir.path().join("tiny");
    let out = Command::new(artifact("edge-inference")).arg("tiny-model").arg(&model).output().unwrap();
    assert!(out.status.success(), "tiny-model: {}", String::from_utf8_lossy(&out.stderr));
    let nvml_config = dir.path().join("nvml.json");
    let mut gpus = Config::with_gpus(2);
    gpus.write(&nvml_config);
    let mut front = Some(Front::start());
    let front_port = front.as_ref().map_or(0, |f| f.addr.port());

    let agent_builder = AgentBuilder::new(artifact("edge-agent"))
        .flag("nvml-library", fake_nvml_library().display().to_string())
        .flag("neuron-monitor", repo.join("agent/testdata/neuron-monitor/fake-neuron-monitor").display().to_string())
        .flag("neuron-monitor-config", dir.path().join("monitor.json").display().to_string())
        .flag("interval", "1s")
        .flag("cloudwatch-namespace", "EdgeSoak")
        .flag("cloudwatch-flush-interval", "5s")
        .flag("cluster-name", "soak")
        .env(CONFIG_ENV, nvml_config.display().to_string())
        .env("FAKE_NEURON_FIXTURE", repo.join("agent/testdata/neuron-monitor/inf2.xlarge.jsonl").display().to_string())
        .env("FAKE_NEURON_GARBAGE", "1")
        .env("FAKE_NEURON_EXIT_AFTER", "30")
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", format!("http://127.0.0.1:{front_port}"))
        .env("AWS_ACCESS_KEY_ID", "AKIDSOAK")
        .env("AWS_SECRET_ACCESS_KEY", "soak-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let mut agent = agent_builder.clone().start();
    let report_addr = agent.report_addr.expect("report port");

    let workers: Vec<(&str, Worker)> = (0..WORKERS)
        .map(|i| {
            let accelerator = ACCELERATORS[i % ACCELERATORS.len()];
            let w = WorkerBuilder::new(artifact("edge-inference"), &model)
                .flag("agent", report_addr.to_string())
                // The reported type follows the device (cpu here): these CPU workers stand in
                // for GPU and Neuron ones, as in tests/tests/loop.rs.
                .flag("simulated-accelerator", accelerator)
                .flag("deployment", format!("sd-{accelerator}"))
                .flag("namespace", NS)
                .flag("worker-id", format!("sd-{accelerator}-{i}"))
                .flag("default-size", "64x64")
                .flag("queue-capacity", "8")
                .start();
            (accelerator, w)
        })
        .collect();
    let scaler_builder = ScalerBuilder::new(artifact("edge-scaler"))
        .flag("agents", agent.addr.to_string())
        .flag("stale-after", "3s")
        .flag("reconnect-max", "500ms");
    let mut scaler = scaler_builder.clone().start();
    eprintln!("soak: all up; agent {}, scaler {}", agent.addr, scaler.addr);
    let all_idle = || workers.iter().all(|(_, w)| sample(&w.metrics(), "edge_inference_queue_depth") == Some(0.0));
    assert!(wait_until(Duration::from_secs(60), || all_idle().then_some(())).is_some(), "workers idle");

    // Process ids the sampler reads (the agent's and scaler's change on restart).
    let pids = Arc::new(Mutex::new(BTreeMap::<String, Vec<u32>>::new()));
    let set_pid = |name: &str, pid: Vec<u32>| pids.lock().unwrap().insert(name.to_owned(), pid);
    set_pid("edge-agent", vec![agent.pid()]);
    set_pid("edge-scaler", vec![scaler.pid()]);
    set_pid("edge-inference (16, summed)", workers.iter().map(|(_, w)| w.pid()).collect());
    set_pid("cloudwatch front (moto)", front.iter().map(Front::pid).collect());

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let rss = Arc::new(Mutex::new(Vec::<(f64, BTreeMap<String, u64>)>::new()));
    let sampler = {
        let (pids, rss, stop) = (pids.clone(), rss.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let row: BTreeMap<String, u64> = pids
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(name, pids)| (name.clone(), pids.iter().map(|p| rss_kib(*p)).sum()))
                    .collect();
                rss.lock().unwrap().push((start.elapsed().as_secs_f64(), row));
                std::thread::sleep(Duration::from_secs(5));
            }
        })
    };

    // KEDA: calls in a loop, and one stream per accelerator, reopened when it ends.
    let scaler_addr = scaler.addr;
    let keda_ok = Arc::new(AtomicU64::new(0));
    let keda_failed = Arc::new(AtomicU64::new(0));
    let streams: Arc<Mutex<BTreeMap<&str, Pushes>>> = Arc::default();
    let keda_thread = {
        let (ok, failed, stop, streams) = (keda_ok.clone(), keda_failed.clone(), stop.clone(), streams.clone());
        std::thread::spawn(move || {
            let keda = Keda::connect(scaler_addr);
            while !stop.load(Ordering::Relaxed) {
                for accelerator in ACCELERATORS {
                    let object = trigger(NS, accelerator);
                    let open =
                        streams.lock().unwrap().get(accelerator).is_some_and(|p| p.ended.lock().unwrap().is_none());
                    if !open && let Some(p) = keda.try_stream_is_active(&object) {
                        streams.lock().unwrap().insert(accelerator, p);
                    }
                    match (keda.metric(&object), keda.is_active(&object)) {
                        (Ok(_), Ok(_)) => ok.fetch_add(2, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // Every stream open before the first burst.
    let all_open = || streams.lock().unwrap().len() == ACCELERATORS.len();
    assert!(wait_until(Duration::from_secs(60), || all_open().then_some(())).is_some(), "StreamIsActive open");

    // Bursts, and the faults at their times.
    let counts = Counts::default();
    let mut wakes = (0u32, 0u32);
    let mut events: Vec<String> = Vec::new();
    let note = |events: &mut Vec<String>, what: String| {
        eprintln!("soak: {:>6.1}s {what}", start.elapsed().as_secs_f64());
        events.push(format!("{:.0}s {what}", start.elapsed().as_secs_f64()));
    };
    let mut faults: Vec<(Duration, &str)> = vec![
        (at(0.20), "gpu-lost"),
        (at(0.30), "gpu-back"),
        (at(0.38), "cloudwatch-down"),
        (at(0.43), "cloudwatch-up"),
        (at(0.50), "scaler-restart"),
        (at(0.65), "agent-kill"),
    ];
    let mut round = 0usize;
    let mut cloudwatch_before_kill: Vec<String> = Vec::new();
    while start.elapsed() < total {
        while let Some((when, fault)) = faults.first().copied() {
            if start.elapsed() < when {
                break;
            }
            faults.remove(0);
            match fault {
                "gpu-lost" => {
                    gpus.gpu(1).lost();
                    gpus.write(&nvml_config);
                }
                "gpu-back" => {
                    gpus.gpu(1).found();
                    gpus.write(&nvml_config);
                }
                "cloudwatch-down" => drop(front.take()),
                "cloudwatch-up" => {
                    front = Some(Front::start_on(front_port));
                    set_pid("cloudwatch front (moto)", front.iter().map(Front::pid).collect());
                }
                "scaler-restart" => {
                    scaler.terminate();
                    scaler = scaler_builder.clone().start();
                    set_pid("edge-scaler", vec![scaler.pid()]);
                }
                "agent-kill" => {
                    // What the agent counted of the CloudWatch outage, before its counters go with it.
                    for l in agent.metrics().lines().filter(|l| l.starts_with("edge_cloudwatch_requests_total")) {
                        cloudwatch_before_kill.push(l.to_owned());
                    }
                    agent.kill();
                    agent = agent_builder.clone().start();
                    set_pid("edge-agent", vec![agent.pid()]);
                }
                _ => unreachable!(),
            }
            note(&mut events, fault.to_owned());
        }
        let accelerator = ACCELERATORS[round % ACCELERATORS.len()];
        round += 1;
        // The stream open now and how much it had received; a stream reopened meanwhile
        // (the scaler restarted) is read from its start.
        let before = streams.lock().unwrap().get(accelerator).map(|p| (p.clone(), p.received().len()));
        let targets: Vec<SocketAddr> = workers.iter().filter(|(a, _)| *a == accelerator).map(|(_, w)| w.addr).collect();
        let burst: Vec<_> = targets
            .iter()
            .flat_map(|addr| (0..3u32).map(move |seed| (*addr, seed)))
            .map(|(addr, seed)| {
                let counts = counts.clone();
                std::thread::spawn(move || counts.generate(addr, seed))
            })
            .collect();
        // The stream KEDA holds for this accelerator must say true while its queues are up.
        let woke = wait_until(Duration::from_secs(15), || {
            let streams = streams.lock().unwrap();
            let p = streams.get(accelerator)?;
            let received = p.received();
            let from = match &before {
                Some((old, n)) if old.same_stream(p) => *n,
                _ => 0,
            };
            received[from..].contains(&true).then_some(())
        })
        .is_some();
        wakes.0 += 1;
        if !woke {
            wakes.1 += 1;
            let streams = streams.lock().unwrap();
            let now = streams.get(accelerator);
            let what = now.map(|p| {
                let reopened = before.as_ref().is_none_or(|(old, _)| !old.same_stream(p));
                format!("reopened {reopened}, received {:?}, ended {:?}", p.received(), p.ended.lock().unwrap())
            });
            let stale = sample(&scaler.metrics(), "edge_scaler_agents_stale");
            note(&mut events, format!("wake MISSED for {accelerator}: stream {what:?}, scaler agents stale {stale:?}"));
        }
        for b in burst {
            let _ = b.join();
        }
        std::thread::sleep(Duration::from_secs(4));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = keda_thread.join();
    let _ = sampler.join();

    // What the agent and the scaler counted.
    let agent_metrics = agent.metrics();
    let collector_errors: Vec<(String, f64)> = ["neuron", "nvml", "workers", "procfs"]
        .iter()
        .filter_map(|c| {
            Some((c.to_string(), sample(&agent_metrics, &format!(r#"edge_collector_errors_total{{collector="{c}""#))?))
        })
        .collect();
    let cloudwatch: Vec<String> = agent_metrics
        .lines()
        .filter(|l| l.starts_with("edge_cloudwatch_") && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();

    let report = Report {
        minutes,
        rss: rss.lock().unwrap().clone(),
        counts: counts.snapshot(),
        wakes,
        keda_ok: keda_ok.load(Ordering::Relaxed),
        keda_failed: keda_failed.load(Ordering::Relaxed),
        collector_errors,
        cloudwatch,
        cloudwatch_before_kill,
        events,
    };
    report.print();
    let lost = report.counts.accepted() - report.counts.answered;
    std::process::exit(if lost == 0 && wakes.1 == 0 { 0 } else { 1 });
}

/// Polls `check` until it gives a value or `timeout` passes.
fn wait_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").parse().ok()))
        })
        .flatten()
        .unwrap_or(0)
}
