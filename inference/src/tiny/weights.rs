//! The tiny and random models' weight writer: each part is built once on a
//! recorder that learns the tensors the loader asks for, then every tensor is
//! drawn from our seeded generator and streamed to its safetensors file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;
use serde_json::{Value, json};

use super::TinyError;
use crate::model::clip::ClipTextEncoder;
use crate::model::configs;
use crate::model::rng::NoiseRng;
use crate::model::unet::Unet;

/// Writes every part's weights for the configs already in `dir`, drawn from
/// `seed`, stored as `dtype`: `text_encoder[_2]/model.safetensors`,
/// `unet/` and `vae/diffusion_pytorch_model.safetensors`.
pub fn write_weights(dir: &Path, seed: u64, dtype: DType) -> Result<(), TinyError> {
    let mut rng = NoiseRng::new(seed);
    for part in parts(dir) {
        let file =
            if part.starts_with("text_encoder") { "model.safetensors" } else { "diffusion_pytorch_model.safetensors" };
        let wanted = record(dir, part)?;
        save_random(&dir.join(part).join(file), &wanted, &mut rng, dtype)?;
    }
    Ok(())
}

/// The tensors (name → shape) each part of the checkout in `dir` asks for,
/// from its configs alone: nothing is allocated, so this is cheap at full size.
pub fn plan(dir: &Path) -> Result<BTreeMap<String, BTreeMap<String, Vec<usize>>>, TinyError> {
    parts(dir)
        .into_iter()
        .map(|part| Ok((part.to_owned(), record(dir, part)?.into_iter().map(|(n, w)| (n, w.shape)).collect())))
        .collect()
}

/// The parts with weights, in the order their random values are drawn.
fn parts(dir: &Path) -> Vec<&'static str> {
    let mut parts = vec!["text_encoder", "unet", "vae"];
    if dir.join("text_encoder_2/config.json").is_file() {
        parts.push("text_encoder_2");
    }
    parts
}

/// Builds one part from its config, as the loader will, on a recorder: the
/// weights then have exactly the tensors and shapes the loader asks for.
pub(super) fn record(dir: &Path, part: &str) -> Result<BTreeMap<String, Wanted>, TinyError> {
    let config = dir.join(part).join(if part == "scheduler" { "scheduler_config.json" } else { "config.json" });
    let err = |source| TinyError::Weights { path: config.clone(), source };
    let recorder = Recorder::default();
    let vb = VarBuilder::from_backend(Box::new(recorder.clone()), DType::F32, Device::Cpu);
    match part {
        "unet" => {
            let spec = configs::unet(&config)?;
            Unet::new(vb, &spec, false).map(drop).map_err(err)?;
        }
        "vae" => {
            let spec = configs::vae(&config)?;
            AutoEncoderKL::new(vb, spec.in_channels, spec.out_channels, spec.config.clone()).map(drop).map_err(err)?;
        }
        _ => {
            let c = configs::clip(&config)?;
            ClipTextEncoder::new(vb, &c).map(drop).map_err(err)?;
        }
    }
    let wanted = recorder.0.lock().map_err(|_| err(candle_core::Error::Msg("recorder poisoned".into())))?.clone();
    Ok(wanted)
}

/// One tensor a part asks for.
#[derive(Debug, Clone)]
pub(super) struct Wanted {
    shape: Vec<usize>,
    init: Init,
}

/// A variable builder backend that records what the model asks for and
/// hands back zero-cost placeholders (a broadcast scalar), so building a
/// full-size SDXL UNet to learn its tensors allocates nothing.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<BTreeMap<String, Wanted>>>);

impl candle_nn::var_builder::SimpleBackend for Recorder {
    fn get(&self, s: Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let mut m = self.0.lock().map_err(|_| candle_core::Error::Msg("recorder poisoned".into()))?;
        // A later ask for the same name (a linear after a probe of its shape) sets its init.
        m.insert(name.to_owned(), Wanted { shape: s.dims().to_vec(), init });
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: the recorder needs a shape")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        // The VAE's attention takes diffusers' current names (to_q, to_k, to_v, to_out.0) when
        // the checkout has them, as diffusers itself writes them.
        name.ends_with("to_q.weight")
    }
}

/// Draws every non-constant one from our
/// seeded generator (constants, such as norm weights and zero biases, keep
/// their value) and streams them to a safetensors file as `dtype`.
pub(super) fn save_random(
    path: &Path,
    wanted: &BTreeMap<String, Wanted>,
    rng: &mut NoiseRng,
    dtype: DType,
) -> Result<(), TinyError> {
    let err = |source| TinyError::Weights { path: path.into(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| TinyError::Write { path: parent.into(), source })?;
    }
    let io = |source| TinyError::Write { path: path.into(), source };
    let (tag, width) = match dtype {
        DType::F16 => ("F16", 2),
        DType::F32 => ("F32", 4),
        other => return Err(err(candle_core::Error::Msg(format!("cannot write {other:?} weights")))),
    };
    // The safetensors layout: a little-endian u64 header length, the JSON header
    // (name -> dtype, shape, byte range), then the tensors' bytes in that order.
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0usize;
    for (name, w) in wanted {
        let bytes = w.shape.iter().product::<usize>() * width;
        header.insert(name.clone(), json!({"dtype": tag, "shape": w.shape, "data_offsets": [offset, offset + bytes]}));
        offset += bytes;
    }
    let mut text = serde_json::to_string(&Value::Object(header)).unwrap_or_default().into_bytes();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let file = std::fs::File::create(path).map_err(io)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    out.write_all(&(text.len() as u64).to_le_bytes()).map_err(io)?;
    out.write_all(&text).map_err(io)?;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    for w in wanted.values() {
        let n: usize = w.shape.iter().product();
        // The scale comes from the shape alone (1/sqrt(fan-in), 0.02 for vectors).
        let scale = match w.shape.as_slice() {
            [_] => 0.02,
            [_, rest @ ..] => 1.0 / (rest.iter().product::<usize>() as f64).sqrt(),
            [] => 1.0,
        } as f32;
        let constant = match w.init {
            Init::Const(v) => Some(v as f32),
            _ => None,
        };
        let mut left = n;
        while left > 0 {
            let chunk = left.min(1 << 18);
            buf.clear();
            for _ in 0..chunk {
                let v = constant.unwrap_or_else(|| rng.normal() * scale);
                match dtype {
                    DType::F16 => buf.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                    _ => buf.extend_from_slice(&v.to_le_bytes()),
                }
            }
            out.write_all(&buf).map_err(io)?;
            left -= chunk;
        }
    }
    out.flush().map_err(io)?;
    drop(out);
    // A model is not a secret, and the directory is often written by one user (an image
    // build, an init container) and read by another (the non-root worker): world-readable.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(|source| TinyError::Write { path: path.into(), source })
}
