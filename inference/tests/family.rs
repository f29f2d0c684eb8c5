//! Every architecture of the SD family the worker loads, as a tiny random
//! checkout written by `edge-inference tiny-model --arch` and served by the
//! real binary: a PNG of the asked size, the same seed the same bytes,
//! guidance with and without a negative prompt, bad input 400, and the
//! request defaults each checkout calls for.

mod common;

use common::{BIN, decode_png, worker};
use edge_testkit::http::ResponseExt;
use serde_json::json;

fn tiny(arch: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN).args(["tiny-model", "--arch", arch]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "tiny-model --arch {arch}: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn serves(arch: &str, default_steps: usize) {
    let model = tiny(arch);
    if arch.starts_with("sdxl") {
        for part in ["text_encoder_2/model.safetensors", "tokenizer_2/vocab.json", "tokenizer_2/merges.txt"] {
            assert!(model.path().join(part).is_file(), "{arch}: {part}");
        }
    }
    let w = worker(model.path()).start();
    let log = w.log();
    let defaults = log.lines().find(|l| l.contains("request defaults")).unwrap_or_else(|| panic!("{log}"));
    assert!(defaults.contains(&format!("steps={default_steps} ")), "{arch}: {defaults}");

    let body = json!({"prompt": "a red robot", "seed": 7, "steps": 2, "size": "128x64", "guidance_scale": 0});
    let a = w.post("/generate", &body);
    assert_eq!(a.status, 200, "{arch}: {}", a.text());
    let (width, height, pixels) = decode_png(&a.body);
    assert_eq!((width, height), (128, 64), "{arch}");
    assert!(pixels.iter().any(|p| *p != pixels[0]), "{arch}: a flat image");
    assert_eq!(w.post("/generate", &body).body, a.body, "{arch}: same seed, different bytes");
    let other = w.post("/generate", &json!({"prompt": "a red robot", "seed": 8, "steps": 2, "size": "128x64"}));
    assert_eq!(other.status, 200, "{arch}: {}", other.text());
    assert_ne!(other.body, a.body, "{arch}: another seed, the same bytes");

    // Guided, with an empty negative prompt (SDXL: zeros) and with one.
    for negative in ["", "blurry"] {
        let body = json!({"prompt": "a cat", "negative_prompt": negative, "seed": 1, "steps": 2,
                          "size": "64x64", "guidance_scale": 5.0});
        let r = w.post("/generate", &body);
        assert_eq!(r.status, 200, "{arch} negative {negative:?}: {}", r.text());
        assert_eq!(decode_png(&r.body).0, 64);
    }
    // The request's defaults.
    let r = w.post("/generate", &json!({"prompt": "a cat"}));
    assert_eq!(r.status, 200, "{arch}: {}", r.text());

    let long = vec!["cat"; 76].join(" ");
    for (body, field, needle) in [
        (json!({"prompt": "x", "size": "70x64"}), "size", "multiple of 8"),
        (json!({"prompt": "x", "steps": 0}), "steps", "1..="),
        (json!({"prompt": long}), "prompt", "at most 75"),
        (json!({"prompt": "x", "negative_prompt": long}), "negative_prompt", "77 with its start and end tokens"),
    ] {
        let r = w.post("/generate", &body);
        assert_eq!(r.status, 400, "{arch} {body}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["param"], field, "{arch}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{arch}: {v}");
    }
    // 75 words the tokenizer knows whole are 75 tokens: the limit itself is fine.
    let r = w.post("/generate", &json!({"prompt": vec!["cat"; 75].join(" "), "steps": 1}));
    assert_eq!(r.status, 200, "{arch}: {}", r.text());
}

#[test]
fn sd15() {
    serves("sd15", 20);
}

#[test]
fn sd21_768_v() {
    serves("sd21", 20);
}

#[test]
fn sd_turbo() {
    serves("sd-turbo", 1);
}

#[test]
fn sdxl() {
    serves("sdxl", 20);
}

#[test]
fn sdxl_turbo() {
    serves("sdxl-turbo", 1);
}

#[test]
fn default_tiny() {
    serves("default", 1);
}
