//! [`ExportSetupError`]: why an exporter could not be built. The exporter
//! builders and the TLS file readers both return it.

use std::path::PathBuf;

use crate::option_values::OptionsError;

/// Why an exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExportSetupError {
    /// The options are invalid.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// A TLS file could not be read.
    #[error("cannot read {what} file {path}: {source}")]
    ReadFile {
        /// Option naming the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A TLS file holds no usable PEM data.
    #[error("invalid {what} file {path}: {reason}")]
    Pem {
        /// Option naming the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// TLS could not be set up.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The exporter's I/O thread could not be started.
    #[error("cannot start the exporter's I/O runtime: {0}")]
    Runtime(std::io::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// `opentelemetry-otlp` refused the configuration.
    #[error("cannot build the OTLP exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The JSON-lines file could not be opened.
    #[error("cannot open {path} for appending spans: {source}")]
    OpenFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}
