//! Starts the fake kubelet (`testkit/fake-kubelet`) and writes its fixture,
//! so a test says "pod sd-0 holds GPU 1" instead of spelling out JSON.
//!
//! ```no_run
//! let dir = tempfile::tempdir().unwrap();
//! let mut node = edge_testkit::fake_kubelet::Fixture::default();
//! node.allocatable("nvidia.com/gpu", &["GPU-0", "GPU-1"]);
//! node.assign("inference", "sd-0", "worker", "nvidia.com/gpu", &["GPU-1"]);
//! let kubelet = edge_testkit::fake_kubelet::FakeKubelet::start(dir.path(), &node);
//! // the agent's --pod-resources-socket is kubelet.socket()
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The fake node: which containers hold which devices.
#[derive(Debug, Clone, Default)]
pub struct Fixture {
    pods: Vec<Value>,
    allocatable: Vec<Value>,
    delay_ms: u64,
}

impl Fixture {
    /// The node can allocate `ids` under `resource`.
    pub fn allocatable(&mut self, resource: &str, ids: &[&str]) -> &mut Self {
        self.allocatable.push(json!({ "resource_name": resource, "device_ids": ids }));
        self
    }

    /// Container `container` of pod `namespace/pod` holds `ids` of `resource`.
    pub fn assign(&mut self, namespace: &str, pod: &str, container: &str, resource: &str, ids: &[&str]) -> &mut Self {
        let devices = json!({ "resource_name": resource, "device_ids": ids });
        let existing = self.pods.iter_mut().find(|p| p["namespace"] == namespace && p["name"] == pod);
        let pod = match existing {
            Some(p) => p,
            None => {
                self.pods.push(json!({ "namespace": namespace, "name": pod, "containers": [] }));
                self.pods.last_mut().expect("just pushed")
            }
        };
        let containers = pod["containers"].as_array_mut().expect("containers array");
        match containers.iter_mut().find(|c| c["name"] == container) {
            Some(c) => c["devices"].as_array_mut().expect("devices array").push(devices),
            None => containers.push(json!({ "name": container, "devices": [devices] })),
        }
        self
    }

    /// Removes every pod (the node runs nothing).
    pub fn clear_pods(&mut self) -> &mut Self {
        self.pods.clear();
        self
    }

    /// Every answer waits `delay` first (a slow kubelet).
    pub fn delay(&mut self, delay: Duration) -> &mut Self {
        self.delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Writes the fixture atomically (a new file renamed over the old one).
    pub fn write(&self, path: &Path) {
        let text = json!({ "pods": self.pods, "allocatable": self.allocatable, "delay_ms": self.delay_ms });
        let dir = path.parent().expect("fixture path has a parent directory");
        let tmp = tempfile::NamedTempFile::new_in(dir).expect("temp file next to the fixture");
        std::fs::write(tmp.path(), text.to_string()).expect("write fake kubelet fixture");
        tmp.persist(path).expect("rename fake kubelet fixture into place");
    }
}

/// A running fake kubelet; stopped on drop.
pub struct FakeKubelet {
    child: Option<Child>,
    dir: PathBuf,
}

impl FakeKubelet {
    /// Writes `fixture` into `dir` and serves it on `dir/kubelet.sock` (the
    /// kubelet's own socket name), once the socket exists.
    pub fn start(dir: &Path, fixture: &Fixture) -> Self {
        let mut kubelet = Self { child: None, dir: dir.to_owned() };
        kubelet.update(fixture);
        kubelet.restart();
        kubelet
    }

    /// The socket the agent's `--pod-resources-socket` names.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("kubelet.sock")
    }

    /// The fixture file.
    pub fn fixture_path(&self) -> PathBuf {
        self.dir.join("fake-kubelet.json")
    }

    /// Changes the answers while it runs.
    pub fn update(&mut self, fixture: &Fixture) {
        fixture.write(&self.fixture_path());
    }

    /// Stops it with SIGTERM, as a kubelet restart begins: the socket is gone
    /// once this returns.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let status = child.wait().expect("wait for fake-kubelet");
        assert!(status.success(), "fake-kubelet exited with {status}");
        assert!(!self.socket().exists(), "fake-kubelet left its socket behind");
    }

    /// Starts it (again) on the same socket.
    pub fn restart(&mut self) {
        self.stop();
        let bin = crate::artifact("fake-kubelet");
        let child = Command::new(&bin)
            .arg("--socket")
            .arg(self.socket())
            .arg("--fixture")
            .arg(self.fixture_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.socket().exists() {
            assert!(Instant::now() < deadline, "fake-kubelet did not create {}", self.socket().display());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
