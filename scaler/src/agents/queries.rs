//! What the KEDA calls and the inventory read from the agent table: a
//! trigger's value and wake, the zones and endpoints of fresh agents.

use std::collections::HashMap;

use edge_telemetry::inventory::Endpoint;

use super::{AgentId, AgentTable, Members};
use crate::aggregate::{self, EvalError, Member, Wake, WorkerTotals};
use crate::inventory;
use crate::trigger::{GroupKey, Spill, Trigger};

impl AgentTable {
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
}
