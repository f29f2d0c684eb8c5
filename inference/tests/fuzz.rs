//! Property tests of the worker's parsers of untrusted input: a generation
//! request's JSON body, seeded from `testdata/requests`, and an edit's
//! multipart form and its uploaded images, seeded from images encoded here,
//! all mutated byte by byte: they never panic, and every refusal names the
//! body, a field the request has, or a required one. What they accept stays
//! inside the limits. Bounded here (`PROPTEST_CASES`, 256 by default);
//! `scripts/fuzz` runs them long.

use std::path::Path;

use edge_inference::http::multipart::{self, Part};
use edge_inference::imageio::{self, OutputFormat, UploadLimits};
use edge_inference::model::pipeline::Image;
use edge_inference::validation::{Endpoint, Limits, edit, parse};
use edge_testkit::fuzz::{corpus, mutate};
use proptest::prelude::*;

fn seeds() -> Vec<Vec<u8>> {
    let seeds = corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/requests"));
    assert!(seeds.len() >= 3, "the corpus is testdata/requests/*.json");
    seeds
}

proptest! {
    #[test]
    fn mutated_requests_are_parsed_within_limits_or_refused_by_name(
        seed in 0usize..3,
        openai in any::<bool>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..10),
    ) {
        let seeds = seeds();
        let body = mutate(&seeds[seed % seeds.len()], &edits);
        let endpoint = if openai { Endpoint::OpenAi } else { Endpoint::Png };
        let limits = Limits::default();
        match parse(&body, endpoint, &limits, || 42) {
            Ok(job) => {
                prop_assert!(job.n >= 1 && job.n <= limits.max_n);
                prop_assert!(job.params.steps >= 1 && job.params.steps <= limits.max_steps);
                prop_assert!((limits.min_side..=limits.max_side).contains(&job.params.width));
                prop_assert!((limits.min_side..=limits.max_side).contains(&job.params.height));
            }
            Err(e) => {
                let keys: Vec<String> = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
                    .unwrap_or_default();
                prop_assert!(
                    e.field == "body" || e.field == "prompt" || keys.contains(&e.field),
                    "{e:?} for {}", String::from_utf8_lossy(&body)
                );
                prop_assert!(!e.message.is_empty());
            }
        }
    }
}

#[test]
fn every_seed_is_a_valid_request() {
    for seed in seeds() {
        parse(&seed, Endpoint::OpenAi, &Limits::default(), || 1)
            .unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&seed)));
    }
}

fn image_seed(format: OutputFormat, w: usize, h: usize) -> Vec<u8> {
    let rgb = (0..w * h * 3).map(|i| (i * 37 % 256) as u8).collect();
    format.encode(&Image { width: w, height: h, rgb })
}

fn form(image: Vec<u8>, mask: Vec<u8>) -> Vec<u8> {
    let text = |name: &str, v: &str| Part { name: name.into(), filename: None, data: v.as_bytes().to_vec() };
    let file = |name: &str, data| Part { name: name.into(), filename: Some(format!("{name}.png")), data };
    let parts = [
        text("prompt", "a cat"),
        text("size", "64x64"),
        text("strength", "0.5"),
        text("steps", "4"),
        text("n", "1"),
        file("image", image),
        file("mask", mask),
    ];
    multipart::encode("b0undary", &parts)
}

const FORMATS: [OutputFormat; 3] = [OutputFormat::Png, OutputFormat::Jpeg, OutputFormat::Webp];

proptest! {
    #[test]
    fn mutated_edit_forms_are_parsed_at_the_right_size_or_refused_by_name(
        format in 0usize..3,
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..10),
    ) {
        let body = form(image_seed(FORMATS[format], 64, 64), image_seed(OutputFormat::Png, 64, 64));
        let body = mutate(&body, &edits);
        let limits = Limits::default();
        let parsed = multipart::parse(&body, "b0undary");
        let names: Vec<String> = parsed.as_ref().map(|p| p.iter().map(|p| p.name.clone()).collect()).unwrap_or_default();
        match parsed.and_then(|parts| edit::from_form(parts, &limits, || 1)) {
            Ok(job) => {
                let e = job.edit.expect("an edit");
                prop_assert_eq!((e.image.width, e.image.height), (job.params.width, job.params.height));
                prop_assert_eq!(e.image.rgb.len(), job.params.width * job.params.height * 3);
                prop_assert!(e.mask.as_ref().is_none_or(|m| m.len() == job.params.width * job.params.height));
                prop_assert!(e.strength > 0.0 && e.strength <= 1.0);
            }
            Err(e) => {
                prop_assert!(
                    ["body", "prompt", "image"].contains(&e.field.as_str()) || names.contains(&e.field),
                    "{e:?} for {:?}", names
                );
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn mutated_images_decode_within_limits_or_are_refused(
        format in 0usize..3,
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..16),
    ) {
        let bytes = mutate(&image_seed(FORMATS[format], 40, 24), &edits);
        let limits = UploadLimits { max_bytes: 1 << 20, max_side: 64, max_pixels: 64 * 64 };
        match imageio::decode(&bytes, "image", &limits) {
            Ok(img) => {
                prop_assert!(img.width() <= 64 && img.height() <= 64);
                let rgb = imageio::to_rgb(&img);
                prop_assert_eq!(rgb.rgb.len(), rgb.width * rgb.height * 3);
            }
            Err(e) => prop_assert_eq!(e.field, "image"),
        }
    }
}

#[test]
fn the_edit_seeds_are_valid_forms() {
    for f in FORMATS {
        let body = form(image_seed(f, 64, 64), image_seed(OutputFormat::Png, 64, 64));
        let job = edit::from_form(multipart::parse(&body, "b0undary").unwrap(), &Limits::default(), || 1).unwrap();
        assert_eq!((job.params.steps, job.edit.unwrap().strength), (4, 0.5), "{f:?}");
    }
}
