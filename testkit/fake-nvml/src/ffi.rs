//! The C side: `#[repr(C)]` layouts as in nvml-wrapper-sys 0.10's bindings,
//! and the small unsafe helpers every exported function shares.

use std::ffi::{c_char, c_uint, c_ulonglong, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::code::{self, Return};
use crate::config::{GpuConfig, MigConfig};
use crate::state;

/// `nvmlDevice_t`: an opaque pointer. Ours carries `index + 1` as its
/// address (a MIG device: its GPU's `index + 1`, plus its own `index + 1`
/// shifted left by [`MIG_SHIFT`]) and points at nothing; callers never
/// dereference it.
pub type Device = *mut c_void;

/// `nvmlPciInfo_t` (`nvmlPciInfo_st`).
#[repr(C)]
pub struct PciInfo {
    /// `busIdLegacy`: `dddd:bb:dd.f`.
    pub bus_id_legacy: [c_char; 16],
    /// `domain`.
    pub domain: c_uint,
    /// `bus`.
    pub bus: c_uint,
    /// `device`.
    pub device: c_uint,
    /// `pciDeviceId`.
    pub pci_device_id: c_uint,
    /// `pciSubSystemId`.
    pub pci_sub_system_id: c_uint,
    /// `busId`: `dddddddd:bb:dd.f`.
    pub bus_id: [c_char; 32],
}

/// `nvmlUtilization_t`.
#[repr(C)]
pub struct Utilization {
    /// `gpu`, percent.
    pub gpu: c_uint,
    /// `memory`, percent.
    pub memory: c_uint,
}

/// `nvmlMemory_v2_t`.
#[repr(C)]
pub struct MemoryV2 {
    /// `version`: `NVML_STRUCT_VERSION(Memory, 2)`, set by the caller.
    pub version: c_uint,
    /// `total`.
    pub total: c_ulonglong,
    /// `reserved`.
    pub reserved: c_ulonglong,
    /// `free`.
    pub free: c_ulonglong,
    /// `used`.
    pub used: c_ulonglong,
}

/// `NVML_STRUCT_VERSION(Memory, 2)` as nvml.h computes it.
pub const MEMORY_V2_VERSION: c_uint = (size_of::<MemoryV2>() as c_uint) | (2 << 24);

/// Runs an exported function's body; a panic becomes `NVML_ERROR_UNKNOWN`
/// instead of unwinding into C (which would abort the agent).
pub fn guard(body: impl FnOnce() -> Result<(), Return>) -> Return {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => code::SUCCESS,
        Ok(Err(code)) => code,
        Err(_) => code::UNKNOWN,
    }
}

/// Where a MIG device's own index sits in its handle.
pub const MIG_SHIFT: usize = 16;

/// The handle for GPU `index`.
pub fn handle(index: usize) -> Device {
    std::ptr::without_provenance_mut(index + 1)
}

/// The handle for MIG device `mig` of GPU `gpu`.
pub fn mig_handle(gpu: usize, mig: usize) -> Device {
    std::ptr::without_provenance_mut((gpu + 1) | ((mig + 1) << MIG_SHIFT))
}

/// What a handle names.
pub enum Target<'a> {
    /// A whole GPU.
    Gpu(&'a GpuConfig),
    /// A MIG device of a GPU.
    Mig(&'a MigConfig),
}

/// Runs `query` on the GPU or MIG device behind `device` with the current config.
pub fn with_device<T>(device: Device, query: impl FnOnce(Target<'_>) -> Result<T, Return>) -> Result<T, Return> {
    let addr = device.addr();
    let index = (addr & ((1 << MIG_SHIFT) - 1)).checked_sub(1).ok_or(code::INVALID_ARGUMENT)?;
    let config = state::config()?;
    let gpu = config.gpu(index)?;
    match (addr >> MIG_SHIFT).checked_sub(1) {
        None => query(Target::Gpu(gpu)),
        Some(m) => query(Target::Mig(gpu.mig.as_ref().and_then(|d| d.get(m)).ok_or(code::INVALID_ARGUMENT)?)),
    }
}

/// Runs `query` on the GPU behind `device`; a MIG device answers
/// `NOT_SUPPORTED` to GPU-wide queries (utilisation, power, clocks …).
pub fn with_gpu<T>(device: Device, query: impl FnOnce(&GpuConfig) -> Result<T, Return>) -> Result<T, Return> {
    with_device(device, |t| match t {
        Target::Gpu(g) => query(g),
        Target::Mig(_) => Err(code::NOT_SUPPORTED),
    })
}

/// Stores `value` through the caller's out-pointer.
///
/// # Safety
/// `out` is null or valid for writing one aligned `T` (NVML's contract for
/// every out-parameter).
pub unsafe fn put<T>(out: *mut T, value: T) -> Result<(), Return> {
    if out.is_null() {
        return Err(code::INVALID_ARGUMENT);
    }
    // SAFETY: non-null, and valid for one `T` per this function's contract.
    unsafe { out.write(value) };
    Ok(())
}

/// Copies `s` and a NUL into the caller's `length`-byte buffer.
///
/// # Safety
/// `buf` is null or valid for writing `length` bytes.
pub unsafe fn put_str(s: &str, buf: *mut c_char, length: c_uint) -> Result<(), Return> {
    if buf.is_null() {
        return Err(code::INVALID_ARGUMENT);
    }
    if s.len() >= length as usize {
        return Err(code::INSUFFICIENT_SIZE);
    }
    // SAFETY: `buf` holds `length` > `s.len()` bytes per the contract; the
    // source is a Rust string that cannot overlap the caller's buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr().cast::<c_char>(), buf, s.len());
        buf.add(s.len()).write(0);
    }
    Ok(())
}

/// `s` as a NUL-terminated C array, cut short if it does not fit.
pub fn c_array<const N: usize>(s: &str) -> [c_char; N] {
    let mut out = [0; N];
    for (dst, src) in out.iter_mut().zip(s.bytes().take(N - 1)) {
        *dst = src as c_char;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_nvml_h() {
        // Sizes from nvml.h on x86_64 and aarch64.
        assert_eq!(size_of::<PciInfo>(), 16 + 5 * 4 + 32);
        assert_eq!(size_of::<Utilization>(), 8);
        assert_eq!(size_of::<MemoryV2>(), 40);
        assert_eq!(MEMORY_V2_VERSION, 0x0200_0028);
    }

    #[test]
    fn strings_are_copied_with_a_nul_or_refused_when_too_long() {
        let mut buf = [0x7f as c_char; 8];
        // SAFETY: `buf` has 8 writable bytes.
        assert_eq!(unsafe { put_str("GPU-1", buf.as_mut_ptr(), 8) }, Ok(()));
        assert_eq!(&buf[..6], &c_array::<6>("GPU-1"));
        // SAFETY: as above; nothing is written when the string does not fit.
        assert_eq!(unsafe { put_str("GPU-1234", buf.as_mut_ptr(), 8) }, Err(code::INSUFFICIENT_SIZE));
        // SAFETY: a null buffer is refused before any write.
        assert_eq!(unsafe { put_str("x", std::ptr::null_mut(), 8) }, Err(code::INVALID_ARGUMENT));
    }

    #[test]
    fn handles_carry_the_index_and_panics_become_unknown() {
        assert_eq!(handle(0).addr(), 1);
        assert_eq!(guard(|| panic!("boom")), code::UNKNOWN);
        assert_eq!(guard(|| Err(code::GPU_IS_LOST)), code::GPU_IS_LOST);
        assert_eq!(with_gpu(std::ptr::null_mut(), |_| Ok(())), Err(code::INVALID_ARGUMENT));
        assert_eq!(mig_handle(0, 0).addr(), 1 | (1 << MIG_SHIFT));
    }
}
