//! A small `multipart/form-data` reader (RFC 7578) for `/v1/images/edits`:
//! the whole body is already in memory and bounded, so a pure function over
//! bytes is all that is needed, and it is what the property tests drive.

use crate::validation::ValidationError;

/// One form field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The `name` of its `Content-Disposition`.
    pub name: String,
    /// The `filename`, for file uploads.
    pub filename: Option<String>,
    /// The raw content.
    pub data: Vec<u8>,
}

/// Most parts a form may have (ours has a dozen fields at most).
pub const MAX_PARTS: usize = 32;

fn err(message: impl Into<String>) -> ValidationError {
    ValidationError { field: "body".into(), message: message.into() }
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Result<String, ValidationError> {
    let mut params = content_type.split(';');
    let kind = params.next().unwrap_or_default().trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err(err(format!("Content-Type {kind:?} is not allowed; expected multipart/form-data")));
    }
    let b = params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .ok_or_else(|| err("multipart/form-data without a boundary"))?;
    if b.is_empty() || b.len() > 70 {
        return Err(err("the multipart boundary must be 1 to 70 characters"));
    }
    Ok(b)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits `body` into its parts.
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, ValidationError> {
    let delim = format!("--{boundary}");
    let start = find(body, delim.as_bytes()).ok_or_else(|| err("no multipart boundary in the body"))?;
    let mut rest = &body[start + delim.len()..];
    let close = format!("\r\n--{boundary}");
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest.strip_prefix(b"\r\n").ok_or_else(|| err("a multipart boundary is not followed by CRLF"))?;
        if parts.len() == MAX_PARTS {
            return Err(err(format!("more than {MAX_PARTS} multipart parts")));
        }
        let head_end = find(rest, b"\r\n\r\n").ok_or_else(|| err("a multipart part has no end of headers"))?;
        let head = std::str::from_utf8(&rest[..head_end]).map_err(|_| err("multipart headers are not UTF-8"))?;
        let (name, filename) = disposition(head)?;
        rest = &rest[head_end + 4..];
        let end = find(rest, close.as_bytes()).ok_or_else(|| err("the multipart body is cut off"))?;
        parts.push(Part { name, filename, data: rest[..end].to_vec() });
        rest = &rest[end + close.len()..];
    }
}

/// `name` and `filename` from a part's headers.
fn disposition(head: &str) -> Result<(String, Option<String>), ValidationError> {
    let value = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
        .map(|(_, v)| v)
        .ok_or_else(|| err("a multipart part has no Content-Disposition"))?;
    let mut name = None;
    let mut filename = None;
    for param in value.split(';').skip(1) {
        if let Some((k, v)) = param.split_once('=') {
            let v = v.trim().trim_matches('"').to_owned();
            match k.trim().to_ascii_lowercase().as_str() {
                "name" => name = Some(v),
                "filename" => filename = Some(v),
                _ => {}
            }
        }
    }
    let name = name.filter(|n| !n.is_empty()).ok_or_else(|| err("a multipart part has no name"))?;
    Ok((name, filename))
}

/// Builds a form body (tests, the benchmark and the load generator send edits with it).
pub fn encode(boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"", p.name).as_bytes(),
        );
        if let Some(f) = &p.filename {
            out.extend_from_slice(format!("; filename=\"{f}\"\r\nContent-Type: application/octet-stream").as_bytes());
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&p.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, filename: Option<&str>, data: &[u8]) -> Part {
        Part { name: name.into(), filename: filename.map(Into::into), data: data.to_vec() }
    }

    #[test]
    fn reads_back_what_encode_writes() {
        let parts = vec![
            part("prompt", None, b"a cat"),
            part("image", Some("in.png"), b"\x89PNG\r\n--x\r\n"),
            part("n", None, b""),
        ];
        let body = encode("XyZ", &parts);
        assert_eq!(parse(&body, "XyZ").unwrap(), parts);
    }

    #[test]
    fn boundaries_and_broken_bodies_are_named() {
        assert_eq!(boundary("multipart/form-data; boundary=\"ab c\"").unwrap(), "ab c");
        for (ct, needle) in [("application/json", "expected multipart"), ("multipart/form-data", "without a boundary")]
        {
            assert!(boundary(ct).unwrap_err().message.contains(needle), "{ct}");
        }
        let cases: &[(&[u8], &str)] = &[
            (b"nothing", "no multipart boundary"),
            (b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue", "cut off"),
            (b"--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--", "no Content-Disposition"),
            (b"--b\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--", "no name"),
            (b"--bXX", "not followed by CRLF"),
        ];
        for (body, needle) in cases {
            let e = parse(body, "b").unwrap_err();
            assert_eq!(e.field, "body");
            assert!(e.message.contains(needle), "{e}");
        }
    }
}
