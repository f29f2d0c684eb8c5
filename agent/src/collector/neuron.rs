//! AWS Neuron devices through `neuron-monitor`. Placeholder until the real
//! collector lands: reports the collector as absent.

use std::path::PathBuf;

use edge_telemetry::proto::{CollectorState, NeuronCore, NeuronDevice, NeuronRuntime};

use super::{Reading, health};

/// What the latest neuron-monitor report says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NeuronReading {
    /// Every NeuronCore in use.
    pub cores: Vec<NeuronCore>,
    /// Every Neuron runtime.
    pub runtimes: Vec<NeuronRuntime>,
    /// ECC counters per Neuron device.
    pub devices: Vec<NeuronDevice>,
}

/// How to run neuron-monitor.
#[derive(Debug, Clone)]
pub struct NeuronSettings {
    /// Program and arguments; None disables the collector.
    pub command: Option<Vec<String>>,
    /// Where to write the neuron-monitor config file.
    pub config_path: PathBuf,
    /// The period neuron-monitor should report at.
    pub period: std::time::Duration,
}

/// Runs neuron-monitor as a child and keeps its latest report.
pub struct NeuronCollector {
    settings: NeuronSettings,
}

impl NeuronCollector {
    /// Starts the child (if enabled) on the current tokio runtime.
    pub fn spawn(settings: NeuronSettings) -> Self {
        Self { settings }
    }

    /// The latest report and the collector's health.
    pub fn latest(&self) -> Reading<NeuronReading> {
        let msg = if self.settings.command.is_none() { "disabled" } else { "not implemented" };
        Reading { value: NeuronReading::default(), health: health("neuron", CollectorState::Absent, msg, 0) }
    }
}
