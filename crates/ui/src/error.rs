//! [`UiError`]: why the viewer could not start or read its sources.

/// The viewer's failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    /// An address to listen on could not be bound.
    #[error("cannot listen on {addr}: {source} (give another address, e.g. 127.0.0.1:0 for any free port)")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The OTLP receivers could not start.
    #[error("cannot receive OTLP: {0} (use --grpc/--http with other addresses, or --no-otlp)")]
    Receiver(#[from] dspans_otlp::receiver::ReceiverError),
    /// A file to show could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be read.
    #[error("cannot read the store: {0}")]
    Store(String),
}
