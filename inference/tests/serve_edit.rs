//! Edits through the real `edge-inference serve`: OpenAI's multipart
//! `/v1/images/edits`, `/generate` with a base64 `init_image`, every output
//! format, the 400s, and the `kind` label of the image counter.

mod common;

use base64::Engine as _;
use common::{tiny_model, worker};
use edge_inference::http::multipart::{self, Part};
use edge_inference::imageio::{self, OutputFormat, UploadLimits};
use edge_inference::model::pipeline::Image;
use edge_testkit::http::{self, Request};
use edge_testkit::http::{Response, ResponseExt};
use serde_json::json;

const LIMITS: UploadLimits = UploadLimits { max_bytes: 1 << 24, max_side: 1024, max_pixels: 1 << 20 };

fn png(w: usize, h: usize) -> Vec<u8> {
    let rgb = (0..w * h * 3).map(|i| (i % 199) as u8).collect();
    OutputFormat::Png.encode(&Image { width: w, height: h, rgb })
}

fn mask(w: usize, h: usize) -> Vec<u8> {
    let luma: Vec<u8> = (0..w * h).map(|i| if i % w >= w / 2 { 255 } else { 0 }).collect();
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
    enc.set_color(png::ColorType::Grayscale);
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(&luma).unwrap();
    writer.finish().unwrap();
    out
}

fn form(fields: &[(&str, &str)], files: Vec<(&str, Vec<u8>)>) -> Vec<u8> {
    let mut parts: Vec<Part> =
        fields.iter().map(|(k, v)| Part { name: (*k).into(), filename: None, data: v.as_bytes().to_vec() }).collect();
    parts.extend(files.into_iter().map(|(k, data)| Part { name: k.into(), filename: Some(format!("{k}.png")), data }));
    multipart::encode("edgeboundary", &parts)
}

fn post_form(w: &edge_testkit::Worker, body: &[u8]) -> Response {
    let ct = "multipart/form-data; boundary=edgeboundary";
    post_bytes(w, ct, body)
}

fn post_bytes(w: &edge_testkit::Worker, content_type: &str, body: &[u8]) -> Response {
    let host = w.addr.to_string();
    let request =
        Request { method: "POST", body: Some((content_type, body)), ..Request::get(&host, "/v1/images/edits") };
    http::exchange(w.addr, &request, edge_testkit::process::GENERATION_PATIENCE).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn edits_answer_in_the_openai_shape_reproducibly_in_every_format() {
    let model = tiny_model();
    let w = worker(model.path()).start();
    let fields = [("prompt", "a red car"), ("n", "2"), ("seed", "3"), ("steps", "4"), ("strength", "0.5")];
    let body = form(&fields, vec![("image", png(64, 64)), ("mask", mask(64, 64))]);
    let a = post_form(&w, &body);
    assert_eq!(a.status, 200, "{}", a.text());
    let data = a.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 2);
    assert_eq!((data[0]["seed"].as_u64(), data[1]["seed"].as_u64()), (Some(3), Some(4)));
    let first = base64::engine::general_purpose::STANDARD.decode(data[0]["b64_json"].as_str().unwrap()).unwrap();
    let out = imageio::to_rgb(&imageio::decode(&first, "out", &LIMITS).unwrap());
    assert_eq!((out.width, out.height), (64, 64));
    let b = post_form(&w, &body);
    assert_eq!(a.json()["data"], b.json()["data"], "same seed, different bytes");

    // The JSON variant on /generate, in JPEG.
    let r = w.post(
        "/generate",
        &json!({"prompt": "a red car", "seed": 3, "steps": 4, "strength": 0.5, "init_image": b64(&png(64, 64)),
                "output_format": "jpeg"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!(imageio::decode(&r.body, "out", &LIMITS).unwrap().width(), 64);

    // output_format on a text to image too.
    let r = w.post(
        "/v1/images/generations",
        &json!({"prompt": "a red car", "steps": 1, "size": "64x64", "output_format": "webp"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let webp = base64::engine::general_purpose::STANDARD.decode(r.json()["data"][0]["b64_json"].as_str().unwrap());
    assert_eq!(image::guess_format(&webp.unwrap()).unwrap(), image::ImageFormat::WebP);

    let m = w.metrics();
    assert_eq!(edge_testkit::sample(&m, r#"edge_inference_images_generated_total{kind="edit"}"#), Some(5.0), "{m}");
    assert_eq!(edge_testkit::sample(&m, r#"edge_inference_images_generated_total{kind="generate"}"#), Some(1.0), "{m}");
}

#[test]
fn a_bad_edit_is_a_400_naming_the_field() {
    let model = tiny_model();
    let w = worker(model.path()).start();
    let prompt = [("prompt", "a red car")];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (form(&prompt, vec![("image", b"not an image".to_vec())]), "image"),
        (form(&prompt, vec![("image", png(64, 64)), ("mask", mask(64, 72))]), "mask"),
        (form(&[("prompt", "a red car"), ("strength", "1.5")], vec![("image", png(64, 64))]), "strength"),
        (form(&[("prompt", "a red car"), ("size", "128x128")], vec![("image", png(64, 64))]), "image"),
        (form(&prompt, vec![]), "image"),
        (b"garbage".to_vec(), "body"),
    ];
    for (body, field) in cases {
        let r = post_form(&w, &body);
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["param"], field, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
    let ct = post_bytes(&w, "application/json", b"{}");
    assert_eq!((ct.status, ct.json()["error"]["param"].as_str()), (400, Some("body")), "{}", ct.text());
    let r = w.post("/generate", &json!({"prompt": "a red car", "init_image": "@@"}));
    assert_eq!((r.status, r.json()["error"]["param"].as_str()), (400, Some("init_image")));
}
