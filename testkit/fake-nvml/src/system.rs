//! Library-wide functions: init, shutdown, error strings, driver version,
//! device count and handles.

use std::ffi::{c_char, c_uint};

use crate::code::{self, Return};
use crate::ffi::{Device, guard, handle, put, put_str};
use crate::state;

/// `nvmlInit_v2`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> Return {
    guard(|| match state::init() {
        code::SUCCESS => Ok(()),
        e => Err(e),
    })
}

/// `nvmlInitWithFlags`: the flags change nothing here.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> Return {
    nvmlInit_v2()
}

/// `nvmlShutdown`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> Return {
    guard(|| match state::shutdown() {
        code::SUCCESS => Ok(()),
        e => Err(e),
    })
}

/// `nvmlErrorString`: a static string, never freed by the caller.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(result: Return) -> *const c_char {
    code::text(result).as_ptr()
}

/// `nvmlSystemGetDriverVersion`.
///
/// # Safety
/// `version` is null or valid for writing `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> Return {
    guard(|| {
        let config = state::config()?;
        // SAFETY: forwarded caller contract.
        unsafe { put_str(&config.driver_version, version, length) }
    })
}

/// `nvmlDeviceGetCount_v2`: lost GPUs still count, as on a real node.
///
/// # Safety
/// `count` is null or valid for writing one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> Return {
    guard(|| {
        let n = c_uint::try_from(state::config()?.gpus.len()).map_err(|_| code::UNKNOWN)?;
        // SAFETY: forwarded caller contract.
        unsafe { put(count, n) }
    })
}

/// `nvmlDeviceGetHandleByIndex_v2`: a lost GPU answers `GPU_IS_LOST`.
///
/// # Safety
/// `device` is null or valid for writing one `nvmlDevice_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(index: c_uint, device: *mut Device) -> Return {
    guard(|| {
        let index = index as usize;
        state::config()?.gpu(index)?;
        // SAFETY: forwarded caller contract.
        unsafe { put(device, handle(index)) }
    })
}
