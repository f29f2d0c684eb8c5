//! MIG (Multi-Instance GPU): the mode, the MIG device handles of a GPU and
//! their GPU/compute instance ids, as NVML answers them for an A100/H100 in
//! MIG mode. A MIG handle answers `nvmlDeviceGetUUID`, `nvmlDeviceGetName`
//! and `nvmlDeviceGetMemoryInfo_v2` from its own entry (see [`crate::device`])
//! and `NOT_SUPPORTED` to GPU-wide queries such as utilisation.

use std::ffi::c_uint;

use crate::code::{self, Return};
use crate::config::MAX_MIG_DEVICES;
use crate::ffi::{Device, Target, guard, mig_handle, put, with_device, with_gpu};

/// `NVML_DEVICE_MIG_ENABLE`.
const MIG_ENABLE: c_uint = 1;

/// `nvmlDeviceGetMigMode`: enabled (current and pending) for a GPU with a
/// `mig` list, `NOT_SUPPORTED` otherwise.
///
/// # Safety
/// `current` and `pending` are null or valid for writing one `c_uint` each.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(device: Device, current: *mut c_uint, pending: *mut c_uint) -> Return {
    guard(|| {
        with_gpu(device, |g| g.mig.as_ref().map(|_| ()).ok_or(code::NOT_SUPPORTED))?;
        // SAFETY: forwarded caller contract.
        unsafe {
            put(current, MIG_ENABLE)?;
            put(pending, MIG_ENABLE)
        }
    })
}

/// `nvmlDeviceGetMaxMigDeviceCount`: the slots, used or not.
///
/// # Safety
/// `count` is null or valid for writing one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(device: Device, count: *mut c_uint) -> Return {
    guard(|| {
        let max = with_gpu(device, |g| Ok(if g.mig.is_some() { MAX_MIG_DEVICES } else { 0 }))?;
        // SAFETY: forwarded caller contract.
        unsafe { put(count, max) }
    })
}

/// `nvmlDeviceGetMigDeviceHandleByIndex`: `NOT_FOUND` for a free slot.
///
/// # Safety
/// `mig` is null or valid for writing one `nvmlDevice_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: Device,
    index: c_uint,
    mig: *mut Device,
) -> Return {
    guard(|| {
        let gpu = device.addr().checked_sub(1).ok_or(code::INVALID_ARGUMENT)?;
        let present = with_gpu(device, |g| {
            let devices = g.mig.as_ref().ok_or(code::NOT_SUPPORTED)?;
            if index >= MAX_MIG_DEVICES {
                return Err(code::INVALID_ARGUMENT);
            }
            Ok((index as usize) < devices.len())
        })?;
        if !present {
            return Err(code::NOT_FOUND);
        }
        // SAFETY: forwarded caller contract.
        unsafe { put(mig, mig_handle(gpu, index as usize)) }
    })
}

/// `nvmlDeviceGetGpuInstanceId`: only a MIG handle has one.
///
/// # Safety
/// `id` is null or valid for writing one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(device: Device, id: *mut c_uint) -> Return {
    // SAFETY: forwarded caller contract.
    unsafe { put_instance_id(device, id, |m| m.gpu_instance_id) }
}

/// `nvmlDeviceGetComputeInstanceId`: only a MIG handle has one.
///
/// # Safety
/// `id` is null or valid for writing one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeInstanceId(device: Device, id: *mut c_uint) -> Return {
    // SAFETY: forwarded caller contract.
    unsafe { put_instance_id(device, id, |m| m.compute_instance_id) }
}

/// # Safety
/// `id` is null or valid for writing one `c_uint`.
unsafe fn put_instance_id(
    device: Device,
    id: *mut c_uint,
    pick: impl FnOnce(&crate::config::MigConfig) -> u32,
) -> Return {
    guard(|| {
        let value = with_device(device, |t| match t {
            Target::Mig(m) => Ok(pick(m)),
            Target::Gpu(_) => Err(code::INVALID_ARGUMENT),
        })?;
        // SAFETY: forwarded caller contract.
        unsafe { put(id, value) }
    })
}
