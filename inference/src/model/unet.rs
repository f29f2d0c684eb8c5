//! The conditional UNet, assembled from candle-transformers' blocks.
//!
//! candle-transformers 0.11's `UNet2DConditionModel` has no `add_embedding`:
//! it never reads SDXL's `add_embedding.linear_{1,2}` weights and takes no
//! pooled text embedding or time ids, so SDXL and SDXL-Turbo run on it
//! without their size and pooled-text conditioning (its SDXL example does
//! that). This module is the same network (same blocks, same tensor names;
//! a test proves it equal to candle's on an SD-shaped model) plus diffusers'
//! `addition_embed_type: "text_time"`:
//!
//! ```text
//! emb = time_embedding(time_proj(t)) + add_embedding(concat(text_embeds, add_time_proj(time_ids)))
//! ```
//!
//! It also computes the sinusoidal timestep projections in f32 (as diffusers
//! does) before casting to the model's dtype: in f16 the timestep 999 times
//! the highest frequency loses most of its precision.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn as nn;
use candle_transformers::models::stable_diffusion::embeddings::{TimestepEmbedding, Timesteps};
use candle_transformers::models::stable_diffusion::unet_2d::{BlockConfig, UNet2DConditionModelConfig};
use candle_transformers::models::stable_diffusion::unet_2d_blocks::{
    CrossAttnDownBlock2D, CrossAttnDownBlock2DConfig, CrossAttnUpBlock2D, CrossAttnUpBlock2DConfig, DownBlock2D,
    DownBlock2DConfig, UNetMidBlock2DCrossAttn, UNetMidBlock2DCrossAttnConfig, UpBlock2D, UpBlock2DConfig,
};

use super::configs::{TextTimeSpec, UnetSpec};

enum Down {
    Basic(DownBlock2D),
    CrossAttn(CrossAttnDownBlock2D),
}

enum Up {
    Basic(UpBlock2D),
    CrossAttn(CrossAttnUpBlock2D),
}

struct AddEmbedding {
    time_proj: Timesteps,
    embedding: TimestepEmbedding,
}

/// SDXL's extra conditioning for one batch: `(batch, pooled_dim)` pooled text
/// embeddings and `(batch, 6)` time ids, both in f32.
pub struct TextTime<'a> {
    /// `text_embeds`: text_encoder_2's projected pooled output.
    pub text_embeds: &'a Tensor,
    /// `time_ids`: original (h, w), crop top-left (y, x), target (h, w), in pixels.
    pub time_ids: &'a Tensor,
}

/// The denoiser.
pub struct Unet {
    conv_in: nn::Conv2d,
    time_proj: Timesteps,
    time_embedding: TimestepEmbedding,
    add: Option<AddEmbedding>,
    down: Vec<Down>,
    mid: UNetMidBlock2DCrossAttn,
    up: Vec<Up>,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2d,
    config: UNet2DConditionModelConfig,
    layers_per_block: usize,
}

impl Unet {
    /// Builds the UNet of `spec` from weights in diffusers' names.
    pub fn new(vs: nn::VarBuilder, spec: &UnetSpec, use_flash_attn: bool) -> Result<Self> {
        let config = spec.config.clone();
        let n = config.blocks.len();
        let b_channels = config.blocks[0].out_channels;
        let last = *config.blocks.last().expect("at least one block (checked when the config was read)");
        let time_embed_dim = b_channels * 4;
        let conv_cfg = nn::Conv2dConfig { padding: 1, ..Default::default() };
        let conv_in = nn::conv2d(spec.in_channels, b_channels, 3, conv_cfg, vs.pp("conv_in"))?;
        let time_proj = Timesteps::new(b_channels, config.flip_sin_to_cos, config.freq_shift);
        let time_embedding = TimestepEmbedding::new(vs.pp("time_embedding"), b_channels, time_embed_dim)?;
        let add = match spec.text_time {
            Some(TextTimeSpec { time_embed_dim: add_dim, input_dim }) => Some(AddEmbedding {
                time_proj: Timesteps::new(add_dim, config.flip_sin_to_cos, config.freq_shift),
                embedding: TimestepEmbedding::new(vs.pp("add_embedding"), input_dim, time_embed_dim)?,
            }),
            None => None,
        };

        let vs_db = vs.pp("down_blocks");
        let mut down = Vec::with_capacity(n);
        for i in 0..n {
            let BlockConfig { out_channels, use_cross_attn, attention_head_dim } = config.blocks[i];
            let in_channels = if i > 0 { config.blocks[i - 1].out_channels } else { b_channels };
            let db_cfg = DownBlock2DConfig {
                num_layers: config.layers_per_block,
                resnet_eps: config.norm_eps,
                resnet_groups: config.norm_num_groups,
                add_downsample: i < n - 1,
                downsample_padding: config.downsample_padding,
                ..Default::default()
            };
            down.push(match use_cross_attn {
                Some(transformer_layers_per_block) => Down::CrossAttn(CrossAttnDownBlock2D::new(
                    vs_db.pp(i.to_string()),
                    in_channels,
                    out_channels,
                    Some(time_embed_dim),
                    use_flash_attn,
                    CrossAttnDownBlock2DConfig {
                        downblock: db_cfg,
                        attn_num_head_channels: attention_head_dim,
                        cross_attention_dim: config.cross_attention_dim,
                        sliced_attention_size: None,
                        use_linear_projection: config.use_linear_projection,
                        transformer_layers_per_block,
                    },
                )?),
                None => Down::Basic(DownBlock2D::new(
                    vs_db.pp(i.to_string()),
                    in_channels,
                    out_channels,
                    Some(time_embed_dim),
                    db_cfg,
                )?),
            });
        }

        let mid = UNetMidBlock2DCrossAttn::new(
            vs.pp("mid_block"),
            last.out_channels,
            Some(time_embed_dim),
            use_flash_attn,
            UNetMidBlock2DCrossAttnConfig {
                resnet_eps: config.norm_eps,
                output_scale_factor: config.mid_block_scale_factor,
                cross_attn_dim: config.cross_attention_dim,
                attn_num_head_channels: last.attention_head_dim,
                resnet_groups: Some(config.norm_num_groups),
                use_linear_projection: config.use_linear_projection,
                transformer_layers_per_block: last.use_cross_attn.unwrap_or(1),
                ..Default::default()
            },
        )?;

        let vs_ub = vs.pp("up_blocks");
        let mut up = Vec::with_capacity(n);
        for i in 0..n {
            let BlockConfig { out_channels, use_cross_attn, attention_head_dim } = config.blocks[n - 1 - i];
            let prev_out_channels = if i > 0 { config.blocks[n - i].out_channels } else { last.out_channels };
            let in_channels = config.blocks[if i == n - 1 { 0 } else { n - i - 2 }].out_channels;
            let ub_cfg = UpBlock2DConfig {
                num_layers: config.layers_per_block + 1,
                resnet_eps: config.norm_eps,
                resnet_groups: config.norm_num_groups,
                add_upsample: i < n - 1,
                ..Default::default()
            };
            up.push(match use_cross_attn {
                Some(transformer_layers_per_block) => Up::CrossAttn(CrossAttnUpBlock2D::new(
                    vs_ub.pp(i.to_string()),
                    in_channels,
                    prev_out_channels,
                    out_channels,
                    Some(time_embed_dim),
                    use_flash_attn,
                    CrossAttnUpBlock2DConfig {
                        upblock: ub_cfg,
                        attn_num_head_channels: attention_head_dim,
                        cross_attention_dim: config.cross_attention_dim,
                        sliced_attention_size: None,
                        use_linear_projection: config.use_linear_projection,
                        transformer_layers_per_block,
                    },
                )?),
                None => Up::Basic(UpBlock2D::new(
                    vs_ub.pp(i.to_string()),
                    in_channels,
                    prev_out_channels,
                    out_channels,
                    Some(time_embed_dim),
                    ub_cfg,
                )?),
            });
        }
        let conv_norm_out =
            nn::group_norm(config.norm_num_groups, b_channels, config.norm_eps, vs.pp("conv_norm_out"))?;
        let conv_out = nn::conv2d(b_channels, spec.out_channels, 3, conv_cfg, vs.pp("conv_out"))?;
        let layers_per_block = config.layers_per_block;
        Ok(Self {
            conv_in,
            time_proj,
            time_embedding,
            add,
            down,
            mid,
            up,
            conv_norm_out,
            conv_out,
            config,
            layers_per_block,
        })
    }

    /// Whether the model needs [`TextTime`] conditioning (SDXL).
    pub fn needs_text_time(&self) -> bool {
        self.add.is_some()
    }

    /// The predicted noise (or v, or sample) for latents `xs` `(batch, c, h, w)`
    /// at `timestep`, conditioned on `context` `(batch, seq, cross_attention_dim)`
    /// and, for SDXL, `text_time`.
    pub fn forward(&self, xs: &Tensor, timestep: f64, context: &Tensor, text_time: Option<TextTime>) -> Result<Tensor> {
        let (batch, _, height, width) = xs.dims4()?;
        let dtype = xs.dtype();
        let device = xs.device();
        let n = self.config.blocks.len();
        let up_factor = 1usize << (n - 1);
        let forward_upsample_size = !height.is_multiple_of(up_factor) || !width.is_multiple_of(up_factor);
        let xs = if self.config.center_input_sample { ((xs * 2.0)? - 1.0)? } else { xs.clone() };

        // 1. time (and SDXL's added conditioning); projections in f32.
        let t = (Tensor::ones(batch, DType::F32, device)? * timestep)?;
        let mut emb = self.time_embedding.forward(&self.time_proj.forward(&t)?.to_dtype(dtype)?)?;
        match (&self.add, text_time) {
            (Some(add), Some(tt)) => {
                let ids = tt.time_ids.to_dtype(DType::F32)?.flatten_all()?;
                let time_embeds = add.time_proj.forward(&ids)?.reshape((batch, ()))?;
                let add_embeds = Tensor::cat(&[&tt.text_embeds.to_dtype(DType::F32)?, &time_embeds], 1)?;
                emb = (emb + add.embedding.forward(&add_embeds.to_dtype(dtype)?)?)?;
            }
            (Some(_), None) => {
                candle_core::bail!(
                    "this UNet (addition_embed_type text_time) needs pooled text embeddings and time ids"
                )
            }
            (None, _) => {}
        }

        // 2. pre-process
        let xs = self.conv_in.forward(&xs)?;
        // 3. down
        let mut res = vec![xs.clone()];
        let mut xs = xs;
        for block in &self.down {
            let (out, block_res) = match block {
                Down::Basic(b) => b.forward(&xs, Some(&emb))?,
                Down::CrossAttn(b) => b.forward(&xs, Some(&emb), Some(context))?,
            };
            res.extend(block_res);
            xs = out;
        }
        // 4. mid
        let mut xs = self.mid.forward(&xs, Some(&emb), Some(context))?;
        // 5. up
        let mut upsample_size = None;
        for (i, block) in self.up.iter().enumerate() {
            let skip = res.split_off(res.len() - (self.layers_per_block + 1));
            if i < n - 1 && forward_upsample_size {
                let (_, _, h, w) = res.last().expect("skip connections left for the next block").dims4()?;
                upsample_size = Some((h, w));
            }
            xs = match block {
                Up::Basic(b) => b.forward(&xs, &skip, Some(&emb), upsample_size)?,
                Up::CrossAttn(b) => b.forward(&xs, &skip, Some(&emb), upsample_size, Some(context))?,
            };
        }
        // 6. post-process
        let xs = nn::ops::silu(&self.conv_norm_out.forward(&xs)?)?;
        self.conv_out.forward(&xs)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::Device;
    use candle_nn::{VarBuilder, VarMap};
    use candle_transformers::models::stable_diffusion::unet_2d::UNet2DConditionModel;

    use super::*;

    fn spec(text_time: Option<TextTimeSpec>) -> UnetSpec {
        let config = UNet2DConditionModelConfig {
            blocks: vec![
                BlockConfig { out_channels: 32, use_cross_attn: None, attention_head_dim: 2 },
                BlockConfig { out_channels: 64, use_cross_attn: Some(2), attention_head_dim: 4 },
            ],
            layers_per_block: 1,
            norm_num_groups: 8,
            cross_attention_dim: 24,
            use_linear_projection: true,
            ..Default::default()
        };
        UnetSpec { config, in_channels: 4, out_channels: 4, text_time, sample_size: None }
    }

    /// Every tensor candle's UNet reads, with seeded random values.
    fn weights(s: &UnetSpec, extra: bool) -> HashMap<String, Tensor> {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        if extra {
            Unet::new(vb, s, false).unwrap();
        } else {
            UNet2DConditionModel::new(vb, s.in_channels, s.out_channels, false, s.config.clone()).unwrap();
        }
        let mut rng = crate::model::rng::NoiseRng::new(9);
        let data = map.data().lock().unwrap();
        let mut names: Vec<_> = data.keys().cloned().collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let t = rng.randn(data[&name].as_tensor().dims(), &Device::Cpu).unwrap();
                (name, (t * 0.1).unwrap())
            })
            .collect()
    }

    #[test]
    fn equals_candles_unet_without_added_conditioning() {
        let s = spec(None);
        let w = weights(&s, false);
        let vb = VarBuilder::from_tensors(w, DType::F32, &Device::Cpu);
        let ours = Unet::new(vb.clone(), &s, false).unwrap();
        let theirs = UNet2DConditionModel::new(vb, 4, 4, false, s.config.clone()).unwrap();
        let mut rng = crate::model::rng::NoiseRng::new(1);
        let x = rng.randn(&[2, 4, 8, 12], &Device::Cpu).unwrap();
        let ctx = rng.randn(&[2, 5, 24], &Device::Cpu).unwrap();
        for t in [999.0, 1.0] {
            let a = ours.forward(&x, t, &ctx, None).unwrap();
            let b = theirs.forward(&x, t, &ctx).unwrap();
            let diff = (a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "t={t}: max difference {diff}");
        }
    }

    #[test]
    fn text_time_conditioning_is_read_and_changes_the_output() {
        let s = spec(Some(TextTimeSpec { time_embed_dim: 8, input_dim: 12 + 6 * 8 }));
        let w = weights(&s, true);
        assert!(w.contains_key("add_embedding.linear_1.weight"));
        assert_eq!(w["add_embedding.linear_1.weight"].dims(), &[128, 60]);
        let unet = Unet::new(VarBuilder::from_tensors(w, DType::F32, &Device::Cpu), &s, false).unwrap();
        assert!(unet.needs_text_time());
        let mut rng = crate::model::rng::NoiseRng::new(2);
        let x = rng.randn(&[1, 4, 8, 8], &Device::Cpu).unwrap();
        let ctx = rng.randn(&[1, 5, 24], &Device::Cpu).unwrap();
        let pooled = rng.randn(&[1, 12], &Device::Cpu).unwrap();
        let ids = |h: f32| Tensor::new(&[[h, h, 0.0, 0.0, h, h]], &Device::Cpu).unwrap();
        let run = |ids: &Tensor| {
            unet.forward(&x, 500.0, &ctx, Some(TextTime { text_embeds: &pooled, time_ids: ids })).unwrap()
        };
        let (a, b) = (run(&ids(512.0)), run(&ids(1024.0)));
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff > 1e-4, "time ids must condition the output");
        assert!(unet.forward(&x, 500.0, &ctx, None).is_err(), "SDXL without its conditioning is refused");
    }
}
