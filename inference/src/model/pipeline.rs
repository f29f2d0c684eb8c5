//! Text to image: encode the prompt (and the negative prompt for
//! classifier-free guidance), denoise seeded latent noise step by step, decode
//! with the VAE.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use candle_core::{D, DType, Device, IndexOp, Tensor};

use super::Model;
use super::rng::NoiseRng;
use super::schedulers::Sampler;
use super::unet::TextTime;

/// What an edit starts from, already validated against the request's size.
#[derive(Debug, Clone, PartialEq)]
pub struct EditInput {
    /// The image to edit, at the request's size.
    pub image: Image,
    /// Repaint where 128 or more (one byte a pixel, same size); `None`: img2img.
    pub mask: Option<Vec<u8>>,
    /// How much to change, in (0, 1].
    pub strength: f64,
}

/// One image's settings, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// What to draw.
    pub prompt: String,
    /// What to steer away from (empty: unconditional).
    pub negative_prompt: String,
    /// Image width in pixels (a multiple of [`Model::size_multiple`]).
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Denoising steps.
    pub steps: usize,
    /// Classifier-free guidance scale; at or below 1 guidance is off (SD-Turbo uses 0).
    pub guidance_scale: f64,
    /// Fixes the initial noise and every later random draw.
    pub seed: u64,
}

/// A generated image, 8-bit RGB, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

/// Why a generation stopped.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A tensor operation failed (out of memory, device error, …).
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
    /// The caller asked to stop (its client went away).
    #[error("cancelled")]
    Cancelled,
}

/// What happened at one step, for the step callback.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// 0-based step index.
    pub index: usize,
    /// Steps in this generation.
    pub total: usize,
    /// How long the step (UNet + sampler) took.
    pub elapsed: Duration,
}

/// A prompt pair's text conditioning, ready for the UNet.
#[derive(Clone)]
pub struct Conditioning {
    /// `(batch, seq, cross_attention_dim)`: [negative; positive] when guided.
    pub context: Tensor,
    /// SDXL: `(batch, pooled_dim)` pooled embeddings, f32.
    pub pooled: Option<Tensor>,
}

impl Model {
    /// Generates one image. `on_step` runs after every denoising step and may
    /// stop the generation by returning `Break`.
    ///
    /// The latents and all sampler arithmetic stay in f32 whatever the model's
    /// type (as diffusers upcasts); only the UNet's input and the VAE's input
    /// are cast to the weights' type.
    pub fn generate(
        &self,
        p: &Params,
        on_step: impl FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Image, GenerateError> {
        let mut images = self.generate_batch(std::slice::from_ref(p), on_step)?;
        Ok(images.remove(0))
    }

    /// Generates several images of the same size, steps and guidance in one
    /// batch: one UNet call per step for all of them (twice the batch when
    /// guided). Each image keeps its own prompt and seed: its initial and
    /// ancestral noise come from its own generator. `on_step` runs once per
    /// step for the whole batch.
    pub fn generate_batch(
        &self,
        ps: &[Params],
        mut on_step: impl FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Vec<Image>, GenerateError> {
        let Some(p) = ps.first() else { return Ok(Vec::new()) };
        if self.is_inpainting() {
            // An inpainting UNet draws from text as an inpainting of everything.
            return ps
                .iter()
                .map(|p| {
                    let image = Image { width: p.width, height: p.height, rgb: vec![128; p.width * p.height * 3] };
                    let all = EditInput { image, mask: Some(vec![255; p.width * p.height]), strength: 1.0 };
                    self.edit(p, &all, &mut on_step)
                })
                .collect();
        }
        if ps.iter().any(|q| {
            (q.width, q.height, q.steps) != (p.width, p.height, p.steps) || q.guidance_scale != p.guidance_scale
        }) {
            return Err(GenerateError::Model(candle_core::Error::Msg(
                "a batch must share size, steps and guidance".into(),
            )));
        }
        let n = ps.len();
        let guided = p.guidance_scale > 1.0;
        let conds = ps
            .iter()
            .map(|q| self.condition(&q.prompt, &q.negative_prompt, guided))
            .collect::<candle_core::Result<Vec<_>>>()?;
        // [negatives...; positives...], so the guidance split is two halves.
        let half = |which: usize, t: &Tensor| -> candle_core::Result<Tensor> {
            if guided { t.narrow(0, which, 1) } else { Ok(t.clone()) }
        };
        let mut ctx_rows = Vec::with_capacity(2 * n);
        let mut pooled_rows = Vec::with_capacity(2 * n);
        for which in if guided { vec![0, 1] } else { vec![0] } {
            for c in &conds {
                ctx_rows.push(half(which, &c.context)?);
                if let Some(pooled) = &c.pooled {
                    pooled_rows.push(half(which, pooled)?);
                }
            }
        }
        let context = Tensor::cat(&ctx_rows, 0)?;
        let pooled = if pooled_rows.is_empty() { None } else { Some(Tensor::cat(&pooled_rows, 0)?) };
        let rows = if guided { 2 * n } else { n };
        let time_ids = match &pooled {
            Some(_) => {
                // original size, crop top-left, target size: the asked size, uncropped.
                let (h, w) = (p.height as f32, p.width as f32);
                let row = [h, w, 0.0, 0.0, h, w];
                Some(Tensor::new(&row, &self.device)?.unsqueeze(0)?.repeat((rows, 1))?)
            }
            None => None,
        };

        let mut sampler = self.scheduler.build(p.steps);
        let mut rngs: Vec<NoiseRng> = ps.iter().map(|q| NoiseRng::new(q.seed)).collect();
        let scale = self.size_multiple();
        let shape = [1, self.vae_spec.config.latent_channels, p.height / scale, p.width / scale];
        let noise = rngs.iter_mut().map(|r| r.randn(&shape, &self.device)).collect::<candle_core::Result<Vec<_>>>()?;
        let mut latents = (Tensor::cat(&noise, 0)? * sampler.init_noise_sigma())?;

        let timesteps = sampler.timesteps().to_vec();
        let total = timesteps.len();
        for (i, &t) in timesteps.iter().enumerate() {
            let started = Instant::now();
            let input = if guided { Tensor::cat(&[&latents, &latents], 0)? } else { latents.clone() };
            let input = sampler.scale_model_input(&input, i)?.to_dtype(self.dtype)?;
            let text_time = match (&pooled, &time_ids) {
                (Some(text_embeds), Some(time_ids)) => Some(TextTime { text_embeds, time_ids }),
                _ => None,
            };
            let out = self.unet.forward(&input, t, &context, text_time)?.to_dtype(DType::F32)?;
            let out = if guided {
                let (uncond, text) = (out.narrow(0, 0, n)?, out.narrow(0, n, n)?);
                (&uncond + ((text - &uncond)? * p.guidance_scale)?)?
            } else {
                out
            };
            latents = sampler.step_batch(&out, i, &latents, &mut rngs)?;
            // Block until the device is done so the step time is real (and progress is true).
            self.device.synchronize()?;
            if on_step(StepInfo { index: i, total, elapsed: started.elapsed() }).is_break() {
                return Err(GenerateError::Cancelled);
            }
        }
        (0..n).map(|b| self.decode(&latents.narrow(0, b, 1)?, p.width, p.height)).collect()
    }

    /// The text conditioning of `p` (negative and positive stacked when guidance is on).
    pub(super) fn context(&self, p: &Params) -> candle_core::Result<Conditioning> {
        self.condition(&p.prompt, &p.negative_prompt, p.guidance_scale > 1.0)
    }

    /// The (guided) UNet output at step `i` for one image's `latents` (any
    /// dtype; the output has the same). `extra` is concatenated to the scaled
    /// latents along channels (an inpainting UNet's mask and masked image).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn predict(
        &self,
        sampler: &Sampler,
        latents: &Tensor,
        i: usize,
        t: f64,
        cond: &Conditioning,
        guidance_scale: f64,
        extra: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let guided = cond.context.dim(0)? == 2;
        let input = if guided { Tensor::cat(&[latents, latents], 0)? } else { latents.clone() };
        let input = sampler.scale_model_input(&input, i)?.to_dtype(self.dtype)?;
        let input = match extra {
            Some(e) => Tensor::cat(&[&input, &Tensor::cat(&vec![&e.to_dtype(self.dtype)?; input.dim(0)?], 0)?], 1)?,
            None => input,
        };
        let time_ids = match &cond.pooled {
            Some(_) => {
                let (_, _, h, w) = latents.dims4()?;
                let scale = self.size_multiple() as f32;
                let (h, w) = (h as f32 * scale, w as f32 * scale);
                Some(Tensor::new(&[h, w, 0.0, 0.0, h, w], &self.device)?.unsqueeze(0)?.repeat((input.dim(0)?, 1))?)
            }
            None => None,
        };
        let text_time = match (&cond.pooled, &time_ids) {
            (Some(text_embeds), Some(time_ids)) => Some(TextTime { text_embeds, time_ids }),
            _ => None,
        };
        let out = self.unet.forward(&input, t, &cond.context, text_time)?.to_dtype(DType::F32)?;
        let out = if guided {
            let (uncond, text) = (out.i(0..1)?, out.i(1..2)?);
            (&uncond + ((text - &uncond)? * guidance_scale)?)?
        } else {
            out
        };
        out.to_dtype(latents.dtype())
    }

    /// The UNet's text conditioning for a prompt and (when guided) its negative.
    pub fn condition(&self, prompt: &str, negative: &str, guided: bool) -> candle_core::Result<Conditioning> {
        self.embed_cache.get_or_try(prompt, negative, guided, || self.encode_condition(prompt, negative, guided))
    }

    /// [`Self::condition`] without the cache.
    fn encode_condition(&self, prompt: &str, negative: &str, guided: bool) -> candle_core::Result<Conditioning> {
        let (ctx, pooled) = self.embed(prompt)?;
        if !guided {
            return Ok(Conditioning { context: ctx, pooled });
        }
        let (neg_ctx, neg_pooled) = if self.zeros_for_empty_negative && negative.is_empty() {
            (ctx.zeros_like()?, pooled.as_ref().map(Tensor::zeros_like).transpose()?)
        } else {
            self.embed(negative)?
        };
        let pooled = match (neg_pooled, pooled) {
            (Some(n), Some(p)) => Some(Tensor::cat(&[&n, &p], 0)?),
            _ => None,
        };
        Ok(Conditioning { context: Tensor::cat(&[&neg_ctx, &ctx], 0)?, pooled })
    }

    /// One text's hidden states (and SDXL's pooled embedding).
    fn embed(&self, text: &str) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let len = self.text_encoder.config().max_position_embeddings;
        let ids = self.tokenizer.encode_padded(text, len);
        let ids = Tensor::new(ids.as_slice(), &self.device)?.unsqueeze(0)?;
        let Some(second) = &self.second else {
            return Ok((self.text_encoder.forward(&ids)?, None));
        };
        // SDXL: both encoders' second-to-last hidden states side by side; the second's
        // projected final state at its end token is the pooled embedding.
        let first = self.text_encoder.forward_all(&ids)?.penultimate;
        let len2 = second.encoder.config().max_position_embeddings;
        let ids2 = second.tokenizer.encode_padded(text, len2);
        let eos = ids2.iter().position(|&t| t == second.tokenizer.eos).unwrap_or(len2 - 1);
        let ids2 = Tensor::new(ids2.as_slice(), &self.device)?.unsqueeze(0)?;
        let out = second.encoder.forward_all(&ids2)?;
        let pooled = second.encoder.pooled(&out.last, &[eos])?.map(|p| p.to_dtype(DType::F32)).transpose()?;
        let context = Tensor::cat(&[&first, &out.penultimate.to_dtype(first.dtype())?], D::Minus1)?;
        Ok((context, pooled))
    }

    pub(super) fn decode(&self, latents: &Tensor, width: usize, height: usize) -> Result<Image, GenerateError> {
        let z = (latents / self.vae_spec.scaling_factor)?.to_dtype(self.vae_dtype)?;
        let x = self.vae.decode(&z)?;
        let x = ((x.to_dtype(DType::F32)? / 2.0)? + 0.5)?.clamp(0f32, 1f32)?;
        let x = (x * 255.0)?.round()?.to_dtype(DType::U8)?.to_device(&Device::Cpu)?;
        let rgb = x.i(0)?.permute((1, 2, 0))?.flatten_all()?.to_vec1::<u8>()?;
        Ok(Image { width, height, rgb })
    }
}

impl Image {
    /// The image as PNG bytes (deterministic for the same pixels).
    pub fn to_png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        // Writing to a Vec cannot fail, and the sizes match by construction.
        let mut writer = enc.write_header().expect("PNG header into memory");
        writer.write_image_data(&self.rgb).expect("PNG data into memory");
        writer.finish().expect("PNG end into memory");
        out
    }
}
