//! What the tests of `durable-spans` share beside `dspans-test-support`:
//! durable tracers that export to the test receiver over the wire, and
//! OTLP values as JSON to compare with Zuul's recorded ones.

use std::collections::BTreeMap;
use std::time::Duration;

use dspans_otlp::proto::common::v1::{any_value, AnyValue, KeyValue};
use dspans_otlp::proto::trace::v1::Span;
use dspans_otlp::{build_exporter, ExportOptions, Protocol};
use dspans_test_support::TestReceiver;
use durable_spans::DurableTracer;

/// How long a test waits for spans to arrive.
pub const WAIT: Duration = Duration::from_secs(20);

/// A durable tracer exporting each ended span to `receiver`, one request
/// per span, as Zuul's tests configure it.
pub fn tracer(receiver: &TestReceiver, service_name: &str, scope: &'static str) -> DurableTracer {
    let options = ExportOptions {
        enabled: true,
        protocol: Protocol::Grpc,
        endpoint: Some(receiver.endpoint()),
        service_name: Some(service_name.to_string()),
        ..ExportOptions::default()
    };
    let exporter = build_exporter(&options).expect("exporter");
    DurableTracer::builder(scope)
        .service_name(service_name)
        .with_simple_exporter(exporter)
        .build()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP value as plain JSON, to compare with Zuul's recorded values.
pub fn any_to_json(value: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &value.value {
        Some(any_value::Value::StringValue(s)) => J::from(s.clone()),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(f)) => J::from(*f),
        Some(any_value::Value::BoolValue(b)) => J::from(*b),
        Some(any_value::Value::ArrayValue(a)) => {
            J::Array(a.values.iter().map(any_to_json).collect())
        }
        other => panic!("unexpected attribute value {other:?}"),
    }
}

/// Attributes as (key, JSON value) in order.
pub fn attrs(list: &[KeyValue]) -> Vec<(String, serde_json::Value)> {
    list.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(any_to_json).unwrap_or_default(),
            )
        })
        .collect()
}

pub fn attr_map(list: &[KeyValue]) -> BTreeMap<String, serde_json::Value> {
    attrs(list).into_iter().collect()
}

pub fn find<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no span named {name} among {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}
