//! A real OTLP/gRPC receiver running in the test process, and tracers that
//! export to it over the wire.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::proto::common::v1::{any_value, AnyValue, KeyValue};
use dspans_otlp::proto::trace::v1::Span;
use dspans_otlp::receiver::{MemorySink, Receiver, RunningReceiver};
use dspans_otlp::{build_exporter, ExportOptions, Protocol};
use durable_spans::DurableTracer;

/// The receiver runs on its own runtime so that the SDK's simple processor,
/// which blocks while exporting, never stalls it.
pub struct TestReceiver {
    runtime: tokio::runtime::Runtime,
    running: Option<RunningReceiver>,
    pub sink: MemorySink,
    pub endpoint: String,
}

impl TestReceiver {
    pub fn start() -> TestReceiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let sink = MemorySink::new();
        let running = runtime
            .block_on(
                Receiver::builder()
                    .grpc("127.0.0.1:0".parse().unwrap())
                    .start(sink.clone()),
            )
            .expect("receiver starts");
        let endpoint = running.grpc_endpoint().expect("grpc endpoint");
        TestReceiver {
            runtime,
            running: Some(running),
            sink,
            endpoint,
        }
    }

    /// A durable tracer exporting each ended span to this receiver, one
    /// request per span, as Zuul's tests configure it.
    pub fn tracer(&self, service_name: &str, scope: &'static str) -> DurableTracer {
        let options = ExportOptions {
            enabled: true,
            protocol: Protocol::Grpc,
            endpoint: Some(self.endpoint.clone()),
            service_name: Some(service_name.to_string()),
            ..ExportOptions::default()
        };
        let exporter = build_exporter(&options).expect("exporter");
        DurableTracer::builder(scope)
            .service_name(service_name)
            .with_simple_exporter(exporter)
            .build()
    }

    /// Waits (with a deadline) until `n` spans arrived.
    pub fn wait_for_spans(&self, n: usize) -> Vec<Span> {
        self.runtime
            .block_on(self.sink.wait_for_spans(n, Duration::from_secs(20)))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.sink.requests()
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = self.runtime.block_on(running.shutdown());
        }
    }
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
