//! A ScaledObject trigger's `metadata` (KEDA's `scalerMetadata`), checked.
//!
//! KEDA sends the whole map with every call, so parsing is on the hot path:
//! it only looks at a handful of short strings and allocates the group key.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use edge_telemetry::AcceleratorType;

use crate::class::WorkerClass;
use crate::selector::LabelSelector;
use crate::values::{STALE_AFTER_RANGE, is_name, parse_duration};

mod keys;
pub use keys::{
    ACCELERATOR_TYPE, ACTIVATE_ON_DEMAND, ACTIVATION_VALUE, DEPLOYMENT, KEDA_KEYS, KEYS, LABEL_SELECTOR, METRIC,
    NAMESPACE, SPILL_ABOVE, SPILL_FROM, STALE_AFTER, TARGET_VALUE, ZONE,
};

/// Which value of the workers or their nodes a trigger scales on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Requests waiting, summed over the matching workers.
    QueueDepth,
    /// Requests running, summed.
    InFlight,
    /// Waiting plus running, summed.
    Backlog,
    /// Accelerator busy percent (0–100), averaged per device over the nodes
    /// running matching workers: GPUs (nvidia), NeuronCores (neuron), node CPU (cpu).
    Utilization,
    /// Memory used percent (0–100), averaged: GPU framebuffer (nvidia), node
    /// memory (cpu). neuron-monitor reports no device memory size, so not for neuron.
    MemoryUtilization,
}

impl MetricKind {
    /// Every metric.
    pub const ALL: [MetricKind; 5] =
        [Self::QueueDepth, Self::InFlight, Self::Backlog, Self::Utilization, Self::MemoryUtilization];

    /// The spelling in trigger metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueDepth => "queueDepth",
            Self::InFlight => "inFlight",
            Self::Backlog => "backlog",
            Self::Utilization => "utilization",
            Self::MemoryUtilization => "memoryUtilization",
        }
    }

    /// Whether the metric is a sum over workers (KEDA's `AverageValue` then
    /// divides by replicas) rather than an average over devices.
    pub fn is_sum(self) -> bool {
        matches!(self, Self::QueueDepth | Self::InFlight | Self::Backlog)
    }

    /// The metrics that exist for an accelerator type.
    pub fn allowed_for(accelerator: AcceleratorType) -> &'static [MetricKind] {
        match accelerator {
            AcceleratorType::Neuron => &Self::ALL[..4],
            AcceleratorType::Nvidia | AcceleratorType::Cpu => &Self::ALL,
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a trigger picks its workers within its accelerator type and namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkerSelector {
    /// The workers reporting this `deployment`.
    Deployment(String),
    /// The workers whose reported labels match.
    Labels(LabelSelector),
    /// Every worker of the accelerator type and namespace (a spill-over sibling).
    All,
}

impl fmt::Display for WorkerSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deployment(d) => f.write_str(d),
            Self::Labels(s) => write!(f, "{{{s}}}"),
            Self::All => f.write_str("*"),
        }
    }
}

/// Which workers a trigger counts: those of one accelerator type in one
/// namespace that its selector picks. Activation streams subscribe by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    /// The workers' accelerator type.
    pub accelerator: AcceleratorType,
    /// The workers' namespace as they report it (empty outside Kubernetes).
    pub namespace: String,
    /// Deployment name or labels.
    pub selector: WorkerSelector,
}

impl GroupKey {
    /// Whether the trigger counts the workers of `class`.
    pub fn selects(&self, class: &WorkerClass) -> bool {
        self.accelerator == class.accelerator
            && self.namespace == class.namespace
            && match &self.selector {
                WorkerSelector::Deployment(d) => *d == class.deployment,
                WorkerSelector::Labels(s) => s.matches(&class.labels),
                WorkerSelector::All => true,
            }
    }
}

/// `namespace/deployment` or `namespace/{selector}`, for error messages.
impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.selector)
    }
}

/// One checked trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// The workers it counts.
    pub key: GroupKey,
    /// The value it scales on.
    pub metric: MetricKind,
    /// HPA target.
    pub target: f64,
    /// Active when the value is above this.
    pub activation: f64,
    /// Only agents in this zone count.
    pub zone: Option<String>,
    /// Overrides the scaler's --stale-after.
    pub stale_after: Option<Duration>,
    /// Whether device demand at the inventory wakes it (`activateOnDemand`).
    pub activate_on_demand: bool,
    /// A sibling class whose backlog spills over into it.
    pub spill: Option<Spill>,
    /// Whether `namespace` was given in the metadata (it then shows in the metric name).
    namespace_explicit: bool,
}

/// Spill-over: when the backlog (queued + running) per ready worker of every
/// `from` worker in the trigger's namespace (and zone) is above `above`, the
/// excess, `backlog - above × workers`, wakes the trigger and adds to its sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Spill {
    /// The sibling's workers: every worker of `spillFrom` in the trigger's namespace.
    pub key: GroupKey,
    /// Backlog per sibling worker the sibling absorbs itself.
    pub above: f64,
}

/// Bad trigger metadata; answered with `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("scalerMetadata.{key}: {reason}")]
pub struct TriggerError {
    /// The offending key.
    pub key: String,
    /// What is wrong and what is allowed.
    pub reason: String,
}

fn bad(key: &str, reason: impl Into<String>) -> TriggerError {
    TriggerError { key: key.to_owned(), reason: reason.into() }
}

impl Trigger {
    /// Checks `metadata` of a ScaledObject in `namespace`.
    pub fn parse(namespace: &str, metadata: &HashMap<String, String>) -> Result<Self, TriggerError> {
        for key in metadata.keys() {
            if !KEYS.contains(&key.as_str()) && !KEDA_KEYS.contains(&key.as_str()) {
                return Err(bad(
                    key,
                    format!(
                        "unknown key; allowed: {} (KEDA's {} are accepted and ignored)",
                        KEYS.join(", "),
                        KEDA_KEYS.join(", ")
                    ),
                ));
            }
        }
        let get = |key: &str| metadata.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());

        let accelerator = match get(ACCELERATOR_TYPE) {
            None => return Err(bad(ACCELERATOR_TYPE, format!("missing; allowed: {}", AcceleratorType::ALLOWED))),
            Some(v) => v.parse::<AcceleratorType>().map_err(|_| {
                bad(ACCELERATOR_TYPE, format!("unknown accelerator {v:?}; allowed: {}", AcceleratorType::ALLOWED))
            })?,
        };
        let allowed = MetricKind::allowed_for(accelerator);
        let allowed_list = || allowed.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
        let metric = match get(METRIC) {
            None => MetricKind::QueueDepth,
            Some(v) => *allowed.iter().find(|m| m.as_str() == v).ok_or_else(|| {
                bad(
                    METRIC,
                    format!("unknown metric {v:?} for acceleratorType {accelerator}; allowed: {}", allowed_list()),
                )
            })?,
        };
        let target = match get(TARGET_VALUE) {
            None => return Err(bad(TARGET_VALUE, "missing; a number > 0, e.g. 4")),
            Some(v) => number(TARGET_VALUE, v)?,
        };
        if target <= 0.0 {
            return Err(bad(TARGET_VALUE, format!("{target} is not > 0")));
        }
        let activation = get(ACTIVATION_VALUE).map(|v| number(ACTIVATION_VALUE, v)).transpose()?.unwrap_or(0.0);
        if activation < 0.0 {
            return Err(bad(ACTIVATION_VALUE, format!("{activation} is negative; a number >= 0")));
        }
        let selector = match (get(DEPLOYMENT), get(LABEL_SELECTOR)) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    DEPLOYMENT,
                    "deployment and labelSelector exclude each other; set exactly one of them",
                ));
            }
            (None, None) => {
                return Err(bad(
                    DEPLOYMENT,
                    "missing; set exactly one of deployment (the workers' Deployment) or labelSelector \
                     (e.g. app=sd,tier!=batch)",
                ));
            }
            (Some(v), None) => WorkerSelector::Deployment(name(DEPLOYMENT, v)?),
            (None, Some(v)) => {
                WorkerSelector::Labels(LabelSelector::parse(v).map_err(|e| bad(LABEL_SELECTOR, format!("{v:?}: {e}")))?)
            }
        };
        let namespace_explicit = get(NAMESPACE).is_some();
        let namespace = match get(NAMESPACE) {
            Some(v) => name(NAMESPACE, v)?,
            None => namespace.to_owned(),
        };
        let zone = get(ZONE).map(|v| name(ZONE, v)).transpose()?;
        let stale_after = get(STALE_AFTER)
            .map(|v| {
                let d = parse_duration(v).map_err(|e| bad(STALE_AFTER, format!("{v:?}: {e}")))?;
                if STALE_AFTER_RANGE.contains(&d) {
                    Ok(d)
                } else {
                    Err(bad(STALE_AFTER, format!("{v:?} is outside 200ms..=10m")))
                }
            })
            .transpose()?;
        let activate_on_demand = match get(ACTIVATE_ON_DEMAND) {
            None | Some("true") => true,
            Some("false") => false,
            Some(v) => return Err(bad(ACTIVATE_ON_DEMAND, format!("{v:?} is not a boolean; allowed: true, false"))),
        };
        let spill = match (get(SPILL_FROM), get(SPILL_ABOVE)) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(bad(SPILL_ABOVE, "needs spillFrom (the accelerator type whose backlog spills over)"));
            }
            (Some(from), above) => {
                let from = from.parse::<AcceleratorType>().map_err(|_| {
                    bad(SPILL_FROM, format!("unknown accelerator {from:?}; allowed: {}", AcceleratorType::ALLOWED))
                })?;
                if from == accelerator {
                    return Err(bad(
                        SPILL_FROM,
                        format!(
                            "{from} is this trigger's own acceleratorType; name another of {}",
                            AcceleratorType::ALLOWED
                        ),
                    ));
                }
                let Some(above) = above else {
                    return Err(bad(
                        SPILL_ABOVE,
                        "missing; with spillFrom, the backlog per ready worker (a number >= 0, e.g. 4) above which it spills over",
                    ));
                };
                let above = number(SPILL_ABOVE, above)?;
                if above < 0.0 {
                    return Err(bad(SPILL_ABOVE, format!("{above} is negative; a number >= 0")));
                }
                let key = GroupKey { accelerator: from, namespace: namespace.clone(), selector: WorkerSelector::All };
                Some(Spill { key, above })
            }
        };
        Ok(Self {
            key: GroupKey { accelerator, namespace, selector },
            metric,
            target,
            activation,
            zone,
            stale_after,
            activate_on_demand,
            spill,
            namespace_explicit,
        })
    }

    /// The metric name KEDA asks for: stable, made of `[a-z0-9-]`, and
    /// distinct for every (accelerator, metric, namespace override,
    /// selector, zone): `edge-<accelerator>-<metric>[-<namespace>]-<deployment>[-<zone>]`,
    /// or `…-labels-<fingerprint>…` for a label selector (its characters
    /// `=`, `!`, `/` and `,` are not allowed in metric names).
    pub fn metric_name(&self) -> String {
        let mut name = format!("edge-{}-{}", self.key.accelerator, self.metric.as_str().to_ascii_lowercase());
        let mut push = |part: &str| {
            name.push('-');
            name.extend(part.chars().map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9' | '-') => c,
                _ => '-',
            }));
        };
        if self.namespace_explicit {
            push(&self.key.namespace);
        }
        match &self.key.selector {
            WorkerSelector::Deployment(d) => push(d),
            WorkerSelector::Labels(s) => push(&format!("labels-{}", s.fingerprint())),
            // Never a trigger's own selector (only a spill-over sibling's).
            WorkerSelector::All => push("all"),
        }
        if let Some(zone) = &self.zone {
            push(zone);
        }
        name
    }

    /// KEDA's activation rule: active when the value is above `activationValue`.
    pub fn is_active(&self, value: f64) -> bool {
        value > self.activation
    }
}

fn number(key: &str, v: &str) -> Result<f64, TriggerError> {
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err(bad(key, format!("{v:?} is not a number; e.g. 4 or 0.5"))),
    }
}

/// Names of Kubernetes objects and zones: printable, no spaces, at most 253.
fn name(key: &str, v: &str) -> Result<String, TriggerError> {
    if !is_name(v) {
        return Err(bad(key, format!("{v:?} is not a name (letters, digits, '-', '.', '_'; at most 253)")));
    }
    Ok(v.to_owned())
}

#[cfg(test)]
mod tests;
