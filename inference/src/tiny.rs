//! `edge-inference tiny-model [--arch ARCH] DIR`: writes a complete, small
//! Stable Diffusion checkout in the diffusers layout — configs, a CLIP
//! tokenizer with a small vocabulary, and seeded random safetensors weights —
//! that loads through exactly the same code as a real one. One per
//! architecture of the family ([`Arch`]: SD 1.5, 2.1 768-v, SD-Turbo, SDXL,
//! SDXL-Turbo), each with its real config shape (block types, projections,
//! activations, pad token, scheduler, SDXL's second encoder and text_time
//! embedding) at toy widths. Tests, benchmarks and the local stack use them;
//! nothing is downloaded.
//!
//! The weights are written by [`write_weights`]: each part is built once on a
//! variable builder that only records the names, shapes and initialisations
//! the loader asks for, then every tensor is drawn from our seeded generator
//! and streamed to the safetensors file. The full-size random models of
//! `random-model` ([`crate::random_model`]) are written the same way.

use std::path::Path;

use candle_core::DType;
use serde_json::{Value, json};

use crate::model::fields::FieldError;
use crate::model::rng::NoiseRng;
use crate::model::tokenizer::{END_OF_TEXT, START_OF_TEXT, bytes_to_unicode};

mod weights;
pub use weights::{plan, write_weights};
use weights::{record, save_random};

/// Why the tiny model could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TinyError {
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Building or saving the random weights failed.
    #[error("{path}: {source}")]
    Weights {
        /// The file.
        path: std::path::PathBuf,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },
    /// Our own config did not parse (a bug, reported rather than hidden).
    #[error(transparent)]
    Config(#[from] FieldError),
}

/// Words the tiny tokenizer knows whole; anything else is spelled in bytes.
const WORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "of",
    "in",
    "on",
    "with",
    "and",
    "photo",
    "painting",
    "drawing",
    "portrait",
    "city",
    "street",
    "night",
    "day",
    "sunset",
    "forest",
    "mountain",
    "lake",
    "sea",
    "sky",
    "cloud",
    "robot",
    "cat",
    "dog",
    "horse",
    "astronaut",
    "castle",
    "house",
    "car",
    "tree",
    "flower",
    "red",
    "blue",
    "green",
    "yellow",
    "black",
    "white",
    "old",
    "new",
    "small",
    "large",
    "bright",
    "dark",
    "realistic",
    "detailed",
    "high",
    "quality",
    "blurry",
    "ugly",
    "cosmonaut",
    "rusty",
    "candle",
    "fire",
    "torch",
    "hand",
    "holding",
    "edge",
    "diffusion",
];

/// Fixed so the same command always writes the same model.
const WEIGHT_SEED: u64 = 0x5EED_0001;

/// The architectures `tiny-model --arch` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// The original tiny model: SD 2.x-shaped, Euler Ancestral with trailing spacing (the
    /// worker's few-step defaults apply to it), `!` padding.
    Default,
    /// SD 1.5: quick_gelu text encoder, convolutional attention projections, end-token padding,
    /// PNDM (run as DDIM).
    Sd15,
    /// SD 2.1 768-v: gelu text encoder, linear projections, `!` padding, DDIM with v-prediction.
    Sd21,
    /// SD-Turbo: SD 2.1's architecture, Euler with trailing spacing (1 step, no guidance).
    SdTurbo,
    /// SDXL base: two text encoders (the second with a projection, `tokenizer_2`), a UNet whose
    /// first block has no attention, transformer depths per block, `text_time` conditioning,
    /// the SDXL VAE scaling; Euler, leading spacing.
    Sdxl,
    /// SDXL-Turbo: SDXL's architecture, Euler Ancestral with trailing spacing.
    SdxlTurbo,
}

impl Arch {
    /// Every architecture, for tests.
    pub const ALL: [Arch; 6] = [Self::Default, Self::Sd15, Self::Sd21, Self::SdTurbo, Self::Sdxl, Self::SdxlTurbo];

    fn xl(self) -> bool {
        matches!(self, Self::Sdxl | Self::SdxlTurbo)
    }
}

/// Writes the default tiny model into `dir` (created if needed).
pub fn write(dir: &Path) -> Result<(), TinyError> {
    write_arch(dir, Arch::Default)
}

/// Writes the tiny model of `arch` into `dir` (created if needed).
pub fn write_arch(dir: &Path, arch: Arch) -> Result<(), TinyError> {
    let sd15 = arch == Arch::Sd15;
    let pad = if sd15 || arch.xl() { END_OF_TEXT } else { "!" };
    let vocab_size = write_tokenizer(&dir.join("tokenizer"), pad)?;
    let act = match arch {
        Arch::Default | Arch::Sd15 | Arch::Sdxl | Arch::SdxlTurbo => "quick_gelu",
        Arch::Sd21 | Arch::SdTurbo => "gelu",
    };
    let text_encoder = json!({
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_act": act,
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "max_position_embeddings": 77, "vocab_size": vocab_size, "layer_norm_eps": 1e-5,
        "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "projection_dim": 32, "torch_dtype": "float32"
    });
    let mut unet = json!({
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.27.0", "act_fn": "silu",
        "attention_head_dim": 2, "block_out_channels": [32, 64], "center_input_sample": false,
        "cross_attention_dim": 32, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
        "layers_per_block": 1, "mid_block_scale_factor": 1, "norm_eps": 1e-5, "norm_num_groups": 8,
        "out_channels": 4, "sample_size": 8, "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "use_linear_projection": true
    });
    match arch {
        Arch::Default => {}
        Arch::Sd15 => {
            unet["use_linear_projection"] = json!(false);
        }
        Arch::Sd21 | Arch::SdTurbo => {
            unet["attention_head_dim"] = json!([2, 4]);
            unet["upcast_attention"] = json!(arch == Arch::Sd21);
        }
        Arch::Sdxl | Arch::SdxlTurbo => {
            // SDXL's shape: no attention in the first block, deeper transformers further down,
            // the two encoders' widths side by side, and the pooled text + time ids embedding.
            unet["down_block_types"] = json!(["DownBlock2D", "CrossAttnDownBlock2D"]);
            unet["up_block_types"] = json!(["CrossAttnUpBlock2D", "UpBlock2D"]);
            unet["attention_head_dim"] = json!([2, 4]);
            unet["transformer_layers_per_block"] = json!([1, 2]);
            unet["cross_attention_dim"] = json!(64);
            unet["addition_embed_type"] = json!("text_time");
            unet["addition_embed_type_num_heads"] = json!(64);
            unet["addition_time_embed_dim"] = json!(8);
            unet["projection_class_embeddings_input_dim"] = json!(32 + 6 * 8);
        }
    }
    let mut vae = json!({
        "_class_name": "AutoencoderKL", "_diffusers_version": "0.27.0", "act_fn": "silu",
        "block_out_channels": [8, 8, 16, 16],
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
        "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1, "norm_num_groups": 4,
        "sample_size": 64, "scaling_factor": 0.18215
    });
    if arch.xl() {
        vae["scaling_factor"] = json!(0.13025);
        vae["force_upcast"] = json!(true);
    }
    let betas = json!({
        "_diffusers_version": "0.27.0", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000, "steps_offset": 1, "trained_betas": null
    });
    let (class, extra) = match arch {
        Arch::Default => {
            ("EulerAncestralDiscreteScheduler", json!({"prediction_type": "epsilon", "timestep_spacing": "trailing"}))
        }
        Arch::Sd15 => {
            ("PNDMScheduler", json!({"skip_prk_steps": true, "set_alpha_to_one": false, "clip_sample": false}))
        }
        Arch::Sd21 => (
            "DDIMScheduler",
            json!({"prediction_type": "v_prediction", "set_alpha_to_one": false, "clip_sample": false}),
        ),
        Arch::SdTurbo => (
            "EulerDiscreteScheduler",
            json!({"prediction_type": "epsilon", "timestep_spacing": "trailing", "interpolation_type": "linear", "use_karras_sigmas": false}),
        ),
        Arch::Sdxl => (
            "EulerDiscreteScheduler",
            json!({"prediction_type": "epsilon", "timestep_spacing": "leading", "interpolation_type": "linear", "use_karras_sigmas": false}),
        ),
        Arch::SdxlTurbo => {
            ("EulerAncestralDiscreteScheduler", json!({"prediction_type": "epsilon", "timestep_spacing": "trailing"}))
        }
    };
    let mut scheduler = betas;
    scheduler["_class_name"] = json!(class);
    for (k, v) in extra.as_object().into_iter().flatten() {
        scheduler[k] = v.clone();
    }
    let mut index = json!({
        "_class_name": if arch.xl() { "StableDiffusionXLPipeline" } else { "StableDiffusionPipeline" },
        "_diffusers_version": "0.27.0",
        "scheduler": ["diffusers", class], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]
    });
    if arch.xl() {
        index["text_encoder_2"] = json!(["transformers", "CLIPTextModelWithProjection"]);
        index["tokenizer_2"] = json!(["transformers", "CLIPTokenizer"]);
        index["force_zeros_for_empty_prompt"] = json!(true);
    }
    write_json(&dir.join("model_index.json"), &index)?;
    write_json(&dir.join("text_encoder/config.json"), &text_encoder)?;
    write_json(&dir.join("unet/config.json"), &unet)?;
    write_json(&dir.join("vae/config.json"), &vae)?;
    write_json(&dir.join("scheduler/scheduler_config.json"), &scheduler)?;
    if arch.xl() {
        write_tokenizer(&dir.join("tokenizer_2"), "!")?;
        let mut te2 = text_encoder.clone();
        te2["architectures"] = json!(["CLIPTextModelWithProjection"]);
        te2["hidden_act"] = json!("gelu");
        write_json(&dir.join("text_encoder_2/config.json"), &te2)?;
    }
    write_weights(dir, WEIGHT_SEED, DType::F32)
}

/// Writes the tiny model with an inpainting UNet instead (9 input channels:
/// latents, mask, masked-image latents), as SD 1.5-inpainting is laid out.
pub fn write_inpainting(dir: &Path) -> Result<(), TinyError> {
    write_inpainting_arch(dir, Arch::Default)
}

/// Writes `arch`'s tiny model with a 9-channel inpainting UNet: the layout of
/// SD 1.5-inpainting, stable-diffusion-2-inpainting and SDXL's inpainting 0.1
/// alike (only the UNet's `in_channels` differs from the text-to-image model).
pub fn write_inpainting_arch(dir: &Path, arch: Arch) -> Result<(), TinyError> {
    write_arch(dir, arch)?;
    let cfg = dir.join("unet/config.json");
    let text = std::fs::read(&cfg).map_err(|source| TinyError::Write { path: cfg.clone(), source })?;
    // Our own file, just written: it parses.
    let mut unet: Value = serde_json::from_slice(&text).unwrap_or_default();
    unet["in_channels"] = json!(9);
    write_json(&cfg, &unet)?;
    let wanted = record(dir, "unet")?;
    let mut rng = NoiseRng::new(WEIGHT_SEED ^ 9);
    save_random(&dir.join("unet/diffusion_pytorch_model.safetensors"), &wanted, &mut rng, DType::F32)
}

/// CLIP's layout: 256 byte tokens, the same with `</w>`, merges, then the
/// two special tokens. Returns the vocabulary size.
pub(crate) fn write_tokenizer(dir: &Path, pad: &str) -> Result<usize, TinyError> {
    let bytes = bytes_to_unicode();
    let mut vocab: Vec<String> = bytes.iter().map(|c| c.to_string()).collect();
    vocab.extend(bytes.iter().map(|c| format!("{c}</w>")));
    let mut merges: Vec<(String, String)> = Vec::new();
    for word in WORDS {
        // Merge each word left to right; every intermediate is a token, so the
        // merges are a valid BPE whatever order words share prefixes in.
        let chars: Vec<String> = word.chars().map(|c| c.to_string()).collect();
        let mut acc = chars[0].clone();
        for (i, c) in chars.iter().enumerate().skip(1) {
            let right = if i + 1 == chars.len() { format!("{c}</w>") } else { c.clone() };
            let merged = format!("{acc}{right}");
            if !vocab.contains(&merged) {
                merges.push((acc.clone(), right));
                vocab.push(merged.clone());
            }
            acc = merged;
        }
    }
    vocab.extend([START_OF_TEXT.to_owned(), END_OF_TEXT.to_owned()]);
    let map: serde_json::Map<String, Value> = vocab.iter().enumerate().map(|(i, t)| (t.clone(), i.into())).collect();
    write_json(&dir.join("vocab.json"), &Value::Object(map))?;
    let mut text = String::from("#version: 0.2\n");
    for (a, b) in &merges {
        text.push_str(&format!("{a} {b}\n"));
    }
    write_file(&dir.join("merges.txt"), text.as_bytes())?;
    // SD 2.x and SDXL's tokenizer_2 pad with "!", SD 1.x and SDXL's first tokenizer with the
    // end token. Both files, as transformers' CLIPTokenizer saves them (diffusers loads them).
    write_json(
        &dir.join("special_tokens_map.json"),
        &json!({
            "bos_token": START_OF_TEXT, "eos_token": END_OF_TEXT, "pad_token": pad, "unk_token": END_OF_TEXT
        }),
    )?;
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({
            "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": true,
            "bos_token": START_OF_TEXT, "eos_token": END_OF_TEXT, "pad_token": pad, "unk_token": END_OF_TEXT,
            "errors": "replace", "add_prefix_space": false, "clean_up_tokenization_spaces": true
        }),
    )?;
    Ok(vocab.len())
}

fn write_json(path: &Path, value: &Value) -> Result<(), TinyError> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    write_file(path, text.as_bytes())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TinyError> {
    let io = |source| TinyError::Write { path: path.into(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, bytes).map_err(io)
}
