//! `up --zero`: `up` plays KEDA's part. It holds the scaler's
//! `StreamIsActive` for the CPU Deployment, starts the worker when the scaler
//! pushes `true`, and stops it after `--cooldown` without work.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{GRACE, Model, NAMESPACE, UpArgs, worker_args};
use crate::children::Child;
use crate::{keda, status, ui};

/// Resolves with the next message of `--zero`'s activation stream; pending
/// forever without `--zero`.
pub(super) async fn wake_pushed(zero: &mut Option<Zero>) -> Result<(), tonic::Status> {
    match zero {
        Some(z) => z.next_push().await,
        None => std::future::pending().await,
    }
}

/// The worker `--zero` started, with what it is waiting for.
enum WorkerState {
    /// Started, not ready yet (the live line says `waking`).
    Waking { since: Instant },
    /// Ready; idle since when, if the scaler says inactive.
    Up { idle_since: Option<Instant> },
}

/// A worker slot that `up --zero` fills on activation and empties after the cooldown.
pub(super) struct Zero {
    stream: tonic::Streaming<keda::proto::IsActiveResponse>,
    worker: Option<(Child, WorkerState)>,
    spawn: WorkerSpawn,
    api: SocketAddr,
    cooldown: Duration,
}

/// What starting the worker takes.
struct WorkerSpawn {
    bin: PathBuf,
    args: Vec<String>,
    log_dir: PathBuf,
}

impl Zero {
    pub(super) async fn new(
        args: &UpArgs,
        model: &Model,
        log_dir: &Path,
        worker_bin: &Path,
        client: &mut keda::Client,
    ) -> anyhow::Result<Self> {
        let stream = open_stream(client).await.context("cannot open StreamIsActive on the scaler")?;
        Ok(Self {
            stream,
            worker: None,
            spawn: WorkerSpawn {
                bin: worker_bin.to_owned(),
                args: worker_args(args, model),
                log_dir: log_dir.to_owned(),
            },
            api: args.api,
            cooldown: Duration::from_secs_f64(args.cooldown),
        })
    }

    pub(super) async fn reopen(&mut self, client: &mut keda::Client) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(stream) = open_stream(client).await {
            self.stream = stream;
        }
    }

    pub(super) async fn next_push(&mut self) -> Result<(), tonic::Status> {
        match self.stream.message().await? {
            Some(r) if r.result => Ok(()),
            // `false` is never pushed; an ended stream (scaler stopping) is reopened.
            _ => Err(tonic::Status::unavailable("activation stream ended")),
        }
    }

    /// The scaler pushed `true`: start a worker unless one runs. Returns
    /// whether it started one.
    pub(super) fn wake(&mut self, live: &mut ui::Live) -> anyhow::Result<bool> {
        if self.worker.is_some() {
            return Ok(false);
        }
        live.finish();
        ui::line("woken: the scaler says cpu is active (StreamIsActive true); starting a worker…");
        let s = &self.spawn;
        let child = Child::spawn("edge-inference", &s.bin, &s.args, &[], &s.log_dir)?;
        self.worker = Some((child, WorkerState::Waking { since: Instant::now() }));
        Ok(true)
    }

    /// Follows the worker on every status tick; true while it is waking.
    pub(super) async fn tick(&mut self, readings: &[status::Reading], live: &mut ui::Live) -> anyhow::Result<bool> {
        let Some((child, state)) = &mut self.worker else { return Ok(false) };
        if let Some(exit) = child.try_exited() {
            bail!("the woken worker exited ({exit}): {}", child.last_log_line());
        }
        match state {
            WorkerState::Waking { since } => {
                let ready = matches!(
                    crate::http::get(self.api, "/readyz", Duration::from_secs(1)).await,
                    Ok(r) if r.status == 200
                );
                if ready {
                    live.finish();
                    ui::line(&format!(
                        "worker ready after {:.1}s at http://{} (the inventory lists it; the demand clears)",
                        since.elapsed().as_secs_f64(),
                        self.api
                    ));
                    *state = WorkerState::Up { idle_since: None };
                    return Ok(false);
                }
                Ok(true)
            }
            WorkerState::Up { idle_since } => {
                let active = readings
                    .iter()
                    .find(|r| r.accelerator == "cpu")
                    .is_some_and(|r| r.value.as_ref().map_or(true, |v| v.2));
                if active {
                    *idle_since = None;
                    return Ok(false);
                }
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.cooldown {
                    live.finish();
                    ui::line(&format!(
                        "idle for {:.0}s (--cooldown): stopping the worker, back to zero",
                        self.cooldown.as_secs_f64()
                    ));
                    let (mut child, _) = self.worker.take().expect("a worker");
                    child.stop(GRACE).await?;
                    ui::line("no worker: the next pull of the inventory URL wakes one");
                }
                Ok(false)
            }
        }
    }

    pub(super) fn take_worker(&mut self) -> Option<Child> {
        self.worker.take().map(|(c, _)| c)
    }
}

/// The activation stream `--zero` waits on: the CPU Deployment's backlog
/// trigger, as the chart's ScaledObject declares it.
async fn open_stream(
    client: &mut keda::Client,
) -> Result<tonic::Streaming<keda::proto::IsActiveResponse>, tonic::Status> {
    let object = keda::trigger(NAMESPACE, &status::deployment("cpu"), "cpu", "backlog");
    Ok(client.stream_is_active(object).await?.into_inner())
}
