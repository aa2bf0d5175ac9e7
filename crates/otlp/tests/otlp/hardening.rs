//! The receiver and collector against hostile or broken input: values
//! nested too deep, forged spans with known ids, special doubles, damaged
//! files, silent and slow connections, bearer tokens and TLS.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use dspans_otlp::collector::{Collector, CollectorConfig};
use dspans_otlp::proto::collector::trace::v1::trace_service_client::TraceServiceClient;
use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::proto::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use dspans_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use dspans_otlp::receiver::{spans_of, MemorySink, Receiver, Timeouts, MAX_VALUE_DEPTH};
use dspans_otlp::{
    build_exporter, read_json_lines, request_to_json_line, scan_json_lines, ExportOptions,
    Protocol, MAX_LINE_BYTES,
};
use prost::Message;

const TRACE: [u8; 16] = [0x4b; 16];
const SPAN: [u8; 8] = [0x7e; 8];

/// One span with the known ids, `name`, and `attributes`.
fn request(name: &str, attributes: Vec<KeyValue>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: TRACE.to_vec(),
                    span_id: SPAN.to_vec(),
                    name: name.into(),
                    start_time_unix_nano: 1_000,
                    end_time_unix_nano: 2_000,
                    attributes,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// An attribute whose value is `depth` deep: arrays in arrays.
fn nested(depth: usize) -> KeyValue {
    let mut value = any_value::Value::StringValue("leaf".into());
    for _ in 1..depth {
        value = any_value::Value::ArrayValue(ArrayValue {
            values: vec![AnyValue { value: Some(value) }],
        });
    }
    attribute("nested", value)
}

fn collector_config(out: &Path) -> CollectorConfig {
    let any = Some("127.0.0.1:0".parse().unwrap());
    CollectorConfig::new(out).grpc(any).http(any)
}

fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
}

async fn post_protobuf(addr: SocketAddr, request: &ExportTraceServiceRequest) -> u16 {
    http_client()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .expect("request sent")
        .status()
        .as_u16()
}

/// Finding: one request with a value nested 40-49 deep was written but
/// could never be read back, which made the whole file unreadable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_nested_too_deep_are_refused_so_the_file_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let collector = Collector::start(&collector_config(&out)).await.unwrap();
    let endpoint = format!("http://{}", collector.grpc_addr().unwrap());
    let mut grpc = TraceServiceClient::connect(endpoint).await.unwrap();

    for depth in [MAX_VALUE_DEPTH + 1, 45] {
        let deep = request("deep", vec![nested(depth)]);
        let status = grpc.export(deep.clone()).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("nested"), "{status:?}");
        let http = post_protobuf(collector.http_addr().unwrap(), &deep).await;
        assert_eq!(http, 400, "depth {depth}");
    }
    grpc.export(request("at the limit", vec![nested(MAX_VALUE_DEPTH)]))
        .await
        .expect("accepted");
    collector.shutdown().await.unwrap();

    let requests = read_json_lines(&out).expect("every line reads back");
    let names: Vec<_> = spans_of(&requests).into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["at the limit"]);
}

/// Finding: a job knows its JobRun span's ids (from `$TRACEPARENT`); a
/// forged span sent first was kept and the real one dropped as a repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_with_seen_ids_and_other_content_is_written_as_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let forged = request("JobRun", vec![attribute("result", string("SUCCESS"))]);
    let real = request("JobRun", vec![attribute("result", string("FAILURE"))]);

    let collector = Collector::start(&collector_config(&out)).await.unwrap();
    let http = collector.http_addr().unwrap();
    assert_eq!(post_protobuf(http, &forged).await, 200);
    assert_eq!(post_protobuf(http, &real).await, 200);
    assert_eq!(post_protobuf(http, &real).await, 200, "a resend");
    assert_eq!((collector.conflicts(), collector.repeats()), (1, 1));
    collector.shutdown().await.unwrap();

    // Restarted on the file, it remembers both.
    let collector = Collector::start(&collector_config(&out)).await.unwrap();
    let http = collector.http_addr().unwrap();
    assert_eq!(post_protobuf(http, &real).await, 200);
    assert_eq!(post_protobuf(http, &forged).await, 200);
    assert_eq!((collector.conflicts(), collector.repeats()), (0, 2));
    collector.shutdown().await.unwrap();

    let spans = spans_of(&read_json_lines(&out).unwrap());
    let results: Vec<_> = spans
        .iter()
        .map(|s| dspans_test_support::attr(&s.attributes, "result").cloned())
        .collect();
    assert_eq!(
        results,
        [Some(string("SUCCESS")), Some(string("FAILURE"))],
        "both written, once each"
    );
}

fn string(s: &str) -> any_value::Value {
    any_value::Value::StringValue(s.into())
}

/// Finding: NaN and infinite doubles were written as JSON `null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_doubles_are_written_as_otlp_json_strings_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let collector = Collector::start(&collector_config(&out)).await.unwrap();
    let endpoint = format!("http://{}", collector.grpc_addr().unwrap());
    let mut grpc = TraceServiceClient::connect(endpoint).await.unwrap();
    let doubles = [
        ("nan", f64::NAN),
        ("inf", f64::INFINITY),
        ("neg", f64::NEG_INFINITY),
        ("one", 1.5),
    ];
    let attributes = doubles
        .iter()
        .map(|(k, d)| attribute(k, any_value::Value::DoubleValue(*d)))
        .collect();
    grpc.export(request("doubles", attributes)).await.unwrap();
    // The mapping's strings are accepted over OTLP/HTTP JSON too.
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c",
        "spanId":"b7ad6b7169203331","name":"from json","attributes":[
        {"key":"nan","value":{"doubleValue":"NaN"}},{"key":"neg","value":{"doubleValue":"-Infinity"}}]}]}]}]}"#;
    let response = http_client()
        .post(format!(
            "http://{}/v1/traces",
            collector.http_addr().unwrap()
        ))
        .header("content-type", "application/json")
        .body(json)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    collector.shutdown().await.unwrap();

    let text = std::fs::read_to_string(&out).unwrap();
    for written in [
        r#"{"key":"nan","value":{"doubleValue":"NaN"}}"#,
        r#"{"key":"inf","value":{"doubleValue":"Infinity"}}"#,
        r#"{"key":"neg","value":{"doubleValue":"-Infinity"}}"#,
        r#"{"key":"one","value":{"doubleValue":1.5}}"#,
    ] {
        assert!(text.contains(written), "{written} not in {text}");
    }
    assert!(!text.contains("\"doubleValue\":null"), "{text}");
    let spans = spans_of(&read_json_lines(&out).unwrap());
    let double = |span: &Span, key: &str| match dspans_test_support::attr(&span.attributes, key) {
        Some(any_value::Value::DoubleValue(d)) => *d,
        other => panic!("{key}: {other:?}"),
    };
    assert!(double(&spans[0], "nan").is_nan());
    assert_eq!(double(&spans[0], "inf"), f64::INFINITY);
    assert_eq!(double(&spans[0], "neg"), f64::NEG_INFINITY);
    assert_eq!(double(&spans[0], "one"), 1.5);
    assert!(double(&spans[1], "nan").is_nan());
    assert_eq!(double(&spans[1], "neg"), f64::NEG_INFINITY);
}

/// Finding: one unreadable line made the whole file unreadable, and a
/// collector restarted on it forgot every span it had written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_file_is_read_around_its_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let written = request("written", Vec::new());
    let line = request_to_json_line(&written);
    let long = "x".repeat(MAX_LINE_BYTES + 10);
    std::fs::write(&out, format!("{line}\nnot json\n{long}\n\n{line}\n")).unwrap();

    let mut requests = Vec::new();
    let read = scan_json_lines(&out, |r| requests.push(r)).unwrap();
    assert_eq!((read.requests, read.unreadable), (2, 2));
    assert!(!read.partial_last_line);
    assert_eq!(requests, [written.clone(), written.clone()]);
    assert!(
        read_json_lines(&out).is_err(),
        "the strict reader still fails"
    );

    // A collector started on it remembers the span: a resend is a repeat.
    let collector = Collector::start(&collector_config(&out)).await.unwrap();
    assert_eq!(
        post_protobuf(collector.http_addr().unwrap(), &written).await,
        200
    );
    assert_eq!(collector.repeats(), 1);
    collector.shutdown().await.unwrap();
    let read = scan_json_lines(&out, |_| {}).unwrap();
    assert_eq!((read.requests, read.unreadable), (2, 2), "nothing written");
}

/// A raw TCP connection to `addr` that the test reads from until the
/// server closes it.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// Reads until the server closes the connection (end of file or reset);
/// returns what it sent. Panics if it is still open after [`WAIT`].
fn read_until_closed(stream: &mut TcpStream) -> String {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("connection still open after {:?}: {e}", started.elapsed()),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Finding: half-sent requests and silent connections were held forever
/// (3,000 idle connections held 40 s and more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_connections_are_closed() {
    let timeouts = Timeouts {
        header: Duration::from_millis(500),
        request: Duration::from_secs(1),
        idle: Duration::from_secs(1),
    };
    let sink = MemorySink::new();
    let receiver = Receiver::builder()
        .grpc("127.0.0.1:0".parse().unwrap())
        .http("127.0.0.1:0".parse().unwrap())
        .timeouts(timeouts)
        .start(sink.clone())
        .await
        .unwrap();
    let (grpc, http) = (receiver.grpc_addr().unwrap(), receiver.http_addr().unwrap());
    let started = Instant::now();
    tokio::task::spawn_blocking(move || {
        // Silent connections, many of them, on both ports.
        let mut silent_http: Vec<TcpStream> = (0..100).map(|_| connect(http)).collect();
        let mut silent_grpc: Vec<TcpStream> = (0..100).map(|_| connect(grpc)).collect();
        // Headers begun, never ended.
        let mut headers = connect(http);
        headers
            .write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Ty")
            .unwrap();
        // Headers whole, body never whole: 408.
        let mut body = connect(http);
        body.write_all(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n\
              Content-Length: 1000\r\n\r\n0123456789",
        )
        .unwrap();
        for stream in &mut silent_http {
            assert_eq!(read_until_closed(stream), "");
        }
        for stream in &mut silent_grpc {
            // The server's HTTP/2 settings, then the end.
            read_until_closed(stream);
        }
        read_until_closed(&mut headers);
        let answer = read_until_closed(&mut body);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    })
    .await
    .unwrap();
    // Closed by the limits, not by the test's own read timeout.
    assert!(started.elapsed() < WAIT, "{:?}", started.elapsed());

    // Serving goes on.
    let ok = request("after", Vec::new());
    assert_eq!(post_protobuf(http, &ok).await, 200);
    let mut client = TraceServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    client.export(ok).await.unwrap();
    assert_eq!(sink.wait_for_spans(2, WAIT).await.unwrap().len(), 2);
    receiver.shutdown().await.unwrap();
}

fn opts(protocol: Protocol, endpoint: String) -> ExportOptions {
    ExportOptions {
        enabled: true,
        protocol,
        endpoint: Some(endpoint),
        service_name: Some("hardening".into()),
        timeout: Some(5_000),
        ..Default::default()
    }
}

/// `--tls-cert/--tls-key` and `--auth-token-file` as the library has them:
/// the project's exporters over TLS on both protocols, with and without the
/// token; raw requests without it get 401 / UNAUTHENTICATED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_bearer_token_on_both_protocols() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, certified.cert.pem()).unwrap();
    let sink = MemorySink::new();
    let receiver = Receiver::builder()
        .grpc("127.0.0.1:0".parse().unwrap())
        .http("127.0.0.1:0".parse().unwrap())
        .tls_pem(certified.cert.pem(), certified.key_pair.serialize_pem())
        .bearer_token("s3cret-token")
        .start(sink.clone())
        .await
        .unwrap();
    let grpc = format!("https://localhost:{}", receiver.grpc_addr().unwrap().port());
    let http = format!("https://localhost:{}", receiver.http_addr().unwrap().port());
    let mut grpc_opts = opts(Protocol::Grpc, grpc.clone());
    grpc_opts.tls_ca = Some(ca.clone());
    let mut http_opts = opts(Protocol::HttpProtobuf, http.clone());
    http_opts.certificate_file = Some(ca.clone());

    use opentelemetry_sdk::trace::SpanExporter as _;
    for o in [&grpc_opts, &http_opts] {
        let refused = build_exporter(o).unwrap().export(captured_spans(1)).await;
        assert!(refused.is_err(), "{:?} without the token", o.protocol);
        let mut wrong = o.clone();
        wrong
            .headers
            .insert("authorization".into(), "Bearer guessed".into());
        let refused = build_exporter(&wrong)
            .unwrap()
            .export(captured_spans(1))
            .await;
        assert!(refused.is_err(), "{:?} with a wrong token", o.protocol);
    }
    assert_eq!(sink.span_count(), 0);
    for o in [&mut grpc_opts, &mut http_opts] {
        o.headers
            .insert("authorization".into(), "Bearer s3cret-token".into());
        let provider = provider(build_exporter(o).unwrap(), "tls");
        emit_spans(&provider);
        provider.shutdown().unwrap();
    }
    let spans = sink.wait_for_spans(6, WAIT).await.unwrap();
    check_emitted(&spans[..3]);
    check_emitted(&spans[3..]);

    // The protocols' answers to a request without the token.
    let tls = rustls_client(&ca);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let response = client
        .post(format!("{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request("no token", Vec::new()).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(
        response.headers().get("www-authenticate").unwrap(),
        "Bearer"
    );
    let channel = tonic::transport::Channel::from_shared(grpc)
        .unwrap()
        .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(
            tonic::transport::Certificate::from_pem(certified.cert.pem()),
        ))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = TraceServiceClient::new(channel)
        .export(request("no token", Vec::new()))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    receiver.shutdown().await.unwrap();
}

fn rustls_client(ca: &Path) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}
