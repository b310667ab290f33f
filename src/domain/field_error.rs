//! A problem in a spec (config file entry or API body), with the path of the
//! field inside it, so both surfaces can point at the same spot.

/// What is wrong and where, relative to the spec that was checked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    /// Dotted path inside the spec (`region`, `templates[1]`).
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}
