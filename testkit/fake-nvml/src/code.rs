//! NVML return codes (`nvmlReturn_t`), with the names a config file uses
//! to make a query fail (`{"error": "GPU_IS_LOST"}`).

use std::ffi::{CStr, c_uint};

/// `nvmlReturn_t`: an unsigned C enum.
pub type Return = c_uint;

/// One NVML return code with its `nvml.h` name (without `NVML_ERROR_`) and
/// the text `nvmlErrorString` gives for it.
pub struct Code {
    /// The numeric value from `nvml.h`.
    pub value: Return,
    /// The name after `NVML_ERROR_` (`SUCCESS` for 0).
    pub name: &'static str,
    /// What `nvmlErrorString` returns.
    pub text: &'static CStr,
}

/// `NVML_SUCCESS`.
pub const SUCCESS: Return = 0;
/// `NVML_ERROR_UNINITIALIZED`.
pub const UNINITIALIZED: Return = 1;
/// `NVML_ERROR_INVALID_ARGUMENT`.
pub const INVALID_ARGUMENT: Return = 2;
/// `NVML_ERROR_NOT_SUPPORTED`.
pub const NOT_SUPPORTED: Return = 3;
/// `NVML_ERROR_NOT_FOUND`.
pub const NOT_FOUND: Return = 6;
/// `NVML_ERROR_INSUFFICIENT_SIZE`.
pub const INSUFFICIENT_SIZE: Return = 7;
/// `NVML_ERROR_GPU_IS_LOST`.
pub const GPU_IS_LOST: Return = 15;
/// `NVML_ERROR_ARGUMENT_VERSION_MISMATCH`.
pub const ARGUMENT_VERSION_MISMATCH: Return = 25;
/// `NVML_ERROR_UNKNOWN`.
pub const UNKNOWN: Return = 999;

/// Every code the fake can return, values as in nvml-wrapper-sys 0.10.
pub const ALL: &[Code] = &[
    Code { value: SUCCESS, name: "SUCCESS", text: c"Success" },
    Code { value: UNINITIALIZED, name: "UNINITIALIZED", text: c"Uninitialized" },
    Code { value: INVALID_ARGUMENT, name: "INVALID_ARGUMENT", text: c"Invalid Argument" },
    Code { value: NOT_SUPPORTED, name: "NOT_SUPPORTED", text: c"Not Supported" },
    Code { value: 4, name: "NO_PERMISSION", text: c"Insufficient Permissions" },
    Code { value: NOT_FOUND, name: "NOT_FOUND", text: c"Not Found" },
    Code { value: INSUFFICIENT_SIZE, name: "INSUFFICIENT_SIZE", text: c"Insufficient Size" },
    Code { value: 9, name: "DRIVER_NOT_LOADED", text: c"Driver Not Loaded" },
    Code { value: 10, name: "TIMEOUT", text: c"Timeout" },
    Code { value: 12, name: "LIBRARY_NOT_FOUND", text: c"NVML Shared Library Not Found" },
    Code { value: GPU_IS_LOST, name: "GPU_IS_LOST", text: c"GPU is lost" },
    Code { value: 16, name: "RESET_REQUIRED", text: c"GPU requires restart" },
    Code { value: ARGUMENT_VERSION_MISMATCH, name: "ARGUMENT_VERSION_MISMATCH", text: c"Argument version mismatch" },
    Code { value: UNKNOWN, name: "UNKNOWN", text: c"Unknown Error" },
];

/// The code named `name` (as in `nvml.h` after `NVML_ERROR_`).
pub fn by_name(name: &str) -> Option<Return> {
    ALL.iter().find(|c| c.name == name).map(|c| c.value)
}

/// The names a config may use for an error, for error messages.
pub fn error_names() -> String {
    ALL.iter().filter(|c| c.value != SUCCESS).map(|c| c.name).collect::<Vec<_>>().join(", ")
}

/// `nvmlErrorString`'s text for `value`.
pub fn text(value: Return) -> &'static CStr {
    ALL.iter().find(|c| c.value == value).map_or(c"Unknown Error", |c| c.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        assert_eq!(by_name("GPU_IS_LOST"), Some(GPU_IS_LOST));
        assert_eq!(by_name("gpu_is_lost"), None);
        assert_eq!(text(GPU_IS_LOST), c"GPU is lost");
        assert_eq!(text(12345), c"Unknown Error");
        assert!(!error_names().contains("SUCCESS"));
    }
}
