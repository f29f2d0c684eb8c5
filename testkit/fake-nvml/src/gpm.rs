//! GPM (GPU Performance Monitoring), the NVML source of a MIG instance's
//! graphics-engine activity (what DCGM calls `DCGM_FI_PROF_GR_ENGINE_ACTIVE`):
//! samples are allocated, filled for one GPU instance with
//! `nvmlGpmMigSampleGet`, and two of them give `GRAPHICS_UTIL` through
//! `nvmlGpmMetricsGet`. Here a sample remembers the instance's configured
//! `graphics_util` when it was taken; the metric is the later sample's.

use std::ffi::{c_char, c_uint, c_void};

use crate::code::{self, Return};
use crate::ffi::{Device, guard, put, with_gpu};

/// `NVML_GPM_METRICS_GET_VERSION`.
pub const METRICS_GET_VERSION: c_uint = 1;
/// `NVML_GPM_METRIC_GRAPHICS_UTIL`.
pub const GRAPHICS_UTIL: c_uint = 1;
/// `NVML_GPM_METRIC_MAX`: the length of `nvmlGpmMetricsGet_t.metrics`.
pub const METRIC_MAX: usize = 210;

/// What `nvmlGpmSample_t` points at.
#[derive(Debug, Default)]
pub struct Sample {
    /// (GPU index, GPU instance id) once filled.
    source: Option<(usize, u32)>,
    /// The instance's `graphics_util` then, or the code it answered.
    graphics_util: Option<Result<f64, Return>>,
}

/// `nvmlGpmMetric_t.metricInfo`.
#[repr(C)]
pub struct MetricInfo {
    /// `shortName`.
    pub short_name: *const c_char,
    /// `longName`.
    pub long_name: *const c_char,
    /// `unit`.
    pub unit: *const c_char,
}

/// `nvmlGpmMetric_t`.
#[repr(C)]
pub struct Metric {
    /// `metricId`.
    pub metric_id: c_uint,
    /// `nvmlReturn`.
    pub nvml_return: Return,
    /// `value`.
    pub value: f64,
    /// `metricInfo`.
    pub info: MetricInfo,
}

/// `nvmlGpmMetricsGet_t`.
#[repr(C)]
pub struct MetricsGet {
    /// `version`: [`METRICS_GET_VERSION`].
    pub version: c_uint,
    /// `numMetrics`.
    pub num_metrics: c_uint,
    /// `sample1`.
    pub sample1: *mut c_void,
    /// `sample2`.
    pub sample2: *mut c_void,
    /// `metrics`.
    pub metrics: [Metric; METRIC_MAX],
}

/// `nvmlGpmSampleAlloc`.
///
/// # Safety
/// `sample` is null or valid for writing one `nvmlGpmSample_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlGpmSampleAlloc(sample: *mut *mut c_void) -> Return {
    guard(|| {
        if sample.is_null() {
            return Err(code::INVALID_ARGUMENT);
        }
        let new = Box::into_raw(Box::new(Sample::default())).cast::<c_void>();
        // SAFETY: forwarded caller contract.
        unsafe { put(sample, new) }
    })
}

/// `nvmlGpmSampleFree`.
///
/// # Safety
/// `sample` is null or came from [`nvmlGpmSampleAlloc`] and is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlGpmSampleFree(sample: *mut c_void) -> Return {
    guard(|| {
        if sample.is_null() {
            return Err(code::INVALID_ARGUMENT);
        }
        // SAFETY: allocated by nvmlGpmSampleAlloc as a Box<Sample>, freed once per the contract.
        drop(unsafe { Box::from_raw(sample.cast::<Sample>()) });
        Ok(())
    })
}

/// `nvmlGpmMigSampleGet`: fills `sample` for GPU instance `gpu_instance_id`
/// of the GPU behind `device`.
///
/// # Safety
/// `sample` is null or a live sample from [`nvmlGpmSampleAlloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlGpmMigSampleGet(device: Device, gpu_instance_id: c_uint, sample: *mut c_void) -> Return {
    guard(|| {
        if sample.is_null() {
            return Err(code::INVALID_ARGUMENT);
        }
        let gpu = device.addr().checked_sub(1).ok_or(code::INVALID_ARGUMENT)?;
        let util = with_gpu(device, |g| {
            let devices = g.mig.as_ref().ok_or(code::NOT_SUPPORTED)?;
            let mig = devices.iter().find(|m| m.gpu_instance_id == gpu_instance_id).ok_or(code::NOT_FOUND)?;
            Ok(mig.graphics_util.get().copied())
        })?;
        // SAFETY: a live Box<Sample> per the contract, not aliased during this call.
        let sample = unsafe { &mut *sample.cast::<Sample>() };
        *sample = Sample { source: Some((gpu, gpu_instance_id)), graphics_util: Some(util) };
        Ok(())
    })
}

/// `nvmlGpmMetricsGet`: `GRAPHICS_UTIL` between two samples of the same
/// GPU instance; any other metric answers `NOT_SUPPORTED` in its slot.
///
/// # Safety
/// `request` is null or valid for reading and writing one `nvmlGpmMetricsGet_t`
/// whose samples are live samples from [`nvmlGpmSampleAlloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlGpmMetricsGet(request: *mut MetricsGet) -> Return {
    guard(|| {
        if request.is_null() {
            return Err(code::INVALID_ARGUMENT);
        }
        // SAFETY: non-null and valid for one read and write per the contract.
        let request = unsafe { &mut *request };
        if request.version != METRICS_GET_VERSION {
            return Err(code::ARGUMENT_VERSION_MISMATCH);
        }
        let n = request.num_metrics as usize;
        if n > METRIC_MAX || request.sample1.is_null() || request.sample2.is_null() {
            return Err(code::INVALID_ARGUMENT);
        }
        // SAFETY: live samples per the contract.
        let (first, second) = unsafe { (&*request.sample1.cast::<Sample>(), &*request.sample2.cast::<Sample>()) };
        if first.source.is_none() || first.source != second.source {
            return Err(code::INVALID_ARGUMENT);
        }
        for metric in &mut request.metrics[..n] {
            let answer = match (metric.metric_id, second.graphics_util) {
                (GRAPHICS_UTIL, Some(util)) => util,
                _ => Err(code::NOT_SUPPORTED),
            };
            (metric.nvml_return, metric.value) = match answer {
                Ok(v) => (code::SUCCESS, v),
                Err(e) => (e, 0.0),
            };
            metric.info = MetricInfo {
                short_name: c"gr_util".as_ptr(),
                long_name: c"graphics utilization".as_ptr(),
                unit: c"%".as_ptr(),
            };
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_nvml_h() {
        // nvml-wrapper-sys 0.10: nvmlGpmMetric_t is 40 bytes, the request 24 + 210 of them.
        assert_eq!(size_of::<Metric>(), 4 + 4 + 8 + 3 * 8);
        assert_eq!(size_of::<MetricsGet>(), 24 + METRIC_MAX * size_of::<Metric>());
    }
}
