//! The NVML collector end to end: the real `edge-agent` binary loads the fake
//! `libnvidia-ml.so` (`testkit/fake-nvml`) through nvml-wrapper's real
//! `dlopen` path, and the tests read `/metrics` and the gRPC feed.
//!
//! Needs `cargo build --workspace` (or `-p fake-nvml`) first, as `scripts/test` does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_telemetry::proto::{CollectorHealth, CollectorState, Gpu, NodeSnapshot};
use edge_testkit::fake_nvml::{CONFIG_ENV, Config};
use edge_testkit::{Agent, AgentBuilder, eventually, fake_nvml_library, sample};

const WAIT: Duration = Duration::from_secs(20);
const MIB: u64 = 1024 * 1024;

fn start(config: &Path) -> Agent {
    AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent"))
        .flag("nvml-library", fake_nvml_library().display().to_string())
        .env(CONFIG_ENV, config.display().to_string())
        .start()
}

fn config_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("nvml.json")
}

/// dcgm-exporter's label set for the fake's GPU `i`.
fn labels(nvml: &Config, i: usize) -> String {
    format!(
        r#"gpu="{i}",UUID="{}",pci_bus_id="00000000:{:02X}:00.0",device="nvidia{i}",modelName="NVIDIA A10G",Hostname="test-node""#,
        nvml.gpus[i].uuid(),
        0x10 + i
    )
}

/// The value of `metric{labels}` on `/metrics`, if the series is there.
fn series(metrics: &str, metric: &str, labels: &str) -> Option<f64> {
    sample(metrics, &format!("{metric}{{{labels}}}"))
}

fn collector(metrics: &str, metric: &str) -> Option<f64> {
    sample(metrics, &format!(r#"{metric}{{collector="nvml"}}"#))
}

/// Waits until every GPU of `nvml` reports its utilisation on `/metrics`.
fn wait_for_gpus(agent: &Agent, nvml: &Config) -> String {
    eventually(WAIT, "every GPU on /metrics", || {
        let m = agent.metrics();
        (0..nvml.gpus.len()).all(|i| series(&m, "DCGM_FI_DEV_GPU_UTIL", &labels(nvml, i)).is_some()).then_some(m)
    })
}

/// The first snapshot on the gRPC feed that satisfies `done`, within [`WAIT`].
fn feed_until(agent: &Agent, done: impl FnMut(&NodeSnapshot) -> bool) -> NodeSnapshot {
    agent.snapshot_until(WAIT, done)
}

/// The GPUs of the first snapshot on the feed whose GPUs satisfy `done`.
fn feed_gpus(agent: &Agent, done: impl Fn(&[Gpu]) -> bool) -> Vec<Gpu> {
    feed_until(agent, |s| done(&s.gpus)).gpus
}

/// A snapshot taken after `ticks` more changes (each tick changes at least
/// the collectors' durations); heartbeats repeat a sequence and do not count.
fn feed_after_ticks(agent: &Agent, ticks: usize) -> NodeSnapshot {
    let mut seen = std::collections::BTreeSet::new();
    feed_until(agent, |s| {
        seen.insert(s.sequence);
        seen.len() > ticks
    })
}

fn nvml_health(snapshot: &NodeSnapshot) -> CollectorHealth {
    snapshot.collectors.iter().find(|c| c.collector == "nvml").cloned().expect("nvml in the health list")
}

#[test]
fn two_gpus_report_every_value_under_dcgm_exporter_names() {
    let dir = tempfile::tempdir().unwrap();
    let nvml = Config::with_gpus(2);
    nvml.write(&config_path(&dir));
    let agent = start(&config_path(&dir));
    let m = wait_for_gpus(&agent, &nvml);

    for i in 0..2u32 {
        let l = labels(&nvml, i as usize);
        let f = f64::from(i);
        let expected = [
            ("DCGM_FI_DEV_GPU_UTIL", 10.0 + f),
            ("DCGM_FI_DEV_MEM_COPY_UTIL", 5.0 + f),
            ("DCGM_FI_DEV_ENC_UTIL", 1.0 + f),
            ("DCGM_FI_DEV_DEC_UTIL", 2.0 + f),
            ("DCGM_FI_DEV_FB_USED", 1024.0 + f),
            ("DCGM_FI_DEV_FB_FREE", 23_028.0 - 300.0 - 1024.0 - f),
            ("DCGM_FI_DEV_FB_TOTAL", 23_028.0),
            ("DCGM_FI_DEV_POWER_USAGE", 60.5 + f),
            ("DCGM_FI_DEV_GPU_TEMP", 40.0 + f),
            ("DCGM_FI_DEV_SM_CLOCK", 1710.0 - f),
            ("DCGM_FI_DEV_MEM_CLOCK", 6251.0 - f),
            ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1_000_000.0 * (f + 1.0)),
            ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", f),
        ];
        for (metric, value) in expected {
            assert_eq!(series(&m, metric, &l), Some(value), "{metric} of GPU {i}:\n{m}");
        }
        let healthy = format!(r#"edge_gpu_healthy{{gpu="{i}",UUID="{}"}}"#, nvml.gpus[i as usize].uuid());
        assert_eq!(sample(&m, &healthy), Some(1.0), "{m}");
    }
    assert_eq!(collector(&m, "edge_collector_up"), Some(1.0), "{m}");
    assert_eq!(collector(&m, "edge_collector_absent"), Some(0.0), "{m}");
    assert_eq!(m.matches("DCGM_FI_DEV_GPU_UTIL{").count(), 2, "{m}");

    // The feed carries exact units: bytes and watts, not dcgm-exporter's MiB.
    let gpus = feed_gpus(&agent, |gpus| gpus.len() == 2);
    assert_eq!(
        gpus[1],
        Gpu {
            index: 1,
            uuid: nvml.gpus[1].uuid().to_owned(),
            name: "NVIDIA A10G".into(),
            pci_bus_id: "00000000:11:00.0".into(),
            minor_number: Some(1),
            healthy: true,
            error: String::new(),
            gpu_utilization_percent: Some(11),
            memory_copy_utilization_percent: Some(6),
            encoder_utilization_percent: Some(2),
            decoder_utilization_percent: Some(3),
            framebuffer_used_bytes: Some(1025 * MIB),
            framebuffer_free_bytes: Some((23_028 - 300 - 1025) * MIB),
            framebuffer_total_bytes: Some(23_028 * MIB),
            power_usage_watts: Some(61.5),
            temperature_celsius: Some(41),
            sm_clock_mhz: Some(1709),
            memory_clock_mhz: Some(6250),
            total_energy_millijoules: Some(2_000_000),
            pcie_replay_count: Some(1),
            pods: Vec::new(),
            mig_instances: Vec::new(),
        }
    );
}

#[test]
fn eight_gpus_each_report_their_own_values() {
    let dir = tempfile::tempdir().unwrap();
    let nvml = Config::with_gpus(8);
    nvml.write(&config_path(&dir));
    let agent = start(&config_path(&dir));
    let m = wait_for_gpus(&agent, &nvml);

    for i in 0..8 {
        let l = labels(&nvml, i);
        assert_eq!(series(&m, "DCGM_FI_DEV_GPU_UTIL", &l), Some(10.0 + i as f64), "GPU {i}:\n{m}");
        assert_eq!(series(&m, "DCGM_FI_DEV_GPU_TEMP", &l), Some(40.0 + i as f64), "GPU {i}:\n{m}");
    }
    assert_eq!(m.matches("DCGM_FI_DEV_POWER_USAGE{").count(), 8, "{m}");
    for (i, gpu) in nvml.gpus.iter().enumerate() {
        let healthy = format!(r#"edge_gpu_healthy{{gpu="{i}",UUID="{}"}}"#, gpu.uuid());
        assert_eq!(sample(&m, &healthy), Some(1.0), "{m}");
    }
    assert_eq!(collector(&m, "edge_collector_up"), Some(1.0), "{m}");
}

#[test]
fn a_gpu_lost_mid_run_is_marked_unhealthy_while_the_others_keep_reporting() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_path(&dir);
    let mut nvml = Config::with_gpus(2);
    nvml.write(&path);
    let agent = start(&path);
    wait_for_gpus(&agent, &nvml);

    // GPU 1 falls off the bus; GPU 0 keeps working and its load changes.
    nvml.gpu(1).lost();
    nvml.gpu(0).set("utilization", serde_json::json!({"gpu": 77, "memory": 33}));
    nvml.write(&path);
    let lost = format!(r#"edge_gpu_healthy{{gpu="1",UUID="{}"}}"#, nvml.gpus[1].uuid());
    let m = eventually(WAIT, "GPU 1 unhealthy and GPU 0's new load", || {
        let m = agent.metrics();
        let gpu0 = series(&m, "DCGM_FI_DEV_GPU_UTIL", &labels(&nvml, 0));
        (sample(&m, &lost) == Some(0.0) && gpu0 == Some(77.0)).then_some(m)
    });
    for line in m.lines().filter(|l| l.starts_with("DCGM_")) {
        assert!(line.contains(r#"gpu="0""#), "a series of the lost GPU is still there: {line}\n{m}");
    }
    assert_eq!(series(&m, "DCGM_FI_DEV_MEM_COPY_UTIL", &labels(&nvml, 0)), Some(33.0), "{m}");
    assert_eq!(collector(&m, "edge_collector_up"), Some(0.0), "{m}");
    assert_eq!(collector(&m, "edge_collector_absent"), Some(0.0), "{m}");
    assert!(collector(&m, "edge_collector_errors_total").is_some_and(|e| e >= 1.0), "{m}");
    let log = agent.log();
    assert_eq!(log.matches("GPU failed").count(), 1, "one warning, not one per tick:\n{log}");
    // On the feed the lost GPU keeps its identity from before, with no values.
    let gpus = feed_gpus(&agent, |g| g.len() == 2 && !g[1].healthy);
    assert!(gpus[0].healthy, "{gpus:?}");
    assert_eq!(gpus[1].uuid, nvml.gpus[1].uuid(), "{gpus:?}");
    assert_eq!((gpus[1].name.as_str(), gpus[1].minor_number), ("NVIDIA A10G", Some(1)), "{gpus:?}");
    assert!(gpus[1].error.contains("fell off the bus"), "{gpus:?}");
    assert_eq!((gpus[1].gpu_utilization_percent, gpus[1].power_usage_watts), (None, None), "{gpus:?}");

    // A reset brings it back.
    nvml.gpu(1).found();
    nvml.write(&path);
    let m = wait_for_gpus(&agent, &nvml);
    assert_eq!(sample(&m, &lost), Some(1.0), "{m}");
    eventually(WAIT, "the collector up again", || {
        (collector(&agent.metrics(), "edge_collector_up") == Some(1.0)).then_some(())
    });
}

#[test]
fn a_gpu_lost_halfway_through_its_queries_reports_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut nvml = Config::with_gpus(2);
    // Identity and utilisation answer, then the temperature query finds it gone.
    nvml.gpu(1).error("temperature_gpu_c", "GPU_IS_LOST");
    nvml.write(&config_path(&dir));
    let agent = start(&config_path(&dir));
    let gpus = feed_gpus(&agent, |g| g.len() == 2);
    assert!(gpus[0].healthy, "{gpus:?}");
    let expected = Gpu {
        index: 1,
        uuid: nvml.gpus[1].uuid().to_owned(),
        name: "NVIDIA A10G".into(),
        pci_bus_id: "00000000:11:00.0".into(),
        minor_number: Some(1),
        healthy: false,
        error: gpus[1].error.clone(),
        ..Gpu::default()
    };
    assert_eq!(gpus[1], expected);
    assert!(gpus[1].error.contains("fell off the bus"), "{gpus:?}");
    let m = agent.metrics();
    assert!(m.lines().filter(|l| l.starts_with("DCGM_")).all(|l| l.contains(r#"gpu="0""#)), "{m}");
}

#[test]
fn a_gpu_nvml_stops_listing_stays_visible_as_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_path(&dir);
    let mut nvml = Config::with_gpus(3);
    nvml.write(&path);
    let agent = start(&path);
    wait_for_gpus(&agent, &nvml);

    let gone = nvml.gpus.pop().unwrap();
    nvml.write(&path);
    let healthy = |i: usize, uuid: &str| format!(r#"edge_gpu_healthy{{gpu="{i}",UUID="{uuid}"}}"#);
    let m = eventually(WAIT, "GPU 2 unhealthy", || {
        let m = agent.metrics();
        (sample(&m, &healthy(2, gone.uuid())) == Some(0.0)).then_some(m)
    });
    assert_eq!(sample(&m, &healthy(1, nvml.gpus[1].uuid())), Some(1.0), "{m}");
    assert!(!m.contains(r#"DCGM_FI_DEV_GPU_UTIL{gpu="2""#), "{m}");
    assert_eq!(collector(&m, "edge_collector_up"), Some(0.0), "{m}");
    let gpus = feed_gpus(&agent, |g| g.len() == 3 && !g[2].healthy);
    assert_eq!(gpus[2].error, "no longer listed by NVML", "{gpus:?}");
}

#[test]
fn unsupported_values_are_left_out_not_zero_and_failed_queries_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_path(&dir);
    let mut nvml = Config::with_gpus(2);
    nvml.gpu(0).unsupported("power_usage_mw").unsupported("encoder_utilization").unsupported("total_energy_mj");
    nvml.write(&path);
    let agent = start(&path);
    let m = wait_for_gpus(&agent, &nvml);
    let (gpu0, gpu1) = (labels(&nvml, 0), labels(&nvml, 1));
    for metric in ["DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] {
        assert_eq!(series(&m, metric, &gpu0), None, "{metric} of GPU 0 must be absent:\n{m}");
        assert!(series(&m, metric, &gpu1).is_some(), "{metric} of GPU 1:\n{m}");
    }
    assert_eq!(series(&m, "DCGM_FI_DEV_GPU_TEMP", &gpu0), Some(40.0), "{m}");
    // Unsupported is not an error, however many ticks pass.
    let health = nvml_health(&feed_after_ticks(&agent, 3));
    assert_eq!((health.state, health.errors), (CollectorState::Ok as i32, 0), "{health:?}");

    // A refused query is an error, counted every tick; the field is left out
    // and the GPU stays healthy.
    nvml.gpu(1).error("pcie_replay_counter", "NO_PERMISSION");
    nvml.write(&path);
    let m = eventually(WAIT, "the refused query counted twice", || {
        let m = agent.metrics();
        collector(&m, "edge_collector_errors_total").is_some_and(|e| e >= 2.0).then_some(m)
    });
    assert_eq!(series(&m, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", &gpu1), None, "{m}");
    assert_eq!(series(&m, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", &gpu0), Some(0.0), "{m}");
    assert_eq!(series(&m, "DCGM_FI_DEV_GPU_TEMP", &gpu1), Some(41.0), "{m}");
    assert!(m.contains(&format!(r#"edge_gpu_healthy{{gpu="1",UUID="{}"}} 1"#, nvml.gpus[1].uuid())), "{m}");
    assert_eq!(collector(&m, "edge_collector_up"), Some(1.0), "{m}");
}

#[test]
fn without_an_nvml_library_the_agent_runs_and_reports_nvml_absent() {
    let missing = "/nonexistent/libnvidia-ml.so.1";
    let agent = AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent")).flag("nvml-library", missing).start();
    let m = eventually(WAIT, "nvml health on /metrics", || {
        let m = agent.metrics();
        collector(&m, "edge_collector_absent").is_some().then_some(m)
    });
    assert_eq!(collector(&m, "edge_collector_up"), Some(0.0), "{m}");
    assert_eq!(collector(&m, "edge_collector_absent"), Some(1.0), "{m}");
    assert_eq!(collector(&m, "edge_collector_errors_total"), Some(0.0), "{m}");
    assert!(!m.contains("DCGM_FI_DEV_"), "{m}");
    // Everything else is still served.
    assert!(sample(&m, r#"edge_collector_up{collector="procfs"}"#).is_some(), "{m}");
    let log = agent.log();
    assert_eq!(log.lines().filter(|l| l.contains(missing)).count(), 1, "one clear line:\n{log}");
}

#[test]
fn a_library_that_fails_to_initialise_is_failing_not_absent() {
    let dir = tempfile::tempdir().unwrap();
    // No config file: the fake's nvmlInit fails the way a broken driver does.
    let agent = start(&config_path(&dir));
    let m = eventually(WAIT, "nvml health on /metrics", || {
        let m = agent.metrics();
        collector(&m, "edge_collector_absent").is_some().then_some(m)
    });
    assert_eq!(collector(&m, "edge_collector_up"), Some(0.0), "{m}");
    assert_eq!(collector(&m, "edge_collector_absent"), Some(0.0), "{m}");
    assert!(collector(&m, "edge_collector_errors_total").is_some_and(|e| e >= 1.0), "{m}");
    let log = agent.log();
    assert!(log.contains("failed to initialise") && log.contains("nvml.json"), "{log}");
}

/// The real driver on a GPU machine: same assertions as the fake, none of its
/// values. Run with `cargo test -p edge-agent --test nvml -- --ignored` where
/// `libnvidia-ml.so.1` and a GPU exist.
#[test]
#[ignore = "needs an NVIDIA GPU and its driver (libnvidia-ml.so.1)"]
fn a_real_gpu_reports_through_the_system_nvml() {
    let agent = AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent")).flag("nvml-library", "libnvidia-ml.so.1").start();
    let m = eventually(WAIT, "a GPU on /metrics", || {
        let m = agent.metrics();
        m.contains("DCGM_FI_DEV_GPU_UTIL{").then_some(m)
    });
    assert_eq!(collector(&m, "edge_collector_up"), Some(1.0), "{m}\n{}", agent.log());
    let gpus = feed_gpus(&agent, |g| !g.is_empty());
    for g in &gpus {
        assert!(g.healthy && g.uuid.starts_with("GPU-"), "{g:?}");
        assert!(g.framebuffer_total_bytes.is_some_and(|b| b > 0), "{g:?}");
        assert!(g.power_usage_watts.is_none_or(|w| w > 0.0 && w < 2_000.0), "watts, not milliwatts: {g:?}");
    }
}
