//! Collectors: each reads one source into its part of the node snapshot.
//!
//! Once per tick [`Ticker`] runs every collector and applies all results in
//! one snapshot update. Worker reports are the exception: they change the
//! snapshot the moment they arrive (see [`workers`]), so a queue waking up
//! reaches the scaler without waiting for a tick.
//!
//! "Not on this host" (no NVML library, neuron-monitor disabled, no kubelet) is
//! [`CollectorState::Absent`], not an error: a Neuron node has no NVML.

pub mod neuron;
pub mod nvml;
pub mod pod_resources;
pub mod procfs;
pub mod workers;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_telemetry::proto::{CollectorHealth, CollectorState};
use tokio::sync::watch;

use crate::snapshot::{SnapshotStore, collector_health};

/// What one collector run produced, with the collector's health.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading<T> {
    /// The collected values.
    pub value: T,
    /// The collector's state, message and error count (duration is set by the ticker).
    pub health: CollectorHealth,
}

/// A health entry for `collector` in `state`.
pub fn health(collector: &str, state: CollectorState, message: impl Into<String>, errors: u64) -> CollectorHealth {
    CollectorHealth {
        collector: collector.to_owned(),
        state: state as i32,
        message: message.into(),
        errors,
        last_duration_seconds: 0.0,
    }
}

/// Runs the periodic collectors and applies their readings to the store.
pub struct Ticker {
    /// NVML queries block in FFI, so they run on the blocking pool.
    pub nvml: Arc<Mutex<nvml::NvmlCollector>>,
    /// /proc reads, on the blocking pool with NVML.
    pub procfs: Arc<Mutex<procfs::ProcCollector>>,
    /// The neuron-monitor child's latest report.
    pub neuron: neuron::NeuronCollector,
    /// The kubelet's latest pod-to-device mapping.
    pub pod_resources: pod_resources::PodResourcesCollector,
    /// Expires silent workers.
    pub workers: workers::WorkerIntake,
    /// The snapshot to write.
    pub store: SnapshotStore,
}

impl Ticker {
    /// Collects once and applies the result.
    pub async fn tick(&self) {
        let nvml = Arc::clone(&self.nvml);
        let procfs = Arc::clone(&self.procfs);
        let blocking = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut gpus = nvml.lock().unwrap_or_else(|p| p.into_inner()).collect();
            gpus.health.last_duration_seconds = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let mut host = procfs.lock().unwrap_or_else(|p| p.into_inner()).collect();
            host.health.last_duration_seconds = started.elapsed().as_secs_f64();
            (gpus, host)
        })
        .await;
        let (gpus, host) = match blocking {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "collector task panicked");
                return;
            }
        };
        let neuron = self.neuron.latest();
        let holders = self.pod_resources.latest();
        self.workers.expire();
        self.store.update(|s| {
            s.gpus = gpus.value;
            set_health(s, gpus.health);
            s.host = Some(host.value);
            set_health(s, host.health);
            s.neuron_cores = neuron.value.cores;
            s.neuron_runtimes = neuron.value.runtimes;
            s.neuron_devices = neuron.value.devices;
            s.neuron_instance = neuron.value.instance;
            set_health(s, neuron.health);
            holders.value.apply(s);
            set_health(s, holders.health);
        });
    }

    /// Ticks every `interval` until `shutdown` flips to true.
    pub async fn run(self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.tick().await,
                _ = shutdown.changed() => break,
            }
        }
    }
}

fn set_health(snapshot: &mut edge_telemetry::proto::NodeSnapshot, health: CollectorHealth) {
    let entry = collector_health(snapshot, &health.collector.clone());
    *entry = health;
}
