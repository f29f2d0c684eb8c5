//! Which pod holds which GPU, MIG device or NeuronCore: the kubelet's
//! PodResources v1 API (`List`, `GetAllocatableResources`) over its Unix
//! socket, the source dcgm-exporter's `namespace`/`pod`/`container` labels
//! come from.
//!
//! The kubelet is asked from a task of its own, every `--interval`, with a
//! timeout: the ticker only reads the last answer ([`PodResourcesCollector::latest`]),
//! so a slow or hung kubelet never delays a tick. A failed, late or refused
//! answer keeps the last good mapping, marks the collector failing and
//! counts one error (the staleness count).
//!
//! Health of the `pod_resources` collector:
//! * disabled (`--pod-resources-socket ""`), or no socket at that path since
//!   the agent started: **absent** — a node outside Kubernetes has no kubelet.
//! * the socket went away after it was there (a kubelet restart removes and
//!   recreates it; the chart mounts the directory, not the socket, so the new
//!   one is seen), or the kubelet does not answer in time or answers with an
//!   error: **failing**, last good mapping kept, and counted. The connection
//!   is dropped and made again on the next try.
//!
//! Device ids are what the device plugins hand the kubelet: GPU UUIDs
//! (`GPU-…`) for `nvidia.com/gpu`, MIG UUIDs (`MIG-…`) for `nvidia.com/mig-*`
//! (and for `nvidia.com/gpu` under the plugin's `single` MIG strategy), a
//! `::n` replica suffix under time-slicing; NeuronCore indices for
//! `aws.amazon.com/neuroncore`, NeuronDevice indices for
//! `aws.amazon.com/neuron` and `aws.amazon.com/neurondevice`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_telemetry::podresources as v1;
use edge_telemetry::podresources::pod_resources_lister_client::PodResourcesListerClient;
use edge_telemetry::proto::{AllocatableResource, CollectorState, NodeSnapshot, PodRef};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use super::{Reading, health};

/// The collector's name in the snapshot's health list.
pub const NAME: &str = edge_telemetry::view::CollectorName::PodResources.as_str();

/// The kubelet's socket where the kubelet puts it.
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// Resource names of NVIDIA's device plugin: whole GPUs (time-sliced ones
/// included), and MIG devices under `nvidia.com/mig-<profile>`.
const NVIDIA_GPU: &str = "nvidia.com/gpu";
const NVIDIA_PREFIX: &str = "nvidia.com/";
/// AWS Neuron device plugin: one NeuronCore per id.
const NEURON_CORE: &str = "aws.amazon.com/neuroncore";
/// AWS Neuron device plugin: one NeuronDevice per id (two spellings).
const NEURON_DEVICES: [&str; 2] = ["aws.amazon.com/neuron", "aws.amazon.com/neurondevice"];

/// Where the kubelet is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct PodResourcesSettings {
    /// The kubelet's PodResources socket; None disables the collector.
    pub socket: Option<PathBuf>,
    /// How often to ask.
    pub period: Duration,
    /// How long one question may take.
    pub timeout: Duration,
}

/// Who holds which device, from one answer of the kubelet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attribution {
    /// GPU and MIG UUIDs to the containers holding them.
    pub nvidia: BTreeMap<String, Vec<PodRef>>,
    /// NeuronCore index to holders (`aws.amazon.com/neuroncore`).
    pub neuron_cores: BTreeMap<u32, Vec<PodRef>>,
    /// NeuronDevice index to holders (`aws.amazon.com/neuron`, `…/neurondevice`).
    pub neuron_devices: BTreeMap<u32, Vec<PodRef>>,
    /// Per resource name: devices allocatable and assigned.
    pub allocatable: Vec<AllocatableResource>,
}

impl Attribution {
    /// Reads the kubelet's two answers. Ids a device plugin of ours would
    /// not hand out (a Neuron id that is not an index) are skipped and
    /// returned, for the log.
    pub fn from_kubelet(
        list: &v1::ListPodResourcesResponse,
        allocatable: &v1::AllocatableResourcesResponse,
    ) -> (Self, Vec<String>) {
        let mut out = Attribution::default();
        let mut skipped = Vec::new();
        let mut assigned: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for pod in &list.pod_resources {
            for container in &pod.containers {
                let holder = PodRef {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    container: container.name.clone(),
                };
                for devices in &container.devices {
                    let resource = devices.resource_name.as_str();
                    assigned.entry(resource).or_default().extend(devices.device_ids.iter().map(String::as_str));
                    for id in &devices.device_ids {
                        if !out.add(resource, id, &holder) {
                            skipped.push(format!("{resource} {id:?}"));
                        }
                    }
                }
            }
        }
        for holders in
            out.nvidia.values_mut().chain(out.neuron_cores.values_mut()).chain(out.neuron_devices.values_mut())
        {
            holders.sort_by(|a, b| (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container)));
            holders.dedup();
        }
        let mut resources: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for d in &allocatable.devices {
            resources.entry(d.resource_name.as_str()).or_default().extend(d.device_ids.iter().map(String::as_str));
        }
        for name in assigned.keys() {
            resources.entry(name).or_default();
        }
        out.allocatable = resources
            .iter()
            .map(|(name, ids)| AllocatableResource {
                resource_name: (*name).to_owned(),
                devices: count(ids.len()),
                assigned: count(assigned.get(name).map_or(0, BTreeSet::len)),
            })
            .collect();
        (out, skipped)
    }

    /// Files one device id; false if it cannot name a device of ours.
    fn add(&mut self, resource: &str, id: &str, holder: &PodRef) -> bool {
        let push = |holders: &mut Vec<PodRef>| holders.push(holder.clone());
        if resource == NVIDIA_GPU || resource.starts_with(NVIDIA_PREFIX) {
            // Time-slicing hands out replicas of one GPU as `<uuid>::<n>`.
            let uuid = id.split_once("::").map_or(id, |(uuid, _)| uuid);
            push(self.nvidia.entry(uuid.to_owned()).or_default());
            return true;
        }
        let index = || id.trim().parse::<u32>().ok();
        if resource == NEURON_CORE {
            let Some(i) = index() else { return false };
            push(self.neuron_cores.entry(i).or_default());
        } else if NEURON_DEVICES.contains(&resource) {
            let Some(i) = index() else { return false };
            push(self.neuron_devices.entry(i).or_default());
        }
        true
    }

    /// Writes the holders into the snapshot's GPUs, MIG devices and
    /// NeuronCores (replacing what an earlier tick wrote), and the
    /// allocatable resources.
    pub fn apply(&self, snapshot: &mut NodeSnapshot) {
        let holders = |uuid: &str| self.nvidia.get(uuid).cloned().unwrap_or_default();
        for gpu in &mut snapshot.gpus {
            gpu.pods = holders(&gpu.uuid);
            for mig in &mut gpu.mig_instances {
                mig.pods = holders(&mig.uuid);
            }
        }
        let per_device = snapshot.neuron_instance.as_ref().and_then(|i| i.neuroncores_per_device).filter(|&n| n > 0);
        for core in &mut snapshot.neuron_cores {
            let mut pods = self.neuron_cores.get(&core.index).cloned().unwrap_or_default();
            if let Some(device) = per_device.and_then(|n| self.neuron_devices.get(&(core.index / n))) {
                pods.extend(device.iter().cloned());
                pods.sort_by(|a, b| (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container)));
                pods.dedup();
            }
            core.pods = pods;
        }
        snapshot.allocatable.clone_from(&self.allocatable);
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// State shared by the asking task and [`PodResourcesCollector::latest`].
#[derive(Debug)]
struct Shared {
    state: CollectorState,
    message: String,
    errors: u64,
    last_duration: Duration,
    attribution: Arc<Attribution>,
}

/// The kubelet's latest answer, kept up to date by a task of its own.
#[derive(Clone)]
pub struct PodResourcesCollector {
    shared: Arc<Mutex<Shared>>,
}

impl PodResourcesCollector {
    /// Starts asking the kubelet (unless disabled) until `shutdown` flips.
    pub fn spawn(settings: PodResourcesSettings, shutdown: watch::Receiver<bool>) -> Self {
        let (state, message) = match &settings.socket {
            None => (CollectorState::Absent, "disabled".to_owned()),
            Some(path) => (CollectorState::Absent, format!("no kubelet socket at {}", path.display())),
        };
        let shared = Arc::new(Mutex::new(Shared {
            state,
            message,
            errors: 0,
            last_duration: Duration::ZERO,
            attribution: Arc::default(),
        }));
        if let Some(socket) = settings.socket.clone() {
            let asker = Asker { socket, timeout: settings.timeout, shared: Arc::clone(&shared), seen: false };
            tokio::spawn(asker.run(settings.period, shutdown));
        }
        Self { shared }
    }

    /// The mapping to apply this tick, with the collector's health.
    pub fn latest(&self) -> Reading<Arc<Attribution>> {
        let s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let mut h = health(NAME, s.state, s.message.clone(), s.errors);
        h.last_duration_seconds = s.last_duration.as_secs_f64();
        Reading { value: Arc::clone(&s.attribution), health: h }
    }
}

struct Asker {
    socket: PathBuf,
    timeout: Duration,
    shared: Arc<Mutex<Shared>>,
    /// Whether the socket was ever there: only then is its absence a failure.
    seen: bool,
}

impl Asker {
    async fn run(mut self, period: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut channel: Option<Channel> = None;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let started = Instant::now();
            let outcome = self.ask(&mut channel).await;
            let elapsed = started.elapsed();
            if outcome.is_err() {
                // A connection that failed or hangs is not reused.
                channel = None;
            }
            self.record(outcome, elapsed);
        }
    }

    async fn ask(&mut self, channel: &mut Option<Channel>) -> Result<Attribution, Failure> {
        match self.socket.try_exists() {
            Ok(true) => {}
            Ok(false) => return Err(if self.seen { Failure::Gone } else { Failure::NeverThere }),
            // The kubelet's directory is root's, mode 0750.
            Err(e) => return Err(Failure::Inaccessible(e.to_string())),
        }
        if !self.seen {
            tracing::info!(socket = %self.socket.display(), "kubelet PodResources socket found");
            self.seen = true;
        }
        let channel = channel.get_or_insert_with(|| connect(self.socket.clone())).clone();
        let mut client = PodResourcesListerClient::new(channel);
        let answers = async {
            let list = client.list(v1::ListPodResourcesRequest {}).await?.into_inner();
            let allocatable = client.get_allocatable_resources(v1::AllocatableResourcesRequest {}).await?.into_inner();
            Ok::<_, tonic::Status>((list, allocatable))
        };
        let (list, allocatable) = tokio::time::timeout(self.timeout, answers)
            .await
            .map_err(|_| Failure::Timeout(self.timeout))?
            .map_err(|s| Failure::Status(s.code(), s.message().to_owned()))?;
        let (attribution, skipped) = Attribution::from_kubelet(&list, &allocatable);
        if !skipped.is_empty() {
            tracing::debug!(skipped = ?skipped, "device ids that name no device of ours");
        }
        Ok(attribution)
    }

    fn record(&self, outcome: Result<Attribution, Failure>, elapsed: Duration) {
        let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        s.last_duration = elapsed;
        let (state, message) = match outcome {
            Ok(attribution) => {
                if s.state == CollectorState::Failing {
                    tracing::info!(socket = %self.socket.display(), "kubelet answers again");
                }
                if *s.attribution != attribution {
                    s.attribution = Arc::new(attribution);
                }
                (CollectorState::Ok, String::new())
            }
            Err(Failure::NeverThere) => {
                (CollectorState::Absent, format!("no kubelet socket at {}", self.socket.display()))
            }
            Err(failure) => {
                s.errors += 1;
                let message = format!("{}; keeping the last pod-to-device mapping", failure.describe(&self.socket));
                if s.message != message {
                    tracing::warn!(socket = %self.socket.display(), "{message}");
                }
                (CollectorState::Failing, message)
            }
        };
        s.state = state;
        s.message = message;
    }
}

/// Why one question got no usable answer.
#[derive(Debug)]
enum Failure {
    NeverThere,
    Gone,
    Timeout(Duration),
    Status(tonic::Code, String),
    Inaccessible(String),
}

impl Failure {
    fn describe(&self, socket: &std::path::Path) -> String {
        match self {
            Failure::NeverThere => format!("no kubelet socket at {}", socket.display()),
            Failure::Gone => format!("kubelet socket {} is gone (kubelet restarting?)", socket.display()),
            Failure::Timeout(t) => format!("kubelet did not answer within {t:?}"),
            Failure::Status(code, message) => format!("kubelet PodResources failed: {code:?}: {message}"),
            Failure::Inaccessible(e) => format!(
                "cannot reach kubelet socket {}: {e} (the kubelet's socket is root's: run the agent as uid 0, \
                 agent.podResources in the chart)",
                socket.display()
            ),
        }
    }
}

/// A channel that dials the Unix socket anew on every (re)connect, so a
/// socket the kubelet recreated is the one used.
fn connect(socket: PathBuf) -> Channel {
    // The URI is required by the API and unused: the connector dials the socket.
    Endpoint::from_static("http://localhost").connect_with_connector_lazy(tower::service_fn(
        move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move { tokio::net::UnixStream::connect(socket).await.map(hyper_util::rt::TokioIo::new) }
        },
    ))
}

#[cfg(test)]
mod tests;
