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

use edge_telemetry::inventory::Endpoint;
use edge_telemetry::proto::NodeSnapshot;
use tokio::sync::watch;

use crate::aggregate::{self, EvalError, Member, NodeContribution, Wake, WorkerClass, WorkerTotals};
use crate::cold_start::{self, ColdStarts};
use crate::demand::Demand;
use crate::inventory;
use crate::trigger::{GroupKey, Spill, Trigger, WorkerSelector};

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
    /// Milliseconds since `Registry::epoch` when discovery found it.
    discovered_ms: u64,
    /// Milliseconds since `Registry::epoch` of the last message; shared so a
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
pub struct Registry {
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

impl Registry {
    /// An empty registry; `stale_after` is the default freshness bound;
    /// demand with the default TTL and bound.
    pub fn new(stale_after: Duration) -> Self {
        Self::with_demand(stale_after, Demand::new(DEFAULT_DEMAND_TTL, DEFAULT_DEMAND_MAX_REQUESTERS))
    }

    /// An empty registry tracking device demand in `demand`.
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
    /// and [`Registry::purge`] removes it.
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

    /// A trigger's current value (see [`aggregate::evaluate`]).
    pub fn evaluate(&self, trigger: &Trigger) -> Result<f64, EvalError> {
        let stale_after = trigger.stale_after.unwrap_or(self.stale_after);
        let now = self.now_ms();
        let inner = self.read();
        let mut selected: Vec<&Members> = inner.selected(&trigger.key).collect();
        // An agent holding several selected classes is one member (its node's
        // usage and staleness count once); the usual single class needs no merge.
        let merged: Members;
        let per_agent = match selected.len() {
            0 | 1 => selected.pop(),
            _ => {
                let mut m = Members::new();
                for (id, t) in selected.iter().flat_map(|m| m.iter()) {
                    m.entry(*id).or_default().merge(t);
                }
                merged = m;
                Some(&merged)
            }
        };
        let members = per_agent.into_iter().flatten().filter_map(|(id, totals)| {
            let agent = inner.agents.get(id)?;
            Some(Member {
                zone: &agent.contribution.zone,
                age: self.age(agent, now),
                totals: *totals,
                usage: &agent.contribution.usage,
            })
        });
        let any_fresh = || {
            inner.agents.values().any(|a| {
                trigger.zone.as_deref().is_none_or(|z| z == a.contribution.zone) && self.age(a, now) <= stale_after
            })
        };
        aggregate::evaluate(trigger, stale_after, members, any_fresh)
    }

    /// What wakes a trigger besides its own workers' value: device demand
    /// for its class (unless `activateOnDemand: "false"`) and its sibling's
    /// spill-over.
    pub fn wake(&self, trigger: &Trigger) -> Wake {
        let demand = if trigger.activate_on_demand {
            self.demand.pending(trigger.key.accelerator, trigger.zone.as_deref())
        } else {
            0
        };
        let spill = trigger.spill.as_ref().map_or(0.0, |s| self.spill_excess(trigger, s));
        Wake { demand, spill }
    }

    /// The sibling's backlog beyond `spill.above` per fresh worker, in the
    /// trigger's zone.
    fn spill_excess(&self, trigger: &Trigger, spill: &Spill) -> f64 {
        let stale_after = trigger.stale_after.unwrap_or(self.stale_after);
        let now = self.now_ms();
        let inner = self.read();
        let mut per_agent: HashMap<AgentId, WorkerTotals> = HashMap::new();
        for members in inner.selected(&spill.key) {
            for (id, totals) in members {
                per_agent.entry(*id).or_default().merge(totals);
            }
        }
        let (mut backlog, mut workers) = (0u64, 0u64);
        for (id, totals) in &per_agent {
            let Some(agent) = inner.agents.get(id) else { continue };
            if trigger.zone.as_deref().is_some_and(|z| z != agent.contribution.zone)
                || self.age(agent, now) > stale_after
            {
                continue;
            }
            backlog += totals.queue_depth + totals.in_flight;
            workers += u64::from(totals.workers);
        }
        (backlog as f64 - spill.above * workers as f64).max(0.0)
    }

    /// Whether any fresh agent (in `zone`, if given) runs a worker `key` selects.
    pub fn has_fresh_workers(&self, key: &GroupKey, zone: Option<&str>) -> bool {
        let now = self.now_ms();
        let inner = self.read();
        inner.selected(key).flat_map(|m| m.iter()).any(|(id, t)| {
            t.workers > 0
                && inner.agents.get(id).is_some_and(|a| {
                    zone.is_none_or(|z| z == a.contribution.zone) && self.age(a, now) <= self.stale_after
                })
        })
    }

    /// Whether `zone` is one the scaler knows: a followed agent's, or the
    /// zone of a trigger with an open stream.
    pub fn knows_zone(&self, zone: &str) -> bool {
        self.read().agents.values().any(|a| a.contribution.zone == zone) || self.demand.listens_in(zone)
    }

    /// The zones of the followed agents and of the triggers with an open stream, sorted.
    pub fn zones(&self) -> Vec<String> {
        let mut zones: std::collections::BTreeSet<String> =
            self.read().agents.values().map(|a| a.contribution.zone.clone()).filter(|z| !z.is_empty()).collect();
        zones.extend(self.demand.zones());
        zones.into_iter().collect()
    }

    /// The endpoint inventory: advertised endpoints of agents heard from
    /// within the default bound that pass `query`, ranked and cut to its limit.
    pub fn endpoints(&self, query: &inventory::Query) -> Vec<Endpoint> {
        let mut out = self.fresh_endpoints(|e| query.admits(e));
        // Ranked outside the lock: the snapshot streams are not held up by a large page.
        inventory::rank(&mut out, query.limit);
        out
    }

    /// The advertised endpoints of agents heard from within the default bound that pass `keep`.
    fn fresh_endpoints(&self, keep: impl Fn(&Endpoint) -> bool) -> Vec<Endpoint> {
        self.with_fresh_endpoints(|all| all.filter(|e| keep(e)).cloned().collect())
    }

    /// Whether any fresh endpoint passes `query` (nothing cloned or ranked).
    pub fn serves(&self, query: &inventory::Query) -> bool {
        // `&mut dyn Iterator` is itself an iterator; `any` needs that sized one.
        self.with_fresh_endpoints(|mut all| Iterator::any(&mut all, |e| query.admits(e)))
    }

    /// `f` over the advertised endpoints of agents heard from within the
    /// default bound, under the read lock.
    fn with_fresh_endpoints<R>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &Endpoint>) -> R) -> R {
        let now = self.now_ms();
        let inner = self.read();
        let mut all = inner
            .agents
            .values()
            .filter(|a| self.age(a, now) <= self.stale_after)
            .flat_map(|a| a.contribution.endpoints.iter());
        f(&mut all)
    }

    /// For a pull whose class has no ready endpoint: every fresh endpoint,
    /// ranked by [`inventory::rank_fallback`].
    pub fn fallback_endpoints(&self, query: &inventory::Query) -> Vec<Endpoint> {
        let mut out = self.fresh_endpoints(|_| true);
        inventory::rank_fallback(&mut out, query);
        out
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

#[cfg(test)]
mod tests {
    use edge_telemetry::AcceleratorType;
    use edge_telemetry::proto::{Node, Worker};

    use super::*;

    fn snapshot(seq: u64, zone: &str, queues: &[(&str, u32)]) -> NodeSnapshot {
        NodeSnapshot {
            sequence: seq,
            node: Some(Node { zone: zone.into(), ..Default::default() }),
            workers: queues
                .iter()
                .map(|(dep, q)| Worker {
                    worker_id: format!("{dep}-{q}"),
                    namespace: "ns".into(),
                    deployment: (*dep).into(),
                    accelerator: "cpu".into(),
                    queue_depth: *q,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// A trigger in namespace `ns` from its metadata; a later pair overrides an earlier one.
    fn parse_trigger(pairs: &[(&str, &str)]) -> Trigger {
        let m: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Trigger::parse("ns", &m).unwrap()
    }

    fn trigger(deployment: &str, extra: &[(&str, &str)]) -> Trigger {
        let mut pairs = vec![("acceleratorType", "cpu"), ("deployment", deployment), ("targetValue", "1")];
        pairs.extend_from_slice(extra);
        parse_trigger(&pairs)
    }

    #[test]
    fn indexes_groups_and_notifies_only_changed_ones() {
        let reg = Registry::new(Duration::from_secs(5));
        let (a, b) = (reg.add_agent("a:1"), reg.add_agent("b:1"));
        let (sd, other) = (trigger("sd", &[]), trigger("other", &[]));
        // Before any snapshot nothing is fresh: an error, not 0.
        assert!(matches!(reg.evaluate(&sd), Err(EvalError::NoFreshAgents { .. })));
        let mut sd_rx = reg.subscribe(&sd.key);
        let mut other_rx = reg.subscribe(&other.key);

        reg.ingest(a, &snapshot(1, "z1", &[("sd", 2)]));
        reg.ingest(b, &snapshot(1, "z2", &[("sd", 3), ("other", 1)]));
        assert_eq!(reg.evaluate(&sd), Ok(5.0));
        assert_eq!(reg.evaluate(&trigger("sd", &[("zone", "z2")])), Ok(3.0));
        assert_eq!(reg.evaluate(&trigger("absent", &[])), Ok(0.0));
        assert!(sd_rx.has_changed().unwrap() && other_rx.has_changed().unwrap());
        sd_rx.mark_unchanged();
        other_rx.mark_unchanged();

        // A change to `sd` on agent a does not wake `other`'s watchers.
        reg.ingest(a, &snapshot(2, "z1", &[("sd", 4)]));
        assert!(sd_rx.has_changed().unwrap());
        assert!(!other_rx.has_changed().unwrap());
        assert_eq!(reg.evaluate(&sd), Ok(7.0));

        // A heartbeat (same sequence) changes nothing.
        sd_rx.mark_unchanged();
        reg.ingest(a, &snapshot(2, "z1", &[("sd", 4)]));
        assert!(!sd_rx.has_changed().unwrap());

        // A worker leaving removes it from its group.
        reg.ingest(b, &snapshot(2, "z2", &[("sd", 3)]));
        assert!(other_rx.has_changed().unwrap());
        assert_eq!(reg.evaluate(&other), Ok(0.0));
        // One class left: `sd` (same labels, none) on both agents; `other` went with its worker.
        assert_eq!(reg.stats(), Stats { agents: 2, connected: 0, stale: 0, groups: 1, demand_requesters: 0, peers: 0 });
    }

    /// Workers of Deployment `sd` labelled `tier=<tier>` (no label when empty).
    fn tiered(seq: u64, workers: &[(&str, &str, u32)]) -> NodeSnapshot {
        NodeSnapshot {
            sequence: seq,
            workers: workers
                .iter()
                .map(|(id, tier, q)| Worker {
                    worker_id: (*id).into(),
                    namespace: "ns".into(),
                    deployment: "sd".into(),
                    accelerator: "cpu".into(),
                    queue_depth: *q,
                    labels: if tier.is_empty() {
                        Default::default()
                    } else {
                        [("tier".to_owned(), (*tier).to_owned())].into()
                    },
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn by_labels(selector: &str) -> Trigger {
        parse_trigger(&[("acceleratorType", "cpu"), ("labelSelector", selector), ("targetValue", "1")])
    }

    #[test]
    fn a_label_selector_counts_and_wakes_on_matching_workers_only() {
        let reg = Registry::new(Duration::from_secs(5));
        let (a, b) = (reg.add_agent("a:1"), reg.add_agent("b:1"));
        let (gold, not_gold) = (by_labels("tier=gold"), by_labels("tier!=gold"));
        let mut gold_rx = reg.subscribe(&gold.key);
        let mut rest_rx = reg.subscribe(&not_gold.key);
        reg.ingest(a, &tiered(1, &[("a1", "gold", 2), ("a2", "batch", 5)]));
        reg.ingest(b, &tiered(1, &[("b1", "gold", 3), ("b2", "", 7)]));
        assert_eq!(reg.evaluate(&gold), Ok(5.0));
        assert_eq!(reg.evaluate(&not_gold), Ok(12.0));
        assert_eq!(reg.evaluate(&trigger("sd", &[])), Ok(17.0), "the Deployment counts every class");
        assert_eq!(reg.stats().groups, 3);
        gold_rx.mark_unchanged();
        rest_rx.mark_unchanged();

        // A batch worker changing does not wake the gold stream ...
        reg.ingest(a, &tiered(2, &[("a1", "gold", 2), ("a2", "batch", 6)]));
        assert!(!gold_rx.has_changed().unwrap());
        assert!(rest_rx.has_changed().unwrap());
        rest_rx.mark_unchanged();
        // ... a class that starts matching does, and counts at once.
        reg.ingest(b, &tiered(2, &[("b1", "gold", 3), ("b2", "gold", 7)]));
        assert!(gold_rx.has_changed().unwrap() && rest_rx.has_changed().unwrap());
        assert_eq!(reg.evaluate(&gold), Ok(12.0));
        assert_eq!(reg.evaluate(&not_gold), Ok(6.0));
        assert_eq!(reg.evaluate(&by_labels("tier=none")), Ok(0.0), "fresh agents, no such workers: a true 0");
    }

    #[test]
    fn two_selected_classes_on_one_node_count_its_usage_once() {
        let reg = Registry::new(Duration::from_secs(5));
        let (a, b) = (reg.add_agent("a:1"), reg.add_agent("b:1"));
        let with_cpu = |mut snap: NodeSnapshot, ratio: f64| {
            snap.host = Some(edge_telemetry::proto::Host { cpu_utilization_ratio: Some(ratio), ..Default::default() });
            snap
        };
        reg.ingest(a, &with_cpu(tiered(1, &[("a1", "gold", 2), ("a2", "batch", 5)]), 0.5));
        reg.ingest(b, &with_cpu(tiered(1, &[("b1", "gold", 1)]), 0.8));
        let utilization = parse_trigger(&[
            ("acceleratorType", "cpu"),
            ("labelSelector", "tier"),
            ("targetValue", "1"),
            ("metric", "utilization"),
        ]);
        // (50 + 80) / 2, not (50 + 50 + 80) / 3.
        let util = reg.evaluate(&utilization).unwrap();
        assert!((util - 65.0).abs() < 1e-9, "{util}");
        assert_eq!(reg.evaluate(&by_labels("tier")), Ok(8.0));
    }

    #[test]
    fn the_inventory_lists_advertised_workers_of_fresh_agents_only() {
        let reg = Registry::new(Duration::from_secs(1));
        let (a, b) = (reg.add_agent("a:1"), reg.add_agent("b:1"));
        let mut snap_a = tiered(1, &[("a1", "gold", 2), ("a2", "gold", 0)]);
        snap_a.workers[0].endpoint = "http://10.0.0.1:30080".into();
        snap_a.workers[0].capacity = 4;
        let mut snap_b = tiered(1, &[("b1", "", 0)]);
        snap_b.workers[0].endpoint = "http://10.0.0.2:30080".into();
        snap_b.workers[0].capacity = 4;
        reg.ingest(a, &snap_a);
        reg.ingest(b, &snap_b);
        let urls = |q: &inventory::Query| reg.endpoints(q).into_iter().map(|e| e.url).collect::<Vec<_>>();
        let all = inventory::Query::default();
        assert_eq!(urls(&all), ["http://10.0.0.2:30080", "http://10.0.0.1:30080"], "idle b first; a2 advertises none");
        assert_eq!(urls(&inventory::Query { limit: 1, ..Default::default() }), ["http://10.0.0.2:30080"]);
        // Only b keeps talking: a goes stale and its endpoint leaves the inventory.
        std::thread::sleep(Duration::from_millis(1200));
        snap_b.sequence = 2;
        reg.ingest(b, &snap_b);
        assert_eq!(urls(&all), ["http://10.0.0.2:30080"]);
    }

    #[test]
    fn spill_over_is_the_siblings_backlog_beyond_its_share_per_worker() {
        let reg = Registry::new(Duration::from_secs(5));
        let (a, b) = (reg.add_agent("a:1"), reg.add_agent("b:1"));
        let cpu = |seq, zone: &str, queues: &[(&str, u32)]| {
            let mut s = snapshot(seq, zone, queues);
            for w in &mut s.workers {
                w.in_flight = 1;
            }
            s
        };
        // Two CPU workers in z1 (backlog 5 + 4), one in z2 (backlog 2).
        reg.ingest(a, &cpu(1, "z1", &[("sd-cpu", 4), ("sd-cpu-b", 3)]));
        reg.ingest(b, &cpu(1, "z2", &[("sd-cpu", 1)]));
        let gpu = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("acceleratorType", "nvidia"),
                ("deployment", "sd-nvidia"),
                ("targetValue", "1"),
                ("spillFrom", "cpu"),
            ];
            pairs.extend_from_slice(extra);
            parse_trigger(&pairs)
        };
        // 11 over 3 workers, 3 each absorbed: 2 spill over.
        assert_eq!(reg.wake(&gpu(&[("spillAbove", "3")])), Wake { demand: 0, spill: 2.0 });
        assert_eq!(reg.wake(&gpu(&[("spillAbove", "4")])).spill, 0.0);
        assert_eq!(reg.wake(&gpu(&[("spillAbove", "3"), ("zone", "z1")])).spill, 3.0, "9 over 2 workers in z1");
        assert_eq!(reg.wake(&gpu(&[("spillAbove", "0"), ("zone", "z2")])).spill, 2.0);
        // The sibling's changes wake the spilling trigger's stream.
        let spill_key = gpu(&[("spillAbove", "3")]).spill.unwrap().key;
        let mut rx = reg.subscribe(&spill_key);
        rx.mark_unchanged();
        reg.ingest(b, &cpu(2, "z2", &[("sd-cpu", 9)]));
        assert!(rx.has_changed().unwrap());
        assert_eq!(reg.wake(&gpu(&[("spillAbove", "3")])).spill, 10.0);
    }

    #[test]
    fn demand_counts_for_its_triggers_until_an_endpoint_of_the_class_is_listed() {
        let reg = Registry::new(Duration::from_secs(5));
        let a = reg.add_agent("a:1");
        reg.ingest(a, &snapshot(1, "z1", &[]));
        let nvidia = |extra: &[(&str, &str)]| {
            let mut pairs = vec![("acceleratorType", "nvidia"), ("deployment", "sd-nvidia"), ("targetValue", "1")];
            pairs.extend_from_slice(extra);
            parse_trigger(&pairs)
        };
        let class = crate::demand::DemandClass { accelerator: AcceleratorType::Nvidia, zone: Some("z1".into()) };
        assert!(reg.knows_zone("z1") && !reg.knows_zone("z9"));
        assert_eq!(reg.zones(), ["z1"]);
        reg.demand().record(class.clone(), "phone-1");
        reg.demand().record(class, "phone-2");
        assert_eq!(reg.wake(&nvidia(&[])).demand, 2);
        assert_eq!(reg.wake(&nvidia(&[("activateOnDemand", "false")])).demand, 0);
        assert_eq!(reg.wake(&trigger("sd", &[])).demand, 0, "a cpu trigger");
        // A cpu endpoint does not answer nvidia demand; an nvidia one in z1 does.
        let mut snap = snapshot(2, "z1", &[("sd-nvidia", 0)]);
        snap.workers[0].endpoint = "http://10.0.0.1:30080".into();
        reg.ingest(a, &snap);
        assert_eq!(reg.wake(&nvidia(&[])).demand, 2);
        snap.sequence = 3;
        snap.workers[0].accelerator = "nvidia".into();
        reg.ingest(a, &snap);
        assert_eq!(reg.wake(&nvidia(&[])).demand, 0);
        assert!(reg.has_fresh_workers(&nvidia(&[]).key, Some("z1")));
        assert!(!reg.has_fresh_workers(&nvidia(&[]).key, Some("z2")));
    }

    #[test]
    fn removed_agents_count_until_stale_then_are_forgotten() {
        let reg = Registry::new(Duration::from_millis(200));
        let a = reg.add_agent("a:1");
        reg.ingest(a, &snapshot(1, "", &[("sd", 2)]));
        reg.remove_agent(a);
        assert_eq!(reg.purge(), 0, "still fresh");
        assert_eq!(reg.evaluate(&trigger("sd", &[])), Ok(2.0));
        std::thread::sleep(Duration::from_millis(300));
        // Stale before purge: an error (the data is not trusted any more) ...
        assert!(matches!(reg.evaluate(&trigger("sd", &[])), Err(EvalError::Stale { agents: 1, .. })));
        // ... and a longer per-trigger bound still counts it.
        assert_eq!(reg.evaluate(&trigger("sd", &[("staleAfter", "1m")])), Ok(2.0));
        assert_eq!(reg.purge(), 1);
        assert!(matches!(reg.evaluate(&trigger("sd", &[])), Err(EvalError::NoFreshAgents { .. })));
        assert_eq!(reg.stats().agents, 0);
    }

    #[test]
    fn an_agent_coming_back_from_stale_wakes_its_groups() {
        let reg = Registry::new(Duration::from_millis(200));
        let a = reg.add_agent("a:1");
        reg.ingest(a, &snapshot(1, "", &[("sd", 1)]));
        let t = trigger("sd", &[]);
        let rx = reg.subscribe(&t.key);
        std::thread::sleep(Duration::from_millis(300));
        assert!(reg.evaluate(&t).is_err());
        assert_eq!(reg.stats().stale, 1);
        reg.ingest(a, &snapshot(1, "", &[("sd", 1)]));
        assert!(rx.has_changed().unwrap());
        assert_eq!(reg.evaluate(&t), Ok(1.0));
    }
}
