//! `dspans collector` receives the same trace from four senders and writes
//! the same spans for each: the project's Rust exporter over gRPC and over
//! HTTP/protobuf, and the Python OpenTelemetry SDK (`opentelemetry-sdk` +
//! `opentelemetry-exporter-otlp` from PyPI, in a virtual environment cached
//! under the cargo target dir) over gRPC and over HTTP/protobuf.
//!
//! Compared per sender: span names, kinds, attributes (with their types),
//! parent relation, links, events, status, timing relative to the root, the
//! instrumentation scope and the resource's `service.name`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::proto::common::v1::{any_value::Value as Any, AnyValue, KeyValue as ProtoKv};
use dspans_otlp::receiver::spans_of;
use dspans_otlp::Protocol;
use opentelemetry::trace::{
    Link, Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Array, KeyValue, StringValue, Value};

use crate::support::{exporting_provider, wait_for_spans, Collector};

const CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/otel_python_client.py"
);
/// What the test installs into its virtual environment.
const REQUIREMENTS: [&str; 2] = [
    "opentelemetry-sdk>=1.20,<2",
    "opentelemetry-exporter-otlp>=1.20,<2",
];
/// Generous bound for things that normally take milliseconds.
const WAIT: Duration = Duration::from_secs(30);
const SPANS_PER_SENDER: usize = 4;

fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A virtual environment with the Python OpenTelemetry SDK and OTLP
/// exporters, made once and reused while its stamp matches
/// [`REQUIREMENTS`]. Returns its interpreter.
fn python_venv() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("otel-python-venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("dspans-test-requirements");
    let wanted = REQUIREMENTS.join("\n");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); this test needs Python 3"));
    assert!(
        made.status.success(),
        "`python3 -m venv` failed (on Debian: apt-get install -y python3-venv): {}",
        describe(&made)
    );
    let pip = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(REQUIREMENTS)
        .output()
        .expect("the venv's python runs");
    assert!(
        pip.status.success(),
        "pip install {REQUIREMENTS:?} failed: {}",
        describe(&pip)
    );
    std::fs::write(&stamp, wanted).unwrap();
    python
}

/// Runs the Python client; it exits non-zero when an export failed.
fn python_send(python: &Path, protocol: &str, endpoint: &str, sender: &str) {
    let mut cmd = Command::new(python);
    cmd.arg(CLIENT).args([protocol, endpoint, sender]);
    // Only the command line configures the client; no proxy for localhost.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("OTEL_") || key.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(&*key);
        }
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost");
    let output = cmd.output().expect("the venv's python runs");
    assert!(
        output.status.success(),
        "Python client ({protocol}) failed: {}",
        describe(&output)
    );
}

/// The project's exporter sends the trace the Python client sends (see
/// tests/data/otel_python_client.py), spans exported as they end.
fn rust_send(protocol: Protocol, addr: SocketAddr, sender: &str) {
    let provider = exporting_provider(
        protocol,
        addr,
        "shop",
        10_000,
        vec![KeyValue::new("test.sender", sender.to_string())],
    );
    let tracer = provider.tracer("shop-test");
    let t0 = SystemTime::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);

    let root = tracer
        .span_builder("checkout")
        .with_kind(SpanKind::Server)
        .with_start_time(t0)
        .with_attributes([
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("order.items", 3i64),
            KeyValue::new("order.total", 42.5),
            KeyValue::new("order.gift", true),
            KeyValue::new(
                "order.tags",
                Value::Array(Array::String(vec![
                    StringValue::from("fragile"),
                    StringValue::from("express"),
                ])),
            ),
        ])
        .start(&tracer);
    let root_cx = opentelemetry::Context::new().with_span(root);

    let mut reserve = tracer
        .span_builder("reserve stock")
        .with_kind(SpanKind::Internal)
        .with_start_time(ms(10))
        .with_attributes([KeyValue::new("stock.sku", "sku-1")])
        .start_with_context(&tracer, &root_cx);
    let reserved = reserve.span_context().clone();
    reserve.end_with_timestamp(ms(30));

    let charge = tracer
        .span_builder("charge card")
        .with_kind(SpanKind::Client)
        .with_start_time(ms(40))
        .with_attributes([KeyValue::new("payment.provider", "acme")])
        .with_links(vec![Link::new(
            reserved,
            vec![KeyValue::new("link.reason", "after reservation")],
            0,
        )])
        .start_with_context(&tracer, &root_cx);
    let charge_cx = opentelemetry::Context::new().with_span(charge);
    let mut receipt = tracer
        .span_builder("send receipt")
        .with_kind(SpanKind::Internal)
        .with_start_time(ms(60))
        .with_attributes([KeyValue::new("mail.to", "buyer@example.com")])
        .start_with_context(&tracer, &charge_cx);
    receipt.add_event_with_timestamp("queued", ms(65), vec![KeyValue::new("queue.depth", 2i64)]);
    receipt.set_status(Status::error("mailbox full"));
    receipt.end_with_timestamp(ms(75));
    charge_cx.span().end_with_timestamp(ms(80));
    root_cx.span().end_with_timestamp(ms(100));
    provider.shutdown().expect("spans exported");
}

fn value(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => format!("string {s:?}"),
        Some(Any::BoolValue(b)) => format!("bool {b}"),
        Some(Any::IntValue(i)) => format!("int {i}"),
        Some(Any::DoubleValue(d)) => format!("double {d}"),
        Some(Any::ArrayValue(a)) => {
            let items: Vec<_> = a.values.iter().map(|v| value(&Some(v.clone()))).collect();
            format!("[{}]", items.join(", "))
        }
        other => format!("{other:?}"),
    }
}

fn attributes(kvs: &[ProtoKv]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), value(&kv.value)))
        .collect()
}

/// One span as comparable across senders: ids replaced by span names,
/// times by milliseconds from the sender's root start.
#[derive(Debug, PartialEq)]
struct Shape {
    service: String,
    scope: String,
    kind: i32,
    parent: Option<String>,
    attributes: BTreeMap<String, String>,
    links: Vec<(String, BTreeMap<String, String>)>,
    events: Vec<(String, u64, BTreeMap<String, String>)>,
    status: (i32, String),
    start_ms: u64,
    end_ms: u64,
}

/// Each sender's spans (keyed by the resource's `test.sender`) by name.
fn shapes(requests: &[ExportTraceServiceRequest]) -> BTreeMap<String, BTreeMap<String, Shape>> {
    struct Raw {
        sender: String,
        service: String,
        scope: String,
        span: dspans_otlp::proto::trace::v1::Span,
    }
    let mut raw = Vec::new();
    for rs in requests.iter().flat_map(|r| &r.resource_spans) {
        let resource = rs.resource.clone().unwrap_or_default().attributes;
        let get = |key: &str| match resource
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        {
            Some(Any::StringValue(s)) => s.clone(),
            _ => panic!("resource without string {key}: {resource:?}"),
        };
        for ss in &rs.scope_spans {
            let scope = ss
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for span in &ss.spans {
                raw.push(Raw {
                    sender: get("test.sender"),
                    service: get("service.name"),
                    scope: scope.clone(),
                    span: span.clone(),
                });
            }
        }
    }
    let mut by_sender: BTreeMap<String, Vec<&Raw>> = BTreeMap::new();
    for r in &raw {
        by_sender.entry(r.sender.clone()).or_default().push(r);
    }
    let mut out = BTreeMap::new();
    for (sender, spans) in by_sender {
        let traces: BTreeSet<_> = spans.iter().map(|r| r.span.trace_id.clone()).collect();
        assert_eq!(traces.len(), 1, "{sender}: one trace");
        let names: BTreeMap<Vec<u8>, String> = spans
            .iter()
            .map(|r| (r.span.span_id.clone(), r.span.name.clone()))
            .collect();
        assert_eq!(names.len(), spans.len(), "{sender}: unique span ids");
        let name_of = |id: &Vec<u8>| {
            names
                .get(id)
                .unwrap_or_else(|| panic!("{sender}: unknown span id {id:02x?}"))
                .clone()
        };
        let root_start = spans
            .iter()
            .map(|r| r.span.start_time_unix_nano)
            .min()
            .unwrap();
        let ms = |ns: u64| (ns - root_start) / 1_000_000;
        let mut shaped = BTreeMap::new();
        for r in spans {
            let s = &r.span;
            let shape = Shape {
                service: r.service.clone(),
                scope: r.scope.clone(),
                kind: s.kind,
                parent: (!s.parent_span_id.is_empty()).then(|| name_of(&s.parent_span_id)),
                attributes: attributes(&s.attributes),
                links: s
                    .links
                    .iter()
                    .map(|l| {
                        assert_eq!(l.trace_id, s.trace_id, "{sender}: link in the trace");
                        (name_of(&l.span_id), attributes(&l.attributes))
                    })
                    .collect(),
                events: s
                    .events
                    .iter()
                    .map(|e| {
                        (
                            e.name.clone(),
                            ms(e.time_unix_nano),
                            attributes(&e.attributes),
                        )
                    })
                    .collect(),
                status: s
                    .status
                    .as_ref()
                    .map(|st| (st.code, st.message.clone()))
                    .unwrap_or_default(),
                start_ms: ms(s.start_time_unix_nano),
                end_ms: ms(s.end_time_unix_nano),
            };
            let previous = shaped.insert(s.name.clone(), shape);
            assert!(previous.is_none(), "{sender}: span {} twice", s.name);
        }
        out.insert(sender, shaped);
    }
    out
}

#[test]
fn collector_writes_the_same_spans_from_rust_and_python_over_grpc_and_http() {
    let started = Instant::now();
    let python = python_venv();
    eprintln!("python venv ready after {:?}", started.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let collector = Collector::start_anywhere(&out);
    let (grpc, http) = (collector.grpc, collector.http);

    rust_send(Protocol::Grpc, grpc, "rust-grpc");
    rust_send(Protocol::HttpProtobuf, http, "rust-http");
    python_send(&python, "grpc", &grpc.to_string(), "python-grpc");
    python_send(
        &python,
        "http",
        &format!("http://{http}/v1/traces"),
        "python-http",
    );
    let requests = wait_for_spans(&out, 4 * SPANS_PER_SENDER, WAIT);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        spans_of(&requests).len(),
        4 * SPANS_PER_SENDER,
        "no more than sent: {text}"
    );

    let shapes = shapes(&requests);
    let senders: Vec<_> = shapes.keys().map(String::as_str).collect();
    assert_eq!(
        senders,
        ["python-grpc", "python-http", "rust-grpc", "rust-http"]
    );

    // The reference is spelled out, so that four equally wrong senders fail.
    let reference = &shapes["rust-grpc"];
    let names: Vec<_> = reference.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["charge card", "checkout", "reserve stock", "send receipt"]
    );
    let parent = |name: &str| reference[name].parent.as_deref();
    assert_eq!(parent("checkout"), None);
    assert_eq!(parent("reserve stock"), Some("checkout"));
    assert_eq!(parent("charge card"), Some("checkout"));
    assert_eq!(parent("send receipt"), Some("charge card"));
    let checkout = &reference["checkout"];
    assert_eq!(checkout.service, "shop");
    assert_eq!(checkout.scope, "shop-test");
    assert_eq!(checkout.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(
        checkout.attributes,
        BTreeMap::from([
            ("http.request.method".into(), "string \"POST\"".into()),
            ("order.gift".into(), "bool true".into()),
            ("order.items".into(), "int 3".into()),
            (
                "order.tags".into(),
                "[string \"fragile\", string \"express\"]".into()
            ),
            ("order.total".into(), "double 42.5".into()),
        ])
    );
    assert_eq!((checkout.start_ms, checkout.end_ms), (0, 100));
    assert_eq!(
        reference["charge card"].links,
        [(
            "reserve stock".to_string(),
            BTreeMap::from([(
                "link.reason".to_string(),
                "string \"after reservation\"".to_string()
            )])
        )]
    );
    let receipt = &reference["send receipt"];
    assert_eq!(
        receipt.events,
        [(
            "queued".to_string(),
            65,
            BTreeMap::from([("queue.depth".to_string(), "int 2".to_string())])
        )]
    );
    assert_eq!(receipt.status, (2, "mailbox full".to_string()));

    for sender in ["rust-http", "python-grpc", "python-http"] {
        for (name, shape) in reference {
            assert_eq!(
                shapes[sender].get(name),
                Some(shape),
                "span {name:?} from {sender} differs from rust-grpc's"
            );
        }
    }
    eprintln!("test done after {:?}", started.elapsed());
}
