//! Reports bound to the pod that sent them.
//!
//! On the report socket the kernel says which process is at the other end
//! (SO_PEERCRED); its cgroup names its pod's UID ([`cgroup`]); the API server
//! says who that pod is ([`pods`]). A report whose namespace, pod,
//! Deployment or labels are not its sender's is refused (`strict`) or
//! corrected (`warn`), so a process on the node cannot scale, or hide the
//! load of, a Deployment that is not its own.
//!
//! This needs the node's PID namespace (the kernel gives a peer in a PID
//! namespace the agent cannot see as pid 0) and a read-only watch of the
//! node's pods; the chart grants both only when binding is on.

pub mod cgroup;
pub mod pods;

use std::path::PathBuf;

use clap::ValueEnum;
use edge_telemetry::{ReportError, WorkerReport};

pub use pods::{NodePods, PodIdentity};

/// What to do with a report that does not match its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BindingMode {
    /// Reports are taken as written (local runs; loopback TCP reports).
    Off,
    /// Mismatched fields are replaced by the sender's, with a warning.
    Warn,
    /// A mismatched report, or one from a process in no known pod, is refused (403).
    Strict,
}

/// Binds reports to their sender's pod.
#[derive(Clone)]
pub struct Binder {
    mode: BindingMode,
    proc_root: PathBuf,
    pods: NodePods,
}

/// A report that cannot be bound; `field` names what does not match.
pub type BindError = ReportError;

impl Binder {
    /// A binder reading peers' cgroups under `proc_root` (the node's /proc).
    pub fn new(mode: BindingMode, proc_root: PathBuf, pods: NodePods) -> Self {
        Self { mode, proc_root, pods }
    }

    /// The report as it may be taken from process `pid` (`None`: the kernel
    /// gave no pid), or why it may not. `Ok` carries the count of fields that
    /// were corrected (warn mode).
    pub fn bind(&self, report: &mut WorkerReport, pid: Option<i32>) -> Result<usize, BindError> {
        if self.mode == BindingMode::Off {
            return Ok(0);
        }
        let sender = match self.sender(pid) {
            Ok(sender) => sender,
            Err(e) if self.mode == BindingMode::Warn => {
                tracing::warn!(worker_id = %report.worker_id, field = %e.field, reason = %e.reason, "report from an unknown sender taken as written (--report-binding warn)");
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        let mismatches = mismatches(report, &sender);
        if let (BindingMode::Strict, Some(e)) = (self.mode, mismatches.first()) {
            return Err(e.clone());
        }
        for e in &mismatches {
            tracing::warn!(worker_id = %report.worker_id, field = %e.field, reason = %e.reason, "report relabelled to its sender's pod (--report-binding warn)");
        }
        // Also fills in an empty pod and namespace.
        relabel(report, &sender);
        Ok(mismatches.len())
    }

    fn sender(&self, pid: Option<i32>) -> Result<PodIdentity, BindError> {
        let refuse = |reason: String| ReportError { field: "sender".to_owned(), reason };
        let pid = pid.filter(|p| *p > 0).ok_or_else(|| {
            refuse("the sending process is not visible to the agent (run the agent in the node's PID namespace)".into())
        })?;
        let path = self.proc_root.join(pid.to_string()).join("cgroup");
        let file =
            std::fs::read_to_string(&path).map_err(|e| refuse(format!("cannot read {}: {e}", path.display())))?;
        let uid = cgroup::pod_uid(&file).map_err(|e| refuse(format!("process {pid}: {e}")))?;
        if !self.pods.listed() {
            return Err(refuse("the agent has not listed this node's pods yet; retry".into()));
        }
        self.pods.get(&uid).ok_or_else(|| refuse(format!("pod {uid} of process {pid} is not on this node")))
    }
}

/// Each field of `report` that its sender's pod contradicts. An empty pod or
/// namespace is not a claim (it is filled in).
fn mismatches(report: &WorkerReport, sender: &PodIdentity) -> Vec<BindError> {
    let mut out = Vec::new();
    let mut claim = |field: &str, claimed: &str, actual: &str| {
        out.push(ReportError {
            field: field.to_owned(),
            reason: format!("claims {claimed:?}, the sending pod's is {actual:?}"),
        });
    };
    if !report.namespace.is_empty() && report.namespace != sender.namespace {
        claim("namespace", &report.namespace, &sender.namespace);
    }
    if !report.pod.is_empty() && report.pod != sender.name {
        claim("pod", &report.pod, &sender.name);
    }
    let deployment = sender.deployment.as_deref().unwrap_or("");
    if report.deployment != deployment {
        claim("deployment", &report.deployment, if deployment.is_empty() { "(none)" } else { deployment });
    }
    for (key, value) in &report.labels {
        match sender.labels.get(key) {
            Some(actual) if actual == value => {}
            actual => claim(&format!("labels.{key}"), value, actual.map_or("(absent)", String::as_str)),
        }
    }
    out
}

/// The report with its identity replaced by its sender's: reported labels
/// the pod does not carry are dropped.
fn relabel(report: &mut WorkerReport, sender: &PodIdentity) {
    report.namespace = sender.namespace.clone();
    report.pod = sender.name.clone();
    report.deployment = sender.deployment.clone().unwrap_or_default();
    report.labels = report.labels.keys().filter_map(|k| Some((k.clone(), sender.labels.get(k)?.clone()))).collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    const UID: &str = "0d5e5c2c-1e1f-4b9b-8a0a-3f1c2b0d9e11";

    fn sender() -> PodIdentity {
        PodIdentity {
            namespace: "team-a".into(),
            name: "sd-cpu-6b7f-abcde".into(),
            deployment: Some("sd-cpu".into()),
            labels: BTreeMap::from([("app".into(), "sd".into()), ("tier".into(), "cpu".into())]),
        }
    }

    fn report(namespace: &str, deployment: &str, labels: &[(&str, &str)]) -> WorkerReport {
        let labels: serde_json::Map<_, _> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).into())).collect();
        WorkerReport::from_json(
            serde_json::json!({"worker_id": "w1", "pod": "", "namespace": namespace, "deployment": deployment,
                "accelerator": "cpu", "queue_depth": 1, "in_flight": 0, "capacity": 4, "labels": labels})
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    /// A binder whose /proc holds process 42 in pod UID and process 43 outside Kubernetes.
    fn binder(mode: BindingMode) -> (Binder, tempfile::TempDir) {
        let proc = tempfile::tempdir().unwrap();
        for (pid, cgroup) in
            [(42, format!("0::/kubepods/burstable/pod{UID}/cid\n")), (43, "0::/system.slice/sshd.service\n".to_owned())]
        {
            std::fs::create_dir(proc.path().join(pid.to_string())).unwrap();
            std::fs::write(proc.path().join(format!("{pid}/cgroup")), cgroup).unwrap();
        }
        let pods = NodePods::default();
        pods.replace(HashMap::from([(UID.to_owned(), sender())]));
        (Binder::new(mode, proc.path().to_owned(), pods), proc)
    }

    #[test]
    fn strict_takes_a_true_report_and_fills_in_pod_and_namespace() {
        let (b, _proc) = binder(BindingMode::Strict);
        let mut r = report("team-a", "sd-cpu", &[("app", "sd")]);
        assert_eq!(b.bind(&mut r, Some(42)), Ok(0));
        let mut r = report("", "sd-cpu", &[]);
        assert_eq!(b.bind(&mut r, Some(42)), Ok(0));
        assert_eq!((r.namespace.as_str(), r.pod.as_str()), ("team-a", "sd-cpu-6b7f-abcde"));
    }

    #[test]
    fn strict_refuses_each_forged_field_by_name() {
        let (b, _proc) = binder(BindingMode::Strict);
        for (r, field) in [
            (report("team-b", "sd-cpu", &[]), "namespace"),
            (report("team-a", "sd-gpu", &[]), "deployment"),
            (report("team-a", "sd-cpu", &[("tier", "gpu")]), "labels.tier"),
            (report("team-a", "sd-cpu", &[("owner", "x")]), "labels.owner"),
        ] {
            let err = b.bind(&mut r.clone(), Some(42)).unwrap_err();
            assert_eq!(err.field, field);
        }
        let mut forged = report("team-a", "sd-cpu", &[]);
        forged.pod = "someone-else".into();
        assert_eq!(b.bind(&mut forged, Some(42)).unwrap_err().field, "pod");
    }

    #[test]
    fn strict_refuses_a_sender_in_no_known_pod() {
        let (b, proc) = binder(BindingMode::Strict);
        for pid in [Some(43), Some(44), None, Some(0)] {
            let err = b.bind(&mut report("team-a", "sd-cpu", &[]), pid).unwrap_err();
            assert_eq!(err.field, "sender", "{pid:?}");
        }
        std::fs::create_dir(proc.path().join("45")).unwrap();
        std::fs::write(proc.path().join("45/cgroup"), "0::/kubepods/pod11111111-2222-3333-4444-555555555555/c\n")
            .unwrap();
        let err = b.bind(&mut report("team-a", "sd-cpu", &[]), Some(45)).unwrap_err();
        assert!(err.reason.contains("not on this node"), "{err}");
    }

    #[test]
    fn strict_refuses_until_the_pods_are_listed() {
        let (b, _proc) = binder(BindingMode::Strict);
        let unlisted = Binder::new(BindingMode::Strict, b.proc_root.clone(), NodePods::default());
        let err = unlisted.bind(&mut report("team-a", "sd-cpu", &[]), Some(42)).unwrap_err();
        assert!(err.reason.contains("not listed"), "{err}");
    }

    #[test]
    fn warn_relabels_to_the_sender() {
        let (b, _proc) = binder(BindingMode::Warn);
        let mut r = report("team-b", "sd-gpu", &[("app", "sd"), ("tier", "gpu"), ("owner", "x")]);
        assert_eq!(b.bind(&mut r, Some(42)), Ok(4));
        assert_eq!(
            (r.namespace.as_str(), r.pod.as_str(), r.deployment.as_str()),
            ("team-a", "sd-cpu-6b7f-abcde", "sd-cpu")
        );
        assert_eq!(r.labels, BTreeMap::from([("app".into(), "sd".into()), ("tier".into(), "cpu".into())]));
        // An unknown sender is taken as written.
        let mut r = report("team-b", "sd-gpu", &[]);
        assert_eq!(b.bind(&mut r, Some(43)), Ok(0));
        assert_eq!(r.namespace, "team-b");
    }

    #[test]
    fn off_takes_anything() {
        let (b, _proc) = binder(BindingMode::Off);
        assert_eq!(b.bind(&mut report("team-b", "sd-gpu", &[]), None), Ok(0));
    }
}
