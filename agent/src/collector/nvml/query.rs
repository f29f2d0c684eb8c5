//! What one NVML query's answer means for the GPU it was asked of.
//!
//! * a value: reported;
//! * `NotSupported` (or a function this driver does not export): this GPU
//!   has no such sensor; the field is left out, never reported as 0, and it
//!   is not an error;
//! * `GpuLost` / `ResetRequired`: the GPU is gone until someone resets it;
//!   it is marked unhealthy and none of its values are reported;
//! * anything else (`NoPermission`, `Unknown`, a timeout, …): that field is
//!   left out for this tick and the failure is counted.

use nvml_wrapper::error::NvmlError;

/// Reads one GPU's queries in turn, remembering failures.
#[derive(Debug, Default)]
pub struct Queries {
    /// Failed queries (not `NotSupported`), for the collector's error count.
    pub errors: u64,
    /// Why the GPU is unusable, once a query said so; later queries are skipped.
    pub fatal: Option<String>,
    /// Queries that failed without making the GPU unusable: `what: error`.
    pub failed: Vec<String>,
}

/// Whether `e` means the device itself is gone, not just one query.
pub fn is_fatal(e: &NvmlError) -> bool {
    matches!(e, NvmlError::GpuLost | NvmlError::ResetRequired)
}

impl Queries {
    /// Runs `query` unless the GPU already failed; `None` for anything but a value.
    pub fn optional<T>(&mut self, what: &'static str, query: impl FnOnce() -> Result<T, NvmlError>) -> Option<T> {
        if self.fatal.is_some() {
            return None;
        }
        match query() {
            Ok(v) => Some(v),
            Err(NvmlError::NotSupported | NvmlError::FailedToLoadSymbol(_)) => None,
            Err(e) => {
                self.errors += 1;
                if is_fatal(&e) {
                    self.fatal = Some(e.to_string());
                } else {
                    self.failed.push(format!("{what}: {e}"));
                }
                None
            }
        }
    }

    /// Runs a query the GPU cannot be reported without (its handle, its
    /// UUID): any failure, even `NotSupported`, makes it unusable.
    pub fn required<T>(&mut self, what: &'static str, query: impl FnOnce() -> Result<T, NvmlError>) -> Option<T> {
        if self.fatal.is_some() {
            return None;
        }
        match query() {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors += 1;
                self.fatal = Some(if is_fatal(&e) { e.to_string() } else { format!("{what}: {e}") });
                None
            }
        }
    }
}

/// NVML reports power in milliwatts; the snapshot carries watts.
pub fn milliwatts_to_watts(mw: u32) -> f64 {
    f64::from(mw) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_supported_is_left_out_without_an_error() {
        let mut q = Queries::default();
        assert_eq!(q.optional("power", || Err::<u32, _>(NvmlError::NotSupported)), None);
        assert_eq!(q.optional("clock", || Err::<u32, _>(NvmlError::FailedToLoadSymbol("x".into()))), None);
        assert_eq!(q.optional("temperature", || Ok(55)), Some(55));
        assert_eq!((q.errors, q.fatal, q.failed.len()), (0, None, 0));
    }

    #[test]
    fn other_failures_are_counted_and_named() {
        let mut q = Queries::default();
        assert_eq!(q.optional("power", || Err::<u32, _>(NvmlError::NoPermission)), None);
        assert_eq!(q.optional("temperature", || Ok(55)), Some(55));
        assert_eq!(q.errors, 1);
        assert!(q.fatal.is_none());
        assert_eq!(q.failed.len(), 1);
        assert!(q.failed[0].starts_with("power: "), "{:?}", q.failed);
    }

    #[test]
    fn a_lost_gpu_stops_further_queries() {
        let mut q = Queries::default();
        assert_eq!(q.optional("power", || Err::<u32, _>(NvmlError::GpuLost)), None);
        let mut asked = false;
        let after = q.optional("temperature", || {
            asked = true;
            Ok(55)
        });
        assert_eq!((after, asked), (None, false));
        assert_eq!(q.errors, 1);
        assert_eq!(q.fatal.as_deref(), Some(NvmlError::GpuLost.to_string().as_str()));
    }

    #[test]
    fn a_required_query_fails_the_gpu_on_any_error() {
        let mut q = Queries::default();
        assert_eq!(q.required("uuid", || Err::<String, _>(NvmlError::NotSupported)), None);
        assert!(q.fatal.as_deref().is_some_and(|m| m.starts_with("uuid: ")), "{:?}", q.fatal);
        assert_eq!(q.errors, 1);
    }

    #[test]
    fn power_is_converted_to_watts() {
        assert_eq!(milliwatts_to_watts(201_500), 201.5);
        assert_eq!(milliwatts_to_watts(0), 0.0);
    }
}
