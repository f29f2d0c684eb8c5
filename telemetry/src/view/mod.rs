//! The shared reading of a [`NodeSnapshot`]: what every exporter and the
//! scaler derive from a node, computed here once so they cannot disagree.

pub mod collectors;
pub mod node;
pub mod usage;
pub mod workers;

pub use collectors::CollectorName;
pub use node::node_accelerator;
pub use usage::{mean_of, memory_percent};
pub use workers::{WorkerTotals, worker_totals};
