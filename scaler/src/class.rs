//! Worker classes: the unit the scaler counts in. What a node's workers are
//! summed by, what a trigger's selector picks, what demand is recorded for.

use std::collections::BTreeMap;

use edge_telemetry::AcceleratorType;

/// Workers that no trigger can tell apart: same accelerator type, namespace,
/// Deployment and labels. A node's workers are summed per class; a trigger
/// counts the classes its selector picks. Ordered by these fields so the
/// classes of one Deployment (or one namespace) are a contiguous range.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerClass {
    /// The workers' accelerator type.
    pub accelerator: AcceleratorType,
    /// Their namespace (empty outside Kubernetes).
    pub namespace: String,
    /// Their Deployment.
    pub deployment: String,
    /// Their labels (empty when they report none).
    pub labels: BTreeMap<String, String>,
}
