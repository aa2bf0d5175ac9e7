//! Exporters from `build_exporter` against the real receiver, over the wire.

use crate::common::*;
use dspans_otlp::{build_exporter, Compression, ExportOptions, Protocol};
use dspans_test_support::TestReceiver;
use opentelemetry::trace::{Tracer, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

fn opts(protocol: Protocol, endpoint: String, compression: Option<Compression>) -> ExportOptions {
    ExportOptions {
        enabled: true,
        protocol,
        endpoint: Some(endpoint),
        service_name: Some("zuultest".into()),
        timeout: Some(5_000),
        compression,
        ..Default::default()
    }
}

async fn roundtrip(protocol: Protocol, compression: Option<Compression>) {
    let receiver = TestReceiver::start();
    let sink = receiver.sink();
    let endpoint = match protocol {
        Protocol::Grpc => receiver.endpoint(),
        Protocol::HttpProtobuf => receiver.http_endpoint(),
    };
    let o = opts(protocol, endpoint, compression);
    let provider = provider(build_exporter(&o).expect("exporter"), o.service_name());
    emit_spans(&provider);
    let spans = sink.wait_for_spans(3, WAIT).await.expect("spans arrive");
    check_emitted(&spans);
    // Simple processor: one request per span, each with the resource.
    let requests = sink.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(service_names(&requests), ["zuultest"; 3]);
    let scope = requests[0].resource_spans[0].scope_spans[0]
        .scope
        .as_ref()
        .unwrap();
    assert_eq!(scope.name, "dspans-otlp-test");
    provider.shutdown().expect("shutdown");
    receiver.shutdown().await.expect("receiver shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_arrives() {
    roundtrip(Protocol::Grpc, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_gzip_export_arrives() {
    roundtrip(Protocol::Grpc, Some(Compression::Gzip)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_arrives() {
    roundtrip(Protocol::HttpProtobuf, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_gzip_export_arrives() {
    roundtrip(Protocol::HttpProtobuf, Some(Compression::Gzip)).await;
}

/// The exporter does its I/O on its own thread, so a single-threaded
/// runtime that blocks in the simple processor does not deadlock (the
/// test receiver runs on a separate runtime).
#[test]
fn exports_from_current_thread_runtime_and_batch_thread() {
    let receiver = TestReceiver::start();

    // 1. Simple processor inside a current-thread runtime.
    let local = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let o = opts(Protocol::Grpc, receiver.endpoint(), None);
    local.block_on(async {
        let provider = provider(build_exporter(&o).unwrap(), "current-thread");
        emit_spans(&provider);
        provider.shutdown().unwrap();
    });
    let spans = receiver.wait_for_spans(3, WAIT);
    check_emitted(&spans);

    // 2. Batch processor (its own thread), built outside any runtime.
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let endpoint = match protocol {
            Protocol::Grpc => receiver.endpoint(),
            Protocol::HttpProtobuf => receiver.http_endpoint(),
        };
        let o = opts(protocol, endpoint, None);
        let provider = SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name("batch").build())
            .with_batch_exporter(build_exporter(&o).unwrap())
            .build();
        let tracer = provider.tracer("batch");
        for i in 0..5 {
            tracer.in_span(format!("batched-{i}"), |_| {});
        }
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    }
    let spans = receiver.wait_for_spans(13, WAIT);
    let batched = spans
        .iter()
        .filter(|s| s.name.starts_with("batched-"))
        .count();
    assert_eq!(batched, 10);
    local.block_on(receiver.shutdown()).unwrap();
}

/// With `compression = "gzip"` the HTTP exporter really compresses: read
/// the raw request off a socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_gzip_is_on_the_wire() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before the headers ended");
            head.extend_from_slice(&buf[..n]);
        }
        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&head).to_ascii_lowercase()
    });
    let o = opts(Protocol::HttpProtobuf, endpoint, Some(Compression::Gzip));
    let provider = provider(build_exporter(&o).unwrap(), "gz");
    provider.tracer("gz").in_span("one", |_| {});
    let head = tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
    assert!(head.starts_with("post /v1/traces "), "{head}");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(
        head.contains("content-type: application/x-protobuf"),
        "{head}"
    );
    let _ = provider.shutdown();
}

/// gRPC over TLS, trusting the collector's self-signed certificate through
/// `tls_ca`; without it the handshake fails (system roots do not know it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_tls_with_tls_ca() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = certified.cert.pem();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert_pem).unwrap();

    let sink = dspans_otlp::receiver::MemorySink::new();
    let receiver = dspans_otlp::receiver::Receiver::builder()
        .grpc("127.0.0.1:0".parse().unwrap())
        .grpc_tls_pem(cert_pem, certified.key_pair.serialize_pem())
        .start(sink.clone())
        .await
        .unwrap();
    let port = receiver.grpc_addr().unwrap().port();

    let mut o = opts(Protocol::Grpc, format!("https://localhost:{port}"), None);
    o.timeout = Some(2_000);
    // Untrusted certificate: an error, in time.
    let untrusted = build_exporter(&o).unwrap();
    use opentelemetry_sdk::trace::SpanExporter as _;
    assert!(untrusted.export(captured_spans(1)).await.is_err());

    o.tls_ca = Some(ca);
    let provider = provider(build_exporter(&o).unwrap(), "tls");
    emit_spans(&provider);
    check_emitted(&sink.wait_for_spans(3, WAIT).await.unwrap());
    provider.shutdown().unwrap();
    receiver.shutdown().await.unwrap();
}
