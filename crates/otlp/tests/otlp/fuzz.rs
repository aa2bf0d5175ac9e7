//! The collector's decoders fuzzed over the wire: OTLP/protobuf and
//! OTLP/JSON bodies, valid ones mutated at random and plain random bytes,
//! posted to a real collector writing a real file. Every body gets an
//! answer that is not a server error, the collector keeps serving, and
//! every line it wrote reads back.
//!
//! `DSPANS_FUZZ_CASES` sets the number of bodies (default 300). A long run:
//! `DSPANS_FUZZ_CASES=1000000 DSPANS_FUZZ_SECONDS=600 cargo test -p dspans-otlp
//! --test otlp fuzz -- --nocapture` (the seconds bound the run; it prints
//! its figures).

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::common::*;
use dspans_otlp::collector::{Collector, CollectorConfig};
use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::proto::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use dspans_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use dspans_otlp::{read_json_lines, request_to_json_line};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;

fn value(v: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

/// A request with every kind of attribute value, the seed of mutations.
fn seed() -> ExportTraceServiceRequest {
    let attributes = vec![
        ("s", any_value::Value::StringValue("ok".into())),
        ("i", any_value::Value::IntValue(-7)),
        ("d", any_value::Value::DoubleValue(f64::NAN)),
        ("b", any_value::Value::BoolValue(true)),
        ("x", any_value::Value::BytesValue(vec![0, 255])),
        (
            "a",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(any_value::Value::IntValue(1)),
                }],
            }),
        ),
    ]
    .into_iter()
    .map(|(key, v)| KeyValue {
        key: key.into(),
        value: value(v),
        ..KeyValue::default()
    })
    .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![0x4b; 16],
                    span_id: vec![0x7e; 8],
                    name: "seed".into(),
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_001_000_000_000,
                    attributes,
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// One body to post: its content type and bytes.
#[derive(Debug, Clone)]
struct Body {
    json: bool,
    bytes: Vec<u8>,
}

/// Mutations of a valid body (byte changes, cuts, insertions), or random
/// bytes, in either encoding.
fn bodies() -> impl Strategy<Value = Body> {
    let proto = seed().encode_to_vec();
    let json = request_to_json_line(&seed()).into_bytes();
    let mutation = (
        any::<bool>(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..6),
    )
        .prop_map(move |(is_json, edits)| {
            let mut bytes = if is_json { json.clone() } else { proto.clone() };
            for (at, byte, kind) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = byte,
                    1 => bytes.truncate(i),
                    _ => bytes.insert(i, byte),
                }
            }
            Body {
                json: is_json,
                bytes,
            }
        });
    let random = (any::<bool>(), prop::collection::vec(any::<u8>(), 0..256))
        .prop_map(|(json, bytes)| Body { json, bytes });
    prop_oneof![4 => mutation, 1 => random]
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn mutated_and_random_bodies_never_break_the_collector_or_its_file() {
    let cases = setting("DSPANS_FUZZ_CASES", 300) as u32;
    let budget = Duration::from_secs(setting("DSPANS_FUZZ_SECONDS", 600));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The client's timers need the runtime's context outside `block_on` too.
    let _context = runtime.enter();
    let any = Some("127.0.0.1:0".parse().unwrap());
    let collector = runtime
        .block_on(Collector::start(&CollectorConfig::new(&out).http(any)))
        .unwrap();
    let url = format!("http://{}/v1/traces", collector.http_addr().unwrap());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap();
    let started = Instant::now();
    let (sent, accepted) = (Cell::new(0u64), Cell::new(0u64));
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&bodies(), |body| {
        if started.elapsed() > budget {
            return Ok(());
        }
        let content_type = if body.json {
            "application/json"
        } else {
            "application/x-protobuf"
        };
        let status = runtime
            .block_on(
                client
                    .post(&url)
                    .header("content-type", content_type)
                    .body(body.bytes.clone())
                    .send(),
            )
            .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?
            .status();
        sent.set(sent.get() + 1);
        accepted.set(accepted.get() + u64::from(status.is_success()));
        prop_assert!(
            status.is_success() || status.is_client_error(),
            "{status} for {body:?}"
        );
        Ok(())
    });
    runtime.block_on(collector.shutdown()).unwrap();
    result.unwrap();
    let lines = read_json_lines(&out).expect("every line written reads back");
    let (sent, accepted) = (sent.get(), accepted.get());
    eprintln!(
        "fuzz: {sent} bodies in {:.1} s, {accepted} accepted, {} requests in the file, all readable",
        started.elapsed().as_secs_f64(),
        lines.len()
    );
    assert!(
        accepted > 0,
        "no body was accepted: the seed itself is refused"
    );
}
