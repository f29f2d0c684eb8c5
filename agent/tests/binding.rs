//! Reports bound to the pod that sent them (`--report-binding`), through the
//! real agent process: the kernel's SO_PEERCRED on the real report socket,
//! the sender's cgroup read from a proc tree, and the node's pods watched
//! from a fake API server (`edge_testkit::fake_kube`) with the real `kube`
//! watcher.
//!
//! Two ways to give the sender a pod's cgroup:
//! - a fixture proc tree (`--procfs`) holding this test process's
//!   `<pid>/cgroup`: runs everywhere;
//! - a real process moved into a real `kubepods/…/pod<uid>` cgroup, with the
//!   real /proc: runs where this machine lets a test create cgroups (root, a
//!   writable cgroup hierarchy), and says so on stderr where it does not.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_testkit::fake_kube::{self, Collection, Serves};
use edge_testkit::{Agent, AgentBuilder, eventually, http, sample};
use serde_json::{Value, json};

const TEAM_A: &str = "0d5e5c2c-1e1f-4b9b-8a0a-3f1c2b0d9e11";
const TEAM_B: &str = "11111111-2222-3333-4444-555555555555";

/// A pod of Deployment `deployment` (ReplicaSet `<deployment>-7d9f8b6c5d`) on `node`.
fn pod(uid: &str, namespace: &str, name: &str, deployment: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "uid": uid, "name": name, "namespace": namespace,
            "labels": {"app": "sd", "pod-template-hash": "7d9f8b6c5d"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deployment}-7d9f8b6c5d"),
                                 "uid": "rs", "controller": true}],
        },
        "spec": {"nodeName": node},
    })
}

fn report(namespace: &str, deployment: &str, queue: u32) -> String {
    json!({"worker_id": "w-1", "namespace": namespace, "deployment": deployment, "accelerator": "cpu",
           "queue_depth": queue, "in_flight": 0, "capacity": 8, "labels": {"app": "sd"}})
    .to_string()
}

fn queue_depth(agent: &Agent, namespace: &str, deployment: &str) -> Option<f64> {
    sample(
        &agent.metrics(),
        &format!(r#"edge_worker_queue_depth{{accelerator="cpu",namespace="{namespace}",deployment="{deployment}""#),
    )
}

fn worker_errors(agent: &Agent) -> f64 {
    sample(&agent.metrics(), r#"edge_collector_errors_total{collector="workers"}"#)
        .expect("the workers collector reports its errors")
}

/// The fake API server with two pods on `test-node` (team-a's and team-b's) and one elsewhere.
async fn cluster() -> (Collection, std::net::SocketAddr) {
    let (mut c, addr) =
        fake_kube::start(&[Serves { path: "/api/v1/pods", api_version: "v1", list_kind: "PodList" }]).await;
    let pods = c.pop().unwrap();
    pods.apply("ADDED", "a", pod(TEAM_A, "team-a", "sd-cpu-7d9f8b6c5d-aaaaa", "sd-cpu", "test-node"));
    pods.apply("ADDED", "b", pod(TEAM_B, "team-b", "sd-gpu-7d9f8b6c5d-bbbbb", "sd-gpu", "test-node"));
    (pods, addr)
}

/// A proc tree in which process `pid` runs in the pod with `uid`.
fn proc_tree(dir: &Path, pid: u32, uid: &str) -> PathBuf {
    let root = dir.join("proc");
    std::fs::create_dir_all(root.join(pid.to_string())).unwrap();
    let cgroup = format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-0123abcd.scope\n",
        uid.replace('-', "_")
    );
    std::fs::write(root.join(format!("{pid}/cgroup")), cgroup).unwrap();
    root
}

fn bound_agent(dir: &Path, mode: &str, procfs: &Path, api: std::net::SocketAddr) -> (Agent, PathBuf) {
    let socket = dir.join("agent.sock");
    let agent = AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent"))
        .flag("report-socket", socket.to_str().unwrap())
        .flag("report-listen", "")
        .flag("report-binding", mode)
        .flag("procfs", procfs.to_str().unwrap())
        .env("KUBECONFIG", fake_kube::kubeconfig(dir, api, "default"))
        .start();
    (agent, socket)
}

fn post(socket: &Path, body: &str) -> (u16, String) {
    http::post_json_unix(socket, "/v1/reports", body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_refuses_a_forged_namespace_and_takes_the_senders_own() {
    let (pods, api) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let procfs = proc_tree(dir.path(), std::process::id(), TEAM_A);
    let (agent, socket) = bound_agent(dir.path(), "strict", &procfs, api);

    // Until the agent has listed the node's pods it cannot tell; then the true report is taken.
    let socket2 = socket.clone();
    eventually(Duration::from_secs(10), "the node's pods listed", move || {
        (post(&socket2, &report("team-a", "sd-cpu", 3)).0 == 204).then_some(())
    });
    assert_eq!(queue_depth(&agent, "team-a", "sd-cpu"), Some(3.0));
    assert!(
        pods.queried("fieldSelector").iter().all(|f| f == "spec.nodeName=test-node"),
        "{:?}",
        pods.queried("fieldSelector")
    );
    assert!(pods.queried("watch").iter().any(|w| w == "true"), "the agent watches, not polls");

    // Team A's pod claims team B's Deployment: refused, naming the field, and changes nothing.
    let before = worker_errors(&agent);
    for (body, field) in [(report("team-b", "sd-gpu", 50), "namespace"), (report("team-a", "sd-gpu", 50), "deployment")]
    {
        let (status, answer) = post(&socket, &body);
        assert_eq!(status, 403, "{answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["field"], field, "{answer}");
    }
    assert_eq!(queue_depth(&agent, "team-b", "sd-gpu"), None);
    assert_eq!(queue_depth(&agent, "team-a", "sd-cpu"), Some(3.0));
    assert_eq!(worker_errors(&agent), before + 2.0, "refusals are counted");

    // The pod is deleted: its process is no longer anyone on this node.
    pods.apply("DELETED", "a", pod(TEAM_A, "team-a", "sd-cpu-7d9f8b6c5d-aaaaa", "sd-cpu", "test-node"));
    let socket3 = socket.clone();
    let answer = eventually(Duration::from_secs(10), "the deletion seen", move || {
        let (status, answer) = post(&socket3, &report("team-a", "sd-cpu", 4));
        (status == 403).then_some(answer)
    });
    assert!(answer.contains("sender") && answer.contains("not on this node"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_relabels_a_forged_report_to_its_sender() {
    let (_pods, api) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let procfs = proc_tree(dir.path(), std::process::id(), TEAM_A);
    let (agent, socket) = bound_agent(dir.path(), "warn", &procfs, api);
    let socket2 = socket.clone();
    eventually(Duration::from_secs(10), "the forged report taken as team-a's", move || {
        (post(&socket2, &report("team-b", "sd-gpu", 7)).0 == 204
            && queue_depth(&agent, "team-a", "sd-cpu") == Some(7.0))
        .then_some(())
    });
}

#[test]
fn binding_needs_the_socket_and_no_tcp_port() {
    for (flags, named) in [
        (&[("report-binding", "strict")][..], "--report-binding"),
        (
            &[("report-binding", "warn"), ("report-socket", "/tmp/x.sock"), ("report-listen", "127.0.0.1:9")][..],
            "--report-listen",
        ),
        (&[("report-binding", "sometimes")][..], "--report-binding"),
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"));
        cmd.arg("--listen=127.0.0.1:0").arg("--report-listen=");
        for (k, v) in flags {
            cmd.arg(format!("--{k}={v}"));
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} started");
        assert!(stderr.contains(named), "{flags:?}: {stderr}");
    }
}

/// A real process in a real pod cgroup, with the real /proc. Where this
/// machine does not let a test create cgroups it says why and stops; the
/// fixture test above covers the same path from the cgroup file on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_in_a_real_pod_cgroup_is_bound_to_that_pod() {
    let Some(cgroup) = RealCgroup::create(TEAM_B) else { return };
    let (_pods, api) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, socket) = bound_agent(dir.path(), "strict", Path::new("/proc"), api);
    // This test process is in no pod: refused.
    let socket2 = socket.clone();
    let answer = eventually(Duration::from_secs(10), "the node's pods listed", move || {
        let (status, answer) = post(&socket2, &report("team-b", "sd-gpu", 1));
        (status == 403 && !answer.contains("not listed")).then_some(answer)
    });
    assert!(answer.contains("names no Kubernetes pod"), "{answer}");
    // A process that moves itself into team B's pod cgroup, then reports as team B, and as team A.
    for (namespace, deployment, want) in [("team-b", "sd-gpu", "204"), ("team-a", "sd-cpu", "403")] {
        let out = cgroup.run_sender(&socket, &report(namespace, deployment, 9));
        assert_eq!(out.split_whitespace().next(), Some(want), "{namespace}: {out}");
    }
    assert_eq!(queue_depth(&agent, "team-b", "sd-gpu"), Some(9.0));
    assert_eq!(queue_depth(&agent, "team-a", "sd-cpu"), None);
}

/// `kubepods/burstable/pod<uid>/ctr` in the first writable cgroup hierarchy.
struct RealCgroup {
    dirs: Vec<PathBuf>,
}

impl RealCgroup {
    fn create(uid: &str) -> Option<Self> {
        let mut tried = Vec::new();
        for root in ["/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
            let base = Path::new(root).join(format!("edge-binding-test-{}", std::process::id()));
            let leaf = base.join(format!("kubepods/burstable/pod{uid}/ctr"));
            match std::fs::create_dir_all(&leaf) {
                Ok(()) if leaf.join("cgroup.procs").exists() => {
                    let mut dirs: Vec<PathBuf> =
                        leaf.ancestors().take_while(|p| p.starts_with(&base)).map(Path::to_owned).collect();
                    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
                    return Some(Self { dirs });
                }
                Ok(()) => tried.push(format!("{root}: not a cgroup hierarchy")),
                Err(e) => tried.push(format!("{root}: {e}")),
            }
            let _ = std::fs::remove_dir_all(&base);
        }
        eprintln!("real cgroups unavailable here ({}); the fixture-/proc tests cover binding", tried.join("; "));
        None
    }

    /// Runs a shell that joins the cgroup and then execs a reporter posting
    /// `body` to `socket`; returns what it printed (`<status> <body>`).
    fn run_sender(&self, socket: &Path, body: &str) -> String {
        let procs = self.dirs[0].join("cgroup.procs");
        let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
body = sys.argv[2].encode()
s.sendall(b"POST /v1/reports HTTP/1.1\r\nhost: agent\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)
answer = b""
while chunk := s.recv(65536): answer += chunk
head, _, rest = answer.partition(b"\r\n\r\n")
print(head.split()[1].decode(), rest.decode())
"#;
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("echo $$ > {} && exec python3 -c \"$0\" \"$1\" \"$2\"", procs.display()))
            .args([script, socket.to_str().unwrap(), body])
            .output()
            .unwrap();
        assert!(out.status.success(), "sender failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RealCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}
