//! Neuron series under neuron-monitor-prometheus's names and labels.
//! Placeholder until the Neuron collector lands.

use edge_telemetry::proto::NodeSnapshot;

use super::Samples;

/// Adds every NeuronCore, runtime and device of `snapshot`.
pub fn add(_samples: &mut Samples, _snapshot: &NodeSnapshot) {}
