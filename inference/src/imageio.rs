//! Image bytes in and out: decoding uploaded images (untrusted: PNG, JPEG or
//! WebP only, bounded in bytes and pixels before anything is allocated) and
//! encoding results as PNG, JPEG or WebP.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader};

use crate::model::pipeline::Image;
use crate::request_error::ValidationError;

/// The formats an upload may be in.
pub const INPUT_FORMATS: &str = "PNG, JPEG or WebP";

/// How big an upload may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Largest encoded size.
    pub max_bytes: usize,
    /// Largest side in pixels.
    pub max_side: u32,
    /// Largest `width × height`.
    pub max_pixels: u64,
}

fn err(field: &str, message: impl Into<String>) -> ValidationError {
    ValidationError { field: field.into(), message: message.into() }
}

/// Decodes an uploaded image, refusing other formats, oversized files and
/// images whose header claims more pixels than allowed (checked before the
/// pixels are decoded, so a tiny file cannot ask for gigabytes).
pub fn decode(bytes: &[u8], field: &str, limits: &UploadLimits) -> Result<DynamicImage, ValidationError> {
    if bytes.is_empty() {
        return Err(err(field, format!("empty; expected a {INPUT_FORMATS} image")));
    }
    if bytes.len() > limits.max_bytes {
        return Err(err(field, format!("{} bytes; at most {} allowed", bytes.len(), limits.max_bytes)));
    }
    let format = image::guess_format(bytes).ok();
    if !matches!(format, Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) {
        return Err(err(field, format!("not a {INPUT_FORMATS} image")));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format.unwrap_or(ImageFormat::Png));
    let (w, h) = reader.into_dimensions().map_err(|e| err(field, format!("unreadable image: {e}")))?;
    if w.max(h) > limits.max_side || u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(err(
            field,
            format!("{w}x{h}; at most {} pixels a side and {} pixels in all", limits.max_side, limits.max_pixels),
        ));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format.unwrap_or(ImageFormat::Png));
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    // Room for the decoded pixels at 16 bits × 4 channels, plus the decoder's own buffers.
    l.max_alloc = Some(limits.max_pixels * 8 * 2 + (1 << 20));
    reader.limits(l);
    reader.decode().map_err(|e| err(field, format!("unreadable image: {e}")))
}

/// The image as 8-bit RGB (alpha dropped).
pub fn to_rgb(img: &DynamicImage) -> Image {
    let rgb = img.to_rgb8();
    Image { width: rgb.width() as usize, height: rgb.height() as usize, rgb: rgb.into_raw() }
}

/// The mask as one byte a pixel, 255 = repaint. White repaints; a mask that
/// is not fully opaque is read the OpenAI way instead: transparent repaints.
pub fn to_mask(img: &DynamicImage) -> Vec<u8> {
    let rgba = img.to_rgba8();
    if img.color().has_alpha() && rgba.pixels().any(|p| p.0[3] < 255) {
        return rgba.pixels().map(|p| if p.0[3] < 128 { 255 } else { 0 }).collect();
    }
    img.to_luma8().into_raw()
}

/// What to encode results as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Lossless, the default.
    #[default]
    Png,
    /// Baseline JPEG, quality 90.
    Jpeg,
    /// Lossless WebP.
    Webp,
}

impl OutputFormat {
    /// The allowed names, for error messages.
    pub const ALLOWED: &str = "\"png\", \"jpeg\", \"webp\"";

    /// Parses `png`, `jpeg` (or `jpg`), `webp`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "png" => Some(Self::Png),
            "jpeg" | "jpg" => Some(Self::Jpeg),
            "webp" => Some(Self::Webp),
            _ => None,
        }
    }

    /// The `Content-Type` of an image in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    /// Encodes `img` (deterministic for the same pixels).
    pub fn encode(self, img: &Image) -> Vec<u8> {
        if self == Self::Png {
            return img.to_png();
        }
        let mut out = Vec::new();
        let (w, h) = (img.width as u32, img.height as u32);
        let result = match self {
            Self::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode(
                &img.rgb,
                w,
                h,
                image::ExtendedColorType::Rgb8,
            ),
            _ => image::codecs::webp::WebPEncoder::new_lossless(&mut out).encode(
                &img.rgb,
                w,
                h,
                image::ExtendedColorType::Rgb8,
            ),
        };
        // Into memory with sizes that match by construction: cannot fail.
        result.expect("image encoding into memory");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: UploadLimits = UploadLimits { max_bytes: 1 << 20, max_side: 256, max_pixels: 256 * 256 };

    fn sample(w: usize, h: usize) -> Image {
        let rgb = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        Image { width: w, height: h, rgb }
    }

    #[test]
    fn every_output_format_decodes_back_to_its_size() {
        let img = sample(24, 16);
        for f in [OutputFormat::Png, OutputFormat::Jpeg, OutputFormat::Webp] {
            let bytes = f.encode(&img);
            let back = to_rgb(&decode(&bytes, "image", &LIMITS).unwrap());
            assert_eq!((back.width, back.height), (24, 16), "{f:?}");
            if f != OutputFormat::Jpeg {
                assert_eq!(back.rgb, img.rgb, "{f:?} is lossless");
            }
        }
        assert_eq!(OutputFormat::parse("jpg"), Some(OutputFormat::Jpeg));
        assert_eq!(OutputFormat::parse("gif"), None);
    }

    #[test]
    fn bad_uploads_are_named_errors() {
        let png = OutputFormat::Png.encode(&sample(300, 8));
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"GIF89a......", "not a PNG, JPEG or WebP"),
            (&png, "at most 256 pixels a side"),
            (&png[..40], "unreadable"),
        ];
        for (bytes, needle) in cases {
            let e = decode(bytes, "mask", &LIMITS).unwrap_err();
            assert_eq!(e.field, "mask");
            assert!(e.message.contains(needle), "{e}");
        }
        let small = UploadLimits { max_bytes: 10, ..LIMITS };
        assert!(decode(&png, "image", &small).unwrap_err().message.contains("at most 10"));
    }

    #[test]
    fn masks_read_white_or_transparent_as_repaint() {
        let gray = DynamicImage::ImageLuma8(image::GrayImage::from_raw(2, 1, vec![255, 0]).unwrap());
        assert_eq!(to_mask(&gray), vec![255, 0]);
        let rgba = image::RgbaImage::from_raw(2, 1, vec![9, 9, 9, 0, 9, 9, 9, 255]).unwrap();
        assert_eq!(to_mask(&DynamicImage::ImageRgba8(rgba)), vec![255, 0]);
    }
}
