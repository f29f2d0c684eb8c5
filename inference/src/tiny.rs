//! `edge-inference tiny-model DIR`: writes a complete, small Stable Diffusion
//! checkout in the diffusers layout — configs, a CLIP tokenizer with a small
//! vocabulary, and seeded random safetensors weights — that loads through
//! exactly the same code as a real one. Tests, benchmarks and the local stack
//! use it; nothing is downloaded.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::{unet_2d::UNet2DConditionModel, vae::AutoEncoderKL};
use serde_json::{Value, json};

use crate::model::clip::ClipTextEncoder;
use crate::model::rng::NoiseRng;
use crate::model::tokenizer::{END_OF_TEXT, START_OF_TEXT, bytes_to_unicode};
use crate::model::{configs, fields::FieldError};

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

/// Writes the tiny model into `dir` (created if needed).
pub fn write(dir: &Path) -> Result<(), TinyError> {
    let vocab_size = write_tokenizer(&dir.join("tokenizer"))?;
    let text_encoder = json!({
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_act": "quick_gelu",
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "max_position_embeddings": 77, "vocab_size": vocab_size, "layer_norm_eps": 1e-5,
        "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "projection_dim": 32, "torch_dtype": "float32"
    });
    let unet = json!({
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.27.0", "act_fn": "silu",
        "attention_head_dim": 2, "block_out_channels": [32, 64], "center_input_sample": false,
        "cross_attention_dim": 32, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
        "layers_per_block": 1, "mid_block_scale_factor": 1, "norm_eps": 1e-5, "norm_num_groups": 8,
        "out_channels": 4, "sample_size": 8, "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "use_linear_projection": true
    });
    let vae = json!({
        "_class_name": "AutoencoderKL", "_diffusers_version": "0.27.0", "act_fn": "silu",
        "block_out_channels": [8, 8, 16, 16],
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
        "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1, "norm_num_groups": 4,
        "sample_size": 64, "scaling_factor": 0.18215
    });
    let scheduler = json!({
        "_class_name": "EulerAncestralDiscreteScheduler", "_diffusers_version": "0.27.0",
        "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
        "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "trailing", "trained_betas": null
    });
    let index = json!({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.27.0",
        "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]
    });
    write_json(&dir.join("model_index.json"), &index)?;
    write_json(&dir.join("text_encoder/config.json"), &text_encoder)?;
    write_json(&dir.join("unet/config.json"), &unet)?;
    write_json(&dir.join("vae/config.json"), &vae)?;
    write_json(&dir.join("scheduler/scheduler_config.json"), &scheduler)?;

    // Build each part from the configs just written, as the loader will, so
    // the weights have exactly the tensors and shapes it asks for.
    let mut rng = NoiseRng::new(WEIGHT_SEED);
    let clip_config = configs::clip(&dir.join("text_encoder/config.json"))?;
    let path = dir.join("text_encoder/model.safetensors");
    save_random(&path, &mut rng, |vb| ClipTextEncoder::new(vb, &clip_config).map(drop))?;
    let spec = configs::unet(&dir.join("unet/config.json"))?;
    let path = dir.join("unet/diffusion_pytorch_model.safetensors");
    save_random(&path, &mut rng, |vb| {
        UNet2DConditionModel::new(vb, spec.in_channels, spec.out_channels, false, spec.config.clone()).map(drop)
    })?;
    let spec = configs::vae(&dir.join("vae/config.json"))?;
    let path = dir.join("vae/diffusion_pytorch_model.safetensors");
    save_random(&path, &mut rng, |vb| {
        AutoEncoderKL::new(vb, spec.in_channels, spec.out_channels, spec.config.clone()).map(drop)
    })?;
    Ok(())
}

/// Writes the tiny model with an inpainting UNet instead (9 input channels:
/// latents, mask, masked-image latents), as SD 1.5-inpainting is laid out.
pub fn write_inpainting(dir: &Path) -> Result<(), TinyError> {
    write(dir)?;
    let cfg = dir.join("unet/config.json");
    let text = std::fs::read(&cfg).map_err(|source| TinyError::Write { path: cfg.clone(), source })?;
    // Our own file, just written: it parses.
    let mut unet: Value = serde_json::from_slice(&text).unwrap_or_default();
    unet["in_channels"] = json!(9);
    write_json(&cfg, &unet)?;
    let spec = configs::unet(&cfg)?;
    let mut rng = NoiseRng::new(WEIGHT_SEED ^ 9);
    save_random(&dir.join("unet/diffusion_pytorch_model.safetensors"), &mut rng, |vb| {
        UNet2DConditionModel::new(vb, spec.in_channels, spec.out_channels, false, spec.config.clone()).map(drop)
    })
}

/// CLIP's layout: 256 byte tokens, the same with `</w>`, merges, then the
/// two special tokens. Returns the vocabulary size.
fn write_tokenizer(dir: &Path) -> Result<usize, TinyError> {
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
    // SD 2.x pads with "!", which exercises the pad-token path.
    write_json(
        &dir.join("special_tokens_map.json"),
        &json!({
            "bos_token": START_OF_TEXT, "eos_token": END_OF_TEXT, "pad_token": "!", "unk_token": END_OF_TEXT
        }),
    )?;
    Ok(vocab.len())
}

/// Builds a part on a fresh variable map (so it has exactly the tensors the
/// loader asks for), redraws every non-constant tensor from our seeded
/// generator, and saves the map as safetensors.
fn save_random(
    path: &Path,
    rng: &mut NoiseRng,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<()>,
) -> Result<(), TinyError> {
    let err = |source| TinyError::Weights { path: path.into(), source };
    let map = VarMap::new();
    build(VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu)).map_err(err)?;
    let vars = map.data().lock().map_err(|_| err(candle_core::Error::Msg("variable map poisoned".into())))?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for name in names {
        let t = vars[name].as_tensor();
        let values = t.flatten_all().and_then(|v| v.to_vec1::<f32>()).map_err(err)?;
        let n = values.len().max(1) as f64;
        let mean = values.iter().map(|v| *v as f64).sum::<f64>() / n;
        // Only used to tell constant initialisations (norm weights, zero biases) apart.
        let std = (values.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        // The scale comes from the shape alone (1/sqrt(fan-in), 0.02 for
        // vectors), never from candle's unseeded draw, so the output is the
        // same on every run.
        let fresh = if std < 1e-12 {
            t.clone()
        } else {
            let dims = t.dims();
            let scale = match dims {
                [_] => 0.02,
                [_, rest @ ..] => 1.0 / (rest.iter().product::<usize>() as f64).sqrt(),
                [] => 1.0,
            };
            rng.randn(dims, &Device::Cpu).and_then(|n| n.affine(scale, 0.0)).map_err(err)?
        };
        tensors.insert(name.clone(), fresh);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| TinyError::Write { path: parent.into(), source })?;
    }
    candle_core::safetensors::save(&tensors, path).map_err(err)?;
    // The safetensors writer creates its file owner-only (0600). A model is
    // not a secret, and the directory is often written by one user (an image
    // build, an init container) and read by another (the non-root worker), so
    // give the weights the same mode as the configs next to them.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(|source| TinyError::Write { path: path.into(), source })
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
