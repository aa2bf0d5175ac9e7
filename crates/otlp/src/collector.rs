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

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::options::ExportOptions;
use crate::receiver::{
    Dedupe, JsonLinesSink, Receiver, ReceiverError, RunningReceiver, SinkError, Timeouts,
    TraceSink, DEFAULT_GRPC_ADDR, DEFAULT_HTTP_ADDR, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_REQUEST_BYTES,
};
use crate::relay::{Forwarder, Spool};

/// Spans remembered for dropping repeats, per output (about 50 MB at most
/// each).
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
    /// The relay's spool or its upstream client could not be set up.
    #[error("cannot set up forwarding: {0}")]
    Forward(String),
}

/// Forwarding to an OTLP backend through a spool ([`crate::relay`]).
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// The upstream: endpoint, protocol, headers, TLS, compression.
    pub upstream: ExportOptions,
    /// The spool directory (created, mode 0700).
    pub spool: PathBuf,
    /// The journal's size limit; over it, requests are refused for now.
    pub max_bytes: u64,
}

/// What to listen on and where to write.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// OTLP/gRPC listen address; `None` for no gRPC.
    pub grpc: Option<SocketAddr>,
    /// OTLP/HTTP listen address; `None` for no HTTP.
    pub http: Option<SocketAddr>,
    /// The OTLP-JSON lines file appended to (created when missing), if any.
    pub out: Option<PathBuf>,
    /// Forwarding to a backend through a spool, if any.
    pub forward: Option<ForwardConfig>,
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
            out: Some(out.into()),
            forward: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            tls: None,
            bearer_token: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            timeouts: Timeouts::default(),
        }
    }

    /// Also (or, with [`CollectorConfig::without_file`], only) forwards
    /// to a backend through a spool.
    pub fn forward(mut self, forward: ForwardConfig) -> Self {
        self.forward = Some(forward);
        self
    }

    /// Writes no file: with [`CollectorConfig::forward`], a pure relay.
    pub fn without_file(mut self) -> Self {
        self.out = None;
        self
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

/// Where accepted requests go: the spool (when forwarding), then the file
/// (when writing one), each behind its own memory of the spans it took. A
/// request refused by either is refused; the sender's resend is then
/// dropped by the one that took it and taken by the one that refused it, so
/// neither gets a span twice.
#[derive(Debug, Clone)]
struct Outputs {
    spool: Option<Dedupe<Spool>>,
    file: Option<Dedupe<JsonLinesSink>>,
}

impl Outputs {
    /// (repeats, conflicts) of the first output: the spool when
    /// forwarding, else the file.
    fn counts(&self) -> (u64, u64) {
        match (&self.spool, &self.file) {
            (Some(spool), _) => (spool.repeats(), spool.conflicts()),
            (None, Some(file)) => (file.repeats(), file.conflicts()),
            (None, None) => (0, 0),
        }
    }
}

impl TraceSink for Outputs {
    fn accept(&self, request: ExportTraceServiceRequest) -> Result<(), SinkError> {
        match (&self.spool, &self.file) {
            (Some(spool), Some(file)) => {
                spool.accept(request.clone())?;
                file.accept(request)
            }
            (Some(spool), None) => spool.accept(request),
            (None, Some(file)) => file.accept(request),
            (None, None) => Ok(()),
        }
    }
}

/// A running collector.
#[derive(Debug)]
pub struct Collector {
    running: RunningReceiver,
    out: Option<PathBuf>,
    outputs: Outputs,
    forwarder: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

/// Marks the spans of the requests in `path` as seen by `sink`.
fn remember_file<S: TraceSink>(sink: &Dedupe<S>, path: &Path) {
    if !path.exists() {
        return;
    }
    match crate::jsonl::scan_json_lines(path, |request| sink.remember(std::iter::once(&request))) {
        Ok(read) if read.unreadable > 0 => tracing::warn!(
            file = %path.display(),
            requests = read.requests,
            skipped = read.unreadable,
            "unreadable lines skipped; repeats of their spans will be taken again"
        ),
        Ok(read) => tracing::debug!(
            requests = read.requests,
            "spans already received remembered"
        ),
        Err(error) => {
            tracing::warn!(%error, "spans already received not read; repeats of them will be taken again")
        }
    }
}

impl Collector {
    /// Opens the output file (and the spool) and starts listening (and
    /// forwarding). Must be called within a tokio runtime.
    pub async fn start(config: &CollectorConfig) -> Result<Collector, CollectorError> {
        let file = match &config.out {
            Some(out) => {
                Some(
                    JsonLinesSink::open(out).map_err(|source| CollectorError::Output {
                        path: out.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let (spool, forwarder) = match &config.forward {
            Some(forward) => {
                let spool = Spool::open(&forward.spool, forward.max_bytes).map_err(|e| {
                    CollectorError::Forward(format!("spool {}: {e}", forward.spool.display()))
                })?;
                let sender = crate::send::RequestSender::new(&forward.upstream)
                    .map_err(|e| CollectorError::Forward(e.to_string()))?;
                (Some(spool.clone()), Some(Forwarder::new(spool, sender)))
            }
            None => (None, None),
        };
        // Spans already taken (a collector restarted on its file or spool)
        // count as seen, so an exporter's resend after the restart is not
        // taken twice.
        let spool = spool.map(|spool| {
            let sink = Dedupe::new(spool.clone(), REMEMBERED_SPANS);
            remember_file(&sink, &spool.previous());
            remember_file(&sink, &spool.journal());
            sink
        });
        let file = file.map(|file| {
            let sink = Dedupe::new(file, REMEMBERED_SPANS);
            if let Some(out) = &config.out {
                remember_file(&sink, out);
            }
            sink
        });
        let outputs = Outputs { spool, file };
        let forwarder = forwarder.map(|forwarder| {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(forwarder.run(async {
                let _ = stopped.await;
            }));
            (stop, task)
        });
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
        let running = builder.start(outputs.clone()).await?;
        Ok(Collector {
            running,
            out: config.out.clone(),
            outputs,
            forwarder,
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

    /// The file written to, if any.
    pub fn out(&self) -> Option<&Path> {
        self.out.as_deref()
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
        self.outputs.counts().0
    }

    /// Spans written whose ids had been received with other content.
    pub fn conflicts(&self) -> u64 {
        self.outputs.counts().1
    }

    /// Stops accepting, lets open requests finish, and returns once every
    /// accepted request is in the file.
    pub async fn shutdown(self) -> Result<(), CollectorError> {
        self.running.shutdown().await?;
        if let Some((stop, task)) = self.forwarder {
            let _ = stop.send(());
            let _ = task.await;
        }
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
    match (collector.out(), &config.forward) {
        (Some(out), _) => tracing::info!(out = %out.display(), "collector writing OTLP-JSON lines"),
        (None, Some(forward)) => tracing::info!(spool = %forward.spool.display(),
            upstream = %forward.upstream.traces_endpoint(), "relay forwarding through its spool"),
        (None, None) => {
            tracing::warn!("collector with neither a file nor an upstream: spans are dropped")
        }
    }
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
