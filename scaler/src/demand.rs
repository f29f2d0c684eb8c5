//! Device demand at the endpoint inventory: the signal that exists when a
//! Deployment has no pods.
//!
//! A device pulls `GET /v1/endpoints?accelerator=…[&zone=…]` before it sends
//! a prompt. When that class (accelerator, optional zone) has no ready
//! endpoint, the pull is demand: the requester (the pull's `device`
//! parameter, else its peer address) is remembered for `--demand-ttl`, and
//! every trigger that selects the class becomes active at once. The demand
//! clears when an endpoint of the class is listed (the woken worker is
//! ready), or decays when the TTL passes without a pull.
//!
//! Bounded by construction: at most `max_requesters` per class (the oldest
//! is forgotten first), and classes are accelerator types times the zones
//! the scaler knows (an unknown zone is refused before it gets here).
//!
//! Which triggers a class wakes is known from the open `StreamIsActive`
//! streams ([`Demand::listen`]), this replica's and those its peers last
//! told it of ([`Demand::set_remote`], see [`crate::peers`]): that is what
//! the inventory names under `waking`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use edge_telemetry::AcceleratorType;
use edge_telemetry::inventory::Waking;
use tokio::sync::watch;

mod requesters;
use requesters::Requesters;

/// What a pull asked for: an accelerator type, in one zone or any.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DemandClass {
    /// The accelerator type asked for.
    pub accelerator: AcceleratorType,
    /// The zone asked for; `None`: any zone.
    pub zone: Option<String>,
}

/// Whether demand in `class_zone` concerns a trigger in `trigger_zone`:
/// a zone-less side matches every zone, two zones must be equal.
pub fn zones_match(class_zone: Option<&str>, trigger_zone: Option<&str>) -> bool {
    match (class_zone, trigger_zone) {
        (Some(c), Some(t)) => c == t,
        _ => true,
    }
}

/// A trigger with an open `StreamIsActive` that demand wakes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Listener {
    accelerator: AcceleratorType,
    zone: Option<String>,
    namespace: String,
    deployment: String,
}

impl From<&Listener> for Waking {
    fn from(l: &Listener) -> Self {
        Waking {
            accelerator: l.accelerator,
            zone: l.zone.clone(),
            namespace: l.namespace.clone(),
            deployment: l.deployment.clone(),
        }
    }
}

impl From<Waking> for Listener {
    fn from(w: Waking) -> Self {
        Listener { accelerator: w.accelerator, zone: w.zone, namespace: w.namespace, deployment: w.deployment }
    }
}

/// A peer's listeners count for this long after it last told us of them
/// (three of its syncs: one lost sync does not forget them).
pub const REMOTE_LISTENERS_FRESH: Duration = Duration::from_secs(6);

/// Most listeners kept of one peer (KEDA opens one stream per trigger).
const MAX_REMOTE_LISTENERS: usize = 10_000;

/// Most peers remembered at once; a peer silent past the freshness is
/// dropped first.
const MAX_PEERS: usize = 64;

#[derive(Default)]
struct Inner {
    classes: BTreeMap<DemandClass, Requesters>,
    sequence: u64,
    /// Open streams per trigger, counted (KEDA may open more than one).
    listeners: BTreeMap<Listener, usize>,
    /// The peers' open streams: peer id → (when it told us, in ms, its listeners).
    remote: BTreeMap<u64, (u64, Vec<Listener>)>,
}

impl Inner {
    /// This replica's listeners and the fresh ones of its peers.
    fn all_listeners(&self, fresh_after_ms: u64) -> impl Iterator<Item = &Listener> {
        let remote = self.remote.values().filter(move |(at, _)| *at >= fresh_after_ms).flat_map(|(_, ls)| ls);
        self.listeners.keys().chain(remote)
    }
}

/// Device demand, shared by the inventory (writer) and the KEDA calls (readers).
pub struct Demand {
    ttl: Duration,
    max_requesters: usize,
    epoch: Instant,
    /// Classes with demand now: lets every KEDA call skip the lock when there is none.
    classes_pending: AtomicUsize,
    /// Read by every KEDA call while demand is pending, written by pulls
    /// that find no endpoint, ready endpoints and the purge.
    inner: RwLock<Inner>,
    /// One channel per accelerator type, bumped when its demand starts or clears.
    changes: [watch::Sender<u64>; 3],
    /// Bumped when this replica's set of listeners changes (peers are told).
    listeners_changed: watch::Sender<u64>,
}

fn index(accelerator: AcceleratorType) -> usize {
    AcceleratorType::ALL.iter().position(|a| *a == accelerator).unwrap_or(0)
}

/// Unregisters a listener when its stream closes.
pub struct ListenGuard {
    demand: Arc<Demand>,
    listener: Listener,
}

impl Drop for ListenGuard {
    fn drop(&mut self) {
        let removed = {
            let mut inner = self.demand.write();
            match inner.listeners.get_mut(&self.listener) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => inner.listeners.remove(&self.listener).is_some(),
                None => false,
            }
        };
        if removed {
            self.demand.listeners_changed.send_modify(|v| *v = v.wrapping_add(1));
        }
    }
}

impl Demand {
    /// Demand remembered for `ttl` (zero turns demand tracking off), at most
    /// `max_requesters` distinct requesters per class.
    pub fn new(ttl: Duration, max_requesters: usize) -> Self {
        Self {
            ttl,
            max_requesters: max_requesters.max(1),
            epoch: Instant::now(),
            classes_pending: AtomicUsize::new(0),
            inner: RwLock::new(Inner::default()),
            changes: std::array::from_fn(|_| watch::Sender::new(0)),
            listeners_changed: watch::Sender::new(0),
        }
    }

    /// Whether demand is tracked at all (`--demand-ttl` above zero).
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    // A panic while holding the lock leaves plain data behind; keep serving.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn cutoff_ms(&self) -> u64 {
        self.now_ms().saturating_sub(self.ttl.as_millis() as u64)
    }

    fn notify(&self, accelerator: AcceleratorType) {
        self.changes[index(accelerator)].send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Records a pull for `class`, which has no ready endpoint. Returns
    /// whether the class had no demand before (this pull woke it).
    pub fn record(&self, class: DemandClass, requester: &str) -> bool {
        if !self.enabled() {
            return false;
        }
        let accelerator = class.accelerator;
        let woke = {
            let mut inner = self.write();
            let cutoff = self.cutoff_ms();
            inner.sequence += 1;
            let stamp = (self.now_ms(), inner.sequence);
            let requesters = inner.classes.entry(class).or_default();
            requesters.expire(cutoff);
            let woke = requesters.len() == 0;
            requesters.touch(requester, stamp, self.max_requesters);
            self.classes_pending.store(inner.classes.len(), Ordering::Release);
            woke
        };
        if woke {
            self.notify(accelerator);
        }
        woke
    }

    /// Distinct recent requesters of the classes a trigger on `accelerator`
    /// in `zone` (`None`: any) answers for.
    pub fn pending(&self, accelerator: AcceleratorType, zone: Option<&str>) -> u64 {
        if self.classes_pending.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let cutoff = self.cutoff_ms();
        self.read()
            .classes
            .iter()
            .filter(|(class, _)| class.accelerator == accelerator && zones_match(class.zone.as_deref(), zone))
            .map(|(_, requesters)| requesters.live(cutoff) as u64)
            .sum()
    }

    /// An endpoint of `accelerator` in `zone` is ready: the demand it answers
    /// (that zone's, and the zone-less one) clears.
    pub fn satisfy(&self, accelerator: AcceleratorType, zone: &str) {
        if self.classes_pending.load(Ordering::Acquire) == 0 {
            return;
        }
        let cleared = {
            let mut inner = self.write();
            let before = inner.classes.len();
            inner.classes.retain(|c, _| !(c.accelerator == accelerator && zones_match(c.zone.as_deref(), Some(zone))));
            self.classes_pending.store(inner.classes.len(), Ordering::Release);
            inner.classes.len() != before
        };
        if cleared {
            tracing::debug!(%accelerator, zone, "demand cleared: an endpoint is ready");
            self.notify(accelerator);
        }
    }

    /// Forgets expired requesters and classes left without any.
    pub fn purge(&self) {
        if self.classes_pending.load(Ordering::Acquire) == 0 {
            return;
        }
        let cutoff = self.cutoff_ms();
        let mut decayed = Vec::new();
        {
            let mut inner = self.write();
            inner.classes.retain(|c, r| {
                r.expire(cutoff);
                let keep = r.len() > 0;
                if !keep {
                    decayed.push(c.accelerator);
                }
                keep
            });
            self.classes_pending.store(inner.classes.len(), Ordering::Release);
        }
        for accelerator in decayed {
            self.notify(accelerator);
        }
    }

    /// Requesters remembered now, over every class (for the scaler's metrics).
    pub fn requesters(&self) -> usize {
        if self.classes_pending.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let cutoff = self.cutoff_ms();
        self.read().classes.values().map(|r| r.live(cutoff)).sum()
    }

    /// A channel bumped whenever demand for `accelerator` starts or clears.
    pub fn subscribe(&self, accelerator: AcceleratorType) -> watch::Receiver<u64> {
        self.changes[index(accelerator)].subscribe()
    }

    /// Registers a trigger with an open stream as woken by demand for its
    /// accelerator (and zone); dropped with the stream.
    pub fn listen(
        self: &Arc<Self>,
        accelerator: AcceleratorType,
        zone: Option<&str>,
        namespace: &str,
        deployment: &str,
    ) -> ListenGuard {
        let listener = Listener {
            accelerator,
            zone: zone.map(str::to_owned),
            namespace: namespace.to_owned(),
            deployment: deployment.to_owned(),
        };
        let added = {
            let mut inner = self.write();
            let n = inner.listeners.entry(listener.clone()).or_default();
            *n += 1;
            *n == 1
        };
        if added {
            self.listeners_changed.send_modify(|v| *v = v.wrapping_add(1));
        }
        ListenGuard { demand: Arc::clone(self), listener }
    }

    /// A channel bumped whenever this replica's listeners change.
    pub fn subscribe_listeners(&self) -> watch::Receiver<u64> {
        self.listeners_changed.subscribe()
    }

    /// This replica's own listeners, as its peers are told of them.
    pub fn local_listeners(&self) -> Vec<Waking> {
        self.read().listeners.keys().map(Waking::from).collect()
    }

    /// What peer `peer` told us of its listeners just now (replacing what
    /// it told before). At most [`MAX_PEERS`] peers are remembered.
    pub fn set_remote(&self, peer: u64, listeners: Vec<Waking>) {
        let now = self.now_ms();
        let fresh_after = self.remote_fresh_after_ms();
        let mut inner = self.write();
        inner.remote.retain(|_, (at, _)| *at >= fresh_after);
        if inner.remote.len() >= MAX_PEERS && !inner.remote.contains_key(&peer) {
            return;
        }
        let listeners = listeners.into_iter().take(MAX_REMOTE_LISTENERS).map(Listener::from).collect();
        inner.remote.insert(peer, (now, listeners));
    }

    /// Peers that told us of their listeners within [`REMOTE_LISTENERS_FRESH`].
    pub fn fresh_peers(&self) -> usize {
        let fresh_after = self.remote_fresh_after_ms();
        self.read().remote.values().filter(|(at, _)| *at >= fresh_after).count()
    }

    fn remote_fresh_after_ms(&self) -> u64 {
        self.now_ms().saturating_sub(REMOTE_LISTENERS_FRESH.as_millis() as u64)
    }

    /// The triggers demand for `class` wakes, as the inventory names them:
    /// this replica's and its peers', each once.
    pub fn waking(&self, class: &DemandClass) -> Vec<Waking> {
        let fresh_after = self.remote_fresh_after_ms();
        let inner = self.read();
        let matching: std::collections::BTreeSet<&Listener> = inner
            .all_listeners(fresh_after)
            .filter(|l| l.accelerator == class.accelerator && zones_match(class.zone.as_deref(), l.zone.as_deref()))
            .collect();
        matching.into_iter().map(Waking::from).collect()
    }

    /// The zones of the triggers with an open stream, here or at a peer.
    pub fn zones(&self) -> Vec<String> {
        let fresh_after = self.remote_fresh_after_ms();
        self.read().all_listeners(fresh_after).filter_map(|l| l.zone.clone()).collect()
    }

    /// Whether an open stream's trigger (here or at a peer) is pinned to
    /// `zone` (a zone the scaler then knows even before any node runs there).
    pub fn listens_in(&self, zone: &str) -> bool {
        let fresh_after = self.remote_fresh_after_ms();
        self.read().all_listeners(fresh_after).any(|l| l.zone.as_deref() == Some(zone))
    }
}

#[cfg(test)]
mod tests;
