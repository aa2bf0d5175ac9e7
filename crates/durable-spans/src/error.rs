//! [`DecodeError`]: why saved span data could not be read.

/// Why saved span data could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape (missing key, wrong type).
    #[error("span data is not valid: {0}")]
    Invalid(String),
    /// A trace or span id of zero, which no real span has.
    #[error("span data has an all-zero trace or span id")]
    ZeroId,
}
