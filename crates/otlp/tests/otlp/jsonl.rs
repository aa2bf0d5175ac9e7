//! OTLP-JSON lines: the exporter writes what `read_json_lines` reads, in the
//! collector file exporter's shape.

use std::io::Write;

use crate::common::*;
use dspans_otlp::receiver::{JsonLinesSink, Receiver};
use dspans_otlp::{
    build_exporter, read_json_lines, request_to_json_line, to_export_request, ExportOptions,
    Exporter, Protocol,
};
use opentelemetry_sdk::Resource;

#[test]
fn json_lines_exporter_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spans.jsonl");
    let provider = provider(Exporter::json_lines(&path).unwrap(), "jsonl-test");
    emit_spans(&provider);
    provider.shutdown().unwrap();

    let requests = read_json_lines(&path).unwrap();
    assert_eq!(requests.len(), 3, "one line per export call");
    assert_eq!(service_names(&requests), ["jsonl-test"; 3]);
    let spans = dspans_otlp::receiver::spans_of(&requests);
    check_emitted(&spans);

    // The OTLP JSON mapping: camelCase, hex ids, intValue as a string.
    let text = std::fs::read_to_string(&path).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let span = &first["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    let trace_id = span["traceId"].as_str().unwrap();
    assert_eq!(trace_id.len(), 32);
    assert!(trace_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(span["spanId"].as_str().unwrap().len(), 16);
    assert_eq!(span["parentSpanId"].as_str().unwrap().len(), 16);
    assert!(span["startTimeUnixNano"].is_string() || span["startTimeUnixNano"].is_number());
    let resource = &first["resourceSpans"][0]["resource"]["attributes"];
    assert!(resource
        .as_array()
        .unwrap()
        .iter()
        .any(|kv| kv["key"] == "service.name" && kv["value"]["stringValue"] == "jsonl-test"));

    // A writer crashing mid-line leaves a partial line: still readable.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(br#"{"resourceSpans":[{"resou"#).unwrap();
    drop(f);
    assert_eq!(read_json_lines(&path).unwrap().len(), 3);
}

#[test]
fn helpers_encode_a_request_per_line() {
    let spans = captured_spans(3);
    let resource = Resource::builder().with_service_name("helpers").build();
    let request = to_export_request(spans, &resource);
    assert_eq!(dspans_otlp::receiver::span_count(&request), 3);
    let line = request_to_json_line(&request);
    assert!(!line.contains('\n'));
    let back = dspans_otlp::parse_json_lines(&line).unwrap();
    assert_eq!(back, vec![request]);
}

#[test]
fn reading_a_missing_file_is_an_error() {
    let e = read_json_lines("/nonexistent/spans.jsonl").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/spans.jsonl"));
}

/// The collector use: receiver -> JSON-lines file -> reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_writes_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collected.jsonl");
    let receiver = Receiver::builder()
        .grpc("127.0.0.1:0".parse().unwrap())
        .start(JsonLinesSink::open(&path).unwrap())
        .await
        .unwrap();
    let o = ExportOptions {
        enabled: true,
        protocol: Protocol::Grpc,
        endpoint: receiver.grpc_endpoint(),
        ..Default::default()
    };
    let provider = provider(build_exporter(&o).unwrap(), "collected");
    emit_spans(&provider);
    provider.shutdown().unwrap();
    // Each export returned after the receiver answered, which it does
    // after writing and flushing: the file is complete now.
    receiver.shutdown().await.unwrap();
    let requests = read_json_lines(&path).unwrap();
    check_emitted(&dspans_otlp::receiver::spans_of(&requests));
    assert_eq!(service_names(&requests), ["collected"; 3]);
}
