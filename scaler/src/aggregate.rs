//! Pure aggregation: what one node snapshot contributes, and what a trigger's
//! value is given the contributions of the agents it matches.
//!
//! Sums for queue-like metrics (KEDA's default `AverageValue` divides by the
//! replica count), per-device averages for utilisation. Only fresh agents
//! count; when every agent a trigger depends on is stale the answer is an
//! error, so KEDA applies the ScaledObject's `fallback` instead of a 0 that
//! would scale a busy Deployment to zero.

use std::collections::HashMap;
use std::time::Duration;

use edge_telemetry::AcceleratorType;
use edge_telemetry::inventory::{AddressRule, Endpoint, Reachability, split_host};
use edge_telemetry::proto::{NodeSnapshot, PodRef};
use edge_telemetry::view;

pub use crate::class::WorkerClass;
use crate::trigger::{MetricKind, Trigger};

mod usage;
use usage::add_gpu;
pub use usage::{Mean, NodeUsage};
use view::memory_percent;

/// The workers of one class on one node, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WorkerTotals {
    /// Number of workers.
    pub workers: u32,
    /// Requests waiting.
    pub queue_depth: u64,
    /// Requests running.
    pub in_flight: u64,
    /// Requests accepted in total.
    pub capacity: u64,
    /// Usage of the devices the workers' pods hold (GPUs, MIG devices,
    /// NeuronCores), when the agent knows it from the kubelet's
    /// PodResources API; empty otherwise.
    pub held: NodeUsage,
}

impl WorkerTotals {
    /// Adds another class's workers on the same node.
    pub fn merge(&mut self, other: &WorkerTotals) {
        self.workers += other.workers;
        self.queue_depth += other.queue_depth;
        self.in_flight += other.in_flight;
        self.capacity += other.capacity;
        self.held.merge(&other.held);
    }
}

/// What one agent's snapshot contributes; computed once per change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeContribution {
    /// The node's zone (empty when the agent was given none).
    pub zone: String,
    /// Worker totals per class present on the node.
    pub groups: HashMap<WorkerClass, WorkerTotals>,
    /// Device usage.
    pub usage: NodeUsage,
    /// The workers that advertise an endpoint, for the endpoint inventory.
    pub endpoints: Vec<Endpoint>,
}

/// Summarises a snapshot. Workers with an accelerator name the scaler does
/// not know are left out (the agent validates reports, so this means a newer
/// agent).
pub fn contribution(snapshot: &NodeSnapshot) -> NodeContribution {
    let (node, zone) = snapshot.node.as_ref().map(|n| (n.name.as_str(), n.zone.as_str())).unwrap_or_default();
    let mut endpoints = Vec::new();
    for w in &snapshot.workers {
        let Ok(accelerator) = w.accelerator.parse::<AcceleratorType>() else { continue };
        if !w.endpoint.is_empty() {
            endpoints.push(Endpoint {
                url: w.endpoint.clone(),
                accelerator,
                zone: zone.to_owned(),
                node: node.to_owned(),
                namespace: w.namespace.clone(),
                deployment: w.deployment.clone(),
                pod: w.pod.clone(),
                queue_depth: w.queue_depth,
                in_flight: w.in_flight,
                capacity: w.capacity,
                latency_p50_seconds: w.latency_p50_seconds,
                latency_p99_seconds: w.latency_p99_seconds,
                address: AddressRule::Advertised,
                reachability: split_host(&w.endpoint)
                    .map_or(Reachability::Public, |(_, h, _)| Reachability::of_host(h)),
            });
        }
    }
    // The same per-Deployment sum the agent's exporters use, keyed by class.
    let mut groups: HashMap<WorkerClass, WorkerTotals> = view::worker_totals(snapshot, |w| {
        Some(WorkerClass {
            accelerator: w.accelerator.parse::<AcceleratorType>().ok()?,
            namespace: w.namespace.clone(),
            deployment: w.deployment.clone(),
            labels: w.labels.clone(),
        })
    })
    .into_iter()
    .map(|(class, t)| {
        let totals = WorkerTotals {
            workers: t.workers,
            queue_depth: t.queue_depth,
            in_flight: t.in_flight,
            capacity: t.capacity,
            held: NodeUsage::default(),
        };
        (class, totals)
    })
    .collect();
    let mut usage = NodeUsage::default();
    let mut held = Holders::new(snapshot, &mut groups);
    for gpu in snapshot.gpus.iter().filter(|g| g.healthy) {
        let util = gpu.gpu_utilization_percent.map(f64::from);
        let memory = memory_percent(gpu.framebuffer_used_bytes, gpu.framebuffer_total_bytes);
        add_gpu(&mut usage, util, memory);
        held.add(&gpu.pods, |u| add_gpu(u, util, memory));
        // Under MIG each instance is a device of its own (the GPU reports no utilisation).
        for mig in &gpu.mig_instances {
            let util = mig.graphics_engine_active_ratio.map(|r| 100.0 * r);
            let memory = memory_percent(mig.framebuffer_used_bytes, mig.framebuffer_total_bytes);
            add_gpu(&mut usage, util, memory);
            held.add(&mig.pods, |u| add_gpu(u, util, memory));
        }
    }
    for core in &snapshot.neuron_cores {
        if let Some(r) = core.utilization_ratio {
            usage.neuron_utilization.add(100.0 * r);
            held.add(&core.pods, |u| u.neuron_utilization.add(100.0 * r));
        }
    }
    if let Some(host) = &snapshot.host {
        if let Some(r) = host.cpu_utilization_ratio {
            usage.cpu_utilization.add(100.0 * r);
        }
        if let (Some(total), Some(avail)) = (host.memory_total_bytes, host.memory_available_bytes)
            && total > 0
        {
            usage.cpu_memory.add(100.0 * total.saturating_sub(avail) as f64 / total as f64);
        }
    }
    NodeContribution { zone: zone.to_owned(), groups, usage, endpoints }
}

/// Which worker class each pod on the node belongs to, to credit a device
/// to the classes whose pods hold it (once per class, however many of its
/// pods share the device).
struct Holders<'a> {
    by_pod: HashMap<(&'a str, &'a str), WorkerClass>,
    groups: &'a mut HashMap<WorkerClass, WorkerTotals>,
}

impl<'a> Holders<'a> {
    fn new(snapshot: &'a NodeSnapshot, groups: &'a mut HashMap<WorkerClass, WorkerTotals>) -> Self {
        let by_pod = snapshot
            .workers
            .iter()
            .filter(|w| !w.pod.is_empty())
            .filter_map(|w| {
                let accelerator = w.accelerator.parse::<AcceleratorType>().ok()?;
                let class = WorkerClass {
                    accelerator,
                    namespace: w.namespace.clone(),
                    deployment: w.deployment.clone(),
                    labels: w.labels.clone(),
                };
                Some(((w.namespace.as_str(), w.pod.as_str()), class))
            })
            .collect();
        Self { by_pod, groups }
    }

    /// Credits one device to the classes of the pods holding it. A worker
    /// that reported no namespace matches its pod name in any namespace.
    fn add(&mut self, pods: &[PodRef], credit: impl Fn(&mut NodeUsage)) {
        if pods.is_empty() || self.by_pod.is_empty() {
            return;
        }
        let mut classes: Vec<&WorkerClass> = pods
            .iter()
            .filter_map(|p| {
                self.by_pod
                    .get(&(p.namespace.as_str(), p.pod.as_str()))
                    .or_else(|| self.by_pod.get(&("", p.pod.as_str())))
            })
            .collect();
        classes.sort();
        classes.dedup();
        for class in classes {
            if let Some(t) = self.groups.get_mut(class) {
                credit(&mut t.held);
            }
        }
    }
}

/// One agent holding workers a trigger selects, as the evaluation sees it.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    /// The agent's zone.
    pub zone: &'a str,
    /// How long since the agent last sent anything.
    pub age: Duration,
    /// Its selected workers, summed over their classes (one member per agent,
    /// so a node's device usage counts once however many classes match).
    pub totals: WorkerTotals,
    /// Its node's device usage.
    pub usage: &'a NodeUsage,
}

/// Why a trigger has no trustworthy value; KEDA then applies `fallback`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// Agents hold selected workers but none was heard from recently.
    #[error(
        "all {agents} agents with workers of {workers} ({accelerator}) are stale: silent for more than {stale_after:?}"
    )]
    Stale {
        /// How many agents hold such workers.
        agents: usize,
        /// The trigger's accelerator.
        accelerator: AcceleratorType,
        /// The trigger's workers: `namespace/deployment` or `namespace/{selector}`.
        workers: String,
        /// The bound that was exceeded.
        stale_after: Duration,
    },
    /// No agent at all (in the zone) was heard from recently, so "no workers"
    /// cannot be told from "no data".
    #[error("no agent{} has reported within {stale_after:?}", zone.as_deref().map(|z| format!(" in zone {z}")).unwrap_or_default())]
    NoFreshAgents {
        /// The trigger's zone, if any.
        zone: Option<String>,
        /// The bound.
        stale_after: Duration,
    },
    /// Fresh agents run the workers but report no usage for this metric
    /// (e.g. NVML missing); a value a device does not report is never 0.
    #[error("no fresh agent with workers of {workers} reports {metric} for {accelerator}")]
    NoUsage {
        /// The trigger's workers, as in [`EvalError::Stale`].
        workers: String,
        /// The metric.
        metric: MetricKind,
        /// The accelerator.
        accelerator: AcceleratorType,
    },
}

/// What wakes a trigger besides its own workers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Wake {
    /// Distinct devices that recently asked the inventory for its class.
    pub demand: u64,
    /// Its `spillFrom` sibling's backlog beyond `spillAbove` per worker.
    pub spill: f64,
}

impl Wake {
    /// Whether either signal is present.
    pub fn any(&self) -> bool {
        self.demand > 0 || self.spill > 0.0
    }
}

/// What KEDA is told: the metric value and whether the trigger is active.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// `GetMetrics`' value.
    pub value: f64,
    /// `IsActive`'s answer.
    pub active: bool,
}

/// Folds the wake signals into a trigger's own value.
///
/// - A sum metric (queueDepth, inFlight, backlog) adds pending demand (one
///   per device) and the spilled-over backlog, so the HPA sizes the
///   Deployment for them from its first replica on.
/// - An average metric (utilization, memoryUtilization) keeps its reading;
///   while waking with no reading (no node, no worker yet) it reports its
///   target: one replica's worth under `AverageValue`.
/// - Either signal makes the trigger active whatever its `activationValue`.
/// - Without a signal, an error stays an error (KEDA's `fallback`).
pub fn with_wake(trigger: &Trigger, own: Result<f64, EvalError>, wake: Wake) -> Result<Reading, EvalError> {
    let extra = wake.demand as f64 + wake.spill;
    match own {
        Ok(v) => {
            let value = if trigger.metric.is_sum() { v + extra } else { v };
            Ok(Reading { value, active: wake.any() || trigger.is_active(v) })
        }
        Err(_) if wake.any() => {
            let value = if trigger.metric.is_sum() { extra } else { trigger.target };
            Ok(Reading { value, active: true })
        }
        Err(e) => Err(e),
    }
}

/// A trigger's value from the agents holding its group's workers.
/// `any_fresh_agent` answers, only when no member is fresh and none is stale,
/// whether some agent in the trigger's zone is fresh (then "no workers" is a
/// fact and the value is 0).
pub fn evaluate<'a>(
    trigger: &Trigger,
    stale_after: Duration,
    members: impl IntoIterator<Item = Member<'a>>,
    any_fresh_agent: impl FnOnce() -> bool,
) -> Result<f64, EvalError> {
    let mut fresh = 0usize;
    let mut stale = 0usize;
    let mut sum = 0u64;
    let mut mean = Mean::default();
    for m in members {
        if trigger.zone.as_deref().is_some_and(|z| z != m.zone) {
            continue;
        }
        if m.age > stale_after {
            stale += 1;
            continue;
        }
        fresh += 1;
        match trigger.metric {
            MetricKind::QueueDepth => sum += m.totals.queue_depth,
            MetricKind::InFlight => sum += m.totals.in_flight,
            MetricKind::Backlog => sum += m.totals.queue_depth + m.totals.in_flight,
            MetricKind::Utilization | MetricKind::MemoryUtilization => {
                // The devices the selected workers' pods hold, when the agent
                // knows them (kubelet PodResources); the node's otherwise.
                let held = m.totals.held.for_metric(trigger.key.accelerator, trigger.metric);
                let node = m.usage.for_metric(trigger.key.accelerator, trigger.metric);
                mean.merge(if held.count > 0 { &held } else { &node });
            }
        }
    }
    if fresh == 0 {
        if stale > 0 {
            return Err(EvalError::Stale {
                agents: stale,
                accelerator: trigger.key.accelerator,
                workers: trigger.key.to_string(),
                stale_after,
            });
        }
        if !any_fresh_agent() {
            return Err(EvalError::NoFreshAgents { zone: trigger.zone.clone(), stale_after });
        }
        return Ok(0.0);
    }
    if trigger.metric.is_sum() {
        return Ok(sum as f64);
    }
    if mean.count == 0 {
        return Err(EvalError::NoUsage {
            workers: trigger.key.to_string(),
            metric: trigger.metric,
            accelerator: trigger.key.accelerator,
        });
    }
    Ok(mean.sum / f64::from(mean.count))
}

#[cfg(test)]
mod tests;
