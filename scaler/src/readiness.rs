//! When a replica may take KEDA's calls: `/readyz`.
//!
//! A replica that has not heard from the agents answers `GetMetrics` with an
//! error or a partial sum, and KEDA may scale a busy Deployment down on it.
//! So it is Ready only once discovery has listed the agents and every one of
//! them has sent a first snapshot, or `--ready-timeout` has passed since the
//! start (an agent that never answers must not keep every replica out of
//! service; it counts as stale meanwhile). Once Ready it stays Ready: an
//! agent going silent later is staleness, which the answers already account
//! for, and a replica leaving the Service then would only move KEDA's
//! connection.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::agents::AgentTable;

/// Whether this replica is Ready, and why not.
pub struct Readiness {
    started: Instant,
    timeout: Duration,
    /// Set once, with what made the replica Ready (every later answer says it).
    ready: OnceLock<String>,
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Whether the replica is Ready.
    pub ready: bool,
    /// One line: what it waits for, or what made it Ready.
    pub reason: String,
}

impl Readiness {
    /// Ready at the latest `timeout` after now.
    pub fn new(timeout: Duration) -> Self {
        Self { started: Instant::now(), timeout, ready: OnceLock::new() }
    }

    /// Checks now; the first `true` is kept, with its reason.
    pub fn check(&self, table: &AgentTable) -> Status {
        if let Some(reason) = self.ready.get() {
            return Status { ready: true, reason: reason.clone() };
        }
        let (heard, agents) = table.first_snapshots();
        let discovered = table.listed();
        let elapsed = self.started.elapsed();
        let reason = if discovered && heard == agents {
            format!("ready: every agent ({agents}) sent its first snapshot")
        } else if elapsed >= self.timeout {
            let missing = agents - heard;
            format!(
                "ready after --ready-timeout {:?}; {missing} of {agents} agents not heard from (stale)",
                self.timeout
            )
        } else {
            let left = self.timeout - elapsed;
            let waiting = if discovered {
                format!("waiting for {} of {agents} agents' first snapshot", agents - heard)
            } else {
                "waiting for discovery to list the agents".to_owned()
            };
            return Status { ready: false, reason: format!("{waiting}; ready anyway in {:.0?}", left) };
        };
        // Two checks may race here; the first reason set is the one every answer gives.
        if self.ready.set(reason).is_ok() {
            tracing::info!(heard, agents, reason = %self.ready.get().map_or("", String::as_str), "ready for KEDA");
        }
        Status { ready: true, reason: self.ready.get().cloned().unwrap_or_default() }
    }
}

#[cfg(test)]
mod tests {
    use edge_telemetry::proto::NodeSnapshot;

    use super::*;

    #[test]
    fn ready_once_every_discovered_agent_has_sent_a_snapshot() {
        let table = AgentTable::new(Duration::from_secs(6));
        let r = Readiness::new(Duration::from_secs(60));
        let status = r.check(&table);
        assert!(!status.ready);
        assert!(status.reason.starts_with("waiting for discovery"), "{}", status.reason);
        let (a, b) = (table.add_agent("a:1"), table.add_agent("b:1"));
        table.mark_listed();
        table.apply(a, &NodeSnapshot { sequence: 1, ..Default::default() });
        let status = r.check(&table);
        assert!(!status.ready);
        assert!(status.reason.starts_with("waiting for 1 of 2 agents' first snapshot"), "{}", status.reason);
        table.apply(b, &NodeSnapshot { sequence: 1, ..Default::default() });
        let status = r.check(&table);
        assert!(status.ready);
        assert_eq!(status.reason, "ready: every agent (2) sent its first snapshot");
    }

    #[test]
    fn ready_after_the_timeout_with_silent_agents_and_stays_ready() {
        let table = AgentTable::new(Duration::from_secs(6));
        let r = Readiness::new(Duration::from_millis(50));
        table.add_agent("silent:1");
        table.mark_listed();
        assert!(!r.check(&table).ready);
        std::thread::sleep(Duration::from_millis(60));
        let status = r.check(&table);
        assert!(status.ready);
        assert!(status.reason.contains("1 of 1 agents not heard from"), "{}", status.reason);
        assert_eq!(table.stats().stale, 1, "a silent agent counts as stale");
        table.add_agent("new:1");
        assert!(r.check(&table).ready, "a new agent later does not take readiness back");
    }

    #[test]
    fn an_empty_cluster_is_ready_once_listed() {
        let table = AgentTable::new(Duration::from_secs(6));
        let r = Readiness::new(Duration::from_secs(60));
        table.mark_listed();
        assert!(r.check(&table).ready);
    }
}
