//! A request refused for one field: what the validation of a JSON body and
//! the decoding of an uploaded image both answer, and the HTTP layer turns
//! into a 400 naming that field.

/// A field that is wrong, and what would be right.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The JSON field, or `body` for the document.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}
