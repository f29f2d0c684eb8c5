//! The real `edge-agent` binary running the fake neuron-monitor
//! (`testdata/neuron-monitor/fake-neuron-monitor`, a real child process that
//! replays the checked-in fixtures): reports reach /metrics under
//! neuron-monitor-prometheus's names, a dying child is restarted, garbage is
//! counted, a missing program is absent, and the child dies with the agent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_testkit::{Agent, AgentBuilder, eventually, sample_with};
use serde_json::Value;

const FAKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/neuron-monitor/fake-neuron-monitor");
const WAIT: Duration = Duration::from_secs(40);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/neuron-monitor").join(name)
}

struct Run {
    agent: Agent,
    dir: tempfile::TempDir,
}

impl Run {
    /// An agent whose --neuron-monitor is `command`, replaying `fixture_name`.
    fn start(command: &str, fixture_name: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut builder = AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent"))
            .flag("neuron-monitor", command)
            .flag("neuron-monitor-config", dir.path().join("monitor.json").display().to_string())
            .env("FAKE_NEURON_FIXTURE", fixture(fixture_name).display().to_string())
            .env("FAKE_NEURON_RECORD", dir.path().join("record.jsonl").display().to_string());
        for (k, v) in env {
            builder = builder.env(k, *v);
        }
        Self { agent: builder.start(), dir }
    }

    /// One JSON line per start of the fake: its pid, argv and config.
    fn starts(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("record.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record line"))
            .collect()
    }
}

fn neuron(metrics: &str, name: &str) -> Option<f64> {
    sample_with(metrics, name, &[("collector", "neuron")])
}

/// Per fixture line: (runtime tag, core index, utilisation ratio) of every core.
fn expected_cores(fixture_name: &str) -> Vec<Vec<(String, String, f64)>> {
    let text = std::fs::read_to_string(fixture(fixture_name)).expect("fixture");
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("fixture line");
            let mut cores = Vec::new();
            for rt in v["neuron_runtime_data"].as_array().expect("runtimes") {
                let tag = rt["neuron_runtime_tag"].as_str().expect("tag").to_owned();
                let in_use = rt["report"]["neuroncore_counters"]["neuroncores_in_use"].as_object().expect("cores");
                for (index, data) in in_use {
                    let ratio = data["neuroncore_utilization"].as_f64().expect("utilization") / 100.0;
                    cores.push((tag.clone(), index.clone(), ratio));
                }
            }
            cores
        })
        .collect()
}

/// Polls /metrics until every line of the fixture has been seen there (every
/// core of the line at that line's utilisation), checking `each` per scrape.
fn every_line_reaches_metrics(run: &Run, fixture_name: &str, mut each: impl FnMut(&str)) {
    let lines = expected_cores(fixture_name);
    let mut seen = vec![false; lines.len()];
    eventually(WAIT, &format!("every line of {fixture_name} on /metrics"), || {
        let metrics = run.agent.metrics();
        each(&metrics);
        for (i, cores) in lines.iter().enumerate() {
            seen[i] |= cores.iter().all(|(tag, index, ratio)| {
                let got = sample_with(
                    &metrics,
                    "neuroncore_utilization_ratio",
                    &[("runtime_tag", tag), ("neuroncore", index)],
                );
                got.is_some_and(|g| (g - ratio).abs() < 1e-9)
            });
        }
        seen.iter().all(|s| *s).then_some(())
    });
}

#[test]
fn every_inf2_xlarge_report_reaches_metrics_and_counters_accumulate() {
    // Three agent ticks per report, so no report is overwritten unseen.
    let run = Run::start(FAKE, "inf2.xlarge.jsonl", &[("FAKE_NEURON_INTERVAL_MS", "600")]);
    let mut last_completed = 0.0;
    every_line_reaches_metrics(&run, "inf2.xlarge.jsonl", |m| {
        let labels = [("runtime_tag", "2817"), ("status_type", "completed")];
        if let Some(c) = sample_with(m, "execution_status_total", &labels) {
            assert!(c >= last_completed, "completed went down from {last_completed} to {c}");
            last_completed = c;
        }
    });
    // Cumulative: at least one full pass of the fixture (0+412+731+1016+1042+533).
    eventually(WAIT, "a full pass of completed executions", || {
        let m = run.agent.metrics();
        let c = sample_with(&m, "execution_status_total", &[("runtime_tag", "2817"), ("status_type", "completed")])?;
        (c >= 3734.0).then_some(())
    });
    let m = run.agent.metrics();
    let rt = [("instance_id", "i-0a1b2c3d4e5f60718"), ("availability_zone", "us-east-2b"), ("runtime_tag", "2817")];
    assert!(
        sample_with(&m, "neuron_runtime_memory_used_bytes", &[rt[0], rt[2], ("memory_location", "neuron_device")])
            .is_some()
    );
    assert!(sample_with(&m, "neuron_runtime_vcpu_usage_ratio", &[rt[1], rt[2], ("usage_type", "system")]).is_some());
    let per_core = [rt[2], ("memory_location", "None"), ("neuroncore", "1")];
    assert_eq!(sample_with(&m, "neuroncore_memory_usage_constants", &per_core), Some(1_342_177_280.0), "{m}");
    let ecc = [("event_type", "sram_ecc_uncorrected"), ("neuron_device_index", "0")];
    assert_eq!(sample_with(&m, "hardware_ecc_events_total", &ecc), Some(0.0));
    assert_eq!(neuron(&m, "edge_collector_up"), Some(1.0), "{m}");
    assert_eq!(neuron(&m, "edge_collector_errors_total"), Some(0.0), "the real fixture has no problems");

    // The agent wrote the config it asked for and passed it with -c.
    let starts = run.starts();
    assert_eq!(starts.len(), 1, "one start, no restarts: {starts:?}");
    let config = run.dir.path().join("monitor.json").display().to_string();
    assert_eq!(starts[0]["argv"], serde_json::json!(["-c", config]));
    assert_eq!(starts[0]["config"]["period"], "200ms", "the agent's --interval");
}

#[test]
fn every_inf2_48xlarge_report_reaches_metrics() {
    let run = Run::start(FAKE, "inf2.48xlarge.jsonl", &[("FAKE_NEURON_INTERVAL_MS", "600")]);
    every_line_reaches_metrics(&run, "inf2.48xlarge.jsonl", |_| {});
    let m = run.agent.metrics();
    let cores = m.lines().filter(|l| l.starts_with("neuroncore_utilization_ratio{")).count();
    assert_eq!(cores, 20, "{m}");
    let devices = m.lines().filter(|l| l.starts_with("hardware_ecc_events_total{")).count();
    assert_eq!(devices, 12 * 4, "four event types per device");
    let p99 = sample_with(&m, "execution_latency_seconds", &[("runtime_tag", "embedder"), ("percentile", "p99")]);
    assert!(p99.is_some_and(|v| v > 0.009 && v < 0.012), "embedder p99 {p99:?}");
    assert!(sample_with(&m, "neuroncore_utilization_ratio", &[("instance_type", "inf2.48xlarge")]).is_some());
}

#[test]
fn a_child_that_dies_is_restarted_and_its_data_resumes() {
    // Each run: two reports (0 and 412 completed executions), then exit 3.
    let env = [("FAKE_NEURON_EXIT_AFTER", "2"), ("FAKE_NEURON_INTERVAL_MS", "100")];
    let run = Run::start(FAKE, "inf2.xlarge.jsonl", &env);
    eventually(WAIT, "three runs' executions", || {
        let m = run.agent.metrics();
        let c = sample_with(&m, "execution_status_total", &[("runtime_tag", "2817"), ("status_type", "completed")])?;
        (c >= 3.0 * 412.0).then_some(())
    });
    assert!(run.starts().len() >= 3, "{:?}", run.starts());
    let m = run.agent.metrics();
    assert!(neuron(&m, "edge_collector_errors_total").is_some_and(|e| e >= 2.0), "exits are counted: {m}");
    assert!(run.agent.log().contains("neuron-monitor is down; restarting"), "{}", run.agent.log());
}

#[test]
fn garbage_lines_are_counted_and_skipped() {
    // The command has arguments: --neuron-monitor is split on whitespace.
    let command = format!("python3 {FAKE}");
    let env = [("FAKE_NEURON_GARBAGE", "1"), ("FAKE_NEURON_INTERVAL_MS", "100")];
    let run = Run::start(&command, "inf2.xlarge.jsonl", &env);
    let m = eventually(WAIT, "garbage counted next to good data", || {
        let m = run.agent.metrics();
        let errors = neuron(&m, "edge_collector_errors_total")?;
        let cores = sample_with(&m, "neuroncore_utilization_ratio", &[("neuroncore", "1")]);
        (errors >= 5.0 && cores.is_some()).then_some(m)
    });
    assert_eq!(neuron(&m, "edge_collector_up"), Some(1.0), "bad lines do not fail the collector: {m}");
    assert_eq!(run.starts().len(), 1, "garbage does not restart the child");
}

#[test]
fn runtime_errors_and_failed_groups_keep_the_rest() {
    let run = Run::start(FAKE, "faults.jsonl", &[("FAKE_NEURON_INTERVAL_MS", "100")]);
    let m = eventually(WAIT, "errors and ECC events of the fault fixture", || {
        let m = run.agent.metrics();
        let hw = sample_with(&m, "execution_errors_total", &[("runtime_tag", "2817"), ("error_type", "hardware")])?;
        let ecc = sample_with(&m, "hardware_ecc_events_total", &[("event_type", "mem_ecc_corrected")])?;
        // Each pass: one runtime error + four failed or missing groups.
        let errors = neuron(&m, "edge_collector_errors_total")?;
        (hw >= 2.0 && ecc >= 4.0 && errors >= 5.0).then_some(m)
    });
    let crashed: Vec<&str> = m.lines().filter(|l| l.contains("runtime_tag=\"crashed-app\"")).collect();
    assert!(crashed.is_empty(), "a runtime neuron-monitor could not read has no series: {crashed:?}");
}

#[test]
fn a_missing_neuron_monitor_is_absent_and_the_agent_still_serves() {
    let run = Run::start("/nonexistent/neuron-monitor --verbose 0", "inf2.xlarge.jsonl", &[]);
    let m = eventually(WAIT, "the neuron collector marked absent", || {
        let m = run.agent.metrics();
        (neuron(&m, "edge_collector_absent") == Some(1.0)).then_some(m)
    });
    assert_eq!(neuron(&m, "edge_collector_up"), Some(0.0));
    assert_eq!(neuron(&m, "edge_collector_errors_total"), Some(0.0), "absent is not an error");
    assert!(!m.contains("neuroncore_utilization_ratio"), "{m}");
    assert!(m.contains("edge_agent_snapshot_changes_total"), "{m}");
    let log = run.agent.log();
    assert_eq!(log.matches("neuron-monitor not found").count(), 1, "one clear line: {log}");
}

#[test]
fn the_child_dies_with_the_agent() {
    let run = Run::start(FAKE, "inf2.xlarge.jsonl", &[]);
    let pid = eventually(WAIT, "the fake to start", || run.starts().first().and_then(|s| s["pid"].as_u64()));
    eventually(WAIT, "a report", || run.agent.metrics().contains("neuroncore_utilization_ratio").then_some(()));
    let Run { agent, dir: _dir } = run;
    assert!(agent.terminate().success());
    eventually(WAIT, "the fake to be gone", || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie its new parent has not reaped yet.
        let state = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next());
        matches!(state, None | Some("Z" | "X")).then_some(())
    });
}
