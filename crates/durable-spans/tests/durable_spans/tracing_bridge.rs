//! `tracing` spans (through tracing-opentelemetry) as children of a restored
//! span and of a restored span context, checked at a real OTLP receiver.

use dspans_test_support::TestReceiver;
use durable_spans::{parent_context, SavedSpanOptions};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::Context;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::common::{find, tracer, WAIT};

#[test]
fn tracing_spans_join_the_restored_trace() {
    let receiver = TestReceiver::start();
    let tracer = tracer(&receiver, "zuultest", "zuul");
    let info = tracer
        .start_saved_span("BuildSet", SavedSpanOptions::new())
        .unwrap();
    let remote = tracer
        .start_saved_span("Build", SavedSpanOptions::new())
        .unwrap();

    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer.tracer().clone()));
    tracing::subscriber::with_default(subscriber, || {
        let cx = Context::new().with_span(tracer.restore(Some(&info)));
        let outer = tracing::info_span!("merge-repos");
        outer.set_parent(cx).unwrap();
        outer.in_scope(|| {
            let inner = tracing::info_span!("git-fetch");
            inner.in_scope(|| tracing::info!("fetching"));
        });
        drop(outer);

        let worker = tracing::info_span!("job-execution");
        worker
            .set_parent(parent_context(Some(&remote.span_context())))
            .unwrap();
        drop(worker);
    });

    let spans = receiver.wait_for_spans(3, WAIT);
    let outer = find(&spans, "merge-repos");
    let inner = find(&spans, "git-fetch");
    let worker = find(&spans, "job-execution");
    let id = |n: u128| n.to_be_bytes().to_vec();
    assert_eq!(outer.trace_id, id(info.trace_id));
    assert_eq!(outer.parent_span_id, info.span_id.to_be_bytes().to_vec());
    assert_eq!(inner.trace_id, id(info.trace_id));
    assert_eq!(inner.parent_span_id, outer.span_id);
    assert_eq!(worker.trace_id, id(remote.trace_id));
    assert_eq!(worker.parent_span_id, remote.span_id.to_be_bytes().to_vec());
    assert_eq!(worker.flags & 0x300, 0x300, "the parent context is remote");
}
