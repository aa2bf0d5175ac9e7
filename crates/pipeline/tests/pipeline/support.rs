//! The pipeline tests' harness beside `dspans-test-support`: tracers and
//! outbox senders that export to the test receiver.

use std::sync::Arc;
use std::time::Duration;

use dspans_ledger::{OutboxSender, SenderOptions};
use dspans_otlp::{build_exporter, ExportOptions, Protocol};
use dspans_store::Store;
use dspans_test_support::TestReceiver;
use durable_spans::DurableTracer;

/// How long a test waits for anything.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often a test's scheduler ends orphaned spans.
pub const ORPHAN_SWEEP: Duration = Duration::from_millis(500);

/// Tracers and outbox senders exporting over gRPC to a receiver.
pub trait Exporting {
    /// A tracer exporting each ended span to this receiver.
    fn tracer(&self, service: &str) -> DurableTracer;

    /// A sender of the outbox of the span ledger at `root` to this
    /// receiver, as each component runs one; `tracer` gives the resource.
    fn sender(
        &self,
        store: &Arc<dyn Store>,
        root: &str,
        tracer: &DurableTracer,
        name: &str,
    ) -> OutboxSender;
}

impl Exporting for TestReceiver {
    fn tracer(&self, service: &str) -> DurableTracer {
        DurableTracer::builder("dspans")
            .service_name(service)
            .with_simple_exporter(build_exporter(&grpc_to(self)).unwrap())
            .build()
    }

    fn sender(
        &self,
        store: &Arc<dyn Store>,
        root: &str,
        tracer: &DurableTracer,
        name: &str,
    ) -> OutboxSender {
        let exporter = build_exporter(&grpc_to(self)).unwrap();
        let pace = SenderOptions {
            sweep_interval: Duration::from_millis(200),
            ..SenderOptions::default()
        };
        OutboxSender::new(store.clone(), root, exporter, tracer, name, pace)
    }
}

/// Export options for OTLP/gRPC to `receiver`.
fn grpc_to(receiver: &TestReceiver) -> ExportOptions {
    ExportOptions {
        enabled: true,
        protocol: Protocol::Grpc,
        endpoint: Some(receiver.endpoint()),
        ..ExportOptions::default()
    }
}
