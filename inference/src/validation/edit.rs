//! Edit requests: the image (and mask) checked against the request's size,
//! `strength` against the step count, then the common fields as for a
//! generation. Images are never resampled: an init image whose size differs
//! from `size` is refused (400 on `image`), and with no `size` the image's
//! own size is used, so what is edited is exactly what was sent.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{Endpoint, Job, Limits, ValidationError, err, get, parse_object, size};
use crate::http::multipart::Part;
use crate::imageio::{self, INPUT_FORMATS, UploadLimits};
use crate::model::edit::{EditInput, steps_run};

/// The uploaded images of an edit, with the field names they came in.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    /// The init image's field (`image`, or `init_image` on `/generate`).
    pub image_field: &'static str,
    /// Its bytes.
    pub image: &'a [u8],
    /// The mask's bytes, if any.
    pub mask: Option<&'a [u8]>,
}

/// Fields sent as numbers; in a form they arrive as text.
const NUMERIC: &[&str] = &["n", "seed", "steps", "strength", "guidance_scale"];

/// Validates an edit: `obj` holds the text fields (`strength` included).
pub fn parse_edit(
    mut obj: Map<String, Value>,
    upload: Upload<'_>,
    endpoint: Endpoint,
    limits: &Limits,
    random_seed: impl FnOnce() -> u64,
) -> Result<Job, ValidationError> {
    let strength = get::<f64>(&obj, "strength", "a number above 0 and at most 1")?;
    obj.remove("strength");
    let up = UploadLimits {
        max_bytes: limits.max_image_bytes,
        max_side: limits.max_side as u32,
        max_pixels: (limits.max_side * limits.max_side) as u64,
    };
    let image = imageio::to_rgb(&imageio::decode(upload.image, upload.image_field, &up)?);
    let requested = match get::<String>(&obj, "size", "a string \"WIDTHxHEIGHT\"")? {
        Some(s) => size(&s, limits)?,
        None => {
            let own = format!("{}x{}", image.width, image.height);
            size(&own, limits).map_err(|e| err(upload.image_field, format!("is {own}; {}", e.message)))?
        }
    };
    if (image.width, image.height) != requested {
        return Err(err(
            upload.image_field,
            format!(
                "is {}x{} but size asks for {}x{}; send the image at the requested size (edits do not resample)",
                image.width, image.height, requested.0, requested.1
            ),
        ));
    }
    obj.insert("size".into(), format!("{}x{}", requested.0, requested.1).into());
    let mask = match upload.mask {
        Some(bytes) => {
            let m = imageio::decode(bytes, "mask", &up)?;
            if (m.width() as usize, m.height() as usize) != requested {
                return Err(err(
                    "mask",
                    format!(
                        "is {}x{}; it must be the image's size, {}x{}",
                        m.width(),
                        m.height(),
                        requested.0,
                        requested.1
                    ),
                ));
            }
            Some(imageio::to_mask(&m))
        }
        None => None,
    };
    // diffusers' defaults: img2img 0.8, inpainting 1.
    let strength = strength.unwrap_or(if mask.is_some() { 1.0 } else { 0.8 });
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(err("strength", format!("{strength} is outside (0, 1]")));
    }
    let mut job = parse_object(&obj, endpoint, limits, random_seed)?;
    if steps_run(job.params.steps, strength) == 0 {
        return Err(err(
            "strength",
            format!("{strength} × {} steps runs no step; raise strength or steps", job.params.steps),
        ));
    }
    job.edit = Some(Arc::new(EditInput { image, mask, strength }));
    Ok(job)
}

/// `/generate` with a base64 `init_image` (and `mask`).
pub fn from_json(
    mut obj: Map<String, Value>,
    limits: &Limits,
    random_seed: impl FnOnce() -> u64,
) -> Result<Job, ValidationError> {
    // `/generate` answers one image, so it takes no `n` (nor a response format).
    if let Some(k) = ["n", "response_format"].into_iter().find(|k| obj.contains_key(*k)) {
        return Err(err(k, "not allowed on /generate (one image, answered as the image); use /v1/images/edits"));
    }
    let mut bytes = |field: &'static str| -> Result<Option<Vec<u8>>, ValidationError> {
        let expected = format!("a base64 {INPUT_FORMATS} image");
        let Some(s) = get::<String>(&obj, field, &expected)? else { return Ok(None) };
        obj.remove(field);
        // Accept a data URL too, as browsers produce them.
        let s = s.split_once(";base64,").map_or(s.as_str(), |(_, b)| b);
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map(Some)
            .map_err(|e| err(field, format!("not valid base64 ({e}); expected {expected}")))
    };
    let image = bytes("init_image")?.ok_or_else(|| err("init_image", "required"))?;
    let mask = bytes("mask")?;
    let upload = Upload { image_field: "init_image", image: &image, mask: mask.as_deref() };
    parse_edit(obj, upload, Endpoint::Edit, limits, random_seed)
}

/// `/v1/images/edits`: the form's parts.
pub fn from_form(parts: Vec<Part>, limits: &Limits, random_seed: impl FnOnce() -> u64) -> Result<Job, ValidationError> {
    let mut obj = Map::new();
    let (mut image, mut mask) = (None, None);
    for p in parts {
        let (slot, field) = match p.name.as_str() {
            "image" | "image[]" => (&mut image, "image"),
            "mask" => (&mut mask, "mask"),
            name => {
                let text = String::from_utf8(p.data).map_err(|_| err(name, "not UTF-8 text"))?;
                // A number is sent as its text; anything that does not parse
                // stays a string so the field check names what was sent.
                let value = if NUMERIC.contains(&name) {
                    serde_json::from_str::<Value>(text.trim()).ok().filter(Value::is_number).unwrap_or(text.into())
                } else {
                    text.into()
                };
                if obj.insert(name.to_owned(), value).is_some() {
                    return Err(err(name, "sent more than once"));
                }
                continue;
            }
        };
        if slot.replace(p.data).is_some() {
            return Err(err(field, "sent more than once; one file allowed"));
        }
    }
    let image = image.ok_or_else(|| err("image", format!("required; a {INPUT_FORMATS} file")))?;
    let upload = Upload { image_field: "image", image: &image, mask: mask.as_deref() };
    parse_edit(obj, upload, Endpoint::Edit, limits, random_seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imageio::OutputFormat;
    use crate::model::pipeline::Image;

    fn png(w: usize, h: usize) -> Vec<u8> {
        OutputFormat::Png.encode(&Image { width: w, height: h, rgb: vec![200; w * h * 3] })
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn json(body: Value) -> Result<Job, ValidationError> {
        super::super::parse(body.to_string().as_bytes(), Endpoint::Png, &Limits::default(), || 5)
    }

    #[test]
    fn reads_an_edit_from_json_and_from_a_form() {
        let job = json(serde_json::json!({"prompt": "a cat", "init_image": b64(&png(64, 128)), "steps": 10})).unwrap();
        let e = job.edit.unwrap();
        assert_eq!((job.params.width, job.params.height, e.strength, e.mask.is_none()), (64, 128, 0.8, true));
        let mask = format!("data:image/png;base64,{}", b64(&png(64, 128)));
        let job = json(serde_json::json!({"prompt": "a cat", "init_image": b64(&png(64, 128)), "mask": mask,
            "output_format": "webp"}))
        .unwrap();
        assert_eq!((job.edit.unwrap().strength, job.format), (1.0, OutputFormat::Webp));

        let text = |n: &str, v: &str| Part { name: n.into(), filename: None, data: v.as_bytes().to_vec() };
        let parts = vec![
            text("prompt", "a cat"),
            text("strength", "0.25"),
            text("seed", "9"),
            text("response_format", "b64_json"),
            Part { name: "image".into(), filename: Some("a.png".into()), data: png(64, 64) },
        ];
        let job = from_form(parts, &Limits::default(), || 1).unwrap();
        assert_eq!((job.params.seed, job.edit.unwrap().strength), (9, 0.25));
    }

    #[test]
    fn every_bad_edit_is_named() {
        let img = b64(&png(64, 64));
        let cases: &[(Value, &str, &str)] = &[
            (serde_json::json!({"init_image": "%%%"}), "init_image", "not valid base64"),
            (serde_json::json!({"init_image": b64(b"GIF89a")}), "init_image", "not a PNG, JPEG or WebP"),
            (serde_json::json!({"init_image": 3}), "init_image", "a base64"),
            (serde_json::json!({"init_image": b64(&png(72, 64)), "size": "64x64"}), "init_image", "is 72x64"),
            (serde_json::json!({"init_image": b64(&png(60, 64))}), "init_image", "multiple of 8"),
            (serde_json::json!({"init_image": img, "mask": b64(&png(64, 72))}), "mask", "is 64x72"),
            (serde_json::json!({"init_image": img, "mask": "!"}), "mask", "base64"),
            (serde_json::json!({"init_image": img, "strength": 0}), "strength", "(0, 1]"),
            (serde_json::json!({"init_image": img, "strength": 1.5}), "strength", "(0, 1]"),
            (serde_json::json!({"init_image": img, "strength": "x"}), "strength", "above 0"),
            (serde_json::json!({"init_image": img, "strength": 0.1, "steps": 5}), "strength", "runs no step"),
            (serde_json::json!({"init_image": img, "output_format": "gif"}), "output_format", "\"webp\""),
            (serde_json::json!({"init_image": img, "n": 2}), "n", "not allowed on /generate"),
            (serde_json::json!({"strength": 0.5}), "strength", "only allowed with init_image"),
            (serde_json::json!({"mask": img}), "mask", "only allowed with init_image"),
        ];
        for (body, field, needle) in cases {
            let mut body = body.clone();
            body["prompt"] = "a cat".into();
            let e = json(body.clone()).unwrap_err();
            assert_eq!(e.field, *field, "{body}: {e}");
            assert!(e.message.contains(needle), "{field}: {e}");
        }
        let big = Limits { max_image_bytes: 100, ..Limits::default() };
        let body = serde_json::json!({"prompt": "a cat", "init_image": img}).to_string();
        let e = super::super::parse(body.as_bytes(), Endpoint::Png, &big, || 1).unwrap_err();
        assert!(e.field == "init_image" && e.message.contains("at most 100"), "{e}");

        let file = |n: &str| Part { name: n.into(), filename: Some("x.png".into()), data: png(64, 64) };
        let text = |n: &str, v: &str| Part { name: n.into(), filename: None, data: v.as_bytes().to_vec() };
        let forms: Vec<(Vec<Part>, &str, &str)> = vec![
            (vec![text("prompt", "a cat")], "image", "required"),
            (vec![text("prompt", "a cat"), file("image"), file("image")], "image", "more than once"),
            (vec![text("prompt", "a cat"), file("image"), text("n", "x")], "n", "from 1 to 4"),
            (vec![text("prompt", "a"), text("prompt", "b"), file("image")], "prompt", "more than once"),
            (vec![text("prompt", "a cat"), file("image"), text("quality", "hd")], "quality", "unknown field"),
            (vec![file("image")], "prompt", "required"),
        ];
        for (parts, field, needle) in forms {
            let e = from_form(parts, &Limits::default(), || 1).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.contains(needle), "{field}: {e}");
        }
    }
}
