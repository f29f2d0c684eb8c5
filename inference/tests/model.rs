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
    for kind in [SamplerKind::Ddim, SamplerKind::Euler, SamplerKind::EulerAncestral] {
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
