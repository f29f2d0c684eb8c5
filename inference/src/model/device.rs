//! Which device the worker computes on, chosen so that it cannot silently be
//! the wrong one: `--device=cuda` on a build without the `cuda` feature, or
//! with no GPU visible, refuses to start with one line saying which;
//! `--device=auto` takes CUDA if present, else Metal, else the CPU, and says
//! what it took. The accelerator type reported to the node agent follows the
//! device actually opened ([`accelerator_of`]).

use std::fmt;

use candle_core::Device;
use edge_telemetry::AcceleratorType;

/// What `--device` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// CUDA if this build has it and a GPU is visible, else Metal likewise, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA GPU N (feature `cuda`).
    Cuda(usize),
    /// Metal GPU N (feature `metal`).
    Metal(usize),
}

impl DeviceRequest {
    /// The spellings `--device` accepts.
    pub const ALLOWED: &'static str = "auto, cpu, cuda, cuda:N, metal, metal:N";

    /// Parses a `--device` value.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, index) = match s.split_once(':') {
            Some((k, i)) => (k, Some(i)),
            None => (s, None),
        };
        let index = match index {
            None => 0,
            Some(i) => i.parse::<usize>().map_err(|_| format!("{s:?}: the index after ':' must be a number"))?,
        };
        match (kind, s.contains(':')) {
            ("auto", false) => Ok(Self::Auto),
            ("cpu", false) => Ok(Self::Cpu),
            ("cuda", _) => Ok(Self::Cuda(index)),
            ("metal", _) => Ok(Self::Metal(index)),
            _ => Err(format!("{s:?} is not a device; allowed: {}", Self::ALLOWED)),
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
            Self::Metal(i) => write!(f, "metal:{i}"),
        }
    }
}

/// Why the asked-for device cannot be used. One line each (no source chain),
/// so the worker's last log line says exactly what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The binary was built without the backend.
    #[error(
        "--device={asked}: this edge-inference was built without the `{feature}` cargo feature, so it can only \
         compute on the CPU; run the {image} image or build with `cargo build --release -p edge-inference \
         --features {feature}` (or pass --device=cpu to compute on the CPU on purpose)"
    )]
    NotBuilt {
        /// What `--device` said.
        asked: String,
        /// `cuda` or `metal`.
        feature: &'static str,
        /// The image that has it.
        image: &'static str,
    },
    /// The backend is built in but no such GPU can be opened.
    #[error("--device={asked}: no {kind} GPU is visible to this process ({detail}): {reason}")]
    NoGpu {
        /// What `--device` said.
        asked: String,
        /// `CUDA` or `Metal`.
        kind: &'static str,
        /// What the environment says about visible devices.
        detail: String,
        /// The driver's error, on one line.
        reason: String,
    },
}

/// Opens the device `--device` names; see [`DeviceRequest`].
pub fn open(req: DeviceRequest) -> Result<Device, DeviceError> {
    open_with(req, candle_core::utils::cuda_is_available(), candle_core::utils::metal_is_available())
}

fn open_with(req: DeviceRequest, cuda_built: bool, metal_built: bool) -> Result<Device, DeviceError> {
    let asked = req.to_string();
    match req {
        DeviceRequest::Cpu => Ok(Device::Cpu),
        DeviceRequest::Cuda(i) => {
            if !cuda_built {
                return Err(DeviceError::NotBuilt { asked, feature: "cuda", image: "edge-inference-cuda" });
            }
            Device::new_cuda(i).map_err(|e| DeviceError::NoGpu {
                asked,
                kind: "CUDA",
                detail: cuda_visibility(),
                reason: one_line(&e.to_string()),
            })
        }
        DeviceRequest::Metal(i) => {
            if !metal_built {
                return Err(DeviceError::NotBuilt { asked, feature: "metal", image: "macOS (`--features metal`)" });
            }
            Device::new_metal(i).map_err(|e| DeviceError::NoGpu {
                asked,
                kind: "Metal",
                detail: "macOS Metal".into(),
                reason: one_line(&e.to_string()),
            })
        }
        DeviceRequest::Auto => {
            if cuda_built {
                match Device::new_cuda(0) {
                    Ok(d) => return Ok(d),
                    Err(e) => tracing::info!(reason = %one_line(&e.to_string()), "--device=auto: no CUDA GPU"),
                }
            }
            if metal_built {
                match Device::new_metal(0) {
                    Ok(d) => return Ok(d),
                    Err(e) => tracing::info!(reason = %one_line(&e.to_string()), "--device=auto: no Metal GPU"),
                }
            }
            Ok(Device::Cpu)
        }
    }
}

fn cuda_visibility() -> String {
    match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(v) => format!("CUDA_VISIBLE_DEVICES={v:?}"),
        Err(_) => match std::env::var("NVIDIA_VISIBLE_DEVICES") {
            Ok(v) => format!("NVIDIA_VISIBLE_DEVICES={v:?}; is the pod given an nvidia.com/gpu?"),
            Err(_) => {
                "no CUDA_VISIBLE_DEVICES or NVIDIA_VISIBLE_DEVICES set; is the pod given an nvidia.com/gpu?".into()
            }
        },
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A short name for logs: `cpu`, `cuda:0`, `metal:0`.
pub fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// The accelerator type a worker computing on `device` reports: CUDA is
/// `nvidia`, the CPU is `cpu`. A Metal GPU is none of the types the agent and
/// the scaler know (nvidia, neuron, cpu): it is not reported as any of them.
pub fn accelerator_of(device: &Device) -> Result<AcceleratorType, String> {
    match device {
        Device::Cpu => Ok(AcceleratorType::Cpu),
        Device::Cuda(_) => Ok(AcceleratorType::Nvidia),
        Device::Metal(_) => Err(format!(
            "--device={}: a Metal GPU is not an accelerator type the node agent and the scaler know ({}); \
             reporting it as one would send it another type's work. Run a Metal worker without --agent, \
             or report as cpu with --device=cpu",
            name(device),
            AcceleratorType::ALLOWED
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_and_refuses_others() {
        assert_eq!(DeviceRequest::parse("auto"), Ok(DeviceRequest::Auto));
        assert_eq!(DeviceRequest::parse("cpu"), Ok(DeviceRequest::Cpu));
        assert_eq!(DeviceRequest::parse("cuda"), Ok(DeviceRequest::Cuda(0)));
        assert_eq!(DeviceRequest::parse("cuda:3"), Ok(DeviceRequest::Cuda(3)));
        assert_eq!(DeviceRequest::parse("metal:1"), Ok(DeviceRequest::Metal(1)));
        for bad in ["gpu", "cuda:x", "cpu:0", "auto:1", ""] {
            assert!(DeviceRequest::parse(bad).is_err(), "{bad}");
        }
        assert!(DeviceRequest::parse("gpu").unwrap_err().contains(DeviceRequest::ALLOWED));
    }

    #[test]
    fn cuda_without_the_feature_refuses_in_one_line_naming_it() {
        let err = open_with(DeviceRequest::Cuda(0), false, false).unwrap_err().to_string();
        assert!(err.starts_with("--device=cuda:0: "), "{err}");
        assert!(err.contains("without the `cuda` cargo feature"), "{err}");
        assert!(err.contains("edge-inference-cuda"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        let err = open_with(DeviceRequest::Metal(0), false, false).unwrap_err().to_string();
        assert!(err.contains("`metal` cargo feature"), "{err}");
    }

    /// This build's own refusal, through the public entry point.
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn this_build_has_no_cuda_and_says_so() {
        let err = open(DeviceRequest::Cuda(0)).unwrap_err();
        assert!(matches!(err, DeviceError::NotBuilt { feature: "cuda", .. }), "{err}");
    }

    #[test]
    fn auto_without_gpu_backends_is_the_cpu_and_reports_cpu() {
        let d = open_with(DeviceRequest::Auto, false, false).unwrap();
        assert!(d.is_cpu());
        assert_eq!(accelerator_of(&d), Ok(AcceleratorType::Cpu));
        assert_eq!(name(&d), "cpu");
    }

    #[test]
    fn no_gpu_message_is_one_line() {
        let e = DeviceError::NoGpu {
            asked: "cuda:0".into(),
            kind: "CUDA",
            detail: cuda_visibility(),
            reason: one_line("DriverError(CUDA_ERROR_NO_DEVICE,\n \"no CUDA-capable device is detected\")"),
        };
        let s = e.to_string();
        assert!(!s.contains('\n') && s.contains("no CUDA GPU is visible") && s.contains("CUDA_ERROR_NO_DEVICE"), "{s}");
    }
}
