//! A CLIP text encoder whose size comes from `text_encoder/config.json`.
//!
//! candle-transformers' `clip::Config` only has presets (its fields are
//! private), so a checkout of another size — our tiny test model included —
//! needs its own module. Tensor names are the standard `transformers` ones
//! (`text_model.encoder.layers.N.self_attn.q_proj.weight`, …), so real
//! checkouts load unchanged; a test proves the output equal to candle's.

use candle_core::{D, DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};

/// The activation between the two MLP layers (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `quick_gelu`: x * sigmoid(1.702 x) (SD 1.x).
    QuickGelu,
    /// `gelu`: the exact, erf-based GELU (SD 2.x).
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
}

impl Activation {
    /// The `hidden_act` spellings we accept.
    pub const ALLOWED: &'static str = "quick_gelu, gelu, gelu_new, gelu_pytorch_tanh";

    /// Parses a `hidden_act` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "quick_gelu" => Some(Self::QuickGelu),
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Self::GeluTanh),
            _ => None,
        }
    }

    fn apply(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Self::Gelu => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
        }
    }
}

/// The text encoder's shape, read from its `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    /// Vocabulary size (rows of the token embedding).
    pub vocab_size: usize,
    /// Width of the hidden states (`hidden_size`).
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Sequence length the prompt is padded to.
    pub max_position_embeddings: usize,
    /// MLP activation.
    pub activation: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// `CLIPTextModelWithProjection` (SDXL's second encoder): the width of
    /// `text_projection`, applied to the pooled output.
    pub projection_dim: Option<usize>,
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln1: LayerNorm,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The CLIP text transformer (`CLIPTextModel`, or `CLIPTextModelWithProjection`
/// with `projection_dim`), returning the hidden states that condition the UNet.
pub struct ClipTextEncoder {
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<Layer>,
    final_layer_norm: LayerNorm,
    text_projection: Option<Linear>,
    config: ClipConfig,
}

/// What SDXL takes from an encoder.
pub struct ClipOutput {
    /// The last layer's hidden states after the final layer norm (SD 1.x/2.x condition on these).
    pub last: Tensor,
    /// The second-to-last layer's hidden states, before any norm (transformers'
    /// `hidden_states[-2]`: SDXL conditions on these).
    pub penultimate: Tensor,
}

impl ClipTextEncoder {
    /// Builds the encoder from weights under `text_model.`.
    pub fn new(vb: VarBuilder, config: &ClipConfig) -> Result<Self> {
        let c = config;
        let vb = vb.pp("text_model");
        let emb = vb.pp("embeddings");
        let token_embedding = candle_nn::embedding(c.vocab_size, c.hidden_size, emb.pp("token_embedding"))?;
        let position_embedding =
            candle_nn::embedding(c.max_position_embeddings, c.hidden_size, emb.pp("position_embedding"))?;
        let ln = |vb: VarBuilder| candle_nn::layer_norm(c.hidden_size, c.layer_norm_eps, vb);
        let lin = |i, o, vb: VarBuilder| candle_nn::linear(i, o, vb);
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let vb = vb.pp("encoder.layers").pp(i.to_string());
                let attn = vb.pp("self_attn");
                let h = c.hidden_size;
                Ok(Layer {
                    q: lin(h, h, attn.pp("q_proj"))?,
                    k: lin(h, h, attn.pp("k_proj"))?,
                    v: lin(h, h, attn.pp("v_proj"))?,
                    out: lin(h, h, attn.pp("out_proj"))?,
                    ln1: ln(vb.pp("layer_norm1"))?,
                    ln2: ln(vb.pp("layer_norm2"))?,
                    fc1: lin(h, c.intermediate_size, vb.pp("mlp.fc1"))?,
                    fc2: lin(c.intermediate_size, h, vb.pp("mlp.fc2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let final_layer_norm = ln(vb.pp("final_layer_norm"))?;
        let text_projection = match c.projection_dim {
            Some(p) => Some(candle_nn::linear_no_bias(c.hidden_size, p, vb.root().pp("text_projection"))?),
            None => None,
        };
        Ok(Self {
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm,
            text_projection,
            config: config.clone(),
        })
    }

    /// `text_embeds` of `CLIPTextModelWithProjection`: the final hidden state at
    /// each sequence's first end token (`eos[b]`), through `text_projection`.
    /// `None` for an encoder without the projection.
    pub fn pooled(&self, last: &Tensor, eos: &[usize]) -> Result<Option<Tensor>> {
        let Some(proj) = &self.text_projection else { return Ok(None) };
        let rows = eos.iter().enumerate().map(|(b, &i)| last.i((b, i))?.unsqueeze(0)).collect::<Result<Vec<_>>>()?;
        Ok(Some(proj.forward(&Tensor::cat(&rows, 0)?)?))
    }

    /// The encoder's configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Hidden states `(batch, seq, hidden)` for token ids `(batch, seq)`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.forward_all(ids)?.last)
    }

    /// The last (normed) and the second-to-last hidden states.
    pub fn forward_all(&self, ids: &Tensor) -> Result<ClipOutput> {
        let (batch, seq) = ids.dims2()?;
        let device = ids.device();
        let positions = Tensor::arange(0u32, seq as u32, device)?.unsqueeze(0)?;
        let mut xs = self.token_embedding.forward(ids)?.broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let mask = causal_mask(seq, device)?;
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.hidden_size / heads;
        let scale = (head_dim as f64).powf(-0.5);
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((batch, seq, heads, head_dim))?.transpose(1, 2)?.contiguous()?.to_dtype(DType::F32)
        };
        let mut penultimate = xs.clone();
        for (n, layer) in self.layers.iter().enumerate() {
            if n + 1 == self.layers.len() {
                penultimate = xs.clone();
            }
            let residual = xs.clone();
            let h = layer.ln1.forward(&xs)?;
            let q = split((layer.q.forward(&h)? * scale)?)?;
            let k = split(layer.k.forward(&h)?)?;
            let v = split(layer.v.forward(&h)?)?;
            // Attention in f32 even for f16 weights: softmax over 77 tokens
            // with f16 logits loses the small weights.
            let att = q.matmul(&k.t()?)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let o = att.matmul(&v)?.to_dtype(xs.dtype())?.transpose(1, 2)?.reshape((
                batch,
                seq,
                self.config.hidden_size,
            ))?;
            xs = (layer.out.forward(&o)? + residual)?;
            let residual = xs.clone();
            let h = layer.ln2.forward(&xs)?;
            let h = layer.fc2.forward(&self.config.activation.apply(&layer.fc1.forward(&h)?)?)?;
            xs = (h + residual)?;
        }
        Ok(ClipOutput { last: self.final_layer_norm.forward(&xs)?, penultimate })
    }
}

fn causal_mask(seq: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> =
        (0..seq).flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(mask, (seq, seq), device)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_transformers::models::stable_diffusion::clip as candle_clip;

    use super::*;

    /// Random weights for every tensor the encoder reads, in the standard names.
    fn random_weights(c: &ClipConfig) -> HashMap<String, Tensor> {
        let dev = Device::Cpu;
        let mut w = HashMap::new();
        // candle's (optimised) generator: 340M values is too many for our
        // unoptimised test build, and equality needs no particular seed.
        let mut put = |name: String, shape: &[usize], std: f32| {
            w.insert(name, Tensor::randn(0f32, std, shape, &dev).unwrap());
        };
        let h = c.hidden_size;
        put("text_model.embeddings.token_embedding.weight".into(), &[c.vocab_size, h], 0.02);
        put("text_model.embeddings.position_embedding.weight".into(), &[c.max_position_embeddings, h], 0.01);
        for i in 0..c.num_hidden_layers {
            let p = format!("text_model.encoder.layers.{i}");
            for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                put(format!("{p}.self_attn.{proj}.weight"), &[h, h], 0.03);
                put(format!("{p}.self_attn.{proj}.bias"), &[h], 0.01);
            }
            for ln in ["layer_norm1", "layer_norm2"] {
                put(format!("{p}.{ln}.weight"), &[h], 0.1);
                put(format!("{p}.{ln}.bias"), &[h], 0.1);
            }
            put(format!("{p}.mlp.fc1.weight"), &[c.intermediate_size, h], 0.03);
            put(format!("{p}.mlp.fc1.bias"), &[c.intermediate_size], 0.01);
            put(format!("{p}.mlp.fc2.weight"), &[h, c.intermediate_size], 0.03);
            put(format!("{p}.mlp.fc2.bias"), &[h], 0.01);
        }
        put("text_model.final_layer_norm.weight".into(), &[h], 0.1);
        put("text_model.final_layer_norm.bias".into(), &[h], 0.1);
        w
    }

    /// SD 2.1's text encoder at full size (1024 wide, 23 layers, 16 heads),
    /// with the tanh GELU that candle's `Config::v2_1` preset uses, so both
    /// modules compute the same function on the same random weights.
    #[test]
    fn equals_candles_clip_on_sd21_sized_random_weights() {
        let config = ClipConfig {
            vocab_size: 49408,
            hidden_size: 1024,
            intermediate_size: 4096,
            num_hidden_layers: 23,
            num_attention_heads: 16,
            max_position_embeddings: 77,
            activation: Activation::GeluTanh,
            layer_norm_eps: 1e-5,
            projection_dim: None,
        };
        let weights = random_weights(&config);
        let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
        let ours = ClipTextEncoder::new(vb.clone(), &config).unwrap();
        let theirs = candle_clip::ClipTextTransformer::new(vb, &candle_clip::Config::v2_1()).unwrap();
        let ids: Vec<u32> = (0..77u32).map(|i| (i * 641 + 49406) % 49408).collect();
        let ids = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let a = ours.forward(&ids).unwrap();
        let b = theirs.forward(&ids).unwrap();
        assert_eq!(a.dims(), &[1, 77, 1024]);
        let diff = (a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff <= 1e-4 * scale.max(1.0), "max difference {diff} (output scale {scale})");
    }

    #[test]
    fn activations_differ_and_parse() {
        let x = Tensor::new(&[-1.5f32, 0.3, 2.0], &Device::Cpu).unwrap();
        let vals: Vec<Vec<f32>> = [Activation::QuickGelu, Activation::Gelu, Activation::GeluTanh]
            .iter()
            .map(|a| a.apply(&x).unwrap().to_vec1().unwrap())
            .collect();
        assert_ne!(vals[0], vals[1]);
        assert!((vals[1][2] - 1.9545).abs() < 1e-3, "{:?}", vals[1]);
        assert_eq!(Activation::parse("quick_gelu"), Some(Activation::QuickGelu));
        assert_eq!(Activation::parse("relu"), None);
    }
}
