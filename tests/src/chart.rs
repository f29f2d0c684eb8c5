//! The Helm chart under `deploy/helm/edge-diffusion`: rendering a values
//! profile with the real helm, validating the objects, and finding things in
//! them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use crate::tools::{helm, python};

/// The release name and namespace every rendering uses.
pub const RELEASE: &str = "edge";
/// See [`RELEASE`].
pub const NAMESPACE: &str = "edge-diffusion";
/// Kubernetes versions the built-in objects are validated against: the
/// chart's minimum (Chart.yaml kubeVersion) and the newest schema we have.
pub const KUBE_VERSIONS: [&str; 2] = ["1.33.0", "1.37.0"];

/// The chart directory.
pub fn chart_dir() -> PathBuf {
    crate::repo_root().join("deploy/helm/edge-diffusion")
}

/// Every `ci/*-values.yaml` profile name (`cpu-only`, …), sorted.
pub fn profiles() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(chart_dir().join("ci"))
        .expect("read ci/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix("-values.yaml").map(str::to_owned))
        .collect();
    out.sort();
    out
}

/// `helm template` with extra arguments; the rendered YAML or helm's error.
pub fn template(args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm())
        .args(["template", RELEASE])
        .arg(chart_dir())
        .args(["--namespace", NAMESPACE])
        .args(args)
        .output()
        .expect("run helm");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The objects a profile renders to, after the validator accepted every one
/// of them (Kubernetes schemas for built-in kinds, CRD schemas for KEDA,
/// Karpenter and Volcano). Rendered once per test binary.
pub fn rendered(profile: &str) -> Vec<Value> {
    static CACHE: OnceLock<Mutex<HashMap<String, Vec<Value>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().expect("cache").get(profile) {
        return v.clone();
    }
    let values = chart_dir().join(format!("ci/{profile}-values.yaml"));
    let yaml = template(&["-f", values.to_str().expect("utf-8 path")])
        .unwrap_or_else(|e| panic!("helm template with {profile}: {e}"));
    let objects = validate(&yaml);
    cache.lock().expect("cache").insert(profile.to_owned(), objects.clone());
    objects
}

/// Runs deploy/tools/validate_manifests.py on rendered YAML; panics with its
/// report unless every object is valid. Returns the objects as JSON.
pub fn validate(yaml: &str) -> Vec<Value> {
    try_validate(yaml).unwrap_or_else(|report| panic!("invalid objects:\n{report}"))
}

/// Like [`validate`], but returns the validator's report when an object is
/// invalid.
pub fn try_validate(yaml: &str) -> Result<Vec<Value>, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("rendered.yaml");
    let json = dir.path().join("rendered.json");
    std::fs::write(&manifest, yaml).expect("write rendered.yaml");
    let root = crate::repo_root();
    let mut cmd = Command::new(python());
    cmd.arg(root.join("deploy/tools/validate_manifests.py"))
        .arg("--crds")
        .arg(root.join("deploy/testdata/crds"))
        .arg("--monitoring-modules")
        .arg(crate::tools::monitoring_modules())
        .arg("--json")
        .arg(&json);
    for v in KUBE_VERSIONS {
        cmd.args(["--kube-version", v]);
    }
    cmd.arg(&manifest);
    let out = cmd.output().expect("run validate_manifests.py");
    if !out.status.success() {
        return Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(serde_json::from_str(&std::fs::read_to_string(json).expect("read rendered.json")).expect("validator JSON"))
}

/// The objects of one kind.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The worker Deployments (one per accelerator type, one more per Local Zone).
pub fn inference_deployments(objects: &[Value]) -> Vec<&Value> {
    of_kind(objects, "Deployment")
        .into_iter()
        .filter(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] == "inference")
        .collect()
}

/// The metadata of a ScaledObject's (one) trigger.
pub fn trigger_metadata(scaled_object: &Value) -> &serde_json::Map<String, Value> {
    scaled_object["spec"]["triggers"][0]["metadata"]
        .as_object()
        .unwrap_or_else(|| panic!("ScaledObject {} has no trigger metadata", scaled_object["metadata"]["name"]))
}

/// The one object of a kind and name.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name}"))
}

/// The pod spec of a workload object (Deployment, DaemonSet, Volcano Job).
pub fn pod_specs(object: &Value) -> Vec<&Value> {
    if object["kind"] == "Job" && object["apiVersion"] == "batch.volcano.sh/v1alpha1" {
        return object["spec"]["tasks"].as_array().into_iter().flatten().map(|t| &t["template"]["spec"]).collect();
    }
    vec![&object["spec"]["template"]["spec"]]
}

/// Every container and init container of a pod spec.
pub fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"].iter().filter_map(|k| pod[*k].as_array()).flatten().collect()
}

/// The value of `--flag=value` in a container's args.
pub fn flag<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    container["args"].as_array()?.iter().filter_map(Value::as_str).find_map(|a| a.strip_prefix(prefix.as_str()))
}

/// The literal value of an environment variable of a container.
pub fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name)
}

/// Strings of a JSON array.
pub fn strings(v: &Value) -> Vec<&str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}
