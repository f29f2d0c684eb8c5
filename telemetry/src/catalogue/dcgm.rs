//! NVIDIA dcgm-exporter's series (its `default-counters.csv`), so that Grafana
//! dashboard 12239 and existing alerts work against the agent unchanged.
//!
//! dcgm-exporter declares the energy and PCIe replay series as counters
//! without a `_total` suffix. OpenMetrics requires that suffix on counters, so
//! we expose them as gauges to keep the established names; `rate()` and
//! `increase()` still work on them.

use super::Metric;

/// Label: GPU index on the node.
pub const LABEL_GPU: &str = "gpu";
/// Label: GPU UUID.
pub const LABEL_UUID: &str = "UUID";
/// Label: PCI bus id.
pub const LABEL_PCI_BUS_ID: &str = "pci_bus_id";
/// Label: device file name, `nvidia<minor>`.
pub const LABEL_DEVICE: &str = "device";
/// Label: product name.
pub const LABEL_MODEL_NAME: &str = "modelName";
/// Label: the namespace of the pod holding the device (kubelet PodResources).
pub const LABEL_NAMESPACE: &str = "namespace";
/// Label: the pod holding the device.
pub const LABEL_POD: &str = "pod";
/// Label: the container holding the device.
pub const LABEL_CONTAINER: &str = "container";
/// Label: a MIG device's GPU instance id.
pub const LABEL_GPU_I_ID: &str = "GPU_I_ID";
/// Label: a MIG device's profile, e.g. `1g.5gb`.
pub const LABEL_GPU_I_PROFILE: &str = "GPU_I_PROFILE";
/// dcgm-exporter spells the host label `Hostname` (older releases: `hostname`).
pub const HOST_LABEL_SPELLINGS: [&str; 2] = ["Hostname", "hostname"];

/// GPU utilisation, percent.
pub const GPU_UTIL: Metric = Metric::gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)");
/// Memory (copy engine) utilisation, percent.
pub const MEM_COPY_UTIL: Metric = Metric::gauge("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %)");
/// Encoder utilisation, percent.
pub const ENC_UTIL: Metric = Metric::gauge("DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %)");
/// Decoder utilisation, percent.
pub const DEC_UTIL: Metric = Metric::gauge("DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %)");
/// Framebuffer used, MiB.
pub const FB_USED: Metric = Metric::gauge("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB)");
/// Framebuffer free, MiB.
pub const FB_FREE: Metric = Metric::gauge("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB)");
/// Framebuffer total, MiB.
pub const FB_TOTAL: Metric = Metric::gauge("DCGM_FI_DEV_FB_TOTAL", "Framebuffer memory total (in MiB)");
/// Power draw, watts.
pub const POWER_USAGE: Metric = Metric::gauge("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W)");
/// GPU temperature, degrees Celsius.
pub const GPU_TEMP: Metric = Metric::gauge("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C)");
/// SM clock, MHz.
pub const SM_CLOCK: Metric = Metric::gauge("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz)");
/// Memory clock, MHz.
pub const MEM_CLOCK: Metric = Metric::gauge("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz)");
/// Energy since boot, millijoules (a counter in dcgm-exporter; see module docs).
pub const TOTAL_ENERGY_CONSUMPTION: Metric =
    Metric::gauge("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ)");
/// PCIe replays (a counter in dcgm-exporter; see module docs).
pub const PCIE_REPLAY_COUNTER: Metric =
    Metric::gauge("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "Total number of PCIe retries");

/// Share of time the graphics engine was active, 0..1: the utilisation that
/// means something per MIG instance (GPU_UTIL does not under MIG).
pub const PROF_GR_ENGINE_ACTIVE: Metric =
    Metric::gauge("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics engine is active");

/// Every dcgm-exporter series the agent serves.
pub const ALL: &[Metric] = &[
    GPU_UTIL,
    MEM_COPY_UTIL,
    ENC_UTIL,
    DEC_UTIL,
    FB_USED,
    FB_FREE,
    FB_TOTAL,
    POWER_USAGE,
    GPU_TEMP,
    SM_CLOCK,
    MEM_CLOCK,
    TOTAL_ENERGY_CONSUMPTION,
    PCIE_REPLAY_COUNTER,
    PROF_GR_ENGINE_ACTIVE,
];
