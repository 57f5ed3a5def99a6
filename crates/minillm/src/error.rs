//! The library's error type: every variant says what went wrong and, where it helps, what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The io::Error is part of the message rather than a `source`, so printing the error
    // chain does not say it twice.
    #[error("cannot read {}: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("cannot write {}: {cause}", path.display())]
    Write { path: PathBuf, cause: std::io::Error },
    /// A file exists but its contents are not what its format requires.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    /// More tokens than the model's context (or the cache's) holds.
    #[error("the text is {tokens} tokens but the model's context holds {context}; shorten it")]
    TooLong { tokens: usize, context: usize },
    /// A token id (or target id) the vocabulary does not have.
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    UnknownToken { id: u32, vocab: usize },
    /// Text holding a special token's text where special tokens are not allowed.
    #[error(
        "the text contains the special token {name} (id {id}), which is refused unless special tokens are allowed"
    )]
    SpecialTokenInText { name: String, id: u32 },
    /// Training stopped because a number became infinite or NaN; nothing was updated.
    #[error(
        "the {quantity} became {value} at step {step}; stopping (the last checkpoint is kept). Try a lower lr or grad_clip"
    )]
    Diverged { quantity: &'static str, value: f32, step: usize },
    /// One process of a data-parallel run failed; every process stops with this error.
    #[error("rank {rank} failed: {message}")]
    Rank { rank: usize, message: String },
    /// Input that is well-formed but cannot be used, said in a sentence.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Error {
        Error::Format { path: path.into(), message: message.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A value from outside quoted for a message: in double quotes, with control characters and
/// quotes escaped as JSON escapes them, so it can neither break the line nor hide in a terminal.
/// (Messages never print a Rust `Debug` form; this is the one way they quote.)
pub fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// An optional value from outside for a message: [`quoted`], or `missing` when it is absent.
pub fn quoted_or_missing(text: Option<&str>) -> String {
    text.map_or("missing".into(), quoted)
}

/// A tensor's shape for a message: `[64, 128]`.
pub fn shape<T: std::fmt::Display>(dims: &[T]) -> String {
    let dims: Vec<String> = dims.iter().map(T::to_string).collect();
    format!("[{}]", dims.join(", "))
}
