//! An unreachable or silent collector gives an export error within the
//! configured timeout, never a hang.

use std::time::{Duration, Instant};

use crate::common::captured_spans;
use dspans_otlp::{build_exporter, ExportOptions, Protocol};
use opentelemetry_sdk::trace::SpanExporter;

const TIMEOUT_MS: u64 = 800;
/// Slack over the timeout for scheduling on a loaded machine.
const SLACK: Duration = Duration::from_secs(3);

fn opts(protocol: Protocol, endpoint: String) -> ExportOptions {
    ExportOptions {
        enabled: true,
        protocol,
        endpoint: Some(endpoint),
        timeout: Some(TIMEOUT_MS),
        ..Default::default()
    }
}

/// A loopback address nothing listens on.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

async fn assert_fails_in_time(o: ExportOptions) -> String {
    let exporter = build_exporter(&o).expect("exporter builds");
    let started = Instant::now();
    let result = exporter.export(captured_spans(2)).await;
    let took = started.elapsed();
    let err = result.expect_err("export to nowhere must fail");
    assert!(
        took < Duration::from_millis(TIMEOUT_MS) + SLACK,
        "took {took:?}, timeout is {TIMEOUT_MS} ms"
    );
    let _ = exporter.shutdown();
    err.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_an_error() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let msg = assert_fails_in_time(opts(protocol, closed_port())).await;
        assert!(
            msg.contains("127.0.0.1"),
            "message names the endpoint: {msg}"
        );
    }
}

/// A peer that accepts TCP but never answers: only the timeout ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_collector_times_out() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        assert_fails_in_time(opts(protocol, endpoint.clone())).await;
    }
    drop(silent);
}

/// Called with no runtime at all (as from the batch processor's thread).
#[test]
fn fails_in_time_without_a_runtime() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let o = opts(protocol, closed_port());
        let exporter = build_exporter(&o).unwrap();
        let started = Instant::now();
        let result = futures_lite_block_on(exporter.export(captured_spans(1)));
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_millis(TIMEOUT_MS) + SLACK);
    }
}

/// Drives a future on this thread without tokio.
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// The message a CLI would print names the protocol, endpoint and cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_message_is_clear() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let endpoint = closed_port();
        let msg = assert_fails_in_time(opts(protocol, endpoint.clone())).await;
        println!("{msg}");
        assert!(msg.contains(protocol.as_str()), "{msg}");
        assert!(msg.contains(&endpoint), "{msg}");
    }
}
