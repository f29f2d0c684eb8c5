//! The agent's collectors by name: the `collector` field of a snapshot's
//! `CollectorHealth`, which exporters and the scaler read back.

/// One collector of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CollectorName {
    /// NVIDIA GPUs through NVML.
    Nvml,
    /// Inferentia/Trainium through neuron-monitor.
    Neuron,
    /// The host's CPU and memory from /proc.
    Procfs,
    /// The inference workers' reports.
    Workers,
    /// Which pod holds which device, from the kubelet.
    PodResources,
}

impl CollectorName {
    /// Every collector, in the order a snapshot lists them.
    pub const ALL: [CollectorName; 5] = [Self::Nvml, Self::Neuron, Self::Procfs, Self::Workers, Self::PodResources];

    /// The name in a snapshot and in logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Nvml => "nvml",
            Self::Neuron => "neuron",
            Self::Procfs => "procfs",
            Self::Workers => "workers",
            Self::PodResources => "pod_resources",
        }
    }
}

impl std::fmt::Display for CollectorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
