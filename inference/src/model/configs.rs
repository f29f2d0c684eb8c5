//! The architecture of each model part, read from the checkout's own
//! `config.json` files (diffusers / transformers format) — no per-version
//! presets, so SD 1.5, 2.1, 2.1-base, Turbo and our tiny model all load
//! through the same code.

use std::path::Path;

use candle_transformers::models::stable_diffusion::unet_2d::{BlockConfig, UNet2DConditionModelConfig};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKLConfig;
use serde_json::{Value, json};

use super::clip::{Activation, ClipConfig};
use super::fields::{FieldError, Fields, per_block};

/// The UNet's architecture plus the two channel counts candle takes apart.
#[derive(Debug, Clone)]
pub struct UnetSpec {
    /// candle's configuration.
    pub config: UNet2DConditionModelConfig,
    /// Latent channels in.
    pub in_channels: usize,
    /// Latent channels out.
    pub out_channels: usize,
    /// SDXL's extra conditioning (`addition_embed_type: "text_time"`).
    pub text_time: Option<TextTimeSpec>,
    /// `sample_size`: the latent side the model was trained at (64 for SD 1.5, 96 for SD 2.1
    /// 768, 128 for SDXL), when the config gives it.
    pub sample_size: Option<usize>,
}

/// SDXL's `add_embedding`: the pooled text embedding and six size/crop "time
/// ids", each id projected sinusoidally to `time_embed_dim` channels, then an
/// MLP to the UNet's time embedding width, added to the timestep embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextTimeSpec {
    /// `addition_time_embed_dim` (256 for SDXL).
    pub time_embed_dim: usize,
    /// `projection_class_embeddings_input_dim` (2816 = 1280 pooled + 6 × 256 for SDXL).
    pub input_dim: usize,
}

impl TextTimeSpec {
    /// Time ids per image: original size (h, w), crop top-left (y, x), target size (h, w).
    pub const TIME_IDS: usize = 6;

    /// Width of the pooled text embedding this spec expects.
    pub fn pooled_dim(&self) -> usize {
        self.input_dim.saturating_sub(Self::TIME_IDS * self.time_embed_dim)
    }
}

/// The VAE's architecture and latent scaling.
#[derive(Debug, Clone)]
pub struct VaeSpec {
    /// candle's configuration.
    pub config: AutoEncoderKLConfig,
    /// Image channels in (3).
    pub in_channels: usize,
    /// Image channels out (3).
    pub out_channels: usize,
    /// Latents are divided by this before decoding (0.18215 for SD, 0.13025 for SDXL).
    pub scaling_factor: f64,
    /// `force_upcast` (diffusers' default: true): under f16 the SDXL VAE overflows, so the
    /// SDXL pipeline decodes in f32 when this is set.
    pub force_upcast: bool,
}

impl VaeSpec {
    /// How many image pixels one latent pixel covers along each side.
    pub fn scale(&self) -> usize {
        1 << self.config.block_out_channels.len().saturating_sub(1)
    }
}

/// Parses `unet/config.json`.
pub fn unet(path: &Path) -> Result<UnetSpec, FieldError> {
    let mut f = Fields::read(path)?;
    let block_out_channels: Vec<usize> = f.req("block_out_channels", "a list of channel counts")?;
    let n = block_out_channels.len();
    if n == 0 {
        return Err(f.error("block_out_channels", "must not be empty"));
    }
    let down: Vec<String> = f.req("down_block_types", "a list of block type names")?;
    let up: Vec<String> = f.req("up_block_types", "a list of block type names")?;
    if down.len() != n || up.len() != n {
        return Err(f.error("down_block_types", format!("down/up block lists must both have {n} entries")));
    }
    let mut cross = Vec::with_capacity(n);
    for (i, d) in down.iter().enumerate() {
        let c = match d.as_str() {
            "CrossAttnDownBlock2D" => true,
            "DownBlock2D" => false,
            other => {
                return Err(f.error(
                    "down_block_types",
                    format!("{other:?} is not supported; supported: \"CrossAttnDownBlock2D\", \"DownBlock2D\""),
                ));
            }
        };
        // candle mirrors the down blocks on the way up; a config that does not is a different model.
        let expected_up = if c { "CrossAttnUpBlock2D" } else { "UpBlock2D" };
        if up[n - 1 - i] != expected_up {
            return Err(f.error(
                "up_block_types",
                format!(
                    "entry {} is {:?}; expected {expected_up:?} to mirror down block {i}",
                    n - 1 - i,
                    up[n - 1 - i]
                ),
            ));
        }
        cross.push(c);
    }
    let layers: Vec<usize> = per_block(&mut f, "layers_per_block", n, Some(2))?.unwrap_or_default();
    if layers.windows(2).any(|w| w[0] != w[1]) {
        return Err(f.error("layers_per_block", "different counts per block are not supported"));
    }
    let heads_list = per_block::<usize>(&mut f, "num_attention_heads", n, None)?;
    let head_dim_list = per_block::<usize>(&mut f, "attention_head_dim", n, Some(8))?;
    // diffusers' historical naming: `attention_head_dim` holds the number of heads
    // unless `num_attention_heads` is given.
    let heads = heads_list.or(head_dim_list).unwrap_or_default();
    let transformer_layers =
        per_block::<usize>(&mut f, "transformer_layers_per_block", n, Some(1))?.unwrap_or_default();
    let cross_attention_dim: usize = f.req("cross_attention_dim", "an integer (one value for all blocks)")?;
    let norm_num_groups: usize = f.or("norm_num_groups", "an integer", 32)?;
    for (i, ch) in block_out_channels.iter().enumerate() {
        if norm_num_groups == 0 || !ch.is_multiple_of(norm_num_groups) {
            return Err(
                f.error("norm_num_groups", format!("{norm_num_groups} does not divide block {i}'s {ch} channels"))
            );
        }
        if heads[i] == 0 || !ch.is_multiple_of(heads[i]) {
            return Err(
                f.error("attention_head_dim", format!("{} heads do not divide block {i}'s {ch} channels", heads[i]))
            );
        }
    }
    let blocks = (0..n)
        .map(|i| BlockConfig {
            out_channels: block_out_channels[i],
            use_cross_attn: cross[i].then_some(transformer_layers[i]),
            attention_head_dim: heads[i],
        })
        .collect();
    let config = UNet2DConditionModelConfig {
        center_input_sample: f.or("center_input_sample", "true or false", false)?,
        flip_sin_to_cos: f.or("flip_sin_to_cos", "true or false", true)?,
        freq_shift: f.or("freq_shift", "a number", 0.0)?,
        blocks,
        layers_per_block: layers[0],
        downsample_padding: f.or("downsample_padding", "an integer", 1)?,
        mid_block_scale_factor: f.or("mid_block_scale_factor", "a number", 1.0)?,
        norm_num_groups,
        norm_eps: f.or("norm_eps", "a number", 1e-5)?,
        cross_attention_dim,
        sliced_attention_size: None,
        use_linear_projection: f.or("use_linear_projection", "true or false", false)?,
    };
    let in_channels = f.or("in_channels", "an integer", 4)?;
    let out_channels = f.or("out_channels", "an integer", 4)?;
    let text_time = match f.opt::<String>("addition_embed_type", "a string")?.as_deref() {
        None => None,
        Some("text_time") => {
            let time_embed_dim: usize = f.req("addition_time_embed_dim", "an integer (256 for SDXL)")?;
            let input_dim: usize = f.req("projection_class_embeddings_input_dim", "an integer (2816 for SDXL)")?;
            if time_embed_dim == 0 || input_dim <= TextTimeSpec::TIME_IDS * time_embed_dim {
                return Err(f.error(
                    "projection_class_embeddings_input_dim",
                    format!(
                        "{input_dim} leaves no room for a pooled text embedding next to {} time ids of {time_embed_dim}",
                        TextTimeSpec::TIME_IDS
                    ),
                ));
            }
            Some(TextTimeSpec { time_embed_dim, input_dim })
        }
        Some(other) => {
            return Err(f.error(
                "addition_embed_type",
                format!("{other:?} is not supported; supported: \"text_time\" (SDXL), or none"),
            ));
        }
    };
    let sample_size: Option<usize> = f.opt("sample_size", "an integer")?;
    f.only("act_fn", &[json!("silu")])?;
    f.only("mid_block_type", &[json!("UNetMidBlock2DCrossAttn")])?;
    f.only("time_embedding_type", &[json!("positional")])?;
    f.only("resnet_time_scale_shift", &[json!("default")])?;
    f.only("conv_in_kernel", &[json!(3)])?;
    f.only("conv_out_kernel", &[json!(3)])?;
    for flag in ["dual_cross_attention", "only_cross_attention", "class_embeddings_concat", "resnet_skip_time_act"] {
        f.only(flag, &[json!(false)])?;
    }
    f.only("mid_block_only_cross_attention", &[json!(false)])?;
    f.only("resnet_out_scale_factor", &[json!(1.0), json!(1)])?;
    f.only("attention_type", &[json!("default")])?;
    // Extra embeddings (class-conditional, LCM's guidance embedding) change the model: refuse any value.
    for absent in [
        "class_embed_type",
        "num_class_embeds",
        "encoder_hid_dim",
        "encoder_hid_dim_type",
        "time_cond_proj_dim",
        "time_embedding_dim",
        "time_embedding_act_fn",
        "timestep_post_act",
        "cross_attention_norm",
        "reverse_transformer_layers_per_block",
    ] {
        f.only(absent, &[])?;
    }
    if text_time.is_none() {
        for field in ["addition_time_embed_dim", "projection_class_embeddings_input_dim"] {
            f.only(field, &[])?;
        }
    }
    // `upcast_attention`: candle's attention computes its softmax in f32 on
    // every device already.
    f.ignore(&["upcast_attention", "addition_embed_type_num_heads", "dropout"]);
    f.finish()?;
    Ok(UnetSpec { config, in_channels, out_channels, text_time, sample_size })
}

/// Parses `vae/config.json`.
pub fn vae(path: &Path) -> Result<VaeSpec, FieldError> {
    let mut f = Fields::read(path)?;
    let block_out_channels: Vec<usize> = f.req("block_out_channels", "a list of channel counts")?;
    if block_out_channels.is_empty() {
        return Err(f.error("block_out_channels", "must not be empty"));
    }
    let n = block_out_channels.len();
    for (field, ty) in [("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")] {
        let types: Vec<String> = f.or(field, "a list of block type names", vec![ty.to_owned(); n])?;
        if types.len() != n || types.iter().any(|t| t != ty) {
            return Err(f.error(field, format!("must be {n} times {ty:?} (the only block type supported)")));
        }
    }
    let norm_num_groups: usize = f.or("norm_num_groups", "an integer", 32)?;
    if let Some(ch) = block_out_channels.iter().find(|c| norm_num_groups == 0 || !c.is_multiple_of(norm_num_groups)) {
        return Err(f.error("norm_num_groups", format!("{norm_num_groups} does not divide {ch} channels")));
    }
    let config = AutoEncoderKLConfig {
        block_out_channels,
        layers_per_block: f.or("layers_per_block", "an integer", 1)?,
        latent_channels: f.or("latent_channels", "an integer", 4)?,
        norm_num_groups,
        use_quant_conv: f.or("use_quant_conv", "true or false", true)?,
        use_post_quant_conv: f.or("use_post_quant_conv", "true or false", true)?,
    };
    let spec = VaeSpec {
        config,
        in_channels: f.or("in_channels", "an integer", 3)?,
        out_channels: f.or("out_channels", "an integer", 3)?,
        scaling_factor: f.or("scaling_factor", "a number", 0.18215)?,
        force_upcast: f.or("force_upcast", "true or false", true)?,
    };
    if spec.out_channels != 3 {
        return Err(f.error("out_channels", format!("{} is not supported; an RGB image needs 3", spec.out_channels)));
    }
    f.only("act_fn", &[json!("silu")])?;
    f.only("mid_block_add_attention", &[json!(true)])?;
    for absent in ["shift_factor", "latents_mean", "latents_std"] {
        f.only(absent, &[])?;
    }
    // `sample_size` is only a default.
    f.ignore(&["sample_size"]);
    f.finish()?;
    Ok(spec)
}

/// Parses `text_encoder/config.json` (a transformers `CLIPTextModel`).
pub fn clip(path: &Path) -> Result<ClipConfig, FieldError> {
    let mut f = Fields::read(path)?;
    f.only("model_type", &[json!("clip_text_model")])?;
    let mut with_projection = false;
    if let Some(archs) = f.opt::<Vec<String>>("architectures", "a list of class names")? {
        match archs.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["CLIPTextModel"] => {}
            ["CLIPTextModelWithProjection"] => with_projection = true,
            _ => {
                return Err(f.error(
                    "architectures",
                    format!(
                        "{archs:?} is not supported; supported: [\"CLIPTextModel\"], \
                         [\"CLIPTextModelWithProjection\"] (SDXL's text_encoder_2)"
                    ),
                ));
            }
        }
    }
    let act: String = f.or("hidden_act", "a string", "quick_gelu".to_owned())?;
    let activation = Activation::parse(&act).ok_or_else(|| {
        f.error("hidden_act", format!("{act:?} is not supported; supported: {}", Activation::ALLOWED))
    })?;
    let config = ClipConfig {
        vocab_size: f.req("vocab_size", "an integer")?,
        hidden_size: f.req("hidden_size", "an integer")?,
        intermediate_size: f.req("intermediate_size", "an integer")?,
        num_hidden_layers: f.req("num_hidden_layers", "an integer")?,
        num_attention_heads: f.req("num_attention_heads", "an integer")?,
        max_position_embeddings: f.or("max_position_embeddings", "an integer", 77)?,
        activation,
        layer_norm_eps: f.or("layer_norm_eps", "a number", 1e-5)?,
        projection_dim: None,
    };
    let projection_dim: Option<usize> = f.opt("projection_dim", "an integer")?;
    let config = ClipConfig {
        projection_dim: if with_projection {
            Some(projection_dim.ok_or_else(|| {
                f.error("projection_dim", "missing; CLIPTextModelWithProjection needs the projection's width")
            })?)
        } else {
            None
        },
        ..config
    };
    if config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
        return Err(f.error(
            "num_attention_heads",
            format!("{} does not divide hidden_size {}", config.num_attention_heads, config.hidden_size),
        ));
    }
    if config.max_position_embeddings < 2 {
        return Err(f.error("max_position_embeddings", "must be at least 2 (start and end tokens)"));
    }
    // Training-time and generic `PretrainedConfig` bookkeeping.
    f.ignore(&[
        "attention_dropout",
        "dropout",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "initializer_factor",
        "initializer_range",
        "torch_dtype",
        "transformers_version",
        "return_dict",
        "output_hidden_states",
        "output_attentions",
        "torchscript",
        "use_bfloat16",
        "tie_word_embeddings",
        "is_encoder_decoder",
        "is_decoder",
        "add_cross_attention",
        "tie_encoder_decoder",
        "chunk_size_feed_forward",
        "id2label",
        "label2id",
        "problem_type",
        "tokenizer_class",
        "prefix",
        "task_specific_params",
        "finetuning_task",
        "pruned_heads",
    ]);
    f.finish()?;
    Ok(config)
}

/// The padding token named by `tokenizer/special_tokens_map.json` or
/// `tokenizer/tokenizer_config.json` (either may be absent; CLIP pads with its
/// end token by default).
pub fn pad_token(tokenizer_dir: &Path) -> Result<Option<String>, FieldError> {
    for file in ["special_tokens_map.json", "tokenizer_config.json"] {
        let path = tokenizer_dir.join(file);
        if !path.exists() {
            continue;
        }
        let mut f = Fields::read(&path)?;
        let pad: Option<Value> = f.opt("pad_token", "a string or an object with \"content\"")?;
        let token = match pad {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(Value::Object(o)) => match o.get("content") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => return Err(f.error("pad_token", "an object must have a string \"content\"")),
            },
            Some(v) => return Err(f.error("pad_token", format!("{v} is not a string or an object with \"content\""))),
        };
        // The rest of these files is tokenizer bookkeeping we do not need.
        if token.is_some() {
            return Ok(token);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
