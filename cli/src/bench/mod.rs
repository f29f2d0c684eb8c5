//! `edge-diffusion bench-activation`: how long from a worker's queue going
//! 0 → 1 until the autoscaler knows, on two paths at once, same machine, same
//! agent, same wake-ups:
//!
//! - **ours**: the report reaches the agent, its snapshot stream reaches the
//!   scaler, and the scaler pushes `true` on KEDA's `StreamIsActive`;
//! - **the usual path**: a real Prometheus scrapes the agent's `/metrics`
//!   every second and is polled every second with the PromQL a KEDA
//!   Prometheus trigger would use (`sum(edge_worker_queue_depth{…}) > 0`).
//!
//! The queue is driven by worker reports posted straight to the agent's
//! report port (the worker → agent contract), so wake-ups are repeatable and
//! no model time is mixed in. Each wake-up starts at a random offset within a
//! second so it lands at a random phase of the scrape and poll cycles.

mod prometheus;
mod reporter;
mod stats;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use edge_telemetry::catalogue::edge::WORKER_QUEUE_DEPTH;
use tokio::sync::mpsc;

use crate::children::{Child, stop_all};
use crate::{keda, paths, ui};
use reporter::Reporter;
use stats::{human, percentile};

/// The benchmark's worker identity (only reports exist: no model runs).
const NAMESPACE: &str = "bench";
const DEPLOYMENT: &str = "sd-bench";
const ACCELERATOR: &str = "nvidia";

/// Longest a single wake-up may take on either path before the run fails.
const WAKE_LIMIT: Duration = Duration::from_secs(30);

/// `bench-activation` flags.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Wake-ups to measure (each measured on both paths).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub wakeups: u32,
    /// Fail unless the usual path is at least this many times slower at p50.
    #[arg(long, default_value_t = 20.0)]
    pub min_ratio: f64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let agent_bin = paths::sibling("edge-agent")?;
    let scaler_bin = paths::sibling("edge-scaler")?;
    edge_telemetry::prometheus_server::binary()?;
    let dir = std::env::temp_dir().join(format!("edge-diffusion-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut children = Vec::new();
    let result = measure(&args, &agent_bin, &scaler_bin, &dir, &mut children).await;
    let stopped = stop_all(&mut children, Duration::from_secs(10)).await;
    let (ours, usual, version) = result?;
    stopped?;
    let _ = std::fs::remove_dir_all(&dir);
    report(&args, &ours, &usual, &version)
}

fn free_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], edge_telemetry::loopback::free_port()))
}

/// The PromQL a KEDA `prometheus` trigger would run for this Deployment.
fn promql() -> String {
    format!(
        "sum({}{{accelerator=\"{ACCELERATOR}\",namespace=\"{NAMESPACE}\",deployment=\"{DEPLOYMENT}\"}}) > 0",
        WORKER_QUEUE_DEPTH.name
    )
}

type Samples = (Vec<Duration>, Vec<Duration>, String);

async fn measure(
    args: &BenchArgs,
    agent_bin: &std::path::Path,
    scaler_bin: &std::path::Path,
    dir: &std::path::Path,
    children: &mut Vec<Child>,
) -> anyhow::Result<Samples> {
    let (agent_addr, report_addr, scaler_addr, metrics_addr, prom_addr) =
        (free_port(), free_port(), free_port(), free_port(), free_port());
    let agent_args = vec![
        format!("--listen={agent_addr}"),
        format!("--report-listen={report_addr}"),
        "--nvml-library=".to_owned(),
        "--neuron-monitor=".to_owned(),
        "--node-name=bench".to_owned(),
    ];
    let mut agent = Child::spawn("edge-agent", agent_bin, &agent_args, &[], dir)?;
    agent.wait_ready(agent_addr, "/readyz", Duration::from_secs(30)).await?;
    children.insert(0, agent);
    let scaler_args = vec![
        format!("--agents={agent_addr}"),
        format!("--listen={scaler_addr}"),
        format!("--metrics-listen={metrics_addr}"),
    ];
    let mut scaler = Child::spawn("edge-scaler", scaler_bin, &scaler_args, &[], dir)?;
    scaler.wait_ready(metrics_addr, "/healthz", Duration::from_secs(30)).await?;
    children.insert(0, scaler);
    let prom = prometheus::start(prom_addr, agent_addr, dir).await?;
    let version = prom.version.clone();
    children.insert(0, prom.child);

    let reporter = Reporter::start(report_addr, NAMESPACE, DEPLOYMENT);
    reporter.set(0).await?;
    let mut keda = keda::connect(scaler_addr).await?;
    let trigger = keda::trigger(NAMESPACE, DEPLOYMENT, ACCELERATOR, "queueDepth");
    // Both paths see the idle worker before the first wake-up.
    let series = format!("{}{{deployment=\"{DEPLOYMENT}\"}}", WORKER_QUEUE_DEPTH.name);
    let deadline = Instant::now() + WAKE_LIMIT;
    while keda::metric(&mut keda, &trigger).await.ok() != Some(0.0) || prometheus::query(prom_addr, &series).await? == 0
    {
        if Instant::now() > deadline {
            bail!("the idle worker did not reach both the scaler and Prometheus within {WAKE_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut stream = keda.stream_is_active(trigger.clone()).await?.into_inner();
    let (push_tx, mut pushes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(msg)) = stream.message().await {
            if push_tx.send((Instant::now(), msg.result)).is_err() {
                break;
            }
        }
    });
    let (poll_tx, mut polls) = mpsc::unbounded_channel();
    let expr = promql();
    tokio::spawn(async move {
        // KEDA's poll loop: once a second, whatever the wake-ups do.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let answer = prometheus::query(prom_addr, &expr).await.map(|n| n > 0).map_err(|e| format!("{e:#}"));
            if poll_tx.send((Instant::now(), answer)).is_err() {
                break;
            }
        }
    });

    let mut rng = seed();
    let (mut ours, mut usual) = (Vec::new(), Vec::new());
    let mut live = ui::Live::new();
    for i in 1..=args.wakeups {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(rng % 1000)).await;
        while pushes.try_recv().is_ok() {}
        let woke = Instant::now();
        reporter.set(1).await?;
        let pushed = wait_for(&mut pushes, woke, "StreamIsActive true", |active: &bool| *active).await?;
        ours.push(pushed - woke);
        let seen =
            wait_for(&mut polls, woke, "Prometheus to see the queue", |a: &Result<bool, String>| matches!(a, Ok(true)))
                .await?;
        usual.push(seen - woke);
        live.show(&format!(
            "wake-up {i}/{}: ours {}, Prometheus {}",
            args.wakeups,
            human(pushed - woke),
            human(seen - woke)
        ));

        let idle = Instant::now();
        reporter.set(0).await?;
        wait_for(&mut polls, idle, "Prometheus to see the queue empty", |a: &Result<bool, String>| {
            matches!(a, Ok(false))
        })
        .await?;
        let deadline = Instant::now() + WAKE_LIMIT;
        while keda::is_active(&mut keda, &trigger).await? {
            if Instant::now() > deadline {
                bail!("the scaler still says active {WAKE_LIMIT:?} after the queue emptied");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    live.finish();
    reporter.stop();
    Ok((ours, usual, version))
}

/// The first message received after `since` that satisfies `ok`; its arrival time.
async fn wait_for<T>(
    rx: &mut mpsc::UnboundedReceiver<(Instant, T)>,
    since: Instant,
    what: &str,
    ok: impl Fn(&T) -> bool,
) -> anyhow::Result<Instant> {
    let deadline = tokio::time::Instant::now() + WAKE_LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => bail!("waited {WAKE_LIMIT:?} for {what}"),
            Ok(None) => bail!("the stream for {what} ended"),
            Ok(Some((at, value))) if at >= since && ok(&value) => return Ok(at),
            Ok(Some(_)) => {}
        }
    }
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
    (nanos as u64) | 1
}

fn report(args: &BenchArgs, ours: &[Duration], usual: &[Duration], version: &str) -> anyhow::Result<()> {
    let profile = if cfg!(debug_assertions) { "debug build" } else { "release build" };
    let (o50, o99, u50, u99) =
        (percentile(ours, 0.5), percentile(ours, 0.99), percentile(usual, 0.5), percentile(usual, 0.99));
    let ratio = |u: Duration, o: Duration| u.as_secs_f64() / o.as_secs_f64().max(1e-9);
    let lines = [
        format!("queue wake-up (0 -> 1) until the autoscaler knows: {} wake-ups, {profile}", ours.len()),
        "  wake-ups are worker reports posted straight to the agent's report port (the worker -> agent contract)"
            .to_owned(),
        format!("  usual path: {version}, scrape_interval 1s, polled every 1s with: {}", promql()),
        String::new(),
        format!("  {:<46} {:>10} {:>10}", "path", "p50", "p99"),
        format!("  {:<46} {:>10} {:>10}", "ours: report -> StreamIsActive true", human(o50), human(o99)),
        format!("  {:<46} {:>10} {:>10}", "usual: /metrics -> Prometheus -> 1 s PromQL poll", human(u50), human(u99)),
        format!("  {:<46} {:>9.0}x {:>9.0}x", "ratio (usual / ours)", ratio(u50, o50), ratio(u99, o99)),
    ];
    for line in lines {
        ui::line(&line);
    }
    if ratio(u50, o50) < args.min_ratio {
        bail!("ours is only {:.1}x faster at p50; the bar is {}x", ratio(u50, o50), args.min_ratio);
    }
    Ok(())
}
