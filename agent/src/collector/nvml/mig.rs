//! The MIG devices of a GPU in MIG mode: each its own entry with its GPU
//! instance id, profile, memory and graphics-engine activity.
//!
//! NVML does not measure a GPU's utilisation under MIG (the query answers
//! `NotSupported`); what means something per instance is DCGM's
//! `DCGM_FI_PROF_GR_ENGINE_ACTIVE`, which NVML offers as GPM's
//! `GRAPHICS_UTIL` between two samples of that GPU instance (Hopper and
//! newer). One sample per instance is kept from tick to tick in [`Samples`];
//! the first tick after an instance appears has no activity yet, and a GPU
//! without GPM support has none at all: left out, never 0.

use std::collections::BTreeMap;

use edge_telemetry::proto::MigInstance;
use nvml_wrapper::enums::gpm::GpmMetricId;
use nvml_wrapper::error::{NvmlError, nvml_sym, nvml_try};
use nvml_wrapper::{Device, GpmSample, Nvml};

use super::query::Queries;

/// The latest GPM sample per (GPU index, GPU instance id), owned raw: a
/// `GpmSample` borrows the `Nvml` it came from, which the collector owns
/// next to it.
#[derive(Debug, Default)]
pub struct Samples {
    by_instance: BTreeMap<(u32, u32), RawSample>,
}

#[derive(Debug)]
struct RawSample(*mut std::ffi::c_void);

// SAFETY: a GPM sample is plain memory NVML allocated; it is used from one
// thread at a time (the collector sits behind a mutex), as GpmSample's own
// `Send` implementation allows.
unsafe impl Send for RawSample {}

impl Samples {
    /// Frees every sample; call before `nvml` is dropped.
    pub fn free_all(&mut self, nvml: &Nvml) {
        for (_, raw) in std::mem::take(&mut self.by_instance) {
            // SAFETY: allocated by this `nvml` and owned by us alone.
            drop(unsafe { GpmSample::from_handle(nvml, raw.0.cast()) });
        }
    }

    /// Keeps only the instances seen this tick.
    fn retain(&mut self, nvml: &Nvml, gpu: u32, seen: &[u32]) {
        let gone: Vec<(u32, u32)> =
            self.by_instance.keys().filter(|(g, gi)| *g == gpu && !seen.contains(gi)).copied().collect();
        for key in gone {
            if let Some(raw) = self.by_instance.remove(&key) {
                // SAFETY: as in free_all.
                drop(unsafe { GpmSample::from_handle(nvml, raw.0.cast()) });
            }
        }
    }

    /// Takes a new sample of `gpu`'s instance `gi`; returns the activity
    /// since the previous one, if there was one.
    fn activity(&mut self, nvml: &Nvml, parent: &Device<'_>, gpu: u32, gi: u32, q: &mut Queries) -> Option<f64> {
        let sample = q.optional("gpm sample", || parent.gpm_mig_sample(gi))?;
        let previous = self.by_instance.insert((gpu, gi), RawSample(sample.into_handle().cast()))?;
        // SAFETY: allocated by this `nvml`, owned by us alone; dropped (freed) below.
        let previous = unsafe { GpmSample::from_handle(nvml, previous.0.cast()) };
        let current_raw = self.by_instance.get(&(gpu, gi))?.0;
        // SAFETY: borrowed for this call only; `by_instance` keeps owning it.
        let current = std::mem::ManuallyDrop::new(unsafe { GpmSample::from_handle(nvml, current_raw.cast()) });
        let metrics = q.optional("gpm metrics", || {
            nvml_wrapper::gpm::gpm_metrics_get(nvml, &previous, &current, &[GpmMetricId::GraphicsUtil])
        })?;
        let util = metrics.into_iter().next()?;
        q.optional("gpm graphics util", || util).map(|m| (m.value / 100.0).clamp(0.0, 1.0))
    }
}

/// The MIG devices of GPU `index`; empty when MIG mode is off or the GPU
/// has no MIG support.
pub fn read(nvml: &Nvml, parent: &Device<'_>, index: u32, samples: &mut Samples, q: &mut Queries) -> Vec<MigInstance> {
    let enabled = q.optional("mig mode", || parent.mig_mode()).is_some_and(|m| m.current == 1);
    if !enabled {
        samples.retain(nvml, index, &[]);
        return Vec::new();
    }
    let slots = q.optional("max mig device count", || parent.mig_device_count()).unwrap_or(0);
    let mut out = Vec::new();
    for slot in 0..slots {
        let mig = match parent.mig_device_by_index(slot) {
            Ok(d) => d,
            // A free slot.
            Err(NvmlError::NotFound | NvmlError::InvalidArg) => continue,
            Err(e) => {
                q.optional("mig device handle", || Err::<(), _>(e));
                continue;
            }
        };
        let Some(uuid) = q.optional("mig uuid", || mig.uuid()) else { continue };
        let Some(gpu_instance_id) = q.optional("gpu instance id", || instance_id(nvml, &mig, Id::Gpu)) else {
            continue;
        };
        let compute_instance_id = q.optional("compute instance id", || instance_id(nvml, &mig, Id::Compute));
        let name = q.optional("mig name", || mig.name()).unwrap_or_default();
        let memory = q.optional("mig memory info", || mig.memory_info());
        out.push(MigInstance {
            gpu_instance_id,
            compute_instance_id: compute_instance_id.unwrap_or_default(),
            uuid,
            profile: profile(&name).to_owned(),
            graphics_engine_active_ratio: samples.activity(nvml, parent, index, gpu_instance_id, q),
            framebuffer_used_bytes: memory.as_ref().map(|m| m.used),
            framebuffer_free_bytes: memory.as_ref().map(|m| m.free),
            framebuffer_total_bytes: memory.map(|m| m.total),
            pods: Vec::new(),
        });
    }
    let seen: Vec<u32> = out.iter().map(|m| m.gpu_instance_id).collect();
    samples.retain(nvml, index, &seen);
    out
}

/// The profile in a MIG device's name (`NVIDIA A100-SXM4-40GB MIG 1g.5gb`
/// → `1g.5gb`), as dcgm-exporter's `GPU_I_PROFILE` shows it.
pub fn profile(name: &str) -> &str {
    name.rsplit_once("MIG ").map_or(name, |(_, p)| p).trim()
}

enum Id {
    Gpu,
    Compute,
}

/// `nvmlDeviceGetGpuInstanceId` / `nvmlDeviceGetComputeInstanceId`, which
/// nvml-wrapper does not wrap.
fn instance_id(nvml: &Nvml, mig: &Device<'_>, which: Id) -> Result<u32, NvmlError> {
    let lib = nvml.lib();
    let sym = match which {
        Id::Gpu => nvml_sym(lib.nvmlDeviceGetGpuInstanceId.as_ref())?,
        Id::Compute => nvml_sym(lib.nvmlDeviceGetComputeInstanceId.as_ref())?,
    };
    let mut id: std::ffi::c_uint = 0;
    // SAFETY: a live MIG handle from this `nvml` and a valid out-pointer, as
    // the NVML function requires.
    unsafe { nvml_try(sym(mig.handle(), &mut id))? };
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_is_the_end_of_the_mig_devices_name() {
        assert_eq!(profile("NVIDIA A100-SXM4-40GB MIG 1g.5gb"), "1g.5gb");
        assert_eq!(profile("NVIDIA H100 80GB HBM3 MIG 3g.40gb"), "3g.40gb");
        assert_eq!(profile("1g.10gb"), "1g.10gb");
    }
}
