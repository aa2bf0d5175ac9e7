//! Where received requests go.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::{mpsc, watch};

use crate::jsonl::JsonLinesWriter;

/// A sink refused a request; the receiver answers with the protocol's
/// matching error.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Not now (a file that cannot be written, a consumer gone): gRPC
    /// `UNAVAILABLE`, HTTP 503, so that the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// Never (it could not be stored as it is): gRPC `INVALID_ARGUMENT`,
    /// HTTP 400, so that the client drops it.
    #[error("{0}")]
    Invalid(String),
}

/// Receives every accepted `ExportTraceServiceRequest`, in arrival order
/// per connection. Called on the receiver's async tasks: keep it quick.
pub trait TraceSink: Send + Sync + 'static {
    /// Takes one request.
    fn accept(&self, request: ExportTraceServiceRequest) -> Result<(), SinkError>;
}

impl<T: TraceSink> TraceSink for Arc<T> {
    fn accept(&self, request: ExportTraceServiceRequest) -> Result<(), SinkError> {
        (**self).accept(request)
    }
}

impl TraceSink for mpsc::UnboundedSender<ExportTraceServiceRequest> {
    fn accept(&self, request: ExportTraceServiceRequest) -> Result<(), SinkError> {
        self.send(request)
            .map_err(|_| SinkError::Unavailable("the request consumer has gone".into()))
    }
}

/// Number of spans in a request.
pub fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

/// All spans of some requests, flattened, in order.
pub fn spans_of<'a>(
    requests: impl IntoIterator<Item = &'a ExportTraceServiceRequest>,
) -> Vec<Span> {
    requests
        .into_iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| ss.spans.iter().cloned())
        .collect()
}

/// The deadline passed before enough spans arrived.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {wanted} spans; {received} arrived")]
pub struct WaitTimeout {
    /// Spans waited for.
    pub wanted: usize,
    /// Spans received by the deadline.
    pub received: usize,
    /// How long we waited.
    pub waited: Duration,
}

/// Keeps requests in memory; tests wait on it with a deadline.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use dspans_otlp::receiver::{MemorySink, TraceSink};
/// use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
///
/// let sink = MemorySink::new();
/// sink.accept(ExportTraceServiceRequest::default()).unwrap();
/// assert_eq!(sink.requests().len(), 1);
/// assert!(sink.wait_for_spans(1, Duration::from_millis(10)).await.is_err());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct MemorySink {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    spans: Arc<watch::Sender<usize>>,
}

impl Default for MemorySink {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self {
            requests: Arc::default(),
            spans: Arc::new(watch::channel(0).0),
        }
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Spans received so far, flattened, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        self.requests
            .lock()
            .map(|r| spans_of(r.iter()))
            .unwrap_or_default()
    }

    /// Number of spans received so far.
    pub fn span_count(&self) -> usize {
        *self.spans.borrow()
    }

    /// Waits until at least `n` spans arrived, or fails after `timeout`.
    /// Returns the spans received by then.
    pub async fn wait_for_spans(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Span>, WaitTimeout> {
        let mut rx = self.spans.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|count| *count >= n)).await;
        match reached {
            Ok(Ok(_)) => Ok(self.spans()),
            _ => Err(WaitTimeout {
                wanted: n,
                received: self.span_count(),
                waited: timeout,
            }),
        }
    }
}

impl TraceSink for MemorySink {
    fn accept(&self, request: ExportTraceServiceRequest) -> Result<(), SinkError> {
        let added = span_count(&request);
        self.requests
            .lock()
            .map_err(|_| SinkError::Unavailable("memory sink lock poisoned".into()))?
            .push(request);
        self.spans.send_modify(|c| *c += added);
        Ok(())
    }
}

/// Appends each request as one OTLP-JSON line to a file and flushes it,
/// as the file's only writer: a write that fails leaves no partial line
/// ([`JsonLinesWriter`]).
#[derive(Debug)]
pub struct JsonLinesSink {
    writer: JsonLinesWriter,
}

impl JsonLinesSink {
    /// Opens (appending) or creates `path`; a partial last line left by an
    /// interrupted writer is removed ([`JsonLinesWriter::open_sole_writer`]).
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        Ok(Self {
            writer: JsonLinesWriter::open_sole_writer(path)?,
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        self.writer.path()
    }
}

impl TraceSink for JsonLinesSink {
    fn accept(&self, request: ExportTraceServiceRequest) -> Result<(), SinkError> {
        self.writer.append(&request).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidInput {
                return SinkError::Invalid(e.to_string());
            }
            tracing::error!(path = %self.writer.path().display(), error = %e, "cannot append received spans");
            SinkError::Unavailable(format!("cannot write {}: {e}", self.writer.path().display()))
        })
    }
}
