//! `dspans collector`: a local OTLP receiver (gRPC and HTTP) that appends
//! every accepted request as one OTLP-JSON line to a file.
//!
//! A span received again unchanged (same ids and content, as an exporter
//! that delivers at least once may send after a crash) is written only
//! once; a span whose ids were seen with other content is written too and
//! logged as a conflict ([`Dedupe`]).
//!
//! Malformed, oversized or too deeply nested requests are refused by the
//! [`crate::receiver`] with the protocol's error, and serving goes on, so
//! every accepted request can be read back. Every line is written and
//! flushed before the request is acknowledged, so after
//! [`Collector::shutdown`] the file holds every accepted request, whole; a
//! write that fails (disk full) leaves no partial line and the request is
//! answered "unavailable", to be sent again.
//!
//! At start the spans already in the file are read, one line at a time,
//! into the memory of spans seen; unreadable lines are skipped, counted
//! and logged as a warning.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use dspans_otlp::collector::{Collector, CollectorConfig};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let config = CollectorConfig::new(dir.path().join("traces.jsonl"))
//!     .grpc(Some("127.0.0.1:0".parse().unwrap()))
//!     .http(Some("127.0.0.1:0".parse().unwrap()));
//! let collector = Collector::start(&config).await.unwrap();
//! for line in collector.listen_lines() {
//!     println!("{line}"); // "grpc 127.0.0.1:PORT", "http 127.0.0.1:PORT"
//! }
//! collector.shutdown().await.unwrap();
//! # });
//! ```

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::receiver::{
    Dedupe, JsonLinesSink, Receiver, ReceiverError, RunningReceiver, Timeouts, DEFAULT_GRPC_ADDR,
    DEFAULT_HTTP_ADDR, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_REQUEST_BYTES,
};

/// Spans remembered for dropping repeats (about 50 MB at most).
const REMEMBERED_SPANS: usize = 1_000_000;

/// Collector failures.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The output file could not be opened for appending.
    #[error("cannot open {path} for appending: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The receiver could not start, or a server failed.
    #[error(transparent)]
    Receiver(#[from] ReceiverError),
    /// The listen addresses could not be printed.
    #[error("cannot print the listen addresses: {0}")]
    Announce(std::io::Error),
}

/// What to listen on and where to write.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// OTLP/gRPC listen address; `None` for no gRPC.
    pub grpc: Option<SocketAddr>,
    /// OTLP/HTTP listen address; `None` for no HTTP.
    pub http: Option<SocketAddr>,
    /// The OTLP-JSON lines file appended to (created when missing).
    pub out: PathBuf,
    /// Largest accepted request, after decompression.
    pub max_request_bytes: usize,
    /// PEM certificate chain and key: serve both protocols over TLS.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    /// Accept only requests with `Authorization: Bearer TOKEN`.
    pub bearer_token: Option<String>,
    /// Open connections per listener; more are closed as accepted.
    pub max_connections: usize,
    /// Time limits of the connections.
    pub timeouts: Timeouts,
}

impl CollectorConfig {
    /// Writes to `out`, listening on the standard loopback addresses
    /// ([`DEFAULT_GRPC_ADDR`], [`DEFAULT_HTTP_ADDR`]).
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            grpc: DEFAULT_GRPC_ADDR.parse().ok(),
            http: DEFAULT_HTTP_ADDR.parse().ok(),
            out: out.into(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            tls: None,
            bearer_token: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            timeouts: Timeouts::default(),
        }
    }

    /// Sets (or with `None`, turns off) the gRPC listen address.
    pub fn grpc(mut self, addr: Option<SocketAddr>) -> Self {
        self.grpc = addr;
        self
    }

    /// Sets (or with `None`, turns off) the HTTP listen address.
    pub fn http(mut self, addr: Option<SocketAddr>) -> Self {
        self.http = addr;
        self
    }

    /// Sets the largest accepted request.
    pub fn max_request_bytes(mut self, n: usize) -> Self {
        self.max_request_bytes = n;
        self
    }

    /// Serves both protocols over TLS with this PEM certificate chain and key.
    pub fn tls_pem(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.tls = Some((cert_pem, key_pem));
        self
    }

    /// Accepts only requests with `Authorization: Bearer TOKEN`.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// Sets the limit of open connections per listener.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets the connections' time limits.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }
}

/// A running collector.
#[derive(Debug)]
pub struct Collector {
    running: RunningReceiver,
    out: PathBuf,
    repeats: Dedupe<JsonLinesSink>,
}

impl Collector {
    /// Opens the output file and starts listening. Must be called within a
    /// tokio runtime.
    pub async fn start(config: &CollectorConfig) -> Result<Collector, CollectorError> {
        let file = JsonLinesSink::open(&config.out).map_err(|source| CollectorError::Output {
            path: config.out.clone(),
            source,
        })?;
        let sink = Dedupe::new(file, REMEMBERED_SPANS);
        // Spans already in the file (a collector restarted on it) count as
        // seen, so an exporter's resend after the restart is not written twice.
        match crate::jsonl::scan_json_lines(&config.out, |request| {
            sink.remember(std::iter::once(&request))
        }) {
            Ok(read) if read.unreadable > 0 => tracing::warn!(
                out = %config.out.display(),
                requests = read.requests,
                skipped = read.unreadable,
                "unreadable lines in the output skipped; repeats of their spans will be written"
            ),
            Ok(read) => tracing::debug!(requests = read.requests, "spans in the output remembered"),
            Err(error) => {
                tracing::warn!(%error, "existing spans in the output not read; repeats of them will be written")
            }
        }
        let mut builder = Receiver::builder()
            .max_request_bytes(config.max_request_bytes)
            .max_connections(config.max_connections)
            .timeouts(config.timeouts);
        if let Some((cert, key)) = &config.tls {
            builder = builder.tls_pem(cert.clone(), key.clone());
        }
        if let Some(token) = &config.bearer_token {
            builder = builder.bearer_token(token.clone());
        }
        if let Some(addr) = config.grpc {
            builder = builder.grpc(addr);
        }
        if let Some(addr) = config.http {
            builder = builder.http(addr);
        }
        let sink_repeats = sink.clone();
        let running = builder.start(sink).await?;
        Ok(Collector {
            running,
            out: config.out.clone(),
            repeats: sink_repeats,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.running.grpc_addr()
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.running.http_addr()
    }

    /// The file written to.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// The machine-readable announcement of the bound addresses, one line
    /// each: `grpc ADDR` then `http ADDR` (only those listened on).
    pub fn listen_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(addr) = self.grpc_addr() {
            lines.push(format!("grpc {addr}"));
        }
        if let Some(addr) = self.http_addr() {
            lines.push(format!("http {addr}"));
        }
        lines
    }

    /// Spans received again unchanged and not written.
    pub fn repeats(&self) -> u64 {
        self.repeats.repeats()
    }

    /// Spans written whose ids had been received with other content.
    pub fn conflicts(&self) -> u64 {
        self.repeats.conflicts()
    }

    /// Stops accepting, lets open requests finish, and returns once every
    /// accepted request is in the file.
    pub async fn shutdown(self) -> Result<(), CollectorError> {
        self.running.shutdown().await?;
        Ok(())
    }
}

/// Runs a collector until `stop` completes: starts it, writes
/// [`Collector::listen_lines`] to `announce` (flushed at once, so a parent
/// process can read the ports), then shuts down cleanly.
pub async fn run<W, F>(
    config: &CollectorConfig,
    announce: &mut W,
    stop: F,
) -> Result<(), CollectorError>
where
    W: Write,
    F: Future<Output = ()>,
{
    let collector = Collector::start(config).await?;
    let mut text = collector.listen_lines().join("\n");
    text.push('\n');
    announce
        .write_all(text.as_bytes())
        .and_then(|()| announce.flush())
        .map_err(CollectorError::Announce)?;
    tracing::info!(out = %collector.out().display(), "collector writing OTLP-JSON lines");
    stop.await;
    tracing::info!("collector stopping");
    let repeats = collector.repeats();
    if repeats > 0 {
        tracing::info!(repeats, "spans received more than once were written once");
    }
    let conflicts = collector.conflicts();
    if conflicts > 0 {
        tracing::warn!(
            conflicts,
            "spans were written whose ids had been received with other content"
        );
    }
    collector.shutdown().await
}
