//! Replicas of the scaler share device demand.
//!
//! KEDA holds its `StreamIsActive` calls on one connection, so on one
//! replica, while a device's inventory pull reaches whichever replica its
//! Service picks. Demand recorded on one replica alone would wake nothing
//! when KEDA listens on another. So every replica sends each demand record
//! to its peers the moment it records it, and every few seconds tells them
//! which triggers listen on it (what the inventory names under `waking`);
//! their answers tell it theirs.
//!
//! Peers are the `--peers` addresses (a headless Service's name resolves to
//! every replica), resolved again every [`SYNC_EVERY`]. Each peer has its own
//! link task and buffer, so a slow or gone peer delays no other. A replica
//! finds itself among the addresses by its random id: the peer answers 409
//! to a sync carrying its own id, and the sender stops syncing there.
//!
//! What a peer sends is checked as a device's pull is: known accelerator and
//! zone, a device-id-shaped requester, at most [`MAX_RECORDS`] per sync, and
//! it is demand only while the class has no ready endpoint here either. It
//! grants nothing a device's pull could not do: the inventory is open to
//! devices, and demand is bounded per class the same way.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use edge_telemetry::AcceleratorType;
use edge_telemetry::http1;
use edge_telemetry::inventory::Waking;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::agents::AgentTable;
use crate::demand::{Demand, DemandClass, REMOTE_LISTENERS_FRESH};
use crate::inventory;
use crate::metrics::ScalerMetrics;

/// Where a replica takes its peers' syncs (on its HTTP port).
pub const SYNC_PATH: &str = "/v1/peers/sync";

/// How often a replica syncs with each peer when nothing happens, and
/// resolves `--peers` again: three syncs within a listener's freshness.
pub const SYNC_EVERY: Duration = Duration::from_secs(REMOTE_LISTENERS_FRESH.as_secs() / 3);

/// Most demand records one sync carries (a larger one is refused).
pub const MAX_RECORDS: usize = 1024;

/// Records waiting for one peer; beyond it new ones are dropped (counted).
const MAX_PENDING: usize = 4 * MAX_RECORDS;

/// How long one sync (connect, send, answer) may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest answer read from a peer (its listeners).
const MAX_ANSWER: u64 = 4 << 20;

/// One device's pull for a class with no ready endpoint, as a peer hears of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DemandRecord {
    /// The accelerator asked for.
    pub accelerator: AcceleratorType,
    /// The zone asked for; `None`: any.
    pub zone: Option<String>,
    /// The device (its `device` id, or its address).
    pub requester: String,
}

/// What a replica sends its peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// The sender's random id (a replica that gets its own knows it is itself).
    pub origin: u64,
    /// The triggers with an open stream at the sender.
    pub listeners: Vec<Waking>,
    /// Demand the sender recorded since its last sync.
    pub demand: Vec<DemandRecord>,
}

/// What the peer answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncAnswer {
    /// The peer's id.
    pub origin: u64,
    /// The triggers with an open stream at the peer.
    pub listeners: Vec<Waking>,
}

/// Why a sync was refused: the HTTP status and the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The sync came from this very replica (409).
    #[error("this is the sender itself")]
    Myself,
    /// Malformed content (400), naming the field.
    #[error("{0}")]
    Invalid(String),
}

/// This replica's side of the peer sync.
pub struct Peers {
    origin: u64,
    demand: Arc<Demand>,
    metrics: Arc<ScalerMetrics>,
    links: Mutex<HashMap<SocketAddr, Arc<Link>>>,
}

/// One peer's buffer, drained by its link task.
struct Link {
    pending: Mutex<Vec<DemandRecord>>,
    wake: Notify,
}

/// A random id per process: `RandomState` is seeded from the OS per process,
/// so no two replicas (nor a restarted one) share one.
fn random_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere leaves nothing half-done worth refusing.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Peers {
    /// The peer side of a replica whose demand is `demand`.
    pub fn new(demand: Arc<Demand>, metrics: Arc<ScalerMetrics>) -> Arc<Self> {
        Arc::new(Self { origin: random_id(), demand, metrics, links: Mutex::new(HashMap::new()) })
    }

    /// This replica's id.
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// Tells every peer of a demand record (at once, without waiting).
    pub fn forward(&self, record: DemandRecord) {
        for link in lock(&self.links).values() {
            let mut pending = lock(&link.pending);
            if pending.len() >= MAX_PENDING {
                self.metrics.peer_demand_dropped.inc();
                continue;
            }
            pending.push(record.clone());
            drop(pending);
            link.wake.notify_one();
        }
    }

    /// Takes a peer's sync: remembers its listeners, records its demand
    /// (while the class has no ready endpoint here), answers with ours.
    pub fn receive(&self, table: &AgentTable, request: SyncRequest) -> Result<SyncAnswer, Refusal> {
        if request.origin == self.origin {
            return Err(Refusal::Myself);
        }
        if request.demand.len() > MAX_RECORDS {
            return Err(Refusal::Invalid(format!(
                "demand: {} records; at most {MAX_RECORDS} per sync",
                request.demand.len()
            )));
        }
        for r in &request.demand {
            inventory::check_device(&r.requester)
                .map_err(|e| Refusal::Invalid(format!("demand.requester: {}", e.error)))?;
        }
        self.demand.set_remote(request.origin, request.listeners);
        // Decided once per class: a sync carries many devices of few classes.
        let mut takes: HashMap<DemandClass, bool> = HashMap::new();
        let mut ignored = 0usize;
        for r in request.demand {
            let class = DemandClass { accelerator: r.accelerator, zone: r.zone };
            let take = *takes.entry(class.clone()).or_insert_with(|| {
                let zone_known = class.zone.as_deref().is_none_or(|z| table.knows_zone(z));
                let query = inventory::Query {
                    accelerator: Some(class.accelerator),
                    zone: class.zone.clone(),
                    ..Default::default()
                };
                zone_known && !table.serves(&query)
            });
            if !take {
                ignored += 1;
                continue;
            }
            let accelerator = class.accelerator;
            if self.demand.record(class, &r.requester) {
                tracing::info!(%accelerator, peer = request.origin, "a peer's device demand wakes a class");
            }
        }
        if ignored > 0 {
            tracing::debug!(ignored, peer = request.origin, "peer demand for unknown zones or served classes ignored");
        }
        Ok(SyncAnswer { origin: self.origin, listeners: self.demand.local_listeners() })
    }

    /// Keeps one link per peer address until `stop`: resolves `targets`
    /// every [`SYNC_EVERY`] and tells every peer when our listeners change.
    pub async fn run(self: Arc<Self>, targets: Vec<String>, mut stop: watch::Receiver<bool>) {
        let mut tasks: HashMap<SocketAddr, JoinHandle<()>> = HashMap::new();
        let myself: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
        let mut listeners = self.demand.subscribe_listeners();
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tracing::info!(peers = ?targets, origin = self.origin, "sharing device demand with the other replicas");
        loop {
            enum Event {
                Tick,
                ListenersChanged,
                Stop,
            }
            // The work happens outside the select: its futures (a watch guard
            // among them) are gone by then.
            let event = tokio::select! {
                _ = tick.tick() => Event::Tick,
                changed = listeners.changed() => if changed.is_ok() { Event::ListenersChanged } else { Event::Stop },
                _ = stop.wait_for(|s| *s) => Event::Stop,
            };
            match event {
                Event::Stop => break,
                Event::ListenersChanged => {
                    for link in lock(&self.links).values() {
                        link.wake.notify_one();
                    }
                }
                Event::Tick => {
                    let found = resolve(&targets).await;
                    let mine = lock(&myself).clone();
                    let wanted: HashSet<SocketAddr> = found.into_iter().filter(|a| !mine.contains(a)).collect();
                    tasks.retain(|addr, task| {
                        let keep = wanted.contains(addr) && !task.is_finished();
                        if !keep {
                            task.abort();
                        }
                        keep
                    });
                    let mut links = lock(&self.links);
                    links.retain(|addr, _| tasks.contains_key(addr));
                    for addr in wanted {
                        if tasks.contains_key(&addr) {
                            continue;
                        }
                        let link = Arc::new(Link { pending: Mutex::new(Vec::new()), wake: Notify::new() });
                        links.insert(addr, Arc::clone(&link));
                        tasks.insert(addr, tokio::spawn(Arc::clone(&self).sync_with(addr, link, Arc::clone(&myself))));
                    }
                }
            }
        }
        for task in tasks.values() {
            task.abort();
        }
    }

    /// One peer's link: syncs when woken (demand, listeners) or every
    /// [`SYNC_EVERY`]; ends when the address turns out to be this replica.
    async fn sync_with(self: Arc<Self>, addr: SocketAddr, link: Arc<Link>, myself: Arc<Mutex<HashSet<SocketAddr>>>) {
        let mut failing = false;
        loop {
            let batch: Vec<DemandRecord> = {
                let mut pending = lock(&link.pending);
                let n = pending.len().min(MAX_RECORDS);
                let mut batch: Vec<DemandRecord> = pending.drain(..n).collect();
                if !pending.is_empty() {
                    link.wake.notify_one();
                }
                let mut seen = HashSet::new();
                batch.retain(|r| seen.insert(r.clone()));
                batch
            };
            let request = SyncRequest { origin: self.origin, listeners: self.demand.local_listeners(), demand: batch };
            match sync_once(addr, &request).await {
                Ok(Some(answer)) => {
                    self.metrics.peer_sync(true);
                    self.demand.set_remote(answer.origin, answer.listeners);
                    if failing {
                        tracing::info!(peer = %addr, "peer answers again");
                        failing = false;
                    }
                }
                Ok(None) => {
                    tracing::info!(peer = %addr, "this address is this replica itself; not syncing with it");
                    lock(&myself).insert(addr);
                    return;
                }
                Err(error) => {
                    self.metrics.peer_sync(false);
                    if !failing {
                        tracing::warn!(peer = %addr, %error, "cannot sync with a peer; its demand reaches it late");
                        failing = true;
                    }
                }
            }
            tokio::select! {
                _ = link.wake.notified() => {}
                _ = tokio::time::sleep(SYNC_EVERY) => {}
            }
        }
    }
}

/// Every address `targets` resolve to now; a name that does not resolve is
/// skipped (a headless Service has no addresses before its first pod).
async fn resolve(targets: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for target in targets {
        match tokio::time::timeout(SYNC_TIMEOUT, tokio::net::lookup_host(target.as_str())).await {
            Ok(Ok(addrs)) => out.extend(addrs),
            Ok(Err(error)) => tracing::debug!(peer = %target, %error, "peer name does not resolve (yet)"),
            Err(_) => tracing::debug!(peer = %target, "peer name resolution timed out"),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// One sync with `addr`: its answer, `None` when it is this replica, or why it failed.
async fn sync_once(addr: SocketAddr, request: &SyncRequest) -> Result<Option<SyncAnswer>, String> {
    let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    let call = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        // A demand record is one small write: Nagle would hold it for the peer's delayed ACK.
        stream.set_nodelay(true)?;
        http1::post_json(stream, &addr.to_string(), SYNC_PATH, &body, MAX_ANSWER).await
    };
    let answer = match tokio::time::timeout(SYNC_TIMEOUT, call).await {
        Err(_) => return Err(format!("no answer within {SYNC_TIMEOUT:?}")),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(answer)) => answer,
    };
    match answer.status {
        200 => serde_json::from_slice(&answer.body).map(Some).map_err(|e| format!("bad answer: {e}")),
        409 => Ok(None),
        status => Err(format!("answered {status}: {}", answer.text())),
    }
}

#[cfg(test)]
mod tests;
