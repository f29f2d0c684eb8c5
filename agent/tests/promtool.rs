//! `promtool check metrics` (Prometheus's own linter, Debian package
//! `prometheus`, installed by scripts/install-test-deps) on a live agent.

use std::io::Write;
use std::process::{Command, Stdio};

use edge_testkit::AgentBuilder;

/// promtool's lint problems, one per line; empty when clean.
fn promtool_problems(exposition: &str) -> Vec<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: run scripts/install-test-deps (Debian package `prometheus`)");
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let problems: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
    assert_eq!(out.status.success(), problems.is_empty(), "promtool exit {} with output:\n{text}", out.status);
    problems
}

/// dcgm-exporter's `modelName` label predates the snake_case lint; we keep
/// it so NVIDIA's dashboards work unchanged. That is the only problem allowed.
fn is_established_dcgm_label(problem: &str) -> bool {
    problem.starts_with("DCGM_FI_")
        && problem.ends_with("label names should be written in 'snake_case' not 'camelCase'")
}

#[test]
fn a_live_agents_metrics_pass_promtool() {
    let agent = AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent")).start();
    for (i, accelerator) in ["nvidia", "neuron", "cpu"].iter().enumerate() {
        let body = serde_json::json!({
            "worker_id": format!("w-{i}"), "pod": format!("sd-{accelerator}-0"), "namespace": "inference",
            "deployment": format!("sd-{accelerator}"), "accelerator": accelerator,
            "queue_depth": i, "in_flight": 1, "capacity": 4,
            "latency_p50_seconds": 0.5, "latency_p99_seconds": 1.5
        });
        assert_eq!(agent.report(&body.to_string()).0, 204);
    }
    let metrics = agent.metrics();
    assert!(metrics.contains("edge_worker_queue_depth{"), "{metrics}");
    let problems: Vec<_> = promtool_problems(&metrics).into_iter().filter(|p| !is_established_dcgm_label(p)).collect();
    assert!(problems.is_empty(), "promtool found problems:\n{}\n\nin:\n{metrics}", problems.join("\n"));
}

#[test]
fn the_lint_check_itself_catches_problems() {
    // Guards against a promtool invocation that silently passes everything.
    let bad = "# TYPE fooCamel counter\nfooCamel 1\n";
    assert!(!promtool_problems(bad).is_empty());
}
