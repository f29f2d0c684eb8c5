//! The Stable Diffusion model: loaded once from a diffusers-layout directory
//! (`text_encoder/`, `unet/`, `vae/`, `tokenizer/`, `scheduler/`), then shared
//! read-only by every generation.

pub mod clip;
pub mod configs;
pub mod device;
pub mod edit;
pub mod fields;
pub mod pipeline;
pub mod rng;
pub mod schedulers;
pub mod tokenizer;
pub mod vae_encoder;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::{unet_2d::UNet2DConditionModel, vae::AutoEncoderKL};

use self::clip::ClipTextEncoder;
use self::configs::{UnetSpec, VaeSpec};
use self::fields::FieldError;
use self::schedulers::{SamplerKind, SchedulerConfig};
use self::tokenizer::{ClipTokenizer, TokenizerError};
use self::vae_encoder::VaeEncoder;

/// Why a model directory could not be loaded. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A config file is missing, malformed, or asks for something unsupported.
    #[error(transparent)]
    Config(#[from] FieldError),
    /// The tokenizer files are missing or malformed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// No weights file in a part's directory.
    #[error("{dir}: no weights file; expected one of {expected}")]
    MissingWeights {
        /// The part's directory.
        dir: PathBuf,
        /// The file names looked for.
        expected: String,
    },
    /// A weights file could not be read, lacks a tensor, or has a tensor whose
    /// shape does not match the config.
    #[error("{path}: {source}")]
    Weights {
        /// The safetensors file.
        path: PathBuf,
        /// candle's error (it names the tensor).
        #[source]
        source: candle_core::Error,
    },
    /// Two parts do not fit together (e.g. text width vs cross-attention width).
    #[error("{path}: {reason}")]
    Mismatch {
        /// The config that disagrees.
        path: PathBuf,
        /// What disagrees with what.
        reason: String,
    },
}

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Where the weights live and the math runs.
    pub device: Device,
    /// Weight and activation type (f32 on CPU, f16 on GPUs).
    pub dtype: DType,
    /// Run this sampler instead of the one `scheduler_config.json` names.
    pub sampler: Option<SamplerKind>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { device: Device::Cpu, dtype: DType::F32, sampler: None }
    }
}

/// A loaded model, ready to generate.
pub struct Model {
    /// Prompt tokenizer.
    pub tokenizer: ClipTokenizer,
    /// Text encoder.
    pub text_encoder: ClipTextEncoder,
    /// Denoiser.
    pub unet: UNet2DConditionModel,
    /// Latent decoder.
    pub vae: AutoEncoderKL,
    /// Image encoder for edits (ours: seeded sampling).
    pub vae_encoder: VaeEncoder,
    /// UNet architecture as read.
    pub unet_spec: UnetSpec,
    /// VAE architecture as read.
    pub vae_spec: VaeSpec,
    /// Sampler settings.
    pub scheduler: SchedulerConfig,
    /// Compute device.
    pub device: Device,
    /// Compute type.
    pub dtype: DType,
    /// Notes worth logging (e.g. a sampler substitution).
    pub notes: Vec<String>,
}

impl Model {
    /// Loads every part from `dir`, memory-mapping the weights once.
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Self, LoadError> {
        let unet_cfg = dir.join("unet/config.json");
        let unet_spec = configs::unet(&unet_cfg)?;
        let vae_cfg = dir.join("vae/config.json");
        let vae_spec = configs::vae(&vae_cfg)?;
        let clip_cfg_path = dir.join("text_encoder/config.json");
        let clip_config = configs::clip(&clip_cfg_path)?;
        let (mut scheduler, note) = SchedulerConfig::read(&dir.join("scheduler/scheduler_config.json"))?;
        let mut notes: Vec<String> = note.into_iter().collect();
        if let Some(kind) = options.sampler {
            if kind != scheduler.kind {
                notes.push(format!("sampler {kind:?} runs instead of the configured {:?}", scheduler.kind));
            }
            scheduler.kind = kind;
        }
        let tok_dir = dir.join("tokenizer");
        let pad = configs::pad_token(&tok_dir)?;
        let tokenizer = ClipTokenizer::from_dir(&tok_dir, pad.as_deref())?;

        let mismatch = |path: &Path, reason: String| LoadError::Mismatch { path: path.into(), reason };
        if unet_spec.config.cross_attention_dim != clip_config.hidden_size {
            return Err(mismatch(
                &unet_cfg,
                format!(
                    "cross_attention_dim {} differs from the text encoder's hidden_size {}",
                    unet_spec.config.cross_attention_dim, clip_config.hidden_size
                ),
            ));
        }
        let latent = vae_spec.config.latent_channels;
        // An inpainting UNet also takes the mask and the masked image's latents.
        let inputs_ok = unet_spec.in_channels == latent || unet_spec.in_channels == 2 * latent + 1;
        if !inputs_ok || unet_spec.out_channels != latent {
            return Err(mismatch(
                &unet_cfg,
                format!(
                    "in_channels {} / out_channels {} must be {latent} (or {} in, for inpainting) / {latent}, \
                     from the VAE's latent_channels",
                    unet_spec.in_channels,
                    unet_spec.out_channels,
                    2 * latent + 1
                ),
            ));
        }
        if tokenizer.max_id() as usize >= clip_config.vocab_size {
            return Err(mismatch(
                &clip_cfg_path,
                format!(
                    "vocab_size {} is too small for tokenizer/vocab.json (largest id {})",
                    clip_config.vocab_size,
                    tokenizer.max_id()
                ),
            ));
        }

        let (device, dtype) = (&options.device, options.dtype);
        let te_path = weights(&dir.join("text_encoder"), &["model.safetensors", "model.fp16.safetensors"])?;
        let text_encoder = with_weights(&te_path, dtype, device, |vb| ClipTextEncoder::new(vb, &clip_config))?;
        let unet_names = ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"];
        let unet_path = weights(&dir.join("unet"), &unet_names)?;
        let unet = with_weights(&unet_path, dtype, device, |vb| {
            UNet2DConditionModel::new(
                vb,
                unet_spec.in_channels,
                unet_spec.out_channels,
                false,
                unet_spec.config.clone(),
            )
        })?;
        let vae_path = weights(&dir.join("vae"), &unet_names)?;
        let vae = with_weights(&vae_path, dtype, device, |vb| {
            AutoEncoderKL::new(vb, vae_spec.in_channels, vae_spec.out_channels, vae_spec.config.clone())
        })?;
        let vae_encoder =
            with_weights(&vae_path, dtype, device, |vb| VaeEncoder::new(vb, vae_spec.in_channels, &vae_spec.config))?;
        Ok(Self {
            tokenizer,
            text_encoder,
            unet,
            vae,
            vae_encoder,
            unet_spec,
            vae_spec,
            scheduler,
            device: device.clone(),
            dtype,
            notes,
        })
    }

    /// Image sides must be a multiple of this (the VAE's downscale factor).
    pub fn size_multiple(&self) -> usize {
        self.vae_spec.scale()
    }
}

fn weights(dir: &Path, names: &[&str]) -> Result<PathBuf, LoadError> {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| LoadError::MissingWeights { dir: dir.into(), expected: names.join(", ") })
}

fn with_weights<T>(
    path: &Path,
    dtype: DType,
    device: &Device,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<T>,
) -> Result<T, LoadError> {
    let err = |source| LoadError::Weights { path: path.into(), source };
    // SAFETY: the weights are memory-mapped; the model directory is mounted
    // read-only (or owned by us), so the file does not change under the map.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[path], dtype, device) }.map_err(err)?;
    build(vb).map_err(err)
}
