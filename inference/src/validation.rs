//! Turning a request body into checked generation parameters. Every field is
//! read on its own so that a wrong value is reported against its field, with
//! the allowed range.

pub mod edit;

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::imageio::OutputFormat;
use crate::model::edit::EditInput;
use crate::model::pipeline::Params;
pub use crate::request_error::ValidationError;

/// Bounds and defaults for requests, set by flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Smallest image side in pixels.
    pub min_side: usize,
    /// Largest image side in pixels.
    pub max_side: usize,
    /// Sides must be a multiple of this (the model's VAE factor, 8 for SD).
    pub multiple: usize,
    /// Most denoising steps per image.
    pub max_steps: usize,
    /// Most images per request.
    pub max_n: usize,
    /// Longest prompt or negative prompt, in characters.
    pub max_prompt_chars: usize,
    /// Largest guidance scale.
    pub max_guidance: f64,
    /// Steps when the request names none.
    pub default_steps: usize,
    /// Guidance when the request names none.
    pub default_guidance: f64,
    /// Size when the request names none.
    pub default_size: (usize, usize),
    /// Largest uploaded image (init image or mask), encoded, in bytes.
    pub max_image_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            min_side: 64,
            max_side: 1024,
            multiple: 8,
            max_steps: 50,
            max_n: 4,
            max_prompt_chars: 2000,
            max_guidance: 30.0,
            default_steps: 20,
            default_guidance: 7.5,
            default_size: (512, 512),
            max_image_bytes: 4 << 20,
        }
    }
}

/// Which endpoint the body came to; they accept slightly different fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/images/generations` (OpenAI images shape).
    OpenAi,
    /// `POST /generate` (one image back).
    Png,
    /// `POST /v1/images/edits` (OpenAI's multipart shape), or `/generate`
    /// with an `init_image`, once the images are taken out.
    Edit,
}

impl Endpoint {
    fn fields(self) -> &'static [&'static str] {
        match self {
            // On edits, `image`, `mask` and `strength` are read by `edit` first; `n`
            // and `response_format` only matter on the OpenAI routes, which
            // answer JSON (on `/generate` the first image is sent).
            Self::OpenAi | Self::Edit => &[
                "prompt",
                "negative_prompt",
                "n",
                "size",
                "response_format",
                "seed",
                "steps",
                "guidance_scale",
                "model",
                "user",
                "output_format",
            ],
            Self::Png => &[
                "prompt",
                "negative_prompt",
                "size",
                "seed",
                "steps",
                "guidance_scale",
                "output_format",
                "init_image",
                "mask",
                "strength",
            ],
        }
    }
}

fn err(field: &str, message: impl Into<String>) -> ValidationError {
    ValidationError { field: field.into(), message: message.into() }
}

/// A checked request: `n` images, image `i` seeded with `params.seed + i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Settings of the first image.
    pub params: Params,
    /// Images to generate.
    pub n: usize,
    /// What to edit; `None` for text to image.
    pub edit: Option<Arc<EditInput>>,
    /// How the images are encoded.
    pub format: OutputFormat,
}

impl Job {
    /// The settings of image `i`.
    pub fn image(&self, i: usize) -> Params {
        Params { seed: self.params.seed.wrapping_add(i as u64), ..self.params.clone() }
    }
}

/// Validates a request body. `random_seed` supplies the seed when the
/// request gives none.
pub fn parse(
    body: &[u8],
    endpoint: Endpoint,
    limits: &Limits,
    random_seed: impl FnOnce() -> u64,
) -> Result<Job, ValidationError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| err("body", format!("not valid JSON: {e}")))?;
    let Value::Object(obj) = value else { return Err(err("body", "must be a JSON object")) };
    if endpoint == Endpoint::Png {
        if obj.contains_key("init_image") {
            return edit::from_json(obj, limits, random_seed);
        }
        if let Some(k) = ["mask", "strength"].into_iter().find(|k| obj.contains_key(*k)) {
            return Err(err(k, "only allowed with init_image (a base64 PNG, JPEG or WebP)"));
        }
    }
    parse_object(&obj, endpoint, limits, random_seed)
}

/// Validates a request's fields (already a JSON object).
pub fn parse_object(
    obj: &serde_json::Map<String, Value>,
    endpoint: Endpoint,
    limits: &Limits,
    random_seed: impl FnOnce() -> u64,
) -> Result<Job, ValidationError> {
    let allowed = endpoint.fields();
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(err(k, format!("unknown field; allowed: {}", allowed.join(", "))));
    }
    let l = limits;
    let text = |field: &str, required: bool| -> Result<String, ValidationError> {
        let s: Option<String> = get(obj, field, "a string")?;
        let s = s.unwrap_or_default();
        if required && s.trim().is_empty() {
            return Err(err(field, "required; a non-empty string"));
        }
        let chars = s.chars().count();
        if chars > l.max_prompt_chars {
            return Err(err(field, format!("{chars} characters; at most {} allowed", l.max_prompt_chars)));
        }
        Ok(s)
    };
    let prompt = text("prompt", true)?;
    let negative_prompt = text("negative_prompt", false)?;
    let n = int(obj, "n", 1, l.max_n)?.unwrap_or(1);
    let steps = int(obj, "steps", 1, l.max_steps)?.unwrap_or(l.default_steps);
    let guidance_range = format!("a number from 0 to {}", l.max_guidance);
    let guidance_scale = match get::<f64>(obj, "guidance_scale", &guidance_range)? {
        Some(g) if !(0.0..=l.max_guidance).contains(&g) => {
            return Err(err("guidance_scale", format!("{g} is outside 0..={}", l.max_guidance)));
        }
        Some(g) => g,
        None => l.default_guidance,
    };
    let seed = match get::<u64>(obj, "seed", "an integer from 0 to 18446744073709551615")? {
        Some(s) => s,
        None => random_seed(),
    };
    if let Some(f) = get::<String>(obj, "response_format", "\"b64_json\"")?
        && f != "b64_json"
    {
        return Err(err("response_format", format!("{f:?} is not supported; allowed: \"b64_json\"")));
    }
    let _: Option<String> = get(obj, "model", "a string")?;
    let _: Option<String> = get(obj, "user", "a string")?;
    let (width, height) = match get::<String>(obj, "size", "a string \"WIDTHxHEIGHT\"")? {
        Some(s) => size(&s, l)?,
        None => l.default_size,
    };
    let format = match get::<String>(obj, "output_format", OutputFormat::ALLOWED)? {
        Some(f) => OutputFormat::parse(&f)
            .ok_or_else(|| err("output_format", format!("{f:?} is not allowed; allowed: {}", OutputFormat::ALLOWED)))?,
        None => OutputFormat::Png,
    };
    let params = Params { prompt, negative_prompt, width, height, steps, guidance_scale, seed };
    Ok(Job { params, n, edit: None, format })
}

fn get<T: DeserializeOwned>(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    expected: &str,
) -> Result<Option<T>, ValidationError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            T::deserialize(v).map(Some).map_err(|_| err(field, format!("{v} is not allowed; expected {expected}")))
        }
    }
}

fn int(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, ValidationError> {
    let range = format!("an integer from {min} to {max}");
    match get::<u64>(obj, field, &range)? {
        Some(v) if v < min as u64 || v > max as u64 => Err(err(field, format!("{v} is outside {min}..={max}"))),
        Some(v) => Ok(Some(v as usize)),
        None => Ok(None),
    }
}

fn size(s: &str, l: &Limits) -> Result<(usize, usize), ValidationError> {
    let allowed = format!(
        "\"WIDTHxHEIGHT\" with each side from {} to {} and a multiple of {}",
        l.min_side, l.max_side, l.multiple
    );
    let bad = || err("size", format!("{s:?} is not allowed; expected {allowed}"));
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let side = |v: &str| -> Result<usize, ValidationError> {
        let v: usize = v.trim().parse().map_err(|_| bad())?;
        if v < l.min_side || v > l.max_side || !v.is_multiple_of(l.multiple) { Err(bad()) } else { Ok(v) }
    };
    Ok((side(w)?, side(h)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: serde_json::Value, endpoint: Endpoint) -> Result<Job, ValidationError> {
        parse(body.to_string().as_bytes(), endpoint, &Limits::default(), || 99)
    }

    #[test]
    fn fills_defaults_and_reads_every_field() {
        let job = check(serde_json::json!({"prompt": "a cat"}), Endpoint::OpenAi).unwrap();
        assert_eq!((job.n, job.params.width, job.params.height, job.params.steps), (1, 512, 512, 20));
        assert_eq!((job.params.seed, job.params.guidance_scale), (99, 7.5));
        let job = check(
            serde_json::json!({"prompt": "a cat", "negative_prompt": "dog", "n": 2, "size": "256x128",
                "response_format": "b64_json", "seed": 7, "steps": 4, "guidance_scale": 0, "model": "sd"}),
            Endpoint::OpenAi,
        )
        .unwrap();
        assert_eq!((job.n, job.params.width, job.params.height, job.params.steps), (2, 256, 128, 4));
        assert_eq!(
            (job.image(1).seed, job.params.guidance_scale, job.params.negative_prompt.as_str()),
            (8, 0.0, "dog")
        );
    }

    #[test]
    fn every_bad_field_is_named_with_its_range() {
        let cases: &[(&str, serde_json::Value, &str)] = &[
            ("prompt", serde_json::json!(""), "non-empty"),
            ("prompt", serde_json::json!(3), "a string"),
            ("prompt", serde_json::json!("x".repeat(2001)), "at most 2000"),
            ("negative_prompt", serde_json::json!(["x"]), "a string"),
            ("n", serde_json::json!(0), "1..=4"),
            ("n", serde_json::json!(5), "1..=4"),
            ("n", serde_json::json!(1.5), "from 1 to 4"),
            ("size", serde_json::json!("100x64"), "multiple of 8"),
            ("size", serde_json::json!("2048x512"), "from 64 to 1024"),
            ("size", serde_json::json!("big"), "WIDTHxHEIGHT"),
            ("size", serde_json::json!(512), "WIDTHxHEIGHT"),
            ("response_format", serde_json::json!("url"), "b64_json"),
            ("seed", serde_json::json!(-1), "0 to 18446744073709551615"),
            ("steps", serde_json::json!(0), "1..=50"),
            ("steps", serde_json::json!(51), "1..=50"),
            ("guidance_scale", serde_json::json!(-0.5), "0..=30"),
            ("guidance_scale", serde_json::json!("high"), "from 0 to 30"),
            ("quality", serde_json::json!("hd"), "unknown field"),
            ("output_format", serde_json::json!("gif"), "\"png\", \"jpeg\", \"webp\""),
        ];
        for (field, value, needle) in cases {
            let mut body = serde_json::json!({"prompt": "a cat"});
            body[*field] = value.clone();
            let e = check(body, Endpoint::OpenAi).unwrap_err();
            assert_eq!(e.field, *field, "{e}");
            assert!(e.message.contains(needle), "{field}: {e}");
        }
    }

    #[test]
    fn the_png_endpoint_takes_one_image_and_no_format() {
        for field in ["n", "response_format"] {
            let mut body = serde_json::json!({"prompt": "a cat"});
            body[field] = serde_json::json!(1);
            assert_eq!(check(body, Endpoint::Png).unwrap_err().field, field);
        }
        assert_eq!(parse(b"[1]", Endpoint::Png, &Limits::default(), || 0).unwrap_err().field, "body");
        assert_eq!(parse(b"{", Endpoint::Png, &Limits::default(), || 0).unwrap_err().field, "body");
    }
}
