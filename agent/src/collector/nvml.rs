//! NVIDIA GPUs through NVML (`nvml-wrapper`). Placeholder until the real
//! collector lands: reports the collector as absent.

use std::path::PathBuf;

use edge_telemetry::proto::{CollectorState, Gpu};

use super::{Reading, health};

/// Reads every GPU on the node through NVML.
pub struct NvmlCollector {
    library: Option<PathBuf>,
}

impl NvmlCollector {
    /// Loads NVML from `library` (None: disabled).
    pub fn new(library: Option<PathBuf>) -> Self {
        Self { library }
    }

    /// One pass over every GPU.
    pub fn collect(&mut self) -> Reading<Vec<Gpu>> {
        let msg = match &self.library {
            None => "disabled".to_owned(),
            Some(p) => format!("{} not loaded", p.display()),
        };
        Reading { value: Vec::new(), health: health("nvml", CollectorState::Absent, msg, 0) }
    }
}
