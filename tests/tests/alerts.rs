//! The chart's alert rules (deploy/helm/edge-diffusion/files/alerts.yaml)
//! through Prometheus's own `promtool`: the file loads, every alert fires on
//! the fixture series of trouble and stays quiet on a healthy cluster's
//! (deploy/testdata/alerts-test.yaml), and every series a rule reads is one
//! the project exposes (telemetry/src/catalogue), so a renamed metric breaks
//! this test instead of silencing an alert.

use std::path::Path;
use std::process::Command;

use edge_e2e::repo_root;
use edge_telemetry::catalogue::{Metric, cloudwatch, edge, scaler};

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool not found: run scripts/install-test-deps (Debian package `prometheus`)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn rules_file() -> std::path::PathBuf {
    repo_root().join("deploy/helm/edge-diffusion/files/alerts.yaml")
}

#[test]
fn every_alert_fires_on_trouble_and_stays_quiet_when_healthy() {
    let testdata = repo_root().join("deploy/testdata");
    let (ok, out) = promtool(&["check", "rules", rules_file().to_str().unwrap()], &testdata);
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS: 9 rules found"), "{out}");
    let (ok, out) = promtool(&["test", "rules", "alerts-test.yaml"], &testdata);
    assert!(ok, "promtool test rules failed:\n{out}");
}

#[test]
fn a_wrong_expectation_fails_the_rule_test() {
    // The same fixtures, expecting the scaler to be reported absent on a healthy cluster.
    let testdata = repo_root().join("deploy/testdata");
    let tests = std::fs::read_to_string(testdata.join("alerts-test.yaml")).unwrap();
    let wrong = tests.replacen(
        "{eval_time: 15m, alertname: EdgeScalerAbsent, exp_alerts: []}",
        "{eval_time: 15m, alertname: EdgeScalerAbsent, exp_alerts: [{exp_labels: {severity: critical}}]}",
        1,
    );
    assert_ne!(wrong, tests);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong-test.yaml");
    std::fs::write(&file, wrong.replace("../helm/edge-diffusion/files/alerts.yaml", rules_file().to_str().unwrap()))
        .unwrap();
    let (ok, out) = promtool(&["test", "rules", file.to_str().unwrap()], dir.path());
    assert!(!ok, "promtool passed a wrong expectation:\n{out}");
}

#[test]
fn every_series_a_rule_reads_is_exposed() {
    let exposed: Vec<String> =
        [edge::ALL, scaler::ALL, cloudwatch::EXPORTER].concat().iter().map(Metric::sample_name).collect();
    let rules = std::fs::read_to_string(rules_file()).unwrap();
    let mut read = Vec::new();
    for line in rules.lines().filter_map(|l| l.trim().strip_prefix("expr:")) {
        let mut rest = line;
        while let Some(at) = rest.find("edge_") {
            let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            rest = &rest[at + name.len()..];
            read.push(name);
        }
    }
    assert!(read.len() >= 12, "the rules' series were found: {read:?}");
    for name in read {
        assert!(exposed.contains(&name), "{name} is read by an alert but exposed by nothing (catalogue)");
    }
}
