//! The VAE's encoder half, ours: candle's `AutoEncoderKL::encode` returns a
//! distribution whose mean is private and whose `sample` draws from the
//! device's unseeded generator, so an edit could never be reproduced from its
//! seed. This module reads the same tensors (diffusers names: `encoder.*`,
//! `quant_conv`), built from candle's public blocks, and samples the latent
//! from our seeded [`NoiseRng`].

use candle_core::{Result, Tensor};
use candle_nn::{self as nn, Module, VarBuilder};
use candle_transformers::models::stable_diffusion::unet_2d_blocks::{
    DownEncoderBlock2D, DownEncoderBlock2DConfig, UNetMidBlock2D, UNetMidBlock2DConfig,
};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKLConfig;

use super::rng::NoiseRng;

/// Image → latent distribution parameters (mean and log-variance).
#[derive(Debug)]
pub struct VaeEncoder {
    conv_in: nn::Conv2d,
    down_blocks: Vec<DownEncoderBlock2D>,
    mid_block: UNetMidBlock2D,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2d,
    quant_conv: Option<nn::Conv2d>,
}

/// The encoder's output: a diagonal Gaussian over latents.
#[derive(Debug, Clone)]
pub struct LatentDist {
    /// Mean, `[1, latent_channels, h, w]`.
    pub mean: Tensor,
    /// Standard deviation, same shape.
    pub std: Tensor,
}

impl LatentDist {
    /// `mean + std · ε` with ε from `rng` (diffusers' `latent_dist.sample(generator)`).
    pub fn sample(&self, rng: &mut NoiseRng) -> Result<Tensor> {
        let eps = rng.randn(self.mean.dims(), self.mean.device())?.to_dtype(self.mean.dtype())?;
        &self.mean + (&self.std * eps)?
    }
}

impl VaeEncoder {
    /// Reads the encoder from a VAE's variable builder (the root of
    /// `vae/diffusion_pytorch_model.safetensors`), mirroring diffusers' `Encoder`.
    pub fn new(vb: VarBuilder, in_channels: usize, config: &AutoEncoderKLConfig) -> Result<Self> {
        let enc = vb.pp("encoder");
        let channels = &config.block_out_channels;
        let first = *channels.first().ok_or_else(|| candle_core::Error::Msg("block_out_channels is empty".into()))?;
        let last = *channels.last().unwrap_or(&first);
        let pad1 = nn::Conv2dConfig { padding: 1, ..Default::default() };
        let conv_in = nn::conv2d(in_channels, first, 3, pad1, enc.pp("conv_in"))?;
        let mut down_blocks = Vec::with_capacity(channels.len());
        for (i, &out) in channels.iter().enumerate() {
            let cfg = DownEncoderBlock2DConfig {
                num_layers: config.layers_per_block,
                resnet_eps: 1e-6,
                resnet_groups: config.norm_num_groups,
                add_downsample: i + 1 != channels.len(),
                // diffusers pads the downsampling conv asymmetrically itself.
                downsample_padding: 0,
                ..Default::default()
            };
            let input = if i == 0 { first } else { channels[i - 1] };
            down_blocks.push(DownEncoderBlock2D::new(enc.pp(format!("down_blocks.{i}")), input, out, cfg)?);
        }
        let mid_cfg = UNetMidBlock2DConfig {
            resnet_eps: 1e-6,
            output_scale_factor: 1.,
            attn_num_head_channels: None,
            resnet_groups: Some(config.norm_num_groups),
            ..Default::default()
        };
        let mid_block = UNetMidBlock2D::new(enc.pp("mid_block"), last, None, mid_cfg)?;
        let conv_norm_out = nn::group_norm(config.norm_num_groups, last, 1e-6, enc.pp("conv_norm_out"))?;
        let latent2 = 2 * config.latent_channels;
        let conv_out = nn::conv2d(last, latent2, 3, pad1, enc.pp("conv_out"))?;
        let quant_conv = if config.use_quant_conv {
            Some(nn::conv2d(latent2, latent2, 1, Default::default(), vb.pp("quant_conv"))?)
        } else {
            None
        };
        Ok(Self { conv_in, down_blocks, mid_block, conv_norm_out, conv_out, quant_conv })
    }

    /// Encodes `[1, 3, H, W]` pixels in -1..1.
    pub fn encode(&self, image: &Tensor) -> Result<LatentDist> {
        let mut xs = image.apply(&self.conv_in)?;
        for block in &self.down_blocks {
            xs = xs.apply(block)?;
        }
        let xs = self.mid_block.forward(&xs, None)?.apply(&self.conv_norm_out)?;
        let mut xs = nn::ops::silu(&xs)?.apply(&self.conv_out)?;
        if let Some(q) = &self.quant_conv {
            xs = q.forward(&xs)?;
        }
        let halves = xs.chunk(2, 1)?;
        // diffusers clamps the log-variance to [-30, 20] before exponentiating.
        let logvar = halves[1].clamp(-30f32, 20f32)?;
        Ok(LatentDist { mean: halves[0].clone(), std: (logvar * 0.5)?.exp()? })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;

    use super::*;

    fn config() -> AutoEncoderKLConfig {
        AutoEncoderKLConfig {
            block_out_channels: vec![32, 64],
            layers_per_block: 2,
            latent_channels: 4,
            norm_num_groups: 8,
            use_quant_conv: true,
            use_post_quant_conv: true,
        }
    }

    /// Random weights for the whole VAE (names from candle's own builder), with
    /// the log-variance half of `quant_conv` forced to -60 so candle's
    /// unseeded sample collapses onto its (private) mean: then the sample *is*
    /// the mean, and ours can be compared against it.
    fn weights(c: &AutoEncoderKLConfig) -> HashMap<String, Tensor> {
        let map = VarMap::new();
        AutoEncoderKL::new(VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu), 3, 3, c.clone()).unwrap();
        let mut rng = NoiseRng::new(11);
        let vars = map.data().lock().unwrap();
        let mut out = HashMap::new();
        for (name, var) in vars.iter() {
            let dims = var.as_tensor().dims().to_vec();
            let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
            let t = rng.randn(&dims, &Device::Cpu).unwrap().affine(1.0 / (fan_in as f64).sqrt(), 0.0).unwrap();
            out.insert(name.clone(), t);
        }
        let l = c.latent_channels;
        let w = out["quant_conv.weight"].clone();
        let keep = w.narrow(0, 0, l).unwrap();
        let zero = Tensor::zeros((l, 2 * l, 1, 1), DType::F32, &Device::Cpu).unwrap();
        out.insert("quant_conv.weight".into(), Tensor::cat(&[&keep, &zero], 0).unwrap());
        let b = out["quant_conv.bias"].narrow(0, 0, l).unwrap();
        let low = Tensor::full(-60f32, l, &Device::Cpu).unwrap();
        out.insert("quant_conv.bias".into(), Tensor::cat(&[&b, &low], 0).unwrap());
        out
    }

    #[test]
    fn mean_equals_candles_encoder_on_shared_random_weights() {
        let c = config();
        let vb = VarBuilder::from_tensors(weights(&c), DType::F32, &Device::Cpu);
        let theirs = AutoEncoderKL::new(vb.clone(), 3, 3, c.clone()).unwrap();
        let ours = VaeEncoder::new(vb, 3, &c).unwrap();
        let image = NoiseRng::new(5).randn(&[1, 3, 32, 48], &Device::Cpu).unwrap().tanh().unwrap();
        let b = theirs.encode(&image).unwrap().sample().unwrap();
        let dist = ours.encode(&image).unwrap();
        assert_eq!(dist.mean.dims(), &[1, 4, 16, 24]);
        let diff = (&dist.mean - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(scale > 1e-3, "degenerate output {scale}");
        assert!(diff <= 1e-5 * scale.max(1.0), "max difference {diff} (scale {scale})");
        // diffusers' clamp: log-variance -60 becomes -30, std e^-15.
        let std = dist.std.max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!((std - (-15f32).exp()).abs() < 1e-9, "std {std}");
    }

    #[test]
    fn sampling_is_seeded() {
        let c = config();
        let vb = VarBuilder::from_tensors(weights(&c), DType::F32, &Device::Cpu);
        let ours = VaeEncoder::new(vb, 3, &c).unwrap();
        let image = NoiseRng::new(5).randn(&[1, 3, 16, 16], &Device::Cpu).unwrap();
        let mut dist = ours.encode(&image).unwrap();
        dist.std = dist.std.ones_like().unwrap();
        let draw = |seed| dist.sample(&mut NoiseRng::new(seed)).unwrap().flatten_all().unwrap().to_vec1::<f32>();
        assert_eq!(draw(1).unwrap(), draw(1).unwrap());
        assert_ne!(draw(1).unwrap(), draw(2).unwrap());
    }
}
