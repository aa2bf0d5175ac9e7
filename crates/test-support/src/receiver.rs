//! A real OTLP receiver in the test process.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::proto::trace::v1::Span;
use dspans_otlp::receiver::{MemorySink, Receiver, ReceiverError, RunningReceiver};
use tokio::runtime::Runtime;

use crate::wait_for;

/// A real OTLP receiver (`dspans_otlp::receiver`, gRPC and HTTP on
/// 127.0.0.1) keeping what it receives in memory, shut down when dropped.
///
/// It runs on a tokio runtime of its own, so that nothing the test does
/// stalls it: the SDK's simple span processor blocks its thread while it
/// exports, and a test's single-threaded runtime may be busy. It can be
/// started and dropped in synchronous and asynchronous tests alike.
///
/// ```no_run
/// use std::time::Duration;
/// use dspans_test_support::TestReceiver;
///
/// let receiver = TestReceiver::start();
/// let grpc = receiver.endpoint(); // http://127.0.0.1:PORT
/// let http = receiver.http_endpoint(); // POST /v1/traces there
/// // … export three spans to either …
/// let spans = receiver.wait_for_spans(3, Duration::from_secs(20));
/// # let _ = (grpc, http, spans);
/// ```
pub struct TestReceiver {
    runtime: Option<Runtime>,
    running: Option<RunningReceiver>,
    sink: MemorySink,
    grpc: SocketAddr,
    http: Option<SocketAddr>,
}

impl TestReceiver {
    /// Listens for gRPC and HTTP on free ports of 127.0.0.1.
    pub fn start() -> TestReceiver {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        TestReceiver::with(Receiver::builder().grpc(any).http(any))
    }

    /// Listens for gRPC only, on `port` of 127.0.0.1: a collector that
    /// comes up where exporters were told it would be.
    pub fn start_grpc_on(port: u16) -> TestReceiver {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        TestReceiver::with(Receiver::builder().grpc(addr))
    }

    fn with(builder: dspans_otlp::receiver::ReceiverBuilder) -> TestReceiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-receiver")
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let sink = MemorySink::new();
        let running = run_on(&runtime, builder.start(sink.clone())).expect("the receiver starts");
        TestReceiver {
            grpc: running.grpc_addr().expect("a gRPC address"),
            http: running.http_addr(),
            runtime: Some(runtime),
            running: Some(running),
            sink,
        }
    }

    /// `http://ADDR` of the gRPC server, an exporter's `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// `http://ADDR` of the HTTP server (`/v1/traces` is served); panics
    /// for a receiver started with [`TestReceiver::start_grpc_on`].
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    /// The gRPC server's address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// The HTTP server's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.expect("this receiver serves no HTTP")
    }

    /// Where the receiver keeps what it received; async tests wait on it
    /// with [`MemorySink::wait_for_spans`].
    pub fn sink(&self) -> &MemorySink {
        &self.sink
    }

    /// The spans received so far, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        self.sink.spans()
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.sink.requests()
    }

    /// Waits until `n` spans or more arrived and returns them; panics
    /// after `limit`. This blocks the calling thread: async tests await
    /// `sink().wait_for_spans` instead.
    pub fn wait_for_spans(&self, n: usize, limit: Duration) -> Vec<Span> {
        let sink = self.sink.clone();
        run_on(self.runtime(), async move {
            sink.wait_for_spans(n, limit).await
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The spans received so far, once `cond` holds for them, each span id
    /// counted once (an outbox entry is sent again after its exporter was
    /// killed between the collector's answer and the entry's deletion);
    /// returns everything received, repeats included. Panics after `limit`
    /// with `what` and `context()`.
    pub fn spans_until(
        &self,
        what: &str,
        limit: Duration,
        context: impl Fn() -> String,
        cond: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        wait_for(what, limit, context, || {
            let spans = self.sink.spans();
            let mut seen = HashSet::new();
            let unique: Vec<Span> = spans
                .iter()
                .filter(|s| seen.insert((s.trace_id.clone(), s.span_id.clone())))
                .cloned()
                .collect();
            cond(&unique).then_some(spans)
        })
    }

    /// Stops listening (a collector gone away), keeping what it received
    /// readable. Call it from a thread that runs no runtime.
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = run_on(self.runtime(), running.shutdown());
        }
    }

    /// Stops accepting, lets open requests finish, and reports a server
    /// that had failed (what [`RunningReceiver::shutdown`] reports).
    pub async fn shutdown(mut self) -> Result<(), ReceiverError> {
        let running = self.running.take().expect("running until shut down");
        let stopped = self.runtime().spawn(running.shutdown()).await;
        stopped.map_err(|e| ReceiverError::Serve {
            protocol: "otlp",
            message: e.to_string(),
        })?
    }

    fn runtime(&self) -> &Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime lives until dropped")
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if let Some(running) = self.running.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Inside a test's runtime nothing may block on another one:
                // the servers stop without waiting for open requests.
                drop(running);
            } else {
                let _ = runtime.block_on(running.shutdown());
            }
        }
        runtime.shutdown_background();
    }
}

/// Runs `future` on `runtime` and waits for its output on this thread,
/// whether or not this thread runs a runtime of its own.
fn run_on<F>(runtime: &Runtime, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv().expect("the receiver's runtime runs the future")
}
