//! The cluster as the scaler sees it: every agent's latest contribution,
//! indexed by worker class (accelerator, namespace, Deployment, labels) so a
//! trigger is answered in O(agents holding its workers), not O(all agents).
//!
//! Writers are the per-agent stream tasks; readers are the KEDA calls. A
//! change to a class bumps the `watch` channel of every trigger selection
//! that picks it, which is what wakes the `StreamIsActive` streams at once
//! (no polling loop in between).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use edge_telemetry::proto::NodeSnapshot;
use tokio::sync::watch;

use crate::aggregate::{self, NodeContribution, WorkerClass, WorkerTotals};
use crate::cold_start::{self, ColdStarts};
use crate::demand::Demand;
use crate::trigger::{GroupKey, WorkerSelector};

/// `seen_ms` of an agent that has not sent anything yet.
const NEVER: u64 = u64::MAX;

/// Identifies one followed agent for the lifetime of its subscription.
pub type AgentId = u64;

/// Counts for the scaler's own metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Agents followed (discovered and not yet dropped).
    pub agents: usize,
    /// Agents with an open stream.
    pub connected: usize,
    /// Agents silent for longer than --stale-after.
    pub stale: usize,
    /// Worker classes known (accelerator, namespace, Deployment, labels).
    pub groups: usize,
    /// Devices remembered as waiting for a class with no ready endpoint.
    pub demand_requesters: usize,
    /// Other scaler replicas heard from recently.
    pub peers: usize,
}

struct Agent {
    addr: String,
    /// Milliseconds since `AgentTable::epoch` when discovery found it.
    discovered_ms: u64,
    /// Milliseconds since `AgentTable::epoch` of the last message; shared so a
    /// heartbeat needs only the read lock.
    seen_ms: AtomicU64,
    connected: AtomicBool,
    /// Discovery dropped it; kept until stale so a rollout does not read as 0.
    removed: bool,
    sequence: Option<u64>,
    contribution: NodeContribution,
}

/// The agents holding workers of one class, with their totals.
type Members = HashMap<AgentId, WorkerTotals>;

#[derive(Default)]
struct Inner {
    next_id: AgentId,
    agents: HashMap<AgentId, Agent>,
    /// Only classes some agent holds. Ordered: a Deployment's classes, and a
    /// namespace's, are contiguous ranges (see [`Inner::selected`]).
    classes: BTreeMap<WorkerClass, Members>,
    /// One channel per trigger selection with an open activation stream.
    watchers: HashMap<GroupKey, watch::Sender<u64>>,
}

/// Takes an agent out of a class; a class nobody holds is dropped.
fn leave(classes: &mut BTreeMap<WorkerClass, Members>, class: &WorkerClass, id: AgentId) {
    if let Some(members) = classes.get_mut(class) {
        members.remove(&id);
        if members.is_empty() {
            classes.remove(class);
        }
    }
}

impl Inner {
    /// The member maps of every class `key` selects: a range lookup for a
    /// Deployment, a scan of the namespace's classes for a label selector.
    fn selected<'a>(&'a self, key: &'a GroupKey) -> impl Iterator<Item = &'a Members> + 'a {
        let deployment = match &key.selector {
            WorkerSelector::Deployment(d) => d.clone(),
            WorkerSelector::Labels(_) | WorkerSelector::All => String::new(),
        };
        let start = WorkerClass {
            accelerator: key.accelerator,
            namespace: key.namespace.clone(),
            deployment,
            labels: BTreeMap::new(),
        };
        self.classes
            .range((Bound::Included(start), Bound::Unbounded))
            .take_while(move |(c, _)| {
                c.accelerator == key.accelerator
                    && c.namespace == key.namespace
                    && match &key.selector {
                        WorkerSelector::Deployment(d) => c.deployment == *d,
                        WorkerSelector::Labels(_) | WorkerSelector::All => true,
                    }
            })
            .filter(move |(c, _)| key.selects(c))
            .map(|(_, m)| m)
    }

    /// Wakes the streams of every selection that picks one of `changed`.
    fn notify(&self, changed: &[&WorkerClass]) {
        if changed.is_empty() {
            return;
        }
        for (key, tx) in &self.watchers {
            if changed.iter().any(|c| key.selects(c)) {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }
}

/// Shared cluster state.
pub struct AgentTable {
    inner: RwLock<Inner>,
    epoch: Instant,
    stale_after: Duration,
    demand: Arc<Demand>,
    cold_starts: ColdStarts,
    /// Discovery has listed the agents once: the followed set is complete.
    listed: AtomicBool,
}

/// Demand remembered this long when no `--demand-ttl` is given.
pub const DEFAULT_DEMAND_TTL: Duration = Duration::from_secs(300);
/// Distinct requesters per demand class when no `--demand-max-requesters` is given.
pub const DEFAULT_DEMAND_MAX_REQUESTERS: usize = 10_000;

impl AgentTable {
    /// An empty table; `stale_after` is the default freshness bound;
    /// demand with the default TTL and bound.
    pub fn new(stale_after: Duration) -> Self {
        Self::with_demand(stale_after, Demand::new(DEFAULT_DEMAND_TTL, DEFAULT_DEMAND_MAX_REQUESTERS))
    }

    /// An empty table tracking device demand in `demand`.
    pub fn with_demand(stale_after: Duration, demand: Demand) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            epoch: Instant::now(),
            stale_after,
            demand: Arc::new(demand),
            cold_starts: ColdStarts::default(),
            listed: AtomicBool::new(false),
        }
    }

    /// Device demand at the inventory.
    pub fn demand(&self) -> &Arc<Demand> {
        &self.demand
    }

    /// The wakes from zero under way.
    pub fn cold_starts(&self) -> &ColdStarts {
        &self.cold_starts
    }

    /// The default freshness bound (--stale-after).
    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn age(&self, agent: &Agent, now_ms: u64) -> Duration {
        match agent.seen_ms.load(Ordering::Relaxed) {
            NEVER => Duration::MAX,
            seen => Duration::from_millis(now_ms.saturating_sub(seen)),
        }
    }

    /// Starts tracking an agent at `addr`; it counts as stale until its first
    /// snapshot arrives.
    pub fn add_agent(&self, addr: &str) -> AgentId {
        let discovered_ms = self.now_ms();
        let mut inner = self.write();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.agents.insert(
            id,
            Agent {
                addr: addr.to_owned(),
                discovered_ms,
                seen_ms: AtomicU64::new(NEVER),
                connected: AtomicBool::new(false),
                removed: false,
                sequence: None,
                contribution: NodeContribution::default(),
            },
        );
        id
    }

    /// Records whether the agent's stream is open.
    pub fn set_connected(&self, id: AgentId, connected: bool) {
        if let Some(a) = self.read().agents.get(&id) {
            a.connected.store(connected, Ordering::Relaxed);
        }
    }

    /// Takes in one message of the agent's stream. A heartbeat (same
    /// sequence) only refreshes the agent, under the read lock. Returns the
    /// wake-from-zero phases this snapshot finished.
    pub fn ingest(&self, id: AgentId, snapshot: &NodeSnapshot) -> Vec<cold_start::Sample> {
        let now = self.now_ms();
        {
            let inner = self.read();
            let Some(agent) = inner.agents.get(&id) else { return Vec::new() };
            let was_stale = self.age(agent, now) > self.stale_after;
            if agent.sequence == Some(snapshot.sequence) && !was_stale {
                agent.seen_ms.store(now, Ordering::Relaxed);
                return Vec::new();
            }
        }
        self.apply(id, snapshot)
    }

    /// Takes in a snapshot unconditionally: the first message of a new
    /// stream (a restarted agent may repeat an old sequence number).
    pub fn apply(&self, id: AgentId, snapshot: &NodeSnapshot) -> Vec<cold_start::Sample> {
        let now = self.now_ms();
        // Recompute outside the lock.
        let contribution = aggregate::contribution(snapshot);
        // A listed endpoint is a woken class served: its demand clears.
        for e in &contribution.endpoints {
            self.demand.satisfy(e.accelerator, &contribution.zone);
        }
        let samples = self.cold_starts.observe(snapshot);
        let mut guard = self.write();
        let inner = &mut *guard;
        let (was_stale, old) = {
            let Some(agent) = inner.agents.get_mut(&id) else { return samples };
            let was_stale = self.age(agent, now) > self.stale_after;
            agent.seen_ms.store(now, Ordering::Relaxed);
            agent.sequence = Some(snapshot.sequence);
            (was_stale, std::mem::replace(&mut agent.contribution, contribution))
        };
        let new = &inner.agents[&id].contribution;
        // Node-wide values (zone, usage) feed every class of the node.
        let node_changed = old.zone != new.zone || old.usage != new.usage;
        let mut changed: Vec<&WorkerClass> = Vec::new();
        for (class, totals) in &new.groups {
            let prev = inner.classes.entry(class.clone()).or_default().insert(id, *totals);
            if prev != Some(*totals) || node_changed || was_stale {
                changed.push(class);
            }
        }
        for class in old.groups.keys().filter(|k| !new.groups.contains_key(*k)) {
            leave(&mut inner.classes, class, id);
            changed.push(class);
        }
        inner.notify(&changed);
        samples
    }

    /// Marks an agent dropped by discovery; its data counts until it is stale
    /// and [`AgentTable::purge`] removes it.
    pub fn remove_agent(&self, id: AgentId) {
        if let Some(a) = self.write().agents.get_mut(&id) {
            a.removed = true;
            a.connected.store(false, Ordering::Relaxed);
        }
    }

    /// Forgets expired demand, removed agents that went stale, and
    /// selections nobody watches any more. Returns how many agents were forgotten.
    pub fn purge(&self) -> usize {
        self.demand.purge();
        let now = self.now_ms();
        let mut guard = self.write();
        let inner = &mut *guard;
        let gone: Vec<AgentId> = inner
            .agents
            .iter()
            .filter(|(_, a)| a.removed && self.age(a, now) > self.stale_after)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            if let Some(agent) = inner.agents.remove(id) {
                tracing::debug!(agent = %agent.addr, "forgot removed agent");
                let classes: Vec<&WorkerClass> = agent.contribution.groups.keys().collect();
                for class in &classes {
                    leave(&mut inner.classes, class, *id);
                }
                inner.notify(&classes);
            }
        }
        inner.watchers.retain(|_, tx| tx.receiver_count() > 0);
        gone.len()
    }

    /// A channel that changes whenever the data of a class `key` selects
    /// does (a class that starts matching included).
    pub fn subscribe(&self, key: &GroupKey) -> watch::Receiver<u64> {
        if let Some(tx) = self.read().watchers.get(key) {
            return tx.subscribe();
        }
        self.write().watchers.entry(key.clone()).or_insert_with(|| watch::Sender::new(0)).subscribe()
    }

    /// Discovery has listed the agents (once is enough: later changes are
    /// agents coming and going, not a view still filling).
    pub fn mark_listed(&self) {
        if !self.listed.swap(true, Ordering::AcqRel) {
            tracing::debug!("discovery listed the agents");
        }
    }

    /// Whether discovery has listed the agents.
    pub fn listed(&self) -> bool {
        self.listed.load(Ordering::Acquire)
    }

    /// Of the agents discovery follows now: how many sent a first snapshot,
    /// and how many there are.
    pub fn first_snapshots(&self) -> (usize, usize) {
        let inner = self.read();
        let live = inner.agents.values().filter(|a| !a.removed);
        live.fold((0, 0), |(heard, all), a| (heard + usize::from(a.sequence.is_some()), all + 1))
    }

    /// Seconds since each followed agent last sent anything, by address; an
    /// agent never heard from counts from when it was discovered (silent all along).
    pub fn agent_ages(&self) -> Vec<(String, f64)> {
        let now = self.now_ms();
        let inner = self.read();
        let mut ages: Vec<(String, f64)> = inner
            .agents
            .values()
            .filter(|a| !a.removed)
            .map(|a| {
                let since = match a.seen_ms.load(Ordering::Relaxed) {
                    NEVER => a.discovered_ms,
                    seen => seen,
                };
                (a.addr.clone(), now.saturating_sub(since) as f64 / 1000.0)
            })
            .collect();
        ages.sort_by(|a, b| a.0.cmp(&b.0));
        ages
    }

    /// Counts for the scaler's own metrics.
    pub fn stats(&self) -> Stats {
        let now = self.now_ms();
        let inner = self.read();
        let live = inner.agents.values().filter(|a| !a.removed);
        let mut stats = Stats {
            groups: inner.classes.len(),
            demand_requesters: self.demand.requesters(),
            peers: self.demand.fresh_peers(),
            ..Stats::default()
        };
        for a in live {
            stats.agents += 1;
            stats.connected += usize::from(a.connected.load(Ordering::Relaxed));
            stats.stale += usize::from(self.age(a, now) > self.stale_after);
        }
        stats
    }
}

mod queries;

#[cfg(test)]
mod tests;
