//! The real loading path and pipeline on the tiny model written by
//! `tiny::write` (the code behind `edge-inference tiny-model`).

use std::ops::ControlFlow;
use std::path::Path;

use edge_inference::model::pipeline::Params;
use edge_inference::model::schedulers::SamplerKind;
use edge_inference::model::{LoadOptions, Model};

fn tiny() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    edge_inference::tiny::write(dir.path()).unwrap();
    dir
}

fn params(seed: u64, width: usize, height: usize) -> Params {
    Params {
        prompt: "a rusty robot holding a candle".into(),
        negative_prompt: "blurry".into(),
        width,
        height,
        steps: 2,
        guidance_scale: 7.5,
        seed,
    }
}

fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("valid PNG header");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("valid PNG data");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn generates_a_png_of_the_requested_size_and_a_seed_reproduces_it() {
    let dir = tiny();
    let model = Model::load(dir.path(), &LoadOptions::default()).unwrap();
    let mut steps = Vec::new();
    let a = model
        .generate(&params(42, 64, 64), |s| {
            steps.push((s.index, s.total));
            ControlFlow::Continue(())
        })
        .unwrap()
        .to_png();
    assert_eq!(steps, vec![(0, 2), (1, 2)]);
    let (w, h, pixels) = decode(&a);
    assert_eq!((w, h), (64, 64));
    // Random weights still give an image, not a flat field.
    assert!(pixels.iter().any(|p| *p != pixels[0]), "every pixel is {}", pixels[0]);

    let b = model.generate(&params(42, 64, 64), |_| ControlFlow::Continue(())).unwrap().to_png();
    assert_eq!(a, b, "same seed, different bytes");
    let c = model.generate(&params(43, 64, 64), |_| ControlFlow::Continue(())).unwrap().to_png();
    assert_ne!(a, c, "another seed gave the same image");

    // A second load of the same directory (a new process in production) agrees too.
    let again = Model::load(dir.path(), &LoadOptions::default()).unwrap();
    let d = again.generate(&params(42, 64, 64), |_| ControlFlow::Continue(())).unwrap().to_png();
    assert_eq!(a, d);

    let wide = model.generate(&params(1, 96, 40), |_| ControlFlow::Continue(())).unwrap().to_png();
    let (w, h, _) = decode(&wide);
    assert_eq!((w, h), (96, 40));
}

#[test]
fn the_tiny_model_is_the_same_every_time_it_is_written() {
    let (a, b) = (tiny(), tiny());
    for f in ["unet/diffusion_pytorch_model.safetensors", "tokenizer/vocab.json", "text_encoder/model.safetensors"] {
        let same = std::fs::read(a.path().join(f)).unwrap() == std::fs::read(b.path().join(f)).unwrap();
        assert!(same, "{f} differs between two writes");
    }
}

#[test]
fn every_sampler_runs_and_guidance_off_is_single_pass() {
    let dir = tiny();
    for kind in SamplerKind::ALL {
        let options = LoadOptions { sampler: Some(kind), ..LoadOptions::default() };
        let model = Model::load(dir.path(), &options).unwrap();
        let mut p = params(5, 64, 64);
        let x = model.generate(&p, |_| ControlFlow::Continue(())).unwrap();
        assert_eq!(x, model.generate(&p, |_| ControlFlow::Continue(())).unwrap(), "{kind:?} not reproducible");
        // SD-Turbo style: one step, no guidance.
        p.steps = 1;
        p.guidance_scale = 0.0;
        let y = model.generate(&p, |_| ControlFlow::Continue(())).unwrap();
        assert_ne!(x, y, "{kind:?}");
    }
}

#[test]
fn a_step_callback_can_cancel() {
    let dir = tiny();
    let model = Model::load(dir.path(), &LoadOptions::default()).unwrap();
    let err = model.generate(&params(1, 64, 64), |_| ControlFlow::Break(())).unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
}

fn load_err(dir: &Path) -> String {
    match Model::load(dir, &LoadOptions::default()) {
        Ok(_) => panic!("loaded a broken model from {}", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

#[test]
fn a_broken_directory_fails_at_load_naming_the_path_and_reason() {
    // A missing weights file.
    let dir = tiny();
    std::fs::remove_file(dir.path().join("vae/diffusion_pytorch_model.safetensors")).unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("vae") && err.contains("no weights file"), "{err}");

    // A missing config.
    let dir = tiny();
    std::fs::remove_file(dir.path().join("unet/config.json")).unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("unet/config.json") && err.contains("cannot read"), "{err}");

    // Weights whose shapes do not match the config.
    let dir = tiny();
    edit_json(&dir.path().join("unet/config.json"), |v| v["block_out_channels"] = serde_json::json!([32, 48]));
    let err = load_err(dir.path());
    assert!(err.contains("unet/diffusion_pytorch_model.safetensors") && err.contains("shape"), "{err}");

    // A field we do not support.
    let dir = tiny();
    edit_json(&dir.path().join("unet/config.json"), |v| v["act_fn"] = serde_json::json!("mish"));
    let err = load_err(dir.path());
    assert!(err.contains("unet/config.json") && err.contains("act_fn") && err.contains("silu"), "{err}");

    // Parts that do not fit together.
    let dir = tiny();
    edit_json(&dir.path().join("unet/config.json"), |v| v["cross_attention_dim"] = serde_json::json!(64));
    let err = load_err(dir.path());
    assert!(err.contains("cross_attention_dim 64") && err.contains("hidden_size 32"), "{err}");

    // A tokenizer without its merges.
    let dir = tiny();
    std::fs::remove_file(dir.path().join("tokenizer/merges.txt")).unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("tokenizer/merges.txt"), "{err}");
}

/// The tiny model is written by one user (an image build, `up`'s first run)
/// and may be read by another (the non-root worker): every file readable.
#[test]
fn every_file_of_the_tiny_model_is_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tiny();
    let mut seen = 0;
    let mut stack = vec![dir.path().to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                seen += 1;
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(mode & 0o044, 0o044, "{} is {mode:o}", entry.path().display());
            }
        }
    }
    assert!(seen >= 8, "only {seen} files written");
}

fn tiny_arch(arch: edge_inference::tiny::Arch) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    edge_inference::tiny::write_arch(dir.path(), arch).unwrap();
    dir
}

/// A checkout whose UNet comes in shards (`*.safetensors.index.json`, as
/// diffusers saves large models) loads and draws the same image.
#[test]
fn sharded_weights_load_like_one_file() {
    let dir = tiny_arch(edge_inference::tiny::Arch::Sdxl);
    let p = params(3, 64, 64);
    let whole = Model::load(dir.path(), &LoadOptions::default()).unwrap();
    let a = whole.generate(&p, |_| ControlFlow::Continue(())).unwrap().to_png();

    let unet = dir.path().join("unet");
    let file = unet.join("diffusion_pytorch_model.safetensors");
    let tensors = candle_core::safetensors::load(&file, &candle_core::Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut map = serde_json::Map::new();
    for (i, chunk) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let shard = format!("diffusion_pytorch_model-0000{}-of-00002.safetensors", i + 1);
        let part: std::collections::HashMap<String, candle_core::Tensor> =
            chunk.iter().map(|n| ((*n).clone(), tensors[*n].clone())).collect();
        candle_core::safetensors::save(&part, unet.join(&shard)).unwrap();
        for n in chunk {
            map.insert((*n).clone(), shard.clone().into());
        }
    }
    std::fs::remove_file(&file).unwrap();
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(unet.join("diffusion_pytorch_model.safetensors.index.json"), index.to_string()).unwrap();
    let sharded = Model::load(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(sharded.generate(&p, |_| ControlFlow::Continue(())).unwrap().to_png(), a);

    // A shard the index names but the checkout lacks: refused, naming it.
    std::fs::remove_file(unet.join("diffusion_pytorch_model-00002-of-00002.safetensors")).unwrap();
    let err = Model::load(dir.path(), &LoadOptions::default()).err().unwrap().to_string();
    assert!(err.contains("00002-of-00002") && err.contains("missing"), "{err}");
}

/// Keys a newer diffusers adds to config.json are logged and ignored; values
/// that would change the model are still refused by name.
#[test]
fn unknown_config_keys_warn_instead_of_refusing() {
    let dir = tiny_arch(edge_inference::tiny::Arch::SdTurbo);
    for part in ["unet/config.json", "vae/config.json", "text_encoder/config.json", "scheduler/scheduler_config.json"] {
        let path = dir.path().join(part);
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["a_key_from_diffusers_0_99"] = serde_json::json!({"nested": true});
        std::fs::write(&path, v.to_string()).unwrap();
    }
    Model::load(dir.path(), &LoadOptions::default()).unwrap();
    let path = dir.path().join("unet/config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["time_cond_proj_dim"] = serde_json::json!(256);
    std::fs::write(&path, v.to_string()).unwrap();
    let err = Model::load(dir.path(), &LoadOptions::default()).err().unwrap().to_string();
    assert!(err.contains("time_cond_proj_dim"), "{err}");
}

/// SDXL conditions on both encoders side by side and a pooled embedding;
/// an empty negative prompt is zeros (force_zeros_for_empty_prompt).
#[test]
fn sdxl_conditioning_has_both_encoders_and_pooled_embeddings() {
    let dir = tiny_arch(edge_inference::tiny::Arch::Sdxl);
    let m = Model::load(dir.path(), &LoadOptions::default()).unwrap();
    assert!(m.second.is_some() && m.unet.needs_text_time() && m.zeros_for_empty_negative);
    let c = m.condition("a cat", "", true).unwrap();
    assert_eq!(c.context.dims(), &[2, 77, 64], "32 + 32 wide, negative then positive");
    let pooled = c.pooled.expect("pooled embeddings");
    assert_eq!(pooled.dims(), &[2, 32]);
    let neg = pooled.get(0).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(neg, 0.0, "an empty negative prompt is zeros");
    let c = m.condition("a cat", "blurry", true).unwrap();
    let neg = c.pooled.unwrap().get(0).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(neg > 0.0);
    // SD 2.x: one encoder, no pooled embedding.
    let sd = Model::load(tiny_arch(edge_inference::tiny::Arch::Sd21).path(), &LoadOptions::default()).unwrap();
    let c = sd.condition("a cat", "", false).unwrap();
    assert_eq!((c.context.dims(), c.pooled.is_none()), (&[1usize, 77, 32][..], true));
}

/// A batch runs every image in one UNet call per step; each image keeps its
/// own prompt and seed, so it is the image it would be alone (to the last
/// bit of rounding: compared pixel by pixel within 1).
#[test]
fn a_batch_gives_each_image_its_own_seed_and_prompt() {
    for arch in [edge_inference::tiny::Arch::Default, edge_inference::tiny::Arch::Sdxl] {
        let dir = tiny_arch(arch);
        let m = Model::load(dir.path(), &LoadOptions::default()).unwrap();
        let mut a = params(5, 64, 64);
        let mut b = params(6, 64, 64);
        b.prompt = "a blue cat".into();
        for guidance in [0.0, 7.5] {
            a.guidance_scale = guidance;
            b.guidance_scale = guidance;
            let mut steps = 0;
            let batch = m
                .generate_batch(&[a.clone(), b.clone()], |_| {
                    steps += 1;
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(steps, a.steps, "one callback per step for the batch");
            for (img, p) in batch.iter().zip([&a, &b]) {
                let alone = m.generate(p, |_| ControlFlow::Continue(())).unwrap();
                let worst = img.rgb.iter().zip(&alone.rgb).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
                assert!(worst <= 1, "{arch:?} guidance {guidance} seed {}: off by {worst}", p.seed);
            }
            assert_ne!(batch[0].rgb, batch[1].rgb);
        }
        let mut c = params(7, 128, 64);
        c.guidance_scale = a.guidance_scale;
        assert!(m.generate_batch(&[a.clone(), c], |_| ControlFlow::Continue(())).is_err(), "one size per batch");
    }
}
