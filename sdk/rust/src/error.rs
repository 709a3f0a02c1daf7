//! The error a job returns; its message becomes the job's `plugin_error`.

use std::fmt;

/// A job's failure, carrying the message the host records.
///
/// Any `std::error::Error` converts into it, so `?` works on serde, parsing
/// and I/O errors; [`Error::msg`] makes one from text.
#[derive(Debug)]
pub struct Error(String);

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self(message.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        Self(error.to_string())
    }
}
