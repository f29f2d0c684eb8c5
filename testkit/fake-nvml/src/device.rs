//! Per-device queries. Each answers from the GPU's config entry: its value,
//! `NOT_SUPPORTED` for `null`, the configured error, or `GPU_IS_LOST`.
//!
//! Every out-pointer follows NVML's contract: null (refused with
//! `INVALID_ARGUMENT`) or valid for one write of the pointee type; the
//! `# Safety` sections say so once per function.

use std::ffi::{c_char, c_uint, c_ulonglong};

use crate::code::{self, Return};
use crate::config::{Field, GpuConfig, MigConfig, parse_bus_id};
use crate::ffi::{
    Device, MEMORY_V2_VERSION, MemoryV2, PciInfo, Target, Utilization, c_array, guard, put, put_str, with_device,
    with_gpu,
};

/// `NVML_TEMPERATURE_GPU`.
const TEMPERATURE_GPU: c_uint = 0;
/// `NVML_CLOCK_GRAPHICS` .. `NVML_CLOCK_VIDEO`.
const CLOCK_SM: c_uint = 1;
const CLOCK_MEM: c_uint = 2;
const CLOCK_COUNT: c_uint = 4;
/// What a real GPU reports as the encoder/decoder sampling period.
const SAMPLING_PERIOD_US: c_uint = 167_000;

/// A string query on a GPU or a MIG device: `gpu` or `mig` picks the answer.
///
/// # Safety
/// `buf` is null or valid for writing `length` bytes.
unsafe fn put_device_str(
    device: Device,
    gpu: impl FnOnce(&GpuConfig) -> &Field<String>,
    mig: impl FnOnce(&MigConfig) -> &Field<String>,
    buf: *mut c_char,
    length: c_uint,
) -> Return {
    guard(|| {
        with_device(device, |t| {
            let value = match t {
                Target::Gpu(g) => gpu(g).get()?,
                Target::Mig(m) => mig(m).get()?,
            };
            // SAFETY: forwarded caller contract.
            unsafe { put_str(value, buf, length) }
        })
    })
}

/// `nvmlDeviceGetUUID`.
///
/// # Safety
/// `uuid` is null or valid for writing `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(device: Device, uuid: *mut c_char, length: c_uint) -> Return {
    // SAFETY: forwarded caller contract.
    unsafe { put_device_str(device, |g| &g.uuid, |m| &m.uuid, uuid, length) }
}

/// `nvmlDeviceGetName`.
///
/// # Safety
/// `name` is null or valid for writing `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(device: Device, name: *mut c_char, length: c_uint) -> Return {
    // SAFETY: forwarded caller contract.
    unsafe { put_device_str(device, |g| &g.name, |m| &m.name, name, length) }
}

/// `nvmlDeviceGetPciInfo_v3`.
///
/// # Safety
/// `pci` is null or valid for writing one `nvmlPciInfo_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(device: Device, pci: *mut PciInfo) -> Return {
    guard(|| {
        let info = with_gpu(device, |g| {
            let id = g.pci_bus_id.get()?;
            // Checked when the config was parsed.
            let (domain, bus, dev) = parse_bus_id(id).ok_or(code::UNKNOWN)?;
            let legacy = format!("{:04X}:{}", domain, id.split_once(':').map_or("", |(_, rest)| rest));
            Ok(PciInfo {
                bus_id_legacy: c_array(&legacy),
                domain,
                bus,
                device: dev,
                pci_device_id: 0x2237_10de,
                pci_sub_system_id: 0x152f_10de,
                bus_id: c_array(id),
            })
        })?;
        // SAFETY: forwarded caller contract.
        unsafe { put(pci, info) }
    })
}

/// `nvmlDeviceGetMinorNumber`.
///
/// # Safety
/// `minor` is null or valid for writing one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMinorNumber(device: Device, minor: *mut c_uint) -> Return {
    // SAFETY: forwarded caller contract.
    guard(|| with_gpu(device, |g| unsafe { put(minor, *g.minor_number.get()?) }))
}

/// `nvmlDeviceGetUtilizationRates`.
///
/// # Safety
/// `utilization` is null or valid for writing one `nvmlUtilization_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(device: Device, utilization: *mut Utilization) -> Return {
    guard(|| {
        let u = with_gpu(device, |g| g.utilization.get().copied())?;
        // SAFETY: forwarded caller contract.
        unsafe { put(utilization, Utilization { gpu: u.gpu, memory: u.memory }) }
    })
}

/// `nvmlDeviceGetEncoderUtilization`.
///
/// # Safety
/// `utilization` and `period_us` are null or valid for writing one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetEncoderUtilization(
    device: Device,
    utilization: *mut c_uint,
    period_us: *mut c_uint,
) -> Return {
    guard(|| {
        let u = with_gpu(device, |g| g.encoder_utilization.get().copied())?;
        // SAFETY: forwarded caller contract.
        unsafe { put(utilization, u).and_then(|()| put(period_us, SAMPLING_PERIOD_US)) }
    })
}

/// `nvmlDeviceGetDecoderUtilization`.
///
/// # Safety
/// `utilization` and `period_us` are null or valid for writing one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetDecoderUtilization(
    device: Device,
    utilization: *mut c_uint,
    period_us: *mut c_uint,
) -> Return {
    guard(|| {
        let u = with_gpu(device, |g| g.decoder_utilization.get().copied())?;
        // SAFETY: forwarded caller contract.
        unsafe { put(utilization, u).and_then(|()| put(period_us, SAMPLING_PERIOD_US)) }
    })
}

/// `nvmlDeviceGetMemoryInfo_v2`: checks the struct version like the driver.
///
/// # Safety
/// `memory` is null or valid for reading and writing one `nvmlMemory_v2_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(device: Device, memory: *mut MemoryV2) -> Return {
    guard(|| {
        if memory.is_null() {
            return Err(code::INVALID_ARGUMENT);
        }
        // SAFETY: non-null and valid for one read per the contract.
        let version = unsafe { (*memory).version };
        if version != MEMORY_V2_VERSION {
            return Err(code::ARGUMENT_VERSION_MISMATCH);
        }
        let m = with_device(device, |t| match t {
            Target::Gpu(g) => g.memory.get().copied(),
            Target::Mig(m) => m.memory.get().copied(),
        })?;
        let value = MemoryV2 { version, total: m.total, reserved: m.reserved, free: m.free, used: m.used };
        // SAFETY: forwarded caller contract.
        unsafe { put(memory, value) }
    })
}

/// `nvmlDeviceGetPowerUsage`: milliwatts.
///
/// # Safety
/// `power` is null or valid for writing one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(device: Device, power: *mut c_uint) -> Return {
    // SAFETY: forwarded caller contract.
    guard(|| with_gpu(device, |g| unsafe { put(power, *g.power_usage_mw.get()?) }))
}

/// `nvmlDeviceGetTemperature`: only the GPU die sensor exists.
///
/// # Safety
/// `temp` is null or valid for writing one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(device: Device, sensor: c_uint, temp: *mut c_uint) -> Return {
    guard(|| {
        if sensor != TEMPERATURE_GPU {
            return Err(code::INVALID_ARGUMENT);
        }
        // SAFETY: forwarded caller contract.
        with_gpu(device, |g| unsafe { put(temp, *g.temperature_gpu_c.get()?) })
    })
}

/// `nvmlDeviceGetClockInfo`: SM and memory clocks; graphics and video
/// answer `NOT_SUPPORTED`.
///
/// # Safety
/// `clock` is null or valid for writing one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetClockInfo(device: Device, clock_type: c_uint, clock: *mut c_uint) -> Return {
    guard(|| {
        let mhz = with_gpu(device, |g| match clock_type {
            CLOCK_SM => g.sm_clock_mhz.get().copied(),
            CLOCK_MEM => g.memory_clock_mhz.get().copied(),
            t if t < CLOCK_COUNT => Err(code::NOT_SUPPORTED),
            _ => Err(code::INVALID_ARGUMENT),
        })?;
        // SAFETY: forwarded caller contract.
        unsafe { put(clock, mhz) }
    })
}

/// `nvmlDeviceGetTotalEnergyConsumption`: millijoules since the driver loaded.
///
/// # Safety
/// `energy` is null or valid for writing one `c_ulonglong`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTotalEnergyConsumption(device: Device, energy: *mut c_ulonglong) -> Return {
    // SAFETY: forwarded caller contract.
    guard(|| with_gpu(device, |g| unsafe { put(energy, *g.total_energy_mj.get()?) }))
}

/// `nvmlDeviceGetPcieReplayCounter`.
///
/// # Safety
/// `value` is null or valid for writing one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPcieReplayCounter(device: Device, value: *mut c_uint) -> Return {
    // SAFETY: forwarded caller contract.
    guard(|| with_gpu(device, |g| unsafe { put(value, *g.pcie_replay_counter.get()?) }))
}
