//! `edge-diffusion up`: agent, scaler (static agent list) and a CPU worker as
//! child processes, one block saying where everything is, a live status line,
//! and a clean stop on Ctrl-C / SIGTERM.
//!
//! `up --zero` starts no worker: `up` plays KEDA's part instead. It holds the
//! scaler's `StreamIsActive` for the CPU Deployment, starts a worker the
//! moment the scaler pushes `true` (the first device pull of the printed
//! inventory URL does that), and stops it after `--cooldown` without work,
//! as KEDA's cooldownPeriod would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use crate::children::{Child, stop_all};
use crate::{keda, paths, status, ui};

mod zero;

use zero::{Zero, wake_pushed};

/// The namespace the local worker reports (and the status line's ScaledObjects live in).
const NAMESPACE: &str = "default";

/// How long a child may take to stop after SIGTERM (the worker drains first).
const GRACE: Duration = Duration::from_secs(20);

/// `up` flags.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// A diffusers model directory with real weights (default: a small random
    /// model generated on first run into the cache directory).
    #[arg(long, env = "EDGE_DIFFUSION_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// The worker's image API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub api: SocketAddr,
    /// The agent's port (/metrics, snapshot feed).
    #[arg(long, default_value = "127.0.0.1:9400")]
    pub agent: SocketAddr,
    /// The agent's worker-report port.
    #[arg(long, default_value = "127.0.0.1:9401")]
    pub report: SocketAddr,
    /// The scaler's KEDA gRPC port.
    #[arg(long, default_value = "127.0.0.1:9500")]
    pub scaler: SocketAddr,
    /// The scaler's own /metrics.
    #[arg(long, default_value = "127.0.0.1:9501")]
    pub scaler_metrics: SocketAddr,
    /// Where the children's logs go (default: a new directory under the temp dir).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Seconds between status updates.
    #[arg(long, default_value_t = 0.5, value_parser = parse_interval)]
    pub status_interval: f64,
    /// Start with no worker, as a Deployment at zero replicas: the first
    /// pull of the inventory URL wakes one (as KEDA would, through the
    /// scaler's StreamIsActive), and it stops again after --cooldown idle.
    #[arg(long)]
    pub zero: bool,
    /// With --zero: seconds a woken worker may sit idle (the scaler says
    /// inactive) before it is stopped, like KEDA's cooldownPeriod.
    #[arg(long, default_value_t = 30.0, value_parser = parse_cooldown)]
    pub cooldown: f64,
}

fn parse_cooldown(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.5..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in 0.5..=3600")),
    }
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.05..=60.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in 0.05..=60")),
    }
}

/// The model the worker serves.
struct Model {
    dir: PathBuf,
    tiny: bool,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    // The user's own input first: a wrong --model-dir is reported the same
    // way whatever else happens to listen on this machine.
    if let Some(dir) = &args.model_dir {
        check_model_dir(dir)?;
    }
    check_ports(&args)?;
    let agent_bin = paths::sibling("edge-agent")?;
    let scaler_bin = paths::sibling("edge-scaler")?;
    let worker_bin = paths::sibling("edge-inference")?;
    let model = model(args.model_dir.as_deref(), &worker_bin).await?;
    let log_dir = match &args.log_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("edge-diffusion-up-{}", std::process::id())),
    };
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create the log directory {}", log_dir.display()))?;

    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    // Stopped in this order: the worker drains first, the agent goes last.
    let mut children: Vec<Child> = Vec::new();
    let started = tokio::select! {
        r = start(&args, &model, &log_dir, [&agent_bin, &scaler_bin, &worker_bin], &mut children) => r,
        _ = interrupt.recv() => Err(anyhow::anyhow!("interrupted while starting")),
        _ = terminate.recv() => Err(anyhow::anyhow!("terminated while starting")),
    };
    if let Err(e) = started {
        let _ = stop_all(&mut children, GRACE).await;
        return Err(e);
    }
    let mut client = keda::connect(args.scaler).await?;
    // The activation stream is open before the block names the URL that wakes it.
    let mut zero = None;
    if args.zero {
        match Zero::new(&args, &model, &log_dir, &worker_bin, &mut client).await {
            Ok(z) => zero = Some(z),
            Err(e) => {
                let _ = stop_all(&mut children, GRACE).await;
                return Err(e);
            }
        }
    }
    print_block(&args, &model, &log_dir);
    let mut live = ui::Live::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(args.status_interval));
    let outcome = loop {
        tokio::select! {
            _ = tick.tick() => {
                let readings = status::read(&mut client, NAMESPACE).await;
                let waking = match &mut zero {
                    Some(z) => match z.tick(&readings, &mut live).await {
                        Ok(waking) => waking,
                        Err(e) => break Err(e),
                    },
                    None => false,
                };
                live.show(&status::render(&readings, waking.then_some("cpu")));
            }
            woke = wake_pushed(&mut zero) => {
                if let (Some(z), Err(_)) = (&mut zero, &woke) {
                    // The stream broke or ended: open it again (the status
                    // line already shows a scaler that does not answer).
                    z.reopen(&mut client).await;
                    continue;
                }
                if let Some(z) = &mut zero {
                    match z.wake(&mut live) {
                        Err(e) => break Err(e),
                        Ok(true) => {
                            // Shown at once: the next tick may already find the worker ready.
                            let readings = status::read(&mut client, NAMESPACE).await;
                            live.show(&status::render(&readings, Some("cpu")));
                        }
                        Ok(false) => {}
                    }
                }
            }
            _ = interrupt.recv() => break Ok(()),
            _ = terminate.recv() => break Ok(()),
            (name, status) = first_exit(&mut children) => {
                break Err(anyhow::anyhow!("{name} stopped unexpectedly ({status}); stopping the others"));
            }
        }
    };
    live.finish();
    ui::line("stopping worker, scaler and agent…");
    if let Some(worker) = zero.as_mut().and_then(Zero::take_worker) {
        children.insert(0, worker);
    }
    let stopped = stop_all(&mut children, GRACE).await;
    outcome?;
    stopped?;
    ui::line("stopped.");
    Ok(())
}

/// Starts agent, scaler and worker in turn, each ready before the next.
async fn start(
    args: &UpArgs,
    model: &Model,
    log_dir: &Path,
    [agent_bin, scaler_bin, worker_bin]: [&PathBuf; 3],
    children: &mut Vec<Child>,
) -> anyhow::Result<()> {
    let agent_args = vec![
        format!("--listen={}", args.agent),
        format!("--report-listen={}", args.report),
        // A laptop has neither; the agent would only log that they are absent.
        "--nvml-library=".to_owned(),
        "--neuron-monitor=".to_owned(),
        "--node-name=local".to_owned(),
    ];
    let mut agent = Child::spawn("edge-agent", agent_bin, &agent_args, &[], log_dir)?;
    agent.wait_ready(args.agent, "/readyz", Duration::from_secs(30)).await?;
    children.insert(0, agent);

    let scaler_args = vec![
        format!("--agents={}", args.agent),
        format!("--listen={}", args.scaler),
        format!("--metrics-listen={}", args.scaler_metrics),
    ];
    let mut scaler = Child::spawn("edge-scaler", scaler_bin, &scaler_args, &[], log_dir)?;
    scaler.wait_ready(args.scaler_metrics, "/healthz", Duration::from_secs(30)).await?;
    children.insert(0, scaler);

    if args.zero {
        return Ok(());
    }
    let worker_args = worker_args(args, model);
    let mut worker = Child::spawn("edge-inference", worker_bin, &worker_args, &[], log_dir)?;
    // Real weights take a while to map and warm up on a CPU.
    worker.wait_ready(args.api, "/readyz", Duration::from_secs(600)).await?;
    children.insert(0, worker);
    Ok(())
}

/// The worker's flags: the CPU Deployment's, reporting to the agent and
/// advertising its API in the inventory.
fn worker_args(args: &UpArgs, model: &Model) -> Vec<String> {
    let mut worker_args = vec![
        "serve".to_owned(),
        format!("--model-dir={}", model.dir.display()),
        format!("--listen={}", args.api),
        format!("--agent={}", args.report),
        // The CPU Deployment's worker: it computes on the CPU (whatever GPU backend this build
        // has) and so reports as cpu.
        "--device=cpu".to_owned(),
        "--accelerator=cpu".to_owned(),
        format!("--deployment={}", status::deployment("cpu")),
        format!("--namespace={NAMESPACE}"),
        "--worker-id=local-cpu-0".to_owned(),
        "--drain-timeout=15s".to_owned(),
        // So the scaler's endpoint inventory (/v1/endpoints) lists it, as in a cluster.
        format!("--advertise-url=http://{}", args.api),
    ];
    if model.tiny {
        // The tiny model draws noise at any size: keep requests small and quick.
        worker_args.extend(["--default-size=64x64".to_owned(), "--default-steps=20".to_owned()]);
    }
    worker_args
}

/// Resolves with the first child that exits; pending forever if there are none.
async fn first_exit(children: &mut [Child]) -> (&'static str, String) {
    if children.is_empty() {
        return std::future::pending().await;
    }
    let waits = children.iter_mut().map(|c| {
        Box::pin(async move {
            let status = c.exited().await.map_or_else(|e| e.to_string(), |s| s.to_string());
            (c.name(), format!("{status}: {}", c.last_log_line()))
        })
    });
    futures_select_all(waits).await
}

async fn futures_select_all<F: std::future::Future + Unpin>(futures: impl Iterator<Item = F>) -> F::Output {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(move |cx| {
        for f in futures.iter_mut() {
            if let std::task::Poll::Ready(v) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Every address must be free (and distinct) before anything starts, so a
/// clash is one clear line rather than a child's log.
fn check_ports(args: &UpArgs) -> anyhow::Result<()> {
    let ports = [
        ("api", args.api),
        ("agent", args.agent),
        ("report", args.report),
        ("scaler", args.scaler),
        ("scaler-metrics", args.scaler_metrics),
    ];
    for (i, (flag, addr)) in ports.iter().enumerate() {
        if let Some((other, _)) = ports[..i].iter().find(|(_, a)| a == addr) {
            bail!("--{flag} and --{other} are both {addr}: give each its own address");
        }
        if let Err(e) = std::net::TcpListener::bind(addr) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                bail!(
                    "{addr} is already in use (--{flag}): stop what listens there or pick another with --{flag} HOST:PORT"
                );
            }
            bail!("cannot listen on {addr} (--{flag}): {e}");
        }
    }
    Ok(())
}

/// A `--model-dir` must look like a diffusers checkout (the worker checks
/// every file; this catches a wrong path in one line before anything starts).
fn check_model_dir(dir: &Path) -> anyhow::Result<()> {
    let missing: Vec<&str> = ["text_encoder", "unet", "vae", "tokenizer", "scheduler"]
        .into_iter()
        .filter(|part| !dir.join(part).is_dir())
        .collect();
    if !dir.is_dir() {
        bail!("--model-dir {}: no such directory (expected a diffusers checkout)", dir.display());
    }
    if !missing.is_empty() {
        bail!("--model-dir {}: not a diffusers checkout, missing {}/", dir.display(), missing.join("/, "));
    }
    Ok(())
}

/// The model directory: `--model-dir`, or the cached tiny model, written on
/// first run.
async fn model(model_dir: Option<&Path>, worker_bin: &Path) -> anyhow::Result<Model> {
    if let Some(dir) = model_dir {
        return Ok(Model { dir: dir.to_owned(), tiny: false });
    }
    let dir = paths::cache_dir()?.join("models/tiny");
    if !dir.is_dir() {
        ui::line(&format!("writing a tiny random model to {} (first run only)…", dir.display()));
        let parent = dir.parent().context("the model directory has a parent")?;
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        // Written aside and renamed, so an interrupted first run never leaves half a model.
        let partial = parent.join(format!(".tiny-{}", std::process::id()));
        let out = tokio::process::Command::new(worker_bin)
            .arg("tiny-model")
            .arg(&partial)
            .output()
            .await
            .with_context(|| format!("cannot run {}", worker_bin.display()))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&partial);
            let err = String::from_utf8_lossy(&out.stderr);
            bail!("writing the tiny model failed: {}", err.lines().last().unwrap_or("no message").trim());
        }
        std::fs::rename(&partial, &dir).with_context(|| format!("cannot move the tiny model to {}", dir.display()))?;
    }
    Ok(Model { dir, tiny: true })
}

fn print_block(args: &UpArgs, model: &Model, log_dir: &Path) {
    let kind = if model.tiny { "tiny random model: images are noise" } else { "your weights" };
    let inventory = format!("http://{}/v1/endpoints?accelerator=cpu", args.scaler_metrics);
    let (headline, try_line) = if args.zero {
        (
            format!("edge-diffusion is up: agent and scaler, no worker yet (--zero; {kind})"),
            format!("  try          curl -s '{inventory}'   (a device's pull: wakes a worker)"),
        )
    } else {
        (
            format!("edge-diffusion is up: agent, scaler and a CPU worker ({kind})"),
            format!(
                "  try          curl -s http://{}/generate -d '{{\"prompt\": \"a lighthouse at dusk\"}}' -o out.png",
                args.api
            ),
        )
    };
    let block = [
        headline,
        format!("  image API    http://{}/generate   (OpenAI shape: /v1/images/generations)", args.api),
        format!(
            "  /metrics     http://{}/metrics   (agent)   http://{}/metrics   (scaler)",
            args.agent, args.scaler_metrics
        ),
        format!(
            "  KEDA gRPC    {}   (externalscaler.ExternalScaler; trigger acceleratorType=cpu, deployment=sd-cpu)",
            args.scaler
        ),
        format!("  inventory    {inventory}   (what devices pull)"),
        try_line,
        format!("  load         edge-diffusion load --url http://{} -n 20 -c 4", args.api),
        format!("  model, logs  {}   {}", model.dir.display(), log_dir.display()),
        "Ctrl-C stops everything.".to_owned(),
    ];
    for line in block {
        ui::line(&line);
    }
}

#[cfg(test)]
mod tests;
