//! Why the flags were refused: each message names the flag (and its
//! environment variable where a deployment sets it) and what it allows.

use edge_telemetry::AcceleratorType;

/// A flag combination the worker or the proxy refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--default-size` is not `WIDTHxHEIGHT`.
    #[error("--default-size {value:?}: expected WIDTHxHEIGHT")]
    DefaultSizeShape { value: String },
    /// The side bounds are not multiples of the VAE factor, or cross.
    #[error(
        "--min-side {min} / --max-side {max}: both must be multiples of {multiple} (the model's VAE factor), min <= max"
    )]
    SideBounds { min: usize, max: usize, multiple: usize },
    /// One side of the default size is outside the bounds or off the multiple.
    #[error("--default-size {flag} {side}: must be within --min-side..=--max-side and a multiple of {multiple}")]
    DefaultSizeSide { flag: &'static str, side: usize, multiple: usize },
    /// The default step count is outside `1..=--max-steps`.
    #[error("--default-steps {steps}: must be within 1..=--max-steps ({max})")]
    DefaultSteps { steps: usize, max: usize },
    /// `--max-images 0`.
    #[error("--max-images: must be at least 1")]
    MaxImages,
    /// The default guidance is outside `0..=max`.
    #[error("--default-guidance {value}: must be within 0..={max}")]
    DefaultGuidance { value: f64, max: f64 },
    /// The proxy has no device to take the reported type from.
    #[error(
        "--accelerator (EDGE_INFERENCE_ACCELERATOR): required, the type the scaler selects on; allowed: nvidia, neuron, cpu"
    )]
    AcceleratorRequired,
    /// `--accelerator` disagrees with the device the worker computes on.
    #[error(
        "--accelerator {given} (EDGE_INFERENCE_ACCELERATOR): this worker computes on {device} (--device={request}), \
         which reports as {accelerator}; the reported type follows the device, so the scaler never sends \
         {given} work to it. Fix --device (cuda for nvidia) or --accelerator"
    )]
    AcceleratorMismatch { given: AcceleratorType, device: String, request: String, accelerator: AcceleratorType },
    /// The device is none of the agent's types, and `--agent` asks for reports.
    #[error("{0}")]
    Device(String),
    /// `--labels` is no Kubernetes label list (clap names the flag).
    #[error("{reason}")]
    Labels { reason: String },
    /// `--advertise-url` is no URL the agent accepts (clap names the flag).
    #[error("{reason}")]
    AdvertiseUrl { reason: String },
    /// `--scheduler` names no sampler.
    #[error("{value:?} is not a sampler; allowed: {allowed}")]
    Sampler { value: String, allowed: &'static str },
    /// `--dtype` names no weight type.
    #[error("{value:?} is not a weight type; allowed: f32, f16, bf16")]
    Dtype { value: String },
    /// A report field the agent would refuse, named by its flag.
    #[error("{flag}: {reason}")]
    Report { flag: &'static str, reason: String },
}
