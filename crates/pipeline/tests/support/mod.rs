//! Test harness shared by the pipeline's integration tests: a real
//! OTLP/gRPC receiver, and tracers that export to it.
#![allow(dead_code)]

use std::time::Duration;

use dspans_ledger::{ExporterOptions, Ledger, OutboxExporter};
use dspans_otlp::proto::trace::v1::Span;
use dspans_otlp::receiver::{MemorySink, Receiver, RunningReceiver};
use dspans_otlp::{build_exporter, ExportOptions, Protocol};
use durable_spans::DurableTracer;

/// How long a test waits for anything.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A real OTLP/gRPC receiver on its own runtime: the simple span processor
/// blocks its thread while exporting, and must never starve the receiver.
pub struct Otlp {
    pub runtime: tokio::runtime::Runtime,
    running: Option<RunningReceiver>,
    pub sink: MemorySink,
    pub endpoint: String,
}

impl Otlp {
    pub fn start() -> Otlp {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sink = MemorySink::new();
        let running = runtime
            .block_on(
                Receiver::builder()
                    .grpc("127.0.0.1:0".parse().unwrap())
                    .start(sink.clone()),
            )
            .unwrap();
        let endpoint = running.grpc_endpoint().unwrap();
        Otlp {
            runtime,
            running: Some(running),
            sink,
            endpoint,
        }
    }

    /// A tracer exporting each ended span to this receiver.
    pub fn tracer(&self, service: &str) -> DurableTracer {
        let options = ExportOptions {
            enabled: true,
            protocol: Protocol::Grpc,
            endpoint: Some(self.endpoint.clone()),
            ..ExportOptions::default()
        };
        DurableTracer::builder("dspans")
            .service_name(service)
            .with_simple_exporter(build_exporter(&options).unwrap())
            .build()
    }

    /// An exporter of `ledger`'s outbox to this receiver, as each component
    /// runs one; `tracer` gives the resource.
    pub fn outbox(&self, ledger: &Ledger, tracer: &DurableTracer, name: &str) -> OutboxExporter {
        let options = ExportOptions {
            enabled: true,
            protocol: Protocol::Grpc,
            endpoint: Some(self.endpoint.clone()),
            ..ExportOptions::default()
        };
        let exporter = build_exporter(&options).unwrap();
        let pace = ExporterOptions {
            sweep_interval: Duration::from_millis(200),
            orphan_interval: Some(Duration::from_millis(500)),
            ..ExporterOptions::default()
        };
        OutboxExporter::new(ledger, exporter, tracer, name, pace)
    }

    /// Waits until `n` spans arrived.
    pub fn spans(&self, n: usize) -> Vec<Span> {
        self.runtime
            .block_on(self.sink.wait_for_spans(n, DEADLINE))
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Otlp {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = self.runtime.block_on(running.shutdown());
        }
    }
}
