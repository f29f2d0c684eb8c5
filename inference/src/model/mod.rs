//! The Stable Diffusion model: loaded once from a diffusers-layout directory
//! (`text_encoder/`, `unet/`, `vae/`, `tokenizer/`, `scheduler/`, and for SDXL
//! `text_encoder_2/` and `tokenizer_2/`), then shared read-only by every
//! generation.

pub mod clip;
pub mod configs;
pub mod device;
pub mod edit;
pub mod embed_cache;
pub mod fields;
pub mod pipeline;
pub mod rng;
pub mod schedulers;
pub mod tokenizer;
pub mod unet;
pub mod vae_encoder;
mod weight_files;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;

use self::clip::{ClipConfig, ClipTextEncoder};
use self::configs::{UnetSpec, VaeSpec};
use self::fields::FieldError;
use self::schedulers::schedule::Spacing;
use self::schedulers::{SamplerKind, SchedulerConfig};
use self::tokenizer::{ClipTokenizer, TokenizerError};
use self::unet::Unet;
use self::vae_encoder::VaeEncoder;
pub use self::weight_files::weights;
use self::weight_files::with_weights;

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
    /// Attention through flash-attn v2 kernels (feature `flash-attn`, CUDA, f16/bf16 only).
    pub flash_attn: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { device: Device::Cpu, dtype: DType::F32, sampler: None, flash_attn: false }
    }
}

/// SDXL's second text encoder and its tokenizer.
pub struct SecondEncoder {
    /// `tokenizer_2/` (pads with `!`).
    pub tokenizer: ClipTokenizer,
    /// `text_encoder_2/`, a `CLIPTextModelWithProjection`.
    pub encoder: ClipTextEncoder,
}

/// Request defaults that suit the checkout, used where the flags set none.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommended {
    /// Denoising steps.
    pub steps: usize,
    /// Guidance scale.
    pub guidance: f64,
    /// Image size (width, height).
    pub size: (usize, usize),
    /// Why (for the log).
    pub why: &'static str,
}

/// A loaded model, ready to generate.
pub struct Model {
    /// Prompt tokenizer.
    pub tokenizer: ClipTokenizer,
    /// Text encoder.
    pub text_encoder: ClipTextEncoder,
    /// SDXL's second encoder; `None` for SD 1.x/2.x.
    pub second: Option<SecondEncoder>,
    /// Denoiser.
    pub unet: Unet,
    /// Latent decoder.
    pub vae: AutoEncoderKL,
    /// Image encoder for edits (ours: seeded sampling).
    pub vae_encoder: VaeEncoder,
    /// The VAE's weight type: f32 when the SDXL VAE is upcast under f16.
    pub vae_dtype: DType,
    /// UNet architecture as read.
    pub unet_spec: UnetSpec,
    /// VAE architecture as read.
    pub vae_spec: VaeSpec,
    /// Sampler settings.
    pub scheduler: SchedulerConfig,
    /// SDXL: an empty negative prompt is all zeros, not the encoding of "" (model_index.json
    /// `force_zeros_for_empty_prompt`, diffusers' default true).
    pub zeros_for_empty_negative: bool,
    /// Text conditionings of recent (prompt, negative) pairs.
    pub embed_cache: embed_cache::EmbedCache,
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
        let tokenizer = read_tokenizer(&dir.join("tokenizer"))?;
        let mismatch = |path: &Path, reason: String| LoadError::Mismatch { path: path.into(), reason };
        check_vocab(&tokenizer, &clip_config, &clip_cfg_path)?;

        // SDXL: a second encoder whose penultimate states are concatenated to the first's,
        // and whose projected pooled output conditions the UNet with the time ids.
        let clip2_path = dir.join("text_encoder_2/config.json");
        let second_config = if clip2_path.is_file() {
            let c = configs::clip(&clip2_path)?;
            let tok = read_tokenizer(&dir.join("tokenizer_2"))?;
            check_vocab(&tok, &c, &clip2_path)?;
            Some((c, tok))
        } else {
            None
        };
        let text_width = clip_config.hidden_size + second_config.as_ref().map_or(0, |(c, _)| c.hidden_size);
        if unet_spec.config.cross_attention_dim != text_width {
            let what = if second_config.is_some() {
                format!(
                    "the text encoders' hidden sizes {} + {} = {text_width}",
                    clip_config.hidden_size,
                    text_width - clip_config.hidden_size
                )
            } else {
                format!("the text encoder's hidden_size {text_width}")
            };
            return Err(mismatch(
                &unet_cfg,
                format!("cross_attention_dim {} differs from {what}", unet_spec.config.cross_attention_dim),
            ));
        }
        match (&unet_spec.text_time, &second_config) {
            (Some(tt), Some((c2, _))) => {
                if c2.projection_dim != Some(tt.pooled_dim()) {
                    return Err(mismatch(
                        &unet_cfg,
                        format!(
                            "projection_class_embeddings_input_dim {} = pooled {} + 6 time ids x {}, but \
                             text_encoder_2 projects to {:?} (an SDXL refiner's 5 time ids are not supported)",
                            tt.input_dim,
                            tt.pooled_dim(),
                            tt.time_embed_dim,
                            c2.projection_dim
                        ),
                    ));
                }
            }
            (Some(_), None) => {
                return Err(mismatch(
                    &unet_cfg,
                    format!(
                        "addition_embed_type \"text_time\" (SDXL) needs text_encoder_2/ and tokenizer_2/; {} is missing",
                        clip2_path.display()
                    ),
                ));
            }
            (None, Some(_)) => {
                return Err(mismatch(
                    &unet_cfg,
                    "text_encoder_2/ is present but the UNet has no addition_embed_type \"text_time\"".into(),
                ));
            }
            (None, None) => {}
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

        let (device, dtype) = (&options.device, options.dtype);
        let te_path = weights(&dir.join("text_encoder"), "model", dtype)?;
        let text_encoder = with_weights(&te_path, dtype, device, |vb| ClipTextEncoder::new(vb, &clip_config))?;
        let second = match second_config {
            Some((c, tokenizer)) => {
                let path = weights(&dir.join("text_encoder_2"), "model", dtype)?;
                let encoder = with_weights(&path, dtype, device, |vb| ClipTextEncoder::new(vb, &c))?;
                Some(SecondEncoder { tokenizer, encoder })
            }
            None => None,
        };
        let unet_path = weights(&dir.join("unet"), "diffusion_pytorch_model", dtype)?;
        let unet = with_weights(&unet_path, dtype, device, |vb| Unet::new(vb, &unet_spec, options.flash_attn))?;
        // As diffusers' SDXL pipeline: its VAE overflows in f16, so it decodes in f32 when the
        // config says force_upcast (SD 1.x/2.x pipelines decode in the model's type).
        let vae_dtype = if second.is_some() && vae_spec.force_upcast && dtype != DType::F32 {
            notes.push("the SDXL VAE decodes in f32 (vae/config.json force_upcast)".into());
            DType::F32
        } else {
            dtype
        };
        let vae_path = weights(&dir.join("vae"), "diffusion_pytorch_model", vae_dtype)?;
        let vae = with_weights(&vae_path, vae_dtype, device, |vb| {
            AutoEncoderKL::new(vb, vae_spec.in_channels, vae_spec.out_channels, vae_spec.config.clone())
        })?;
        let vae_encoder = with_weights(&vae_path, vae_dtype, device, |vb| {
            VaeEncoder::new(vb, vae_spec.in_channels, &vae_spec.config)
        })?;
        let zeros_for_empty_negative = second.is_some() && force_zeros_for_empty_prompt(dir);
        Ok(Self {
            tokenizer,
            text_encoder,
            second,
            unet,
            vae,
            vae_encoder,
            vae_dtype,
            unet_spec,
            vae_spec,
            scheduler,
            zeros_for_empty_negative,
            embed_cache: Default::default(),
            device: device.clone(),
            dtype,
            notes,
        })
    }

    /// Image sides must be a multiple of this (the VAE's downscale factor).
    pub fn size_multiple(&self) -> usize {
        self.vae_spec.scale()
    }

    /// Tokens a prompt may have between the start and end tokens (75 for every SD model).
    pub fn max_prompt_tokens(&self) -> usize {
        self.text_encoder.config().max_position_embeddings.saturating_sub(2)
    }

    /// Refuses a prompt longer than the text encoder reads (diffusers cuts it
    /// off with a warning; we say so instead of drawing half the prompt).
    pub fn check_prompt(&self, text: &str) -> Result<(), String> {
        let max = self.max_prompt_tokens();
        let mut n = self.tokenizer.encode(text).len();
        if let Some(s) = &self.second {
            n = n.max(s.tokenizer.encode(text).len());
        }
        if n > max {
            return Err(format!(
                "{n} tokens; this model's text encoder reads at most {max} ({} with its start and end tokens): \
                 shorten it",
                max + 2
            ));
        }
        Ok(())
    }

    /// Defaults for requests that name no steps, guidance or size: the trained
    /// size (`unet/config.json` sample_size × the VAE factor, 512 when absent); a
    /// few-step distilled checkout (SD-Turbo, SDXL-Turbo: an Euler sampler with
    /// `timestep_spacing: "trailing"`) runs 1 step without guidance, as its model
    /// card says; others 20 steps at guidance 7.5 (SDXL: 5.0, diffusers' default).
    pub fn recommended(&self) -> Recommended {
        let side = self.unet_spec.sample_size.map_or(512, |s| s * self.size_multiple());
        let size = (side, side);
        let distilled = self.scheduler.spacing == Spacing::Trailing
            && matches!(self.scheduler.kind, SamplerKind::Euler | SamplerKind::EulerAncestral);
        if distilled {
            Recommended { steps: 1, guidance: 0.0, size, why: "few-step distilled (Turbo) scheduler: trailing Euler" }
        } else if self.second.is_some() {
            Recommended { steps: 20, guidance: 5.0, size, why: "SDXL" }
        } else {
            Recommended { steps: 20, guidance: 7.5, size, why: "Stable Diffusion" }
        }
    }
}

fn read_tokenizer(dir: &Path) -> Result<ClipTokenizer, LoadError> {
    let pad = configs::pad_token(dir)?;
    Ok(ClipTokenizer::from_dir(dir, pad.as_deref())?)
}

fn check_vocab(tokenizer: &ClipTokenizer, config: &ClipConfig, path: &Path) -> Result<(), LoadError> {
    if tokenizer.max_id() as usize >= config.vocab_size {
        return Err(LoadError::Mismatch {
            path: path.into(),
            reason: format!(
                "vocab_size {} is too small for the tokenizer's vocab.json (largest id {})",
                config.vocab_size,
                tokenizer.max_id()
            ),
        });
    }
    Ok(())
}

/// `force_zeros_for_empty_prompt` from `model_index.json` (diffusers' SDXL default: true).
fn force_zeros_for_empty_prompt(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("model_index.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("force_zeros_for_empty_prompt")?.as_bool())
        .unwrap_or(true)
}

#[cfg(test)]
mod tests;
