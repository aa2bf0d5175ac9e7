//! A real OTLP trace receiver: gRPC (`TraceService`) and HTTP
//! (`POST /v1/traces`, protobuf or JSON, optionally gzip), handing every
//! request to a [`TraceSink`].
//!
//! Requests over the size limit get `RESOURCE_EXHAUSTED` / 413, attribute
//! values nested deeper than [`MAX_VALUE_DEPTH`] `INVALID_ARGUMENT` / 400.
//! Connections have time limits ([`Timeouts`]); a failure to accept one
//! (out of file descriptors) is logged as an error and accepting pauses
//! briefly. Both protocols can be served over TLS
//! ([`ReceiverBuilder::tls_pem`]) and require a bearer token
//! ([`ReceiverBuilder::bearer_token`]); listening beyond loopback without a
//! token is warned about.
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

mod builder;
mod dedupe;
mod grpc;
mod guard;
mod http;
mod serve;
mod sink;
mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::values::MAX_VALUE_DEPTH;
pub use builder::{Receiver, ReceiverBuilder};
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
/// Default limit of open connections per listener. Two listeners at the
/// limit, the output file and the runtime fit in the common soft limit of
/// 1,024 file descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 500;
/// How long [`RunningReceiver::shutdown`] lets open connections finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Time limits of the receiver's connections, so that slow or silent
/// clients cannot hold connections (and memory) for long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// An HTTP/1 request's headers, and a kept-alive connection's next
    /// request, must arrive within this; a TLS handshake must end within
    /// it. Default 10 s.
    pub header: Duration,
    /// A request must arrive whole (body included) and be answered within
    /// this, else it gets HTTP 408 / gRPC `DEADLINE_EXCEEDED`. Default 30 s.
    pub request: Duration,
    /// A connection with no request under way for this long (one that never
    /// sends any included) is closed; HTTP/2 ones with a GOAWAY. Default 60 s.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(10),
            request: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }
}

/// The two OTLP transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Grpc,
    Http,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

/// Why a decoded request is refused before any sink sees it: an attribute
/// value nested deeper than [`MAX_VALUE_DEPTH`].
fn invalid(request: &ExportTraceServiceRequest) -> Option<String> {
    let depth = crate::values::max_value_depth(request);
    (depth > MAX_VALUE_DEPTH).then(|| {
        format!("an attribute value is nested {depth} deep; at most {MAX_VALUE_DEPTH} is accepted")
    })
}

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
    /// A TLS certificate or key is unusable.
    #[error("invalid TLS {what}: {reason}")]
    Tls {
        /// `certificate`, `key` or `configuration`.
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
