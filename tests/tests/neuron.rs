//! The Neuron reference upstream's request handling (deploy/neuron/serve.py),
//! run by its own unittest suite under the system's Python 3 (stdlib only).
//!
//! STUB, clearly: torch-neuronx cannot run here (no Inferentia2), so the
//! suite replaces the Neuron pipeline (`load_pipeline`) with a stub; the HTTP
//! server, validation, answer shape, seeding, serialisation and the artefact
//! check run for real. See the suite's docstring for what is and is not covered.

use std::process::Command;

use edge_e2e::repo_root;

#[test]
fn the_neuron_reference_server_handles_requests_with_the_neuron_pipeline_stubbed() {
    let suite = repo_root().join("deploy/neuron/test_serve.py");
    let out =
        Command::new("python3").arg(&suite).env("PYTHONDONTWRITEBYTECODE", "1").output().expect("python3 on PATH");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} failed:\n{log}", suite.display());
    // unittest prints "Ran N tests" then "OK": a suite that found no tests must not pass.
    let ran: usize = log
        .lines()
        .find_map(|l| l.strip_prefix("Ran ")?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no test count in:\n{log}"));
    assert!(ran >= 7, "only {ran} tests ran:\n{log}");
}
