//! What `serve` and `proxy` share around their routers: the listener (with
//! TCP_NODELAY), reports to the node agent, and on SIGTERM/SIGINT closing the
//! queue and draining what was accepted within `--drain-timeout`.

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt;
use edge_telemetry::WorkerReport;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{QueueArgs, ReportArgs};
use crate::queue::Queue;

/// A serving HTTP listener in front of a queue, until [`Daemon::drain_on_signal`].
pub struct Daemon {
    server: JoinHandle<std::io::Result<()>>,
    stop: watch::Sender<bool>,
    reporter: Option<JoinHandle<()>>,
    queue: Queue,
    drain_timeout: Duration,
}

impl Daemon {
    /// Binds `--listen` and serves `router` on it.
    pub async fn start(args: &QueueArgs, router: Router, queue: Queue) -> anyhow::Result<Self> {
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("--listen {}", args.listen))?;
        tracing::info!(listen = %args.listen, "listening");
        let (stop, mut stop_rx) = watch::channel(false);
        let server = tokio::spawn(async move {
            // TCP_NODELAY (axum leaves Nagle on): a response written in more
            // than one piece must not wait for the client's delayed ACK.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                })
                .await
        });
        Ok(Self { server, stop, reporter: None, queue, drain_timeout: args.drain_timeout })
    }

    /// Starts reporting the queue to `--agent`, if set.
    pub fn report(&mut self, args: &ReportArgs, template: WorkerReport) {
        self.reporter = args.agent.clone().map(|agent| {
            tracing::info!(agent = %agent, worker_id = %template.worker_id, "reporting to the node agent");
            tokio::spawn(crate::report::run(agent, template, self.queue.subscribe(), args.report_interval))
        });
    }

    /// Waits for SIGTERM or SIGINT, then stops intake (the queue closes, so
    /// reports withdraw the endpoint; `on_stop` turns readiness off), lets
    /// queued and running requests finish, and returns. An error when the
    /// drain timeout passes with work left.
    pub async fn drain_on_signal(self, on_stop: impl FnOnce()) -> anyhow::Result<()> {
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        let counts = self.queue.counts();
        tracing::info!(queued = counts.queued, in_flight = counts.in_flight, "stopping: no new work, draining");
        self.queue.close();
        on_stop();
        let _ = self.stop.send(true);

        let drained = tokio::time::timeout(self.drain_timeout, self.server).await;
        if let Some(r) = self.reporter {
            r.abort();
        }
        match drained {
            Ok(Ok(Ok(()))) => {
                tracing::info!("drained; exiting");
                Ok(())
            }
            Ok(Ok(Err(e))) => Err(e).context("HTTP server"),
            Ok(Err(e)) => Err(e).context("HTTP server task"),
            Err(_) => {
                let c = self.queue.counts();
                anyhow::bail!(
                    "drain timeout of {:?} passed with {} queued and {} running requests left",
                    self.drain_timeout,
                    c.queued,
                    c.in_flight
                )
            }
        }
    }
}
