//! One GPU per tick: its identity, then every value the snapshot carries.

use edge_telemetry::proto::Gpu;
use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};

use super::query::{Queries, milliwatts_to_watts};

/// What names a GPU on `/metrics` (`UUID`, `modelName`, `pci_bus_id`,
/// `device`). Kept per index across ticks so a GPU that stops answering
/// still carries its labels on `edge_gpu_healthy … 0`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// `GPU-…`.
    pub uuid: String,
    /// The product name, e.g. `NVIDIA A10G`.
    pub name: String,
    /// `domain:bus:device.function`.
    pub pci_bus_id: String,
    /// `/dev/nvidiaN`'s N.
    pub minor_number: Option<u32>,
    /// Every identity query answered (or is unsupported); otherwise the
    /// next tick asks again instead of reusing this.
    pub complete: bool,
}

impl Identity {
    /// A GPU that failed: its identity and the reason, no values.
    pub fn unhealthy(&self, index: u32, error: String) -> Gpu {
        let mut gpu = Gpu { index, healthy: false, error, ..Gpu::default() };
        self.label(&mut gpu);
        gpu
    }

    fn label(&self, gpu: &mut Gpu) {
        gpu.uuid.clone_from(&self.uuid);
        gpu.name.clone_from(&self.name);
        gpu.pci_bus_id.clone_from(&self.pci_bus_id);
        gpu.minor_number = self.minor_number;
    }
}

/// One GPU's reading.
#[derive(Debug)]
pub struct DeviceReading {
    /// The snapshot entry (unhealthy with `error` set if it failed).
    pub gpu: Gpu,
    /// Its identity as read this tick, if the GPU answered far enough.
    pub identity: Option<Identity>,
    /// Failures along the way.
    pub queries: Queries,
}

/// Reads GPU `index`; `known` is its identity from an earlier tick.
pub fn read(nvml: &Nvml, index: u32, known: Option<&Identity>) -> DeviceReading {
    let mut q = Queries::default();
    let device = q.required("handle", || nvml.device_by_index(index));
    // The UUID is asked every tick: it is the liveness check, and it shows a
    // different GPU behind the same index after a reset.
    let uuid = device.as_ref().and_then(|d| q.required("uuid", || d.uuid()));
    let (Some(device), Some(uuid)) = (device, uuid) else {
        let reason = q.fatal.clone().unwrap_or_default();
        let gpu = known.cloned().unwrap_or_default().unhealthy(index, reason);
        return DeviceReading { gpu, identity: None, queries: q };
    };

    let identity = match known {
        Some(k) if k.uuid == uuid && k.complete => k.clone(),
        _ => {
            let errors_before = q.errors;
            let name = q.optional("name", || device.name()).unwrap_or_default();
            let pci_bus_id = q.optional("pci info", || device.pci_info()).map(|p| p.bus_id).unwrap_or_default();
            let minor_number = q.optional("minor number", || device.minor_number());
            Identity { uuid, name, pci_bus_id, minor_number, complete: q.errors == errors_before }
        }
    };

    let mut gpu = Gpu { index, healthy: true, ..Gpu::default() };
    identity.label(&mut gpu);
    let utilization = q.optional("utilization", || device.utilization_rates());
    gpu.gpu_utilization_percent = utilization.as_ref().map(|u| u.gpu);
    gpu.memory_copy_utilization_percent = utilization.map(|u| u.memory);
    gpu.encoder_utilization_percent =
        q.optional("encoder utilization", || device.encoder_utilization()).map(|u| u.utilization);
    gpu.decoder_utilization_percent =
        q.optional("decoder utilization", || device.decoder_utilization()).map(|u| u.utilization);
    let memory = q.optional("memory info", || device.memory_info());
    gpu.framebuffer_used_bytes = memory.as_ref().map(|m| m.used);
    gpu.framebuffer_free_bytes = memory.as_ref().map(|m| m.free);
    gpu.framebuffer_total_bytes = memory.map(|m| m.total);
    gpu.power_usage_watts = q.optional("power usage", || device.power_usage()).map(milliwatts_to_watts);
    gpu.temperature_celsius = q.optional("temperature", || device.temperature(TemperatureSensor::Gpu));
    gpu.sm_clock_mhz = q.optional("sm clock", || device.clock_info(Clock::SM));
    gpu.memory_clock_mhz = q.optional("memory clock", || device.clock_info(Clock::Memory));
    gpu.total_energy_millijoules = q.optional("total energy", || device.total_energy_consumption());
    gpu.pcie_replay_count = q.optional("pcie replay counter", || device.pcie_replay_counter()).map(u64::from);

    if let Some(reason) = q.fatal.clone() {
        // Values read before the GPU failed are dropped too: half a GPU
        // next to `healthy 0` would be read as live data.
        gpu = identity.unhealthy(index, reason);
    }
    DeviceReading { gpu, identity: Some(identity), queries: q }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unhealthy_gpu_keeps_its_labels_and_no_values() {
        let id = Identity {
            uuid: "GPU-1".into(),
            name: "NVIDIA A10G".into(),
            pci_bus_id: "00000000:00:1F.0".into(),
            minor_number: Some(1),
            complete: true,
        };
        let gpu = id.unhealthy(1, "GPU is lost".into());
        assert_eq!(
            gpu,
            Gpu {
                index: 1,
                uuid: "GPU-1".into(),
                name: "NVIDIA A10G".into(),
                pci_bus_id: "00000000:00:1F.0".into(),
                minor_number: Some(1),
                healthy: false,
                error: "GPU is lost".into(),
                ..Gpu::default()
            }
        );
    }
}
