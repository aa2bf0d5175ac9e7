//! A real OTLP trace receiver: gRPC (`TraceService`) and HTTP
//! (`POST /v1/traces`, protobuf or JSON, optionally gzip), handing every
//! request to a [`TraceSink`].
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use dspans_otlp::receiver::{MemorySink, Receiver};
//!
//! let sink = MemorySink::new();
//! let running = Receiver::builder()
//!     .grpc("127.0.0.1:0".parse().unwrap())
//!     .http("127.0.0.1:0".parse().unwrap())
//!     .start(sink.clone())
//!     .await
//!     .unwrap();
//! println!("gRPC on {}", running.grpc_endpoint().unwrap());
//! running.shutdown().await.unwrap();
//! # });
//! ```

mod dedupe;
mod grpc;
mod http;
mod sink;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use dedupe::Dedupe;
pub use sink::{
    span_count, spans_of, JsonLinesSink, MemorySink, SinkError, TraceSink, WaitTimeout,
};

/// The standard OTLP/gRPC listen address on loopback.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:4317";
/// The standard OTLP/HTTP listen address on loopback.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:4318";
/// Default limit of one request's size (4 MiB, as gRPC's default).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// How long [`RunningReceiver::shutdown`] lets open connections finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Receiver failures.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// Neither gRPC nor HTTP was asked for.
    #[error("the receiver needs a gRPC or an HTTP listen address")]
    NoListener,
    /// A listen address could not be bound.
    #[error("cannot listen for OTLP/{protocol} on {addr}: {source}")]
    Bind {
        /// `grpc` or `http`.
        protocol: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The gRPC TLS certificate or key is unusable.
    #[error("invalid gRPC TLS {what}: {reason}")]
    Tls {
        /// `certificate` or `key`.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A server stopped with an error.
    #[error("the OTLP/{protocol} server failed: {message}")]
    Serve {
        /// `grpc` or `http`.
        protocol: &'static str,
        /// What happened.
        message: String,
    },
}

/// Entry point: [`Receiver::builder`].
#[derive(Debug)]
pub struct Receiver;

impl Receiver {
    /// A builder with no listener and [`DEFAULT_MAX_REQUEST_BYTES`].
    pub fn builder() -> ReceiverBuilder {
        ReceiverBuilder::default()
    }
}

/// Configures and starts a receiver.
#[derive(Debug, Clone)]
pub struct ReceiverBuilder {
    grpc: Option<SocketAddr>,
    grpc_tls: Option<(Vec<u8>, Vec<u8>)>,
    http: Option<SocketAddr>,
    max_request_bytes: usize,
}

impl Default for ReceiverBuilder {
    fn default() -> Self {
        Self {
            grpc: None,
            grpc_tls: None,
            http: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}

impl ReceiverBuilder {
    /// Serve OTLP/gRPC on `addr` (port 0 picks a free port).
    pub fn grpc(mut self, addr: SocketAddr) -> Self {
        self.grpc = Some(addr);
        self
    }

    /// Serve gRPC over TLS with this PEM certificate chain and key.
    pub fn grpc_tls_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.grpc_tls = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Serve OTLP/HTTP on `addr` (port 0 picks a free port).
    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }

    /// Largest accepted request, after decompression; larger ones get
    /// `RESOURCE_EXHAUSTED` / HTTP 413.
    pub fn max_request_bytes(mut self, n: usize) -> Self {
        self.max_request_bytes = n;
        self
    }

    /// Binds the listeners and serves until [`RunningReceiver::shutdown`]
    /// (or drop). Must be called within a tokio runtime.
    pub async fn start<S: TraceSink>(self, sink: S) -> Result<RunningReceiver, ReceiverError> {
        if self.grpc.is_none() && self.http.is_none() {
            return Err(ReceiverError::NoListener);
        }
        if let Some((cert, key)) = &self.grpc_tls {
            check_tls_pem(cert, key)?;
        }
        let bind = |protocol, addr| async move {
            TcpListener::bind(addr)
                .await
                .and_then(|l| l.local_addr().map(|a| (l, a)))
                .map_err(|source| ReceiverError::Bind {
                    protocol,
                    addr,
                    source,
                })
        };
        // Bind both before serving, so a failure leaves nothing running.
        let grpc = match self.grpc {
            Some(addr) => Some(bind("grpc", addr).await?),
            None => None,
        };
        let http = match self.http {
            Some(addr) => Some(bind("http", addr).await?),
            None => None,
        };
        let sink: Arc<dyn TraceSink> = Arc::new(sink);
        let (stop, stopped) = watch::channel(false);
        let max = self.max_request_bytes;
        let mut tasks = Vec::new();
        let mut grpc_addr = None;
        let mut http_addr = None;
        if let Some((listener, addr)) = grpc {
            tracing::info!(%addr, "OTLP/gRPC receiver listening");
            grpc_addr = Some(addr);
            let (sink, stopped) = (Arc::clone(&sink), stopped.clone());
            let tls = self.grpc_tls.clone();
            tasks.push(tokio::spawn(async move {
                grpc::serve(listener, tls, sink, max, stopped)
                    .await
                    .map_err(|e| ReceiverError::Serve {
                        protocol: "grpc",
                        message: e.to_string(),
                    })
            }));
        }
        if let Some((listener, addr)) = http {
            tracing::info!(%addr, "OTLP/HTTP receiver listening");
            http_addr = Some(addr);
            tasks.push(tokio::spawn(async move {
                http::serve(listener, sink, max, stopped)
                    .await
                    .map_err(|e| ReceiverError::Serve {
                        protocol: "http",
                        message: e.to_string(),
                    })
            }));
        }
        Ok(RunningReceiver {
            grpc_addr,
            http_addr,
            stop,
            tasks,
        })
    }
}

/// Refuses a certificate/key pair rustls could not load.
fn check_tls_pem(cert: &[u8], key: &[u8]) -> Result<(), ReceiverError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ReceiverError::Tls {
            what: "certificate",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ReceiverError::Tls {
            what: "certificate",
            reason: "no PEM certificate found".into(),
        });
    }
    PrivateKeyDer::from_pem_slice(key).map_err(|e| ReceiverError::Tls {
        what: "key",
        reason: e.to_string(),
    })?;
    Ok(())
}

/// A started receiver. Dropping it stops the servers too (without waiting).
#[derive(Debug)]
pub struct RunningReceiver {
    grpc_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), ReceiverError>>>,
}

impl RunningReceiver {
    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// `http://ADDR`, the value for a gRPC exporter's `endpoint`.
    pub fn grpc_endpoint(&self) -> Option<String> {
        self.grpc_addr.map(|a| format!("http://{a}"))
    }

    /// `http://ADDR`, the base for an HTTP exporter's `endpoint`
    /// (`/v1/traces` is the path served).
    pub fn http_endpoint(&self) -> Option<String> {
        self.http_addr.map(|a| format!("http://{a}"))
    }

    /// Stops accepting, lets open requests finish (up to
    /// [`SHUTDOWN_GRACE`]), and reports a server that had failed.
    pub async fn shutdown(mut self) -> Result<(), ReceiverError> {
        let _ = self.stop.send(true);
        let mut result = Ok(());
        for mut task in std::mem::take(&mut self.tasks) {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => result = result.and(Err(e)),
                Ok(Err(join)) => {
                    result = result.and(Err(ReceiverError::Serve {
                        protocol: "otlp",
                        message: join.to_string(),
                    }))
                }
                Err(_) => {
                    tracing::warn!(
                        "OTLP receiver connections still open after the grace period; closing them"
                    );
                    task.abort();
                }
            }
        }
        result
    }
}

impl Drop for RunningReceiver {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
