//! AWS Neuron devices through `neuron-monitor`.
//!
//! The agent runs neuron-monitor as a child ([`child`]), asking it in a config
//! file for every metric group it maps, at the agent's interval. Each line of
//! the child's stdout is one JSON report ([`report`]); per-period counts are
//! added up into cumulative counters ([`totals`]). The ticker reads the latest
//! reading with [`NeuronCollector::latest`].
//!
//! Staleness: a reading older than [`stale_after`] (5 periods, at least 3 s)
//! is not served: cores, runtimes and devices drop out of the snapshot until
//! reports come again, so a dead child never leaves its last numbers on
//! dashboards. Brief restarts within that window keep the data.
//!
//! Health: `ABSENT` when disabled or not installed; `FAILING` while the child
//! is down or silent; otherwise `OK`. `errors` counts child exits, lines that
//! are not reports, and unusable parts of reports (runtime errors, missing,
//! failed or malformed metric groups).

mod child;
pub mod report;
pub mod totals;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_telemetry::proto::{CollectorState, NeuronCore, NeuronDevice, NeuronInstance, NeuronRuntime};
use tokio::task::JoinHandle;

use super::{Reading, health};

/// The collector's name in health entries and metrics.
pub const NAME: &str = edge_telemetry::view::CollectorName::Neuron.as_str();

/// What the latest neuron-monitor report says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NeuronReading {
    /// Every NeuronCore in use.
    pub cores: Vec<NeuronCore>,
    /// Every Neuron runtime.
    pub runtimes: Vec<NeuronRuntime>,
    /// ECC counters per Neuron device.
    pub devices: Vec<NeuronDevice>,
    /// The instance neuron-monitor runs on, when it could tell.
    pub instance: Option<NeuronInstance>,
}

/// How to run neuron-monitor.
#[derive(Debug, Clone)]
pub struct NeuronSettings {
    /// Program and arguments; None disables the collector.
    pub command: Option<Vec<String>>,
    /// Where to write the neuron-monitor config file.
    pub config_path: PathBuf,
    /// The period neuron-monitor should report at.
    pub period: Duration,
}

/// How long a reading is served without a newer report: five periods, and
/// never less than 3 s so a loaded node's late report does not blank data.
pub fn stale_after(period: Duration) -> Duration {
    (period * 5).max(Duration::from_secs(3))
}

/// Where the child stands.
#[derive(Debug)]
enum Phase {
    Disabled,
    Starting,
    Absent(String),
    Running { since: Instant },
    Down(String),
}

/// State shared by the supervising task and [`NeuronCollector::latest`].
#[derive(Debug)]
struct Shared {
    phase: Phase,
    totals: totals::Totals,
    last: Option<(Instant, NeuronReading)>,
    /// How long parsing and applying the last report took: this collector's
    /// run (the child does the reading on its own clock).
    last_duration: Duration,
    errors: u64,
    warnings: u64,
}

/// Runs neuron-monitor as a child and keeps its latest report.
pub struct NeuronCollector {
    shared: Arc<Mutex<Shared>>,
    stale_after: Duration,
    task: Option<JoinHandle<()>>,
}

impl NeuronCollector {
    /// Starts the child (if enabled) on the current tokio runtime.
    pub fn spawn(settings: NeuronSettings) -> Self {
        let command = settings.command.filter(|c| !c.is_empty() && !c[0].is_empty());
        let phase = if command.is_some() { Phase::Starting } else { Phase::Disabled };
        let shared = Arc::new(Mutex::new(Shared {
            phase,
            totals: totals::Totals::default(),
            last: None,
            last_duration: Duration::ZERO,
            errors: 0,
            warnings: 0,
        }));
        let task = command.map(|command| {
            let child = child::Child { command, config_path: settings.config_path, period: settings.period };
            tokio::spawn(child::supervise(child, Arc::clone(&shared)))
        });
        Self { shared, stale_after: stale_after(settings.period), task }
    }

    /// The latest report and the collector's health.
    pub fn latest(&self) -> Reading<NeuronReading> {
        let s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let fresh = s.last.as_ref().filter(|(at, _)| now.duration_since(*at) <= self.stale_after);
        let (state, message) = match &s.phase {
            Phase::Disabled => (CollectorState::Absent, "disabled (--neuron-monitor is empty)".to_owned()),
            Phase::Absent(m) => (CollectorState::Absent, m.clone()),
            Phase::Down(m) => (CollectorState::Failing, m.clone()),
            // Not known yet: on a CPU node the spawn is about to fail with
            // NotFound. Reporting Ok here made such a node's first CloudWatch
            // sample look like an inf2 node's.
            Phase::Starting => (CollectorState::Unspecified, "starting neuron-monitor".to_owned()),
            Phase::Running { since } => {
                let quiet_since = s.last.as_ref().map_or(*since, |(at, _)| (*at).max(*since));
                if fresh.is_none() && now.duration_since(quiet_since) > self.stale_after {
                    let d = humantime::format_duration(self.stale_after);
                    (CollectorState::Failing, format!("no report from neuron-monitor for more than {d}"))
                } else {
                    (CollectorState::Ok, String::new())
                }
            }
        };
        let value = match &s.phase {
            Phase::Disabled | Phase::Absent(_) => NeuronReading::default(),
            _ => fresh.map(|(_, r)| r.clone()).unwrap_or_default(),
        };
        let mut health = health(NAME, state, message, s.errors);
        health.last_duration_seconds = s.last_duration.as_secs_f64();
        Reading { value, health }
    }
}

impl Drop for NeuronCollector {
    /// Ends the supervising task; dropping it kills the child (`kill_on_drop`).
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The checked-in neuron-monitor fixtures (`agent/testdata/neuron-monitor/`).
#[cfg(test)]
mod fixtures {
    /// inf2.xlarge: one runtime on 2 cores, 6 reports, the first idle.
    pub const XLARGE: &str = include_str!("../../../testdata/neuron-monitor/inf2.xlarge.jsonl");
    /// inf2.48xlarge: 4 runtimes over 20 cores, 12 devices, 4 reports; one
    /// runtime is replaced by another between the second and third.
    pub const X48LARGE: &str = include_str!("../../../testdata/neuron-monitor/inf2.48xlarge.jsonl");
    /// Derived from inf2.xlarge: a runtime error with execution errors and ECC
    /// events beside it; null, missing and failed groups; no runtime at all.
    pub const FAULTS: &str = include_str!("../../../testdata/neuron-monitor/faults.jsonl");
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/neuron-monitor/fake-neuron-monitor");
    const XLARGE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/neuron-monitor/inf2.xlarge.jsonl");

    fn settings(command: Option<Vec<String>>, dir: &tempfile::TempDir) -> NeuronSettings {
        NeuronSettings { command, config_path: dir.path().join("monitor.json"), period: Duration::from_millis(100) }
    }

    /// The fake, through `env` so each test sets its own variables without
    /// touching this process's environment.
    fn fake(vars: &[(&str, String)]) -> Vec<String> {
        let mut c = vec!["env".to_owned()];
        c.extend(vars.iter().map(|(k, v)| format!("{k}={v}")));
        c.push(FAKE.to_owned());
        c
    }

    async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn state(r: &Reading<NeuronReading>) -> CollectorState {
        CollectorState::try_from(r.health.state).unwrap()
    }

    #[tokio::test]
    async fn disabled_is_absent_and_spawns_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = NeuronCollector::spawn(settings(None, &dir));
        let r = c.latest();
        assert_eq!(state(&r), CollectorState::Absent);
        assert!(r.health.message.contains("disabled"), "{}", r.health.message);
        assert!(c.task.is_none());
    }

    #[tokio::test]
    async fn a_missing_program_is_absent_not_failing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-neuron-monitor").display().to_string();
        let c = NeuronCollector::spawn(settings(Some(vec![missing.clone()]), &dir));
        // The supervising task has not run yet: the state is not known, so
        // neither "present" nor "absent".
        assert_eq!(state(&c.latest()), CollectorState::Unspecified);
        let r = until("absent", || Some(c.latest()).filter(|r| state(r) == CollectorState::Absent)).await;
        assert!(r.health.message.contains(&missing), "{}", r.health.message);
        assert_eq!(r.health.errors, 0);
        assert_eq!(r.value, NeuronReading::default());
    }

    #[tokio::test]
    async fn a_silent_child_stops_being_served_after_the_stale_bound() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("record.jsonl");
        // One report, then a minute of silence.
        let command = fake(&[
            ("FAKE_NEURON_FIXTURE", XLARGE_PATH.to_owned()),
            ("FAKE_NEURON_INTERVAL_MS", "60000".to_owned()),
            ("FAKE_NEURON_RECORD", record.display().to_string()),
        ]);
        let c = NeuronCollector::spawn(settings(Some(command), &dir));
        let r = until("the first report", || Some(c.latest()).filter(|r| r.value.cores.len() == 2)).await;
        assert_eq!(state(&r), CollectorState::Ok);
        assert!(r.health.last_duration_seconds > 0.0, "the report's parse time is the collector's run");
        assert_eq!(r.value.runtimes[0].tag, "2817");
        let started = Instant::now();
        let r = until("the reading to go stale", || Some(c.latest()).filter(|r| r.value.cores.is_empty())).await;
        assert!(started.elapsed() >= Duration::from_secs(2), "dropped too early");
        assert_eq!(state(&r), CollectorState::Failing);
        assert!(r.health.message.contains("no report"), "{}", r.health.message);
        assert!(r.value.runtimes.is_empty() && r.value.devices.is_empty());

        // The child got `-c <config>` and a config asking for our period.
        let line = std::fs::read_to_string(&record).unwrap();
        let rec: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        let config_path = dir.path().join("monitor.json").display().to_string();
        assert_eq!(rec["argv"], serde_json::json!(["-c", config_path]));
        assert_eq!(rec["config"]["period"], "100ms");

        // Dropping the collector kills the child.
        let pid = rec["pid"].as_u64().unwrap();
        drop(c);
        until("the child to die", || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting to be reaped.
            let state = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next());
            matches!(state, None | Some("Z" | "X")).then_some(())
        })
        .await;
    }
}
