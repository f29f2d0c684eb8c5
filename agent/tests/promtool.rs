//! `promtool check metrics` (Prometheus's own linter, Debian package
//! `prometheus`, installed by scripts/install-test-deps) on a live agent.

use edge_testkit::AgentBuilder;
use edge_testkit::promtool::problems as promtool_problems;

/// dcgm-exporter's established names predate promtool's lint: the
/// `modelName` label and the `DCGM_FI_DEV_PCIE_REPLAY_COUNTER` name. We keep
/// them so NVIDIA's dashboards work unchanged; these are the only problems
/// allowed.
fn is_established_dcgm_name(problem: &str) -> bool {
    (problem.starts_with("DCGM_FI_")
        && problem.ends_with("label names should be written in 'snake_case' not 'camelCase'"))
        || problem == "DCGM_FI_DEV_PCIE_REPLAY_COUNTER metric name should not include type 'counter'"
}

#[test]
fn a_live_agents_metrics_pass_promtool() {
    // Every collector on: 2 fake GPUs (one without encoder support), the
    // inf2.48xlarge neuron-monitor fixture, and three reporting workers.
    let dir = tempfile::tempdir().unwrap();
    let nvml_config = dir.path().join("nvml.json");
    let mut nvml = edge_testkit::fake_nvml::Config::with_gpus(2);
    nvml.gpu(1).unsupported("encoder_utilization");
    nvml.write(&nvml_config);
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/neuron-monitor");
    let agent = AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent"))
        .flag("nvml-library", edge_testkit::fake_nvml_library().to_str().unwrap())
        .env(edge_testkit::fake_nvml::CONFIG_ENV, nvml_config.to_str().unwrap())
        .flag("neuron-monitor", testdata.join("fake-neuron-monitor").to_str().unwrap())
        .env("FAKE_NEURON_FIXTURE", testdata.join("inf2.48xlarge.jsonl").to_str().unwrap())
        .env("FAKE_NEURON_INTERVAL_MS", "100")
        .start();
    for (i, accelerator) in ["nvidia", "neuron", "cpu"].iter().enumerate() {
        let body = serde_json::json!({
            "worker_id": format!("w-{i}"), "pod": format!("sd-{accelerator}-0"), "namespace": "inference",
            "deployment": format!("sd-{accelerator}"), "accelerator": accelerator,
            "queue_depth": i, "in_flight": 1, "capacity": 4,
            "latency_p50_seconds": 0.5, "latency_p99_seconds": 1.5
        });
        assert_eq!(agent.report(&body.to_string()).0, 204);
    }
    let metrics = edge_testkit::eventually(std::time::Duration::from_secs(20), "GPU and NeuronCore series", || {
        let m = agent.metrics();
        (m.contains("DCGM_FI_DEV_GPU_UTIL{") && m.contains("neuroncore_utilization_ratio{")).then_some(m)
    });
    assert!(metrics.contains("edge_worker_queue_depth{"), "{metrics}");
    let problems: Vec<_> = promtool_problems(&metrics).into_iter().filter(|p| !is_established_dcgm_name(p)).collect();
    assert!(problems.is_empty(), "promtool found problems:\n{}\n\nin:\n{metrics}", problems.join("\n"));
}

#[test]
fn the_lint_check_itself_catches_problems() {
    // Guards against a promtool invocation that silently passes everything.
    let bad = "# TYPE fooCamel counter\nfooCamel 1\n";
    assert!(!promtool_problems(bad).is_empty());
}
