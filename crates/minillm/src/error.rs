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
    /// Input that is well-formed but cannot be used (an unknown id, a disallowed special token).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Error {
        Error::Format { path: path.into(), message: message.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
