//! `promtool` (Prometheus's own tool, Debian package `prometheus`, installed
//! by scripts/install-test-deps) on what our processes expose.

use std::io::Write;
use std::process::{Command, Stdio};

/// `promtool check metrics` on a text exposition: its lint problems, one per
/// line; empty when clean.
pub fn problems(exposition: &str) -> Vec<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: run scripts/install-test-deps (Debian package `prometheus`)");
    child.stdin.take().expect("stdin").write_all(exposition.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let problems: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
    assert_eq!(out.status.success(), problems.is_empty(), "promtool exit {} with output:\n{text}", out.status);
    problems
}
