//! How long a wake from zero takes, per class: activation (the `true`
//! pushed on `StreamIsActive` while the trigger had no fresh worker) → the
//! first fresh report of a selected worker (`phase="report"`: pod scheduled,
//! node added by Karpenter if need be, image pulled, model loaded) → the
//! first report of one that has served an image (`phase="image"`: a worker
//! reports latency only once it has finished a request).
//!
//! Bounded: one pending wake per (trigger selection, zone), forgotten after
//! [`GIVE_UP_AFTER`] without a worker.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use edge_telemetry::AcceleratorType;
use edge_telemetry::proto::NodeSnapshot;

use crate::class::WorkerClass;
use crate::trigger::GroupKey;

/// A wake still waiting for its first worker this long is dropped unmeasured.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(30 * 60);

/// The two measured phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Activation → first fresh report of a selected worker.
    Report,
    /// Activation → first report of a selected worker that has served a request.
    Image,
}

impl Phase {
    /// The `phase` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Report => "report",
            Self::Image => "image",
        }
    }
}

/// One finished phase of one wake.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The woken trigger's accelerator type.
    pub accelerator: AcceleratorType,
    /// Its zone, empty for a regional trigger.
    pub zone: String,
    /// Which phase.
    pub phase: Phase,
    /// Since activation.
    pub seconds: f64,
}

struct Pending {
    since: Instant,
    reported: bool,
}

/// The wakes under way.
#[derive(Default)]
pub struct ColdStarts {
    count: AtomicUsize,
    pending: Mutex<BTreeMap<(GroupKey, String), Pending>>,
    /// The last activation → report time per accelerator type: the
    /// inventory's `Retry-After` for a class being woken.
    last_report: Mutex<BTreeMap<AcceleratorType, Duration>>,
}

impl ColdStarts {
    /// A trigger selecting `key` in `zone` (empty: any) was woken with no worker.
    pub fn activated(&self, key: &GroupKey, zone: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, p| p.since.elapsed() < GIVE_UP_AFTER);
        pending.entry((key.clone(), zone.to_owned())).or_insert(Pending { since: Instant::now(), reported: false });
        self.count.store(pending.len(), Ordering::Release);
    }

    /// Checks one agent's new snapshot against the wakes under way.
    pub fn observe(&self, snapshot: &NodeSnapshot) -> Vec<Sample> {
        if self.count.load(Ordering::Acquire) == 0 || snapshot.workers.is_empty() {
            return Vec::new();
        }
        let node_zone = snapshot.node.as_ref().map_or("", |n| n.zone.as_str());
        let mut samples = Vec::new();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|(key, zone), p| {
            if !zone.is_empty() && zone != node_zone {
                return true;
            }
            let mut selected = snapshot.workers.iter().filter(|w| {
                w.accelerator.parse::<AcceleratorType>().is_ok_and(|accelerator| {
                    key.selects(&WorkerClass {
                        accelerator,
                        namespace: w.namespace.clone(),
                        deployment: w.deployment.clone(),
                        labels: w.labels.clone(),
                    })
                })
            });
            let Some(first) = selected.next() else { return true };
            let served = first.latency_p50_seconds.is_some() || selected.any(|w| w.latency_p50_seconds.is_some());
            let seconds = p.since.elapsed().as_secs_f64();
            let sample = |phase| Sample { accelerator: key.accelerator, zone: zone.clone(), phase, seconds };
            if !p.reported {
                p.reported = true;
                samples.push(sample(Phase::Report));
                self.last_report.lock().unwrap_or_else(|e| e.into_inner()).insert(key.accelerator, p.since.elapsed());
            }
            if served {
                samples.push(sample(Phase::Image));
                return false;
            }
            true
        });
        self.count.store(pending.len(), Ordering::Release);
        samples
    }

    /// The last measured activation → first report time of `accelerator`.
    pub fn last_report(&self, accelerator: AcceleratorType) -> Option<Duration> {
        self.last_report.lock().unwrap_or_else(|e| e.into_inner()).get(&accelerator).copied()
    }
}

#[cfg(test)]
mod tests {
    use edge_telemetry::proto::{Node, Worker};

    use super::*;
    use crate::trigger::WorkerSelector;

    fn key(deployment: &str) -> GroupKey {
        GroupKey {
            accelerator: AcceleratorType::Nvidia,
            namespace: "ns".into(),
            selector: WorkerSelector::Deployment(deployment.into()),
        }
    }

    fn snapshot(zone: &str, deployment: &str, served: bool) -> NodeSnapshot {
        NodeSnapshot {
            node: Some(Node { zone: zone.into(), ..Default::default() }),
            workers: vec![Worker {
                worker_id: "w".into(),
                namespace: "ns".into(),
                deployment: deployment.into(),
                accelerator: "nvidia".into(),
                latency_p50_seconds: served.then_some(1.0),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_wake_is_measured_to_its_first_report_then_its_first_image() {
        let c = ColdStarts::default();
        assert!(c.observe(&snapshot("a", "sd", false)).is_empty(), "nothing under way");
        c.activated(&key("sd"), "a");
        c.activated(&key("sd"), "a"); // a second push of the same wake keeps the first start
        assert!(c.observe(&snapshot("b", "sd", false)).is_empty(), "another zone");
        assert!(c.observe(&snapshot("a", "other", false)).is_empty(), "another Deployment");
        let first = c.observe(&snapshot("a", "sd", false));
        assert_eq!(first.iter().map(|s| s.phase).collect::<Vec<_>>(), [Phase::Report]);
        assert_eq!((first[0].accelerator, first[0].zone.as_str()), (AcceleratorType::Nvidia, "a"));
        assert!(c.last_report(AcceleratorType::Nvidia).is_some());
        assert!(c.observe(&snapshot("a", "sd", false)).is_empty(), "reported once");
        let done = c.observe(&snapshot("a", "sd", true));
        assert_eq!(done.iter().map(|s| s.phase).collect::<Vec<_>>(), [Phase::Image]);
        assert!(done[0].seconds >= first[0].seconds);
        assert!(c.observe(&snapshot("a", "sd", true)).is_empty(), "finished");
    }

    #[test]
    fn a_worker_that_has_already_served_ends_both_phases_at_once() {
        let c = ColdStarts::default();
        c.activated(&key("sd"), "");
        let both = c.observe(&snapshot("any", "sd", true));
        assert_eq!(both.iter().map(|s| s.phase).collect::<Vec<_>>(), [Phase::Report, Phase::Image]);
    }
}
