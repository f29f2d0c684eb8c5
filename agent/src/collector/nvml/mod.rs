//! NVIDIA GPUs through NVML (`nvml-wrapper`).
//!
//! The library is loaded once and kept across ticks. Health of the `nvml`
//! collector:
//! * disabled (`--nvml-library ""`), or the library cannot be opened, or it
//!   says there is no driver: **absent** — a Neuron or CPU node has no NVML,
//!   and that is not an error. Loading is retried every
//!   [`LOAD_RETRY_INTERVAL`], because the GPU operator may install the driver
//!   after the agent started.
//! * the library opens but `nvmlInit` fails otherwise (version mismatch, no
//!   permission): **failing**, and counted.
//! * any GPU unhealthy (fell off the bus, its handle or UUID cannot be read,
//!   NVML stopped enumerating it): **failing**, the message names the GPUs;
//!   the other GPUs keep reporting.
//!
//! `errors` counts every failed query (not `NotSupported`) since start; see
//! [`query`] for what each NVML answer means. A GPU in MIG mode also lists
//! its MIG devices ([`mig`]), each with its GPU instance id, profile, memory
//! and graphics-engine activity (GPM).

mod device;
mod mig;
mod query;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use edge_telemetry::proto::{CollectorState, Gpu};
use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use self::device::Identity;
use super::{Reading, health};

/// The collector's name in the snapshot's health list.
pub const NAME: &str = edge_telemetry::view::CollectorName::Nvml.as_str();

/// How long to wait before trying to load a library that failed to load.
pub const LOAD_RETRY_INTERVAL: Duration = Duration::from_secs(60);

/// Reads every GPU on the node through NVML.
pub struct NvmlCollector {
    library: Option<PathBuf>,
    nvml: Option<Nvml>,
    retry_interval: Duration,
    /// When loading was last tried, and how it failed.
    last_load: Option<(Instant, LoadFailure)>,
    load_attempts: u64,
    /// Identity per GPU index, from the last tick that could read it.
    identities: BTreeMap<u32, Identity>,
    /// GPM samples of MIG instances, kept from tick to tick.
    gpm: mig::Samples,
    /// Per GPU index, the problem last logged, so a lasting one logs once.
    logged: BTreeMap<u32, String>,
    errors: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct LoadFailure {
    state: CollectorState,
    message: String,
}

impl NvmlCollector {
    /// Loads NVML from `library` (None: disabled) on the first collection.
    pub fn new(library: Option<PathBuf>) -> Self {
        Self {
            library,
            nvml: None,
            retry_interval: LOAD_RETRY_INTERVAL,
            last_load: None,
            load_attempts: 0,
            identities: BTreeMap::new(),
            gpm: mig::Samples::default(),
            logged: BTreeMap::new(),
            errors: 0,
        }
    }

    /// One pass over every GPU.
    pub fn collect(&mut self) -> Reading<Vec<Gpu>> {
        if self.library.is_none() {
            return self.reading(Vec::new(), CollectorState::Absent, "disabled".to_owned());
        }
        if self.nvml.is_none() {
            self.load();
        }
        if self.nvml.is_none() {
            let (state, message) = match &self.last_load {
                Some((_, failure)) => (failure.state, failure.message.clone()),
                None => (CollectorState::Absent, "NVML not loaded".to_owned()),
            };
            return self.reading(Vec::new(), state, message);
        }
        let gpus = self.read_gpus();
        self.log_changes(&gpus);
        let broken: Vec<String> = gpus
            .iter()
            .filter(|g| !g.healthy)
            .map(|g| match g.uuid.as_str() {
                "" => format!("gpu {}: {}", g.index, g.error),
                uuid => format!("gpu {} ({uuid}): {}", g.index, g.error),
            })
            .collect();
        if broken.is_empty() {
            self.reading(gpus, CollectorState::Ok, String::new())
        } else {
            self.reading(gpus, CollectorState::Failing, broken.join("; "))
        }
    }

    fn reading(&self, gpus: Vec<Gpu>, state: CollectorState, message: String) -> Reading<Vec<Gpu>> {
        Reading { value: gpus, health: health(NAME, state, message, self.errors) }
    }

    /// Tries to load the library, at most once per retry interval.
    fn load(&mut self) {
        let Some(library) = &self.library else { return };
        if self.last_load.as_ref().is_some_and(|(at, _)| at.elapsed() < self.retry_interval) {
            return;
        }
        self.load_attempts += 1;
        let failure = match Nvml::builder().lib_path(library.as_os_str()).init() {
            Ok(nvml) => {
                let count = nvml.device_count().ok();
                let driver = nvml.sys_driver_version().ok();
                tracing::info!(library = %library.display(), gpus = ?count, driver = ?driver, "NVML loaded");
                self.nvml = Some(nvml);
                self.last_load = None;
                return;
            }
            Err(e) => load_failure(library, &e),
        };
        let repeated = self.last_load.as_ref().is_some_and(|(_, last)| *last == failure);
        if failure.state == CollectorState::Failing {
            self.errors += 1;
        }
        if repeated {
            tracing::debug!(attempt = self.load_attempts, "{}", failure.message);
        } else if failure.state == CollectorState::Absent {
            tracing::info!(retry_every = ?self.retry_interval, "{}; GPU metrics off", failure.message);
        } else {
            tracing::warn!(retry_every = ?self.retry_interval, "{}; GPU metrics off", failure.message);
        }
        self.last_load = Some((Instant::now(), failure));
    }

    fn read_gpus(&mut self) -> Vec<Gpu> {
        let Some(nvml) = &self.nvml else { return Vec::new() };
        let count = match nvml.device_count() {
            Ok(n) => n,
            Err(e) => {
                // Nothing can be read; GPUs seen before stay listed, unhealthy.
                self.errors += 1;
                let reason = format!("device count: {e}");
                return self.identities.iter().map(|(&i, id)| id.unhealthy(i, reason.clone())).collect();
            }
        };
        let mut gpus = Vec::with_capacity(count as usize);
        for index in 0..count {
            let reading = device::read(nvml, index, self.identities.get(&index));
            self.errors += reading.queries.errors;
            if !reading.queries.failed.is_empty() {
                tracing::debug!(gpu = index, failed = ?reading.queries.failed, "GPU queries failed");
            }
            if let Some(identity) = reading.identity {
                self.identities.insert(index, identity);
            }
            let mut gpu = reading.gpu;
            if gpu.healthy
                && let Ok(parent) = nvml.device_by_index(index)
            {
                let mut q = query::Queries::default();
                gpu.mig_instances = mig::read(nvml, &parent, index, &mut self.gpm, &mut q);
                self.errors += q.errors;
                if !q.failed.is_empty() {
                    tracing::debug!(gpu = index, failed = ?q.failed, "MIG queries failed");
                }
            }
            gpus.push(gpu);
        }
        // A GPU NVML no longer lists (after a reset or unbind) stays visible
        // as unhealthy rather than silently vanishing from the dashboards.
        for (&index, id) in self.identities.range(count..) {
            gpus.push(id.unhealthy(index, "no longer listed by NVML".to_owned()));
        }
        gpus
    }

    /// One log line when a GPU fails or recovers, not one per tick.
    fn log_changes(&mut self, gpus: &[Gpu]) {
        for g in gpus {
            if g.healthy {
                if self.logged.remove(&g.index).is_some() {
                    tracing::info!(gpu = g.index, uuid = %g.uuid, "GPU answers again");
                }
            } else if self.logged.get(&g.index) != Some(&g.error) {
                tracing::warn!(gpu = g.index, uuid = %g.uuid, error = %g.error, "GPU failed; its values are left out");
                self.logged.insert(g.index, g.error.clone());
            }
        }
    }
}

impl Drop for NvmlCollector {
    fn drop(&mut self) {
        // GPM samples belong to the library: freed before it shuts down.
        if let Some(nvml) = &self.nvml {
            self.gpm.free_all(nvml);
        }
    }
}

/// Absent when there is no NVML or no driver on this node; failing when
/// there is one and it does not work.
fn load_failure(library: &std::path::Path, e: &NvmlError) -> LoadFailure {
    match e {
        // libloading's message names the path and why dlopen refused it.
        NvmlError::LibloadingError(e) => {
            LoadFailure { state: CollectorState::Absent, message: format!("no NVML library: {e}") }
        }
        NvmlError::DriverNotLoaded | NvmlError::LibraryNotFound => LoadFailure {
            state: CollectorState::Absent,
            message: format!("no NVIDIA driver behind {}: {e}", library.display()),
        },
        _ => LoadFailure {
            state: CollectorState::Failing,
            message: format!("NVML from {} failed to initialise: {e}", library.display()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(r: &Reading<Vec<Gpu>>) -> CollectorState {
        CollectorState::try_from(r.health.state).unwrap()
    }

    #[test]
    fn disabled_is_absent() {
        let r = NvmlCollector::new(None).collect();
        assert_eq!((state(&r), r.health.message.as_str(), r.value.len()), (CollectorState::Absent, "disabled", 0));
        assert_eq!(r.health.collector, "nvml");
    }

    #[test]
    fn a_missing_library_is_absent_not_an_error_and_retried_only_after_the_interval() {
        let mut c = NvmlCollector::new(Some(PathBuf::from("/nonexistent/libnvidia-ml.so.1")));
        let r = c.collect();
        assert_eq!(state(&r), CollectorState::Absent);
        assert!(r.health.message.contains("/nonexistent/libnvidia-ml.so.1"), "{}", r.health.message);
        assert_eq!((r.health.errors, r.value.len()), (0, 0));
        c.collect();
        assert_eq!(c.load_attempts, 1, "retried before the interval");
        c.retry_interval = Duration::ZERO;
        let r = c.collect();
        assert_eq!((c.load_attempts, state(&r)), (2, CollectorState::Absent));
    }

    #[test]
    fn load_failures_are_absent_only_without_nvml_or_driver() {
        let lib = std::path::Path::new("libnvidia-ml.so.1");
        assert_eq!(load_failure(lib, &NvmlError::DriverNotLoaded).state, CollectorState::Absent);
        let f = load_failure(lib, &NvmlError::LibRmVersionMismatch);
        assert_eq!(f.state, CollectorState::Failing);
        assert!(f.message.starts_with("NVML from libnvidia-ml.so.1 failed to initialise: "), "{}", f.message);
    }
}
