//! The `pod_resources` collector end to end: the real `edge-agent` binary asks
//! the fake kubelet (`testkit/fake-kubelet`, a real process serving the
//! kubelet's PodResources v1 proto on a real Unix socket) which pod holds
//! which device, next to the fake NVML library and the fake neuron-monitor,
//! and the tests read `/metrics` and the gRPC feed.
//!
//! Needs `cargo build --workspace` first (the fake NVML library and the fake
//! kubelet binary), as `scripts/test` does.

use std::path::Path;
use std::time::Duration;

use edge_telemetry::proto::{CollectorHealth, CollectorState, NodeSnapshot};
use edge_testkit::fake_kubelet::{FakeKubelet, Fixture};
use edge_testkit::fake_nvml::{CONFIG_ENV, Config};
use edge_testkit::{Agent, AgentBuilder, eventually, fake_nvml_library};

const WAIT: Duration = Duration::from_secs(20);
const GPU: &str = "nvidia.com/gpu";

fn agent(nvml: &Path, socket: &Path) -> AgentBuilder {
    AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent"))
        .flag("nvml-library", fake_nvml_library().display().to_string())
        .env(CONFIG_ENV, nvml.display().to_string())
        .flag("pod-resources-socket", socket.display().to_string())
}

/// Two fake GPUs and a kubelet that can hand out both.
struct Node {
    dir: tempfile::TempDir,
    nvml: Config,
    kubelet: Fixture,
}

impl Node {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nvml = Config::with_gpus(2);
        nvml.write(&dir.path().join("nvml.json"));
        let mut kubelet = Fixture::default();
        kubelet.allocatable(GPU, &[nvml.gpus[0].uuid(), nvml.gpus[1].uuid()]);
        Self { dir, nvml, kubelet }
    }

    fn uuid(&self, i: usize) -> String {
        self.nvml.gpus[i].uuid().to_owned()
    }

    /// Pod `ml/sd-1` holds GPU 1; the fake kubelet serves that.
    fn with_pod_on_gpu1() -> (Self, FakeKubelet) {
        let mut node = Self::new();
        let gpu1 = node.uuid(1);
        node.kubelet.assign("ml", "sd-1", "worker", GPU, &[&gpu1]);
        let kubelet = FakeKubelet::start(node.dir.path(), &node.kubelet);
        (node, kubelet)
    }

    /// From now on only pod `ml/sd-2` holds a GPU, GPU 0 (written to the
    /// kubelet's fixture, running or not).
    fn move_pod_to_gpu0(&mut self, kubelet: &mut FakeKubelet) {
        let gpu0 = self.uuid(0);
        self.kubelet.clear_pods().assign("ml", "sd-2", "worker", GPU, &[&gpu0]);
        kubelet.update(&self.kubelet);
    }

    fn nvml_path(&self) -> std::path::PathBuf {
        self.dir.path().join("nvml.json")
    }
}

/// The `DCGM_FI_DEV_GPU_UTIL` line of GPU `uuid`, labels and value.
fn util_line(metrics: &str, uuid: &str) -> Option<String> {
    metrics
        .lines()
        .find(|l| l.starts_with("DCGM_FI_DEV_GPU_UTIL{") && l.contains(&format!(r#"UUID="{uuid}""#)))
        .map(str::to_owned)
}

fn pod_labels(pod: &str) -> String {
    format!(r#",container="worker",namespace="ml",pod="{pod}"}}"#)
}

fn health(s: &NodeSnapshot) -> CollectorHealth {
    s.collectors.iter().find(|c| c.collector == "pod_resources").cloned().expect("pod_resources in the health list")
}

fn state(s: &NodeSnapshot) -> CollectorState {
    CollectorState::try_from(health(s).state).unwrap()
}

/// Waits until GPU `uuid`'s series on `/metrics` satisfies `check`.
fn wait_line(agent: &Agent, uuid: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    eventually(WAIT, what, || util_line(&agent.metrics(), uuid).filter(|l| check(l)))
}

#[test]
fn pod_labels_land_on_the_gpu_the_pod_holds_and_follow_it() {
    let (mut node, mut kubelet) = Node::with_pod_on_gpu1();
    let agent = agent(&node.nvml_path(), &kubelet.socket()).start();

    let held = wait_line(&agent, &node.uuid(1), "GPU 1 labelled with its pod", |l| l.contains(&pod_labels("sd-1")));
    let value: f64 = held.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a value");
    assert_eq!(value, 11.0, "GPU 1's own utilisation: {held}");
    let m = agent.metrics();
    let free = util_line(&m, &node.uuid(0)).expect("GPU 0 series");
    assert!(!free.contains("pod="), "GPU 0 is held by nobody: {free}");
    assert_eq!(
        edge_testkit::sample(&m, r#"edge_pod_resources_allocatable_devices{resource="nvidia.com/gpu"}"#),
        Some(2.0)
    );
    assert_eq!(
        edge_testkit::sample(&m, r#"edge_pod_resources_assigned_devices{resource="nvidia.com/gpu"}"#),
        Some(1.0)
    );
    assert_eq!(edge_testkit::sample(&m, r#"edge_collector_up{collector="pod_resources"}"#), Some(1.0));

    // The snapshot the scaler receives carries the holders too.
    let snap = agent.snapshot_until(WAIT, |s| s.gpus.len() == 2 && !s.gpus[1].pods.is_empty());
    assert!(snap.gpus[0].pods.is_empty());
    assert_eq!((snap.gpus[1].pods[0].namespace.as_str(), snap.gpus[1].pods[0].pod.as_str()), ("ml", "sd-1"));

    // The pod is rescheduled onto GPU 0; the labels move with it.
    node.move_pod_to_gpu0(&mut kubelet);
    wait_line(&agent, &node.uuid(0), "GPU 0 labelled with the new pod", |l| l.contains(&pod_labels("sd-2")));
    wait_line(&agent, &node.uuid(1), "GPU 1 unlabelled", |l| !l.contains("pod="));
}

#[test]
fn a_kubelet_restart_is_recovered_without_restarting_the_agent() {
    let (mut node, mut kubelet) = Node::with_pod_on_gpu1();
    let agent = agent(&node.nvml_path(), &kubelet.socket()).start();
    let pid = agent.pid();
    wait_line(&agent, &node.uuid(1), "GPU 1 labelled", |l| l.contains(&pod_labels("sd-1")));

    // The kubelet goes away and its socket with it: failing, mapping kept.
    kubelet.stop();
    // (While it shuts down a question may fail otherwise first; then the socket is gone.)
    let down =
        agent.snapshot_until(WAIT, |s| state(s) == CollectorState::Failing && health(s).message.contains("gone"));
    assert!(health(&down).errors >= 1);
    assert_eq!(down.gpus[1].pods.len(), 1, "the last good mapping is kept while the kubelet is away");

    // It comes back (a new socket at the same path) with the pod moved.
    node.move_pod_to_gpu0(&mut kubelet);
    kubelet.restart();
    let up = agent.snapshot_until(WAIT, |s| state(s) == CollectorState::Ok && !s.gpus[0].pods.is_empty());
    assert_eq!(up.gpus[0].pods[0].pod, "sd-2");
    assert!(up.gpus[1].pods.is_empty());
    wait_line(&agent, &node.uuid(0), "GPU 0 labelled after the restart", |l| l.contains(&pod_labels("sd-2")));
    assert_eq!(agent.pid(), pid, "same agent process");
}

#[test]
fn a_slow_kubelet_keeps_the_last_mapping_and_never_holds_up_a_tick() {
    let (mut node, mut kubelet) = Node::with_pod_on_gpu1();
    let agent = agent(&node.nvml_path(), &kubelet.socket()).flag("pod-resources-timeout", "100ms").start();
    agent.snapshot_until(WAIT, |s| s.gpus.len() == 2 && !s.gpus[1].pods.is_empty());

    // From now on every answer takes far longer than the timeout.
    node.kubelet.delay(Duration::from_secs(30));
    kubelet.update(&node.kubelet);
    let slow = agent.snapshot_until(WAIT, |s| state(s) == CollectorState::Failing);
    assert!(health(&slow).message.contains("did not answer within 100ms"), "{:?}", health(&slow));
    assert_eq!(slow.gpus[1].pods.len(), 1, "mapping kept");
    // The ticks go on (the GPU values change and are seen) with the mapping kept.
    let mut nvml = node.nvml.clone();
    nvml.gpu(1).set("utilization", serde_json::json!({"gpu": 77, "memory": 1}));
    nvml.write(&node.nvml_path());
    let later = agent.snapshot_until(WAIT, |s| {
        s.gpus.get(1).is_some_and(|g| g.gpu_utilization_percent == Some(77)) && health(s).errors >= 2
    });
    assert_eq!(later.gpus[1].pods[0].pod, "sd-1", "mapping kept while the kubelet is slow");
    assert_eq!(state(&later), CollectorState::Failing);
}

#[test]
fn no_socket_is_an_absent_collector_not_an_error() {
    let node = Node::new();
    let agent = agent(&node.nvml_path(), &node.dir.path().join("kubelet.sock")).start();
    let mut ticks = std::collections::BTreeSet::new();
    let snap = agent.snapshot_until(WAIT, |s| {
        ticks.insert(s.sequence);
        ticks.len() > 3
    });
    let h = health(&snap);
    assert_eq!((state(&snap), h.errors), (CollectorState::Absent, 0), "{h:?}");
    assert!(snap.gpus.iter().all(|g| g.pods.is_empty()) && snap.allocatable.is_empty());
    let m = agent.metrics();
    assert_eq!(edge_testkit::sample(&m, r#"edge_collector_absent{collector="pod_resources"}"#), Some(1.0));
    assert!(!m.contains("pod="), "no pod labels without a kubelet:\n{m}");
}

#[test]
fn neuroncores_carry_the_pod_holding_the_core_or_its_device() {
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = Fixture::default();
    fixture.allocatable("aws.amazon.com/neuroncore", &["0", "1"]);
    fixture.assign("ml", "sd-neuron-0", "worker", "aws.amazon.com/neuroncore", &["0"]);
    let mut kubelet = FakeKubelet::start(dir.path(), &fixture);
    let fake = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/neuron-monitor/fake-neuron-monitor");
    let replay = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/neuron-monitor/inf2.xlarge.jsonl");
    let agent = AgentBuilder::new(env!("CARGO_BIN_EXE_edge-agent"))
        .flag("neuron-monitor", fake)
        .flag("neuron-monitor-config", dir.path().join("monitor.json").display().to_string())
        .env("FAKE_NEURON_FIXTURE", replay)
        .flag("pod-resources-socket", kubelet.socket().display().to_string())
        .start();
    let core0 = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("neuroncore_utilization_ratio{") && l.contains(r#"neuroncore="0""#))
            .map(str::to_owned)
    };
    let held = r#"neuroncore="0",namespace="ml",pod="sd-neuron-0",container="worker"}"#;
    eventually(WAIT, "core 0 labelled with its pod", || core0(&agent.metrics()).filter(|l| l.contains(held)));

    // The same pod holding the whole NeuronDevice 0 (cores 0 and 1 on inf2).
    fixture.clear_pods().assign("ml", "sd-neuron-1", "worker", "aws.amazon.com/neurondevice", &["0"]);
    kubelet.update(&fixture);
    let snap = agent.snapshot_until(WAIT, |s| {
        s.neuron_cores.iter().any(|c| c.pods.first().is_some_and(|p| p.pod == "sd-neuron-1"))
    });
    assert_eq!(snap.neuron_instance.as_ref().and_then(|i| i.neuroncores_per_device), Some(2));
    assert!(snap.neuron_cores.iter().all(|c| c.index > 1 || c.pods.iter().any(|p| p.pod == "sd-neuron-1")), "{snap:?}");
}

#[test]
fn a_mig_nodes_instances_are_series_of_their_own_with_their_pods() {
    let dir = tempfile::tempdir().unwrap();
    let mut nvml = Config::with_gpus(2);
    nvml.gpu(0).mig(&["1g.5gb", "2g.10gb"]);
    nvml.write(&dir.path().join("nvml.json"));
    let (mig0, mig1) = (nvml.gpus[0].mig_uuid(0), nvml.gpus[0].mig_uuid(1));
    let mut fixture = Fixture::default();
    fixture.allocatable("nvidia.com/mig-1g.5gb", &[&mig0]).allocatable("nvidia.com/mig-2g.10gb", &[&mig1]);
    fixture.assign("ml", "sd-mig-0", "worker", "nvidia.com/mig-1g.5gb", &[&mig0]);
    let kubelet = FakeKubelet::start(dir.path(), &fixture);
    let agent = agent(&dir.path().join("nvml.json"), &kubelet.socket()).start();

    let uuid = nvml.gpus[0].uuid();
    let base =
        format!(r#"gpu="0",UUID="{uuid}",pci_bus_id="00000000:10:00.0",device="nvidia0",modelName="NVIDIA A10G""#);
    let held = format!(
        r#"DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{base},GPU_I_PROFILE="1g.5gb",GPU_I_ID="7",Hostname="test-node",container="worker",namespace="ml",pod="sd-mig-0"}}"#
    );
    let free =
        format!(r#"DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{base},GPU_I_PROFILE="2g.10gb",GPU_I_ID="8",Hostname="test-node"}}"#);
    // Activity needs two GPM samples, so it shows from the second tick on.
    let m = eventually(WAIT, "both MIG instances' activity", || {
        let m = agent.metrics();
        (edge_testkit::sample(&m, &held).is_some() && edge_testkit::sample(&m, &free).is_some()).then_some(m)
    });
    assert_eq!(edge_testkit::sample(&m, &held), Some(0.25));
    assert_eq!(edge_testkit::sample(&m, &free), Some(0.5));
    let fb = format!(
        r#"DCGM_FI_DEV_FB_USED{{{base},GPU_I_PROFILE="1g.5gb",GPU_I_ID="7",Hostname="test-node",container="worker",namespace="ml",pod="sd-mig-0"}}"#
    );
    assert_eq!(edge_testkit::sample(&m, &fb), Some(1024.0), "{m}");
    // GPU_UTIL means nothing under MIG: GPU 0 has none, GPU 1 (no MIG) has its own.
    assert!(util_line(&m, uuid).is_none(), "{m}");
    assert!(util_line(&m, nvml.gpus[1].uuid()).is_some(), "{m}");

    let snap = agent.snapshot_until(WAIT, |s| s.gpus.first().is_some_and(|g| g.mig_instances.len() == 2));
    let instances = &snap.gpus[0].mig_instances;
    assert_eq!((instances[0].gpu_instance_id, instances[0].profile.as_str()), (7, "1g.5gb"));
    assert_eq!(instances[0].uuid, mig0);
    assert_eq!(instances[0].pods[0].pod, "sd-mig-0");
    assert!(instances[1].pods.is_empty() && snap.gpus[0].pods.is_empty());
    assert!(snap.gpus[1].mig_instances.is_empty());
}
