//! Reading a `config.json` field by field, so every problem names the file,
//! the field and what we accept. A known field with a value we do not
//! implement is refused (it would change the model's meaning); a field we do
//! not know at all is logged once and ignored, since newer diffusers and
//! transformers releases keep adding keys to the files they save.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A problem with one field of one config file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: field {field:?}: {reason}")]
pub struct FieldError {
    /// The config file.
    pub path: PathBuf,
    /// The field at fault (`<file>` for the document itself).
    pub field: String,
    /// What is wrong and what is allowed.
    pub reason: String,
}

/// The fields of one JSON object, consumed one by one.
pub struct Fields {
    path: PathBuf,
    obj: serde_json::Map<String, Value>,
}

impl Fields {
    /// Reads and parses `path` as a JSON object.
    pub fn read(path: &Path) -> Result<Self, FieldError> {
        let text = std::fs::read_to_string(path).map_err(|e| FieldError {
            path: path.into(),
            field: "<file>".into(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text` as the content of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, FieldError> {
        let err = |reason: String| FieldError { path: path.into(), field: "<file>".into(), reason };
        let text = python_non_finite_as_null(text);
        match serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))? {
            Value::Object(obj) => Ok(Self { path: path.into(), obj }),
            _ => Err(err("must be a JSON object".into())),
        }
    }

    /// An error about `field`.
    pub fn error(&self, field: &str, reason: impl Into<String>) -> FieldError {
        FieldError { path: self.path.clone(), field: field.into(), reason: reason.into() }
    }

    /// The field's value, `None` when absent or null.
    pub fn opt<T: DeserializeOwned>(&mut self, field: &str, expected: &str) -> Result<Option<T>, FieldError> {
        match self.obj.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(&v).map(Some).map_err(|_| self.error(field, format!("{v} is not {expected}"))),
        }
    }

    /// The field's value, or `default` when absent.
    pub fn or<T: DeserializeOwned>(&mut self, field: &str, expected: &str, default: T) -> Result<T, FieldError> {
        Ok(self.opt(field, expected)?.unwrap_or(default))
    }

    /// The field's value; absent is an error.
    pub fn req<T: DeserializeOwned>(&mut self, field: &str, expected: &str) -> Result<T, FieldError> {
        self.opt(field, expected)?.ok_or_else(|| self.error(field, format!("missing; expected {expected}")))
    }

    /// A field whose only supported values are `allowed` (absent or null is
    /// fine: it means the library default, which is what we implement).
    pub fn only(&mut self, field: &str, allowed: &[Value]) -> Result<(), FieldError> {
        match self.obj.remove(field) {
            None | Some(Value::Null) => Ok(()),
            Some(v) if allowed.contains(&v) => Ok(()),
            Some(v) => {
                let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
                Err(self.error(field, format!("{v} is not supported; supported: {}", list.join(", "))))
            }
        }
    }

    /// Fields that carry no meaning for inference (metadata, training-only).
    pub fn ignore(&mut self, fields: &[&str]) {
        for f in fields {
            self.obj.remove(*f);
        }
    }

    /// Fields nobody consumed, sorted. Keys starting with `_` (`_class_name`,
    /// `_diffusers_version`, …) are metadata and not listed.
    pub fn unknown(&self) -> Vec<String> {
        self.obj.keys().filter(|k| !k.starts_with('_')).cloned().collect()
    }

    /// Ends reading: every field nobody consumed is logged as a warning, once
    /// per file and field in this process, and ignored.
    pub fn finish(self) -> Result<(), FieldError> {
        static WARNED: std::sync::Mutex<Option<std::collections::BTreeSet<String>>> = std::sync::Mutex::new(None);
        let unknown = self.unknown();
        if unknown.is_empty() {
            return Ok(());
        }
        let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
        let warned = warned.get_or_insert_with(Default::default);
        for field in unknown {
            if warned.insert(format!("{}\0{field}", self.path.display())) {
                tracing::warn!(
                    file = %self.path.display(),
                    field = %field,
                    "unknown config field, ignored (a newer diffusers/transformers key this worker does not read)"
                );
            }
        }
        Ok(())
    }

    /// The file these fields came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A value that a config may give either once for all blocks or per block.
pub fn per_block<T: Clone + DeserializeOwned>(
    f: &mut Fields,
    field: &str,
    blocks: usize,
    default: Option<T>,
) -> Result<Option<Vec<T>>, FieldError> {
    let v: Option<Value> = f.opt(field, "a value")?;
    let Some(v) = v else { return Ok(default.map(|d| vec![d; blocks])) };
    if let Ok(one) = T::deserialize(&v) {
        return Ok(Some(vec![one; blocks]));
    }
    match Vec::<T>::deserialize(&v) {
        Ok(list) if list.len() == blocks => Ok(Some(list)),
        Ok(list) => Err(f.error(field, format!("has {} entries but the model has {blocks} blocks", list.len()))),
        Err(_) => Err(f.error(field, format!("{v} is neither a number nor a list of {blocks} numbers"))),
    }
}

/// Python's `json.dumps`, which diffusers saves its configs with, writes
/// `Infinity`, `-Infinity` and `NaN`, which JSON has not (DPM-Solver's
/// `lambda_min_clipped` is `-Infinity` by default); outside strings they
/// are read as `null`.
fn python_non_finite_as_null(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("Infinity") && !text.contains("NaN") {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !in_string && let Some(token) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
            out.push_str("null");
            rest = &rest[token.len()..];
            continue;
        }
        if in_string && escaped {
            escaped = false;
        } else if in_string && c == '\\' {
            escaped = true;
        } else if c == '"' {
            in_string = !in_string;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_file_field_and_allowed_values() {
        let p = Path::new("/m/unet/config.json");
        let mut f = Fields::parse(p, r#"{"a": "x", "act_fn": "relu", "_class_name": "U", "zzz": 1}"#).unwrap();
        let err = f.req::<usize>("a", "an integer").unwrap_err().to_string();
        assert!(err.contains("/m/unet/config.json") && err.contains("\"a\"") && err.contains("an integer"), "{err}");
        let err = f.only("act_fn", &["silu".into()]).unwrap_err().to_string();
        assert!(err.contains("\"relu\"") && err.contains("\"silu\""), "{err}");
        assert_eq!(f.unknown(), ["zzz"], "metadata keys are not unknown");
        f.finish().expect("an unknown field is a warning, not an error");
    }

    #[test]
    fn per_block_accepts_one_value_or_a_list_of_the_right_length() {
        let p = Path::new("c.json");
        let mut f = Fields::parse(p, r#"{"one": 8, "list": [5, 10], "bad": [1, 2, 3]}"#).unwrap();
        assert_eq!(per_block::<usize>(&mut f, "one", 2, None).unwrap(), Some(vec![8, 8]));
        assert_eq!(per_block::<usize>(&mut f, "list", 2, None).unwrap(), Some(vec![5, 10]));
        assert!(per_block::<usize>(&mut f, "bad", 2, None).unwrap_err().to_string().contains("3 entries"));
        assert_eq!(per_block::<usize>(&mut f, "absent", 2, Some(1)).unwrap(), Some(vec![1, 1]));
    }

    #[test]
    fn python_non_finite_numbers_read_as_null_outside_strings() {
        let text = r#"{"a": -Infinity, "b": "NaN and -Infinity stay", "c": [Infinity, NaN], "d": "\"NaN"}"#;
        let f = Fields::parse(Path::new("x.json"), text).unwrap();
        assert_eq!(f.obj["a"], Value::Null);
        assert_eq!(f.obj["b"], "NaN and -Infinity stay");
        assert_eq!(f.obj["c"], serde_json::json!([null, null]));
        assert_eq!(f.obj["d"], "\"NaN");
    }
}
