//! `edge-inference random-model --preset PRESET DIR`: a real architecture at
//! full size — SD-Turbo, SD 1.5, SDXL-Turbo, SDXL — with seeded random
//! weights, f16 on disk, in the diffusers layout (model_index.json, every
//! part's config, scheduler config, CLIP tokenizer files), so that per-step
//! cost is the real one without downloading anything, and diffusers loads
//! the very same files (`StableDiffusionPipeline.from_pretrained(DIR)`) for
//! the side-by-side benchmark.
//!
//! The configs are the published checkpoints' (stabilityai/sd-turbo,
//! runwayml/stable-diffusion-v1-5, stabilityai/sdxl-turbo,
//! stabilityai/stable-diffusion-xl-base-1.0), trimmed of training-only keys.
//! The tokenizer is the tiny model's small BPE vocabulary (prompts are spelled
//! in bytes beyond its words); the text encoders keep CLIP's 49408-row
//! embedding, so every matrix has its real shape. The images are noise: only
//! the cost is real.

use std::path::Path;

use candle_core::DType;
use serde_json::{Value, json};

use crate::tiny::{TinyError, write_tokenizer};

/// The seed of every random model (so two machines benchmark the same weights).
const SEED: u64 = 0x5EED_F011;

/// The architectures `random-model --preset` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// stabilityai/sd-turbo: SD 2.1's UNet (865M), OpenCLIP-H text encoder, 512², 1 step.
    SdTurbo,
    /// SD 1.5: CLIP-L text encoder, the SD 1 UNet (860M), 512², PNDM (run as DDIM).
    Sd15,
    /// stabilityai/sdxl-turbo: SDXL's UNet (2.6B), CLIP-L + OpenCLIP-bigG, 512², 1 step.
    SdxlTurbo,
    /// SDXL base 1.0: as SDXL-Turbo with Euler (leading) and 1024².
    Sdxl,
}

impl Preset {
    fn xl(self) -> bool {
        matches!(self, Self::SdxlTurbo | Self::Sdxl)
    }
}

fn clip_l() -> Value {
    json!({
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_act": "quick_gelu",
        "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
        "max_position_embeddings": 77, "vocab_size": 49408, "layer_norm_eps": 1e-5, "projection_dim": 768,
        "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "attention_dropout": 0.0, "dropout": 0.0,
        "initializer_factor": 1.0, "initializer_range": 0.02, "torch_dtype": "float16"
    })
}

fn open_clip_h() -> Value {
    json!({
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_act": "gelu",
        "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 23,
        "max_position_embeddings": 77, "vocab_size": 49408, "layer_norm_eps": 1e-5, "projection_dim": 512,
        "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "attention_dropout": 0.0, "dropout": 0.0,
        "initializer_factor": 1.0, "initializer_range": 0.02, "torch_dtype": "float16"
    })
}

fn open_clip_big_g() -> Value {
    json!({
        "architectures": ["CLIPTextModelWithProjection"], "model_type": "clip_text_model", "hidden_act": "gelu",
        "hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20, "num_hidden_layers": 32,
        "max_position_embeddings": 77, "vocab_size": 49408, "layer_norm_eps": 1e-5, "projection_dim": 1280,
        "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "attention_dropout": 0.0, "dropout": 0.0,
        "initializer_factor": 1.0, "initializer_range": 0.02, "torch_dtype": "float16"
    })
}

fn vae(xl: bool, sample_size: usize) -> Value {
    let mut v = json!({
        "_class_name": "AutoencoderKL", "_diffusers_version": "0.27.0", "act_fn": "silu",
        "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
        "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
        "sample_size": sample_size, "scaling_factor": 0.18215
    });
    if xl {
        v["scaling_factor"] = json!(0.13025);
        v["force_upcast"] = json!(true);
    }
    v
}

fn scheduler(class: &str, extra: Value) -> Value {
    let mut s = json!({
        "_class_name": class, "_diffusers_version": "0.27.0", "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "steps_offset": 1, "trained_betas": null
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        s[k] = v.clone();
    }
    s
}

fn sd_unet(cross_attention_dim: usize, heads: Value, linear: bool, sample_size: usize) -> Value {
    json!({
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.27.0", "act_fn": "silu",
        "attention_head_dim": heads, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false,
        "cross_attention_dim": cross_attention_dim,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1, "dual_cross_attention": false, "flip_sin_to_cos": true, "freq_shift": 0,
        "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-5, "norm_num_groups": 32,
        "num_class_embeds": null, "only_cross_attention": false, "out_channels": 4, "sample_size": sample_size,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "use_linear_projection": linear
    })
}

fn xl_unet(sample_size: usize) -> Value {
    json!({
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.27.0", "act_fn": "silu",
        "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256,
        "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280], "center_input_sample": false,
        "class_embed_type": null, "conv_in_kernel": 3, "conv_out_kernel": 3, "cross_attention_dim": 2048,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "downsample_padding": 1, "dual_cross_attention": false, "flip_sin_to_cos": true, "freq_shift": 0,
        "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn",
        "norm_eps": 1e-5, "norm_num_groups": 32, "num_attention_heads": null, "num_class_embeds": null,
        "only_cross_attention": false, "out_channels": 4, "projection_class_embeddings_input_dim": 2816,
        "resnet_time_scale_shift": "default", "sample_size": sample_size, "time_embedding_type": "positional",
        "transformer_layers_per_block": [1, 2, 10],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "upcast_attention": null, "use_linear_projection": true
    })
}

/// Writes the configs, tokenizer files and model_index.json of `preset` into `dir`, no weights.
pub fn write_configs(dir: &Path, preset: Preset) -> Result<(), TinyError> {
    let pad = if preset == Preset::SdTurbo { "!" } else { "<|endoftext|>" };
    write_tokenizer(&dir.join("tokenizer"), pad)?;
    let (text_encoder, unet, vae, scheduler) = match preset {
        Preset::SdTurbo => (
            open_clip_h(),
            sd_unet(1024, json!([5, 10, 20, 20]), true, 64),
            vae(false, 768),
            scheduler(
                "EulerDiscreteScheduler",
                json!({"prediction_type": "epsilon", "timestep_spacing": "trailing", "interpolation_type": "linear",
                       "use_karras_sigmas": false, "set_alpha_to_one": false, "skip_prk_steps": true,
                       "clip_sample": false, "sample_max_value": 1.0}),
            ),
        ),
        Preset::Sd15 => (
            clip_l(),
            sd_unet(768, json!(8), false, 64),
            vae(false, 512),
            scheduler(
                "PNDMScheduler",
                json!({"skip_prk_steps": true, "set_alpha_to_one": false, "clip_sample": false}),
            ),
        ),
        Preset::SdxlTurbo => (
            clip_l(),
            xl_unet(64),
            vae(true, 512),
            scheduler(
                "EulerAncestralDiscreteScheduler",
                json!({"prediction_type": "epsilon", "timestep_spacing": "trailing", "interpolation_type": "linear",
                       "use_karras_sigmas": false, "sample_max_value": 1.0}),
            ),
        ),
        Preset::Sdxl => (
            clip_l(),
            xl_unet(128),
            vae(true, 1024),
            scheduler(
                "EulerDiscreteScheduler",
                json!({"prediction_type": "epsilon", "timestep_spacing": "leading", "interpolation_type": "linear",
                       "use_karras_sigmas": false, "sample_max_value": 1.0, "clip_sample": false,
                       "set_alpha_to_one": false, "skip_prk_steps": true}),
            ),
        ),
    };
    let class = scheduler["_class_name"].as_str().unwrap_or_default().to_owned();
    let mut index = json!({
        "_class_name": if preset.xl() { "StableDiffusionXLPipeline" } else { "StableDiffusionPipeline" },
        "_diffusers_version": "0.27.0",
        "scheduler": ["diffusers", class], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "feature_extractor": [null, null], "image_encoder": [null, null]
    });
    if preset.xl() {
        index["text_encoder_2"] = json!(["transformers", "CLIPTextModelWithProjection"]);
        index["tokenizer_2"] = json!(["transformers", "CLIPTokenizer"]);
        index["force_zeros_for_empty_prompt"] = json!(true);
        write_tokenizer(&dir.join("tokenizer_2"), "!")?;
        put(&dir.join("text_encoder_2/config.json"), &open_clip_big_g())?;
    } else {
        index["safety_checker"] = json!([null, null]);
        index["requires_safety_checker"] = json!(false);
    }
    put(&dir.join("model_index.json"), &index)?;
    put(&dir.join("text_encoder/config.json"), &text_encoder)?;
    put(&dir.join("unet/config.json"), &unet)?;
    put(&dir.join("vae/config.json"), &vae)?;
    put(&dir.join("scheduler/scheduler_config.json"), &scheduler)
}

/// Writes the whole random model of `preset` into `dir`: configs and f16 weights.
pub fn write(dir: &Path, preset: Preset) -> Result<(), TinyError> {
    write_configs(dir, preset)?;
    crate::tiny::write_weights(dir, SEED, DType::F16)
}

fn put(path: &Path, value: &Value) -> Result<(), TinyError> {
    let io = |source| TinyError::Write { path: path.into(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap_or_default()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameter counts of the published models, from our configs and our
    /// loader's own modules (recorded, never allocated): the architecture is
    /// the real one, SDXL's add_embedding included.
    #[test]
    fn full_size_shapes_match_the_published_parameter_counts() {
        for (preset, unet_params) in
            [(Preset::SdTurbo, 865_910_724usize), (Preset::Sd15, 859_520_964), (Preset::SdxlTurbo, 2_567_463_684)]
        {
            let dir = tempfile::tempdir().unwrap();
            write_configs(dir.path(), preset).unwrap();
            let parts = crate::tiny::plan(dir.path()).unwrap();
            let count = |part: &str| parts[part].values().map(|s| s.iter().product::<usize>()).sum::<usize>();
            assert_eq!(count("unet"), unet_params, "{preset:?} UNet");
            assert_eq!(count("vae"), 83_653_863, "{preset:?} VAE");
            if preset.xl() {
                assert_eq!(parts["unet"]["add_embedding.linear_1.weight"], [1280, 2816]);
                assert_eq!(parts["text_encoder_2"]["text_projection.weight"], [1280, 1280]);
            }
        }
    }
}
