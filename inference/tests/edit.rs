//! img2img and inpainting through the real pipeline, on the tiny model and on
//! the tiny inpainting models (9-channel UNet; SD 1.5, SD 2 and SDXL layouts), every sampler.

use std::ops::ControlFlow;

use edge_inference::model::edit::EditInput;
use edge_inference::model::pipeline::{Image, Params};
use edge_inference::model::schedulers::SamplerKind;
use edge_inference::model::{LoadOptions, Model};

const SIZE: usize = 64;

fn params(seed: u64, steps: usize) -> Params {
    Params {
        prompt: "a red car on a street".into(),
        negative_prompt: "blurry".into(),
        width: SIZE,
        height: SIZE,
        steps,
        guidance_scale: 7.5,
        seed,
    }
}

/// A smooth gradient, so the VAE sees a plausible image.
fn init_image() -> Image {
    let rgb = (0..SIZE * SIZE)
        .flat_map(|i| {
            let (x, y) = (i % SIZE, i / SIZE);
            [(x * 4) as u8, (y * 4) as u8, 128]
        })
        .collect();
    Image { width: SIZE, height: SIZE, rgb }
}

/// Repaints the right half.
fn right_half() -> Vec<u8> {
    (0..SIZE * SIZE).map(|i| if i % SIZE >= SIZE / 2 { 255 } else { 0 }).collect()
}

fn load(dir: &std::path::Path, sampler: SamplerKind) -> Model {
    Model::load(dir, &LoadOptions { sampler: Some(sampler), ..LoadOptions::default() }).unwrap()
}

fn edit(model: &Model, p: &Params, e: &EditInput) -> (Image, usize) {
    let mut steps = 0;
    let out = model
        .edit(p, e, |s| {
            steps += 1;
            assert_eq!(s.index + 1, steps);
            ControlFlow::Continue(())
        })
        .unwrap();
    (out, steps)
}

const SAMPLERS: [SamplerKind; 5] = SamplerKind::ALL;

#[test]
fn img2img_is_seeded_runs_steps_times_strength_and_at_strength_1_is_text_to_image() {
    let dir = tempfile::tempdir().unwrap();
    edge_inference::tiny::write(dir.path()).unwrap();
    for kind in SAMPLERS {
        let model = load(dir.path(), kind);
        assert!(!model.is_inpainting());
        let e = EditInput { image: init_image(), mask: None, strength: 0.5 };
        let (a, ran) = edit(&model, &params(7, 4), &e);
        assert_eq!(ran, 2, "{kind:?}: 4 steps at strength 0.5");
        assert_eq!((a.width, a.height), (SIZE, SIZE));
        assert_eq!(a, edit(&model, &params(7, 4), &e).0, "{kind:?}: same seed, different bytes");
        assert_ne!(a, edit(&model, &params(8, 4), &e).0, "{kind:?}: another seed, same image");
        let weaker = EditInput { strength: 0.25, ..e.clone() };
        assert_ne!(a, edit(&model, &params(7, 4), &weaker).0, "{kind:?}: strength changes nothing");

        // At strength 1 the init image is not used (documented): the result is
        // the text to image of the same seed, byte for byte.
        let full = EditInput { strength: 1.0, ..e.clone() };
        let (x, ran) = edit(&model, &params(7, 3), &full);
        assert_eq!(ran, 3);
        let t2i = model.generate(&params(7, 3), |_| ControlFlow::Continue(())).unwrap();
        assert_eq!(x, t2i, "{kind:?}: strength 1 differs from text to image");
    }
}

fn check_inpainting(model: &Model, kind: SamplerKind) {
    let init = init_image();
    let e = EditInput { image: init.clone(), mask: Some(right_half()), strength: 1.0 };
    let (a, ran) = edit(model, &params(3, 3), &e);
    assert_eq!(ran, 3);
    assert_eq!(a, edit(model, &params(3, 3), &e).0, "{kind:?}: same seed, different bytes");
    assert_ne!(a, edit(model, &params(4, 3), &e).0, "{kind:?}: another seed, same image");
    // Tolerance 0: unmasked pixels are pasted back after decoding.
    let mut changed = 0;
    for (i, (out, orig)) in a.rgb.chunks(3).zip(init.rgb.chunks(3)).enumerate() {
        if i % SIZE < SIZE / 2 {
            assert_eq!(out, orig, "{kind:?}: kept pixel {i} changed");
        } else if out != orig {
            changed += 1;
        }
    }
    assert!(changed > SIZE * SIZE / 4, "{kind:?}: only {changed} masked pixels repainted");
    let partial = EditInput { strength: 0.6, ..e };
    let (b, ran) = edit(model, &params(3, 5), &partial);
    assert_eq!(ran, 3, "5 steps at 0.6");
    assert_ne!(a, b);
}

#[test]
fn inpainting_on_a_plain_unet_blends_latents_and_keeps_unmasked_pixels() {
    let dir = tempfile::tempdir().unwrap();
    edge_inference::tiny::write(dir.path()).unwrap();
    for kind in SAMPLERS {
        check_inpainting(&load(dir.path(), kind), kind);
    }
}

#[test]
fn an_inpainting_unet_loads_and_inpaints_and_img2imgs() {
    let dir = tempfile::tempdir().unwrap();
    edge_inference::tiny::write_inpainting(dir.path()).unwrap();
    for kind in SAMPLERS {
        let model = load(dir.path(), kind);
        assert!(model.is_inpainting(), "9 input channels");
        check_inpainting(&model, kind);
        let e = EditInput { image: init_image(), mask: None, strength: 0.5 };
        let (a, ran) = edit(&model, &params(7, 4), &e);
        assert_eq!(ran, 2);
        assert_eq!(a, edit(&model, &params(7, 4), &e).0);
    }
    // Text to image runs on it too (as an inpainting of everything).
    let model = load(dir.path(), SamplerKind::EulerAncestral);
    let t2i = |seed| model.generate(&params(seed, 2), |_| ControlFlow::Continue(())).unwrap();
    let a = t2i(1);
    assert_eq!(a, t2i(1));
    assert_ne!(a, t2i(2));
}

#[test]
fn sd2_and_sdxl_inpainting_unets_load_and_inpaint() {
    use edge_inference::tiny::Arch;
    for arch in [Arch::Sd21, Arch::Sdxl] {
        let dir = tempfile::tempdir().unwrap();
        edge_inference::tiny::write_inpainting_arch(dir.path(), arch).unwrap();
        let model = load(dir.path(), SamplerKind::Euler);
        assert!(model.is_inpainting(), "{arch:?}: 9 input channels");
        check_inpainting(&model, SamplerKind::Euler);
    }
}
