//! The cluster as the scaler sees it: every agent's latest contribution,
//! indexed by worker group so a trigger is answered in O(agents holding its
//! workers), not O(all agents).
//!
//! Writers are the per-agent stream tasks; readers are the KEDA calls. A
//! change to a group bumps that group's `watch` channel, which is what wakes
//! the `StreamIsActive` streams at once (no polling loop in between).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use edge_telemetry::proto::NodeSnapshot;
use tokio::sync::watch;

use crate::aggregate::{self, EvalError, Member, NodeContribution, WorkerTotals};
use crate::trigger::{GroupKey, Trigger};

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
    /// Worker groups known.
    pub groups: usize,
}

struct Agent {
    addr: String,
    /// Milliseconds since `Registry::epoch` of the last message; shared so a
    /// heartbeat needs only the read lock.
    seen_ms: AtomicU64,
    connected: AtomicBool,
    /// Discovery dropped it; kept until stale so a rollout does not read as 0.
    removed: bool,
    sequence: Option<u64>,
    contribution: NodeContribution,
}

struct Group {
    members: HashMap<AgentId, WorkerTotals>,
    changed: watch::Sender<u64>,
}

impl Group {
    fn new() -> Self {
        Self { members: HashMap::new(), changed: watch::Sender::new(0) }
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

#[derive(Default)]
struct Inner {
    next_id: AgentId,
    agents: HashMap<AgentId, Agent>,
    groups: HashMap<GroupKey, Group>,
}

/// Shared cluster state.
pub struct Registry {
    inner: RwLock<Inner>,
    epoch: Instant,
    stale_after: Duration,
}

impl Registry {
    /// An empty registry; `stale_after` is the default freshness bound.
    pub fn new(stale_after: Duration) -> Self {
        Self { inner: RwLock::new(Inner::default()), epoch: Instant::now(), stale_after }
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
        let mut inner = self.write();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.agents.insert(
            id,
            Agent {
                addr: addr.to_owned(),
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
    /// sequence) only refreshes the agent, under the read lock.
    pub fn ingest(&self, id: AgentId, snapshot: &NodeSnapshot) {
        let now = self.now_ms();
        {
            let inner = self.read();
            let Some(agent) = inner.agents.get(&id) else { return };
            let was_stale = self.age(agent, now) > self.stale_after;
            if agent.sequence == Some(snapshot.sequence) && !was_stale {
                agent.seen_ms.store(now, Ordering::Relaxed);
                return;
            }
        }
        self.apply(id, snapshot);
    }

    /// Takes in a snapshot unconditionally: the first message of a new
    /// stream (a restarted agent may repeat an old sequence number).
    pub fn apply(&self, id: AgentId, snapshot: &NodeSnapshot) {
        let now = self.now_ms();
        // Recompute outside the lock.
        let contribution = aggregate::contribution(snapshot);
        let mut inner = self.write();
        let Inner { agents, groups, .. } = &mut *inner;
        let Some(agent) = agents.get_mut(&id) else { return };
        let was_stale = self.age(agent, now) > self.stale_after;
        agent.seen_ms.store(now, Ordering::Relaxed);
        agent.sequence = Some(snapshot.sequence);
        let old = std::mem::replace(&mut agent.contribution, contribution);
        let new = &agent.contribution;
        // Node-wide values (zone, usage) feed every group of the node.
        let node_changed = old.zone != new.zone || old.usage != new.usage;
        for (key, totals) in &new.groups {
            let group = groups.entry(key.clone()).or_insert_with(Group::new);
            let prev = group.members.insert(id, *totals);
            if prev != Some(*totals) || node_changed || was_stale {
                group.bump();
            }
        }
        for key in old.groups.keys().filter(|k| !new.groups.contains_key(*k)) {
            if let Some(group) = groups.get_mut(key) {
                group.members.remove(&id);
                group.bump();
            }
        }
    }

    /// Marks an agent dropped by discovery; its data counts until it is stale
    /// and [`Registry::purge`] removes it.
    pub fn remove_agent(&self, id: AgentId) {
        if let Some(a) = self.write().agents.get_mut(&id) {
            a.removed = true;
            a.connected.store(false, Ordering::Relaxed);
        }
    }

    /// Forgets removed agents that went stale, and groups nobody holds or
    /// watches. Returns how many agents were forgotten.
    pub fn purge(&self) -> usize {
        let now = self.now_ms();
        let mut inner = self.write();
        let Inner { agents, groups, .. } = &mut *inner;
        let gone: Vec<AgentId> = agents
            .iter()
            .filter(|(_, a)| a.removed && self.age(a, now) > self.stale_after)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            if let Some(agent) = agents.remove(id) {
                tracing::debug!(agent = %agent.addr, "forgot removed agent");
                for key in agent.contribution.groups.keys() {
                    if let Some(group) = groups.get_mut(key) {
                        group.members.remove(id);
                        group.bump();
                    }
                }
            }
        }
        groups.retain(|_, g| !g.members.is_empty() || g.changed.receiver_count() > 0);
        gone.len()
    }

    /// A trigger's current value (see [`aggregate::evaluate`]).
    pub fn evaluate(&self, trigger: &Trigger) -> Result<f64, EvalError> {
        let stale_after = trigger.stale_after.unwrap_or(self.stale_after);
        let now = self.now_ms();
        let inner = self.read();
        let members =
            inner.groups.get(&trigger.key).into_iter().flat_map(|g| g.members.iter()).filter_map(|(id, totals)| {
                let agent = inner.agents.get(id)?;
                Some(Member {
                    zone: &agent.contribution.zone,
                    age: self.age(agent, now),
                    totals,
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

    /// A channel that changes whenever the group's data does.
    pub fn subscribe(&self, key: &GroupKey) -> watch::Receiver<u64> {
        if let Some(g) = self.read().groups.get(key) {
            return g.changed.subscribe();
        }
        self.write().groups.entry(key.clone()).or_insert_with(Group::new).changed.subscribe()
    }

    /// Counts for the scaler's own metrics.
    pub fn stats(&self) -> Stats {
        let now = self.now_ms();
        let inner = self.read();
        let live = inner.agents.values().filter(|a| !a.removed);
        let mut stats = Stats { groups: inner.groups.len(), ..Stats::default() };
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

    fn trigger(deployment: &str, extra: &[(&str, &str)]) -> Trigger {
        let mut m: std::collections::HashMap<String, String> =
            [("acceleratorType", "cpu"), ("deployment", deployment), ("targetValue", "1")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        m.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Trigger::parse("ns", &m).unwrap()
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
        assert_eq!(reg.stats(), Stats { agents: 2, connected: 0, stale: 0, groups: 2 });
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
