//! What kind of node a snapshot describes.

use super::CollectorName;
use crate::AcceleratorType;
use crate::proto::{CollectorState, NodeSnapshot};

/// A node with GPUs, or whose NVML found a driver, is `nvidia`; one with
/// Neuron devices, or a neuron-monitor running, is `neuron`; anything else
/// `cpu`. Device data alone is not enough: neuron-monitor lists only the
/// NeuronCores a model runs on (an idle inf2 node has none), its first report
/// comes a period after the start, and a restart drops its data for a while.
/// The type of a node must not change with its load.
pub fn node_accelerator(snapshot: &NodeSnapshot) -> AcceleratorType {
    let present = |name: CollectorName| {
        snapshot
            .collectors
            .iter()
            .any(|c| c.collector == name.as_str() && matches!(c.state(), CollectorState::Ok | CollectorState::Failing))
    };
    if !snapshot.gpus.is_empty() || present(CollectorName::Nvml) {
        AcceleratorType::Nvidia
    } else if !snapshot.neuron_cores.is_empty() || !snapshot.neuron_devices.is_empty() || present(CollectorName::Neuron)
    {
        AcceleratorType::Neuron
    } else {
        AcceleratorType::Cpu
    }
}
